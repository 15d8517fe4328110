"""Answer tables: filled through the library's batching loop, a whole number of episodes per call."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from promptopt.config import RewardConfig, SplitConfig
from promptopt.experiments.study.answers import AnswerTable, score_table
from promptopt.llm.simulated import SimulatedRanker
from promptopt.llm.types import RankRequest, RankResponse
from promptopt.problem import RecProblem
from promptopt.templates import TemplateCatalog


class Counting:
    def __init__(self, inner: SimulatedRanker) -> None:
        self.inner, self.identity, self.calls = inner, inner.identity, []

    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        self.calls.append(len(requests))
        return self.inner.rank(requests)


def test_a_table_holds_every_valid_templates_outcome(synthetic_data, synthetic_split) -> None:
    catalog = TemplateCatalog.load("movies")
    reward = RewardConfig(robust_weight=0.5, views=("temporal",))
    problem = RecProblem.build(synthetic_data, synthetic_split, catalog, reward, SplitConfig(), seed=0)
    users = synthetic_split.test
    ranker = Counting(SimulatedRanker(synthetic_data, catalog, seed=1, noise=0.3))
    table = score_table(problem, ranker, users, period="target", chunk=25)
    has = [int(u) for u in users if problem.target_row(int(u), period="target") is not None]
    episodes = sum(int(problem.action_mask(u, period="target").sum()) for u in has)
    per_call = 25 // problem.calls_per_episode  # 12 episodes, 24 requests
    assert ranker.calls == [min(per_call, episodes - s) * 2 for s in range(0, episodes, per_call)]
    assert isinstance(table, AnswerTable) and table.ndcg.shape == (users.size, problem.n_templates)
    for i, user in enumerate(users):
        if int(user) not in has:
            assert np.isnan(table.reward[i]).all()
            continue
        mask = problem.action_mask(int(user), period="target")
        assert np.isnan(table.reward[i][~mask]).all()
        again = problem.run([int(user)] * int(mask.sum()), np.flatnonzero(mask), ranker, period="target")
        np.testing.assert_array_equal(table.reward[i][mask], [o.reward.total for o in again])
        np.testing.assert_array_equal(table.ndcg[i][mask], [o.metrics["base"]["ndcg@10"] for o in again])
    assert len(has) < users.size  # some user has no target-period interaction: its row is nan
