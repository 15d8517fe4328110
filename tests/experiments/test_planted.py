"""The planted benchmark's ranker: real (replayed) answers everywhere except planted users' t*.

On logged simulator answers: requests outside the plant come back exactly as logged; a planted
user's t* answer puts the target on top for the hashed share ``p`` of tasks and is otherwise the
logged answer; the plant's values in expectation follow the module's formula.
"""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.config import RewardConfig, SplitConfig
from promptopt.experiments.bench.planted import (
    AnswerTable,
    PlantedRanker,
    build_table,
    make_plant,
    planted_users,
)
from promptopt.llm.cache import CachedRanker
from promptopt.llm.replay import ReplayRanker
from promptopt.llm.simulated import SimulatedRanker
from promptopt.metrics import ndcg_at_k
from promptopt.problem import RecProblem
from promptopt.templates import TemplateCatalog

IDS = ("expert.recent5.none.index", "expert.recent10.none.index", "expert.genres10.none.index",
       "expert.profile.none.index")


@pytest.fixture(scope="module")
def logged(synthetic_data, synthetic_split, tmp_path_factory):
    catalog = TemplateCatalog.load("movies", include=IDS)
    problem = RecProblem.build(synthetic_data, synthetic_split, catalog, RewardConfig(),
                               SplitConfig(n_negatives=19), seed=0)
    users = np.concatenate([synthetic_split.train, synthetic_split.val, synthetic_split.test])
    path = tmp_path_factory.mktemp("planted") / "cache.sqlite"
    with CachedRanker(SimulatedRanker(synthetic_data, catalog, noise=0.2, seed=0), path) as live:
        table = build_table(problem, live, users, n_targets=2)
    return problem, users, ReplayRanker(path), table


def _targets(problem, users):
    out = {}
    for u in users:
        for row in (problem.data.history_length(int(u)) - 1, problem.data.history_length(int(u)) - 2):
            for task in problem.tasks(int(u), row=row):
                out[task.task_id] = task.target
    return out


def test_planted_ranker_changes_only_planted_users_t_star(logged) -> None:
    problem, users, replay, table = logged
    planted = planted_users(problem, users, tie="top_genre_share", share=0.3)
    assert planted.sum() == round(0.3 * users.size)
    plant = make_plant(table, planted, gain=0.1, template=None, tie="top_genre_share")
    assert plant.template != plant.best and 0 < plant.promote < 1
    raw = {str(r): i for i, r in enumerate(problem.data.user_ids)}
    ranker = PlantedRanker(replay, planted, raw, problem.catalog.ids[plant.template], plant.promote,
                           _targets(problem, users))
    promoted, planted_ndcg, real_ndcg = 0, [], []
    for user in users:
        for row in (problem.data.history_length(int(user)) - 1, problem.data.history_length(int(user)) - 2):
            tasks = problem.tasks(int(user), row=row)
            for t in np.flatnonzero(problem.action_mask(int(user), row=row)):
                requests = problem.requests(tasks, int(t))
                real, got = replay.rank(requests)[0], ranker.rank(requests)[0]
                if not planted[user] or t != plant.template:
                    assert got == real
                    continue
                assert sorted(got.ranking) == sorted(real.ranking)
                if got.ranking != real.ranking:
                    promoted += 1
                    assert got.ranking[0] == tasks[0].target
                    assert [c for c in got.ranking if c != tasks[0].target] == [
                        c for c in real.ranking if c != tasks[0].target]
                planted_ndcg.append(ndcg_at_k(got.ranking, tasks[0].target, 10))
                real_ndcg.append(ndcg_at_k(real.ranking, tasks[0].target, 10))
    n = len(planted_ndcg)
    assert n > 40 and 0 < promoted < n
    # Promotion changes what p says, so the planted mean is p + (1 - p) * the real mean, up to noise.
    expected = plant.promote + (1 - plant.promote) * np.mean(real_ndcg)
    assert abs(np.mean(planted_ndcg) - expected) < 3 * np.std(planted_ndcg) / np.sqrt(n)


def test_plant_values_and_captured_share() -> None:
    ndcg = np.full((6, 3, 2), np.nan)
    ndcg[:, 0], ndcg[:, 1], ndcg[:, 2] = 0.5, 0.4, 0.3
    table = AnswerTable(ndcg, ("a", "b", "c"))
    planted = np.array([True, True, False, False, False, False])
    plant = make_plant(table, planted, gain=0.06, template="b", tie="x")
    assert plant.best == 0 and plant.template == 1
    assert plant.promote == pytest.approx((0.5 + 0.06 - 0.4) / 0.6)
    users = np.arange(6)
    best = np.zeros(6, dtype=np.int64)
    assert plant.captured(users, best) == pytest.approx((0.0, 0.02, 0.0))
    oracle = np.where(planted, 1, 0)
    assert plant.captured(users, oracle)[2] == pytest.approx(1.0)
    everyone_b = np.ones(6, dtype=np.int64)  # planted users gain 0.06, the other four lose 0.1
    assert plant.captured(users, everyone_b)[0] == pytest.approx((2 * 0.06 - 4 * 0.1) / 6)


@pytest.mark.parametrize("estimator", ["summed", "stump"])
def test_the_informed_references_find_a_strong_plant(logged, estimator) -> None:
    """Told f, t* and the statistic, either threshold rule sends planted users to t* far more often."""
    from promptopt.experiments.bench.planted_reference import InformedReference

    problem, users, replay, table = logged
    planted = planted_users(problem, users, tie="top_genre_share", share=0.3)
    plant = make_plant(table, planted, gain=0.1, template=None, tie="top_genre_share")
    raw = {str(r): i for i, r in enumerate(problem.data.user_ids)}
    ranker = PlantedRanker(replay, planted, raw, problem.catalog.ids[plant.template], plant.promote,
                           _targets(problem, users))
    train, test = problem.split.train, problem.split.test
    reference = InformedReference(problem, plant, estimator=estimator).fit(ranker, train, 4 * train.size)
    assert reference.name == {"summed": "informed_reference", "stump": "informed_stump"}[estimator]
    choices = reference.select(test)
    assert set(choices) <= {plant.best, plant.template}
    hit = choices == plant.template
    on = plant.planted[test]
    assert plant.captured(test, choices)[2] > 0.2
    assert hit[on].mean() > 2 * hit[~on].mean()
    with pytest.raises(ValueError, match="estimator must be"):
        InformedReference(problem, plant, estimator="magic")
