"""The fairness-aware reward: copies in the runner's one call, the penalty, its stated cost."""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.config import RewardConfig, SplitConfig
from promptopt.fairness.attributes import load_attribute_set
from promptopt.fairness.penalty import CounterfactualPenalty, instability
from promptopt.llm.simulated import SimulatedRanker
from promptopt.runner import Episode
from promptopt.testing.planted_bias import PlantedBiasRanker

INCLUDE = ("expert.recent10.none.index", "expert.profile.none.index")


class CountingRanker:
    """Counts the requests of each call, answering through ``inner``."""

    def __init__(self, inner):
        self.inner, self.identity, self.calls = inner, inner.identity, []

    def rank(self, requests):
        self.calls.append(list(requests))
        return self.inner.rank(requests)


def build(data, split, penalty):
    from promptopt.problem import RecProblem
    from promptopt.templates import TemplateCatalog

    catalog = TemplateCatalog.load("movies", include=INCLUDE)
    return RecProblem.build(data, split, catalog, RewardConfig(), SplitConfig(), seed=2, penalty=penalty)


@pytest.fixture(scope="module")
def attributes():
    return load_attribute_set("fairllm")


def biased_ranker(problem, attributes, template: str):
    triggers = [sentence for _, _, sentence in attributes.cells()]
    sim = SimulatedRanker(problem.data, problem.catalog, seed=1, profile=problem.profile)
    return CountingRanker(PlantedBiasRanker(sim, triggers=triggers, templates=[template], shift=7))


def test_instability_by_hand() -> None:
    neutral = list(range(20))
    assert instability(neutral, [neutral, neutral]) == 0.0
    assert instability(neutral, [neutral[::-1]], "jaccard") == 1.0
    assert instability(neutral, []) == 0.0


def test_penalty_takes_lambda_times_instability_from_the_reward(synthetic_data, synthetic_split,
                                                                attributes) -> None:
    penalty = CounterfactualPenalty(attributes, weight=0.5, n_values=3, metric="serp", seed=0)
    problem = build(synthetic_data, synthetic_split, penalty)
    plain = build(synthetic_data, synthetic_split, None)
    assert problem.calls_per_episode == plain.calls_per_episode + 3
    ranker = biased_ranker(problem, attributes, "expert.profile.none.index")
    users = [int(u) for u in problem.pool("train") if problem.action_mask(int(u)).all()][:6]
    episodes = [Episode(u, t) for u in users for t in (0, 1)]
    outcomes = problem.run_episodes(episodes, ranker)
    assert len(ranker.calls) == 1  # copies go in the runner's one call
    baseline = plain.run_episodes(episodes, ranker.inner)
    for outcome, base in zip(outcomes, baseline):
        assert outcome.calls == 1 + 3
        assert outcome.reward.accuracy == pytest.approx(base.reward.accuracy)
        assert outcome.reward.total == pytest.approx(base.reward.total - 0.5 * outcome.reward.fairness)
        if problem.catalog.ids[outcome.template] == "expert.profile.none.index":
            assert outcome.reward.fairness > 0.3  # every stated attribute rotates this template's ranking
        else:
            assert outcome.reward.fairness == 0.0
    assert "fairness" in outcomes[0].reward.to_dict()


def test_each_user_gets_the_same_values_under_every_template(synthetic_data, synthetic_split,
                                                            attributes) -> None:
    penalty = CounterfactualPenalty(attributes, weight=1.0, n_values=2, seed=4)
    problem = build(synthetic_data, synthetic_split, penalty)
    ranker = CountingRanker(SimulatedRanker(problem.data, problem.catalog, seed=1, profile=problem.profile))
    user = next(int(u) for u in problem.pool("train") if problem.action_mask(int(u)).all())
    problem.run([user, user], [0, 1], ranker)
    sent = ranker.calls[0]
    assert len(sent) == 2 * (1 + 2)
    first, second = sent[1:3], sent[4:6]
    assert [r.prompt.split("\n", 1)[0] for r in first] == [r.prompt.split("\n", 1)[0] for r in second]
    drawn = penalty.values(problem.key(user))
    assert len(set(drawn)) == 2 and all(v in [c[:2] for c in attributes.cells()] for v in drawn)
    # Another user draws independently (seeded per episode), and a sample id reaches the copies.
    other = next(int(u) for u in problem.pool("train") if problem.action_mask(int(u))[0] and u != user)
    draws = {tuple(penalty.values(problem.key(int(u)))) for u in problem.pool("train")[:20]}
    assert len(draws) > 1
    problem.run([other], [0], ranker, sample_id=3)
    assert {r.sample_id for r in ranker.calls[-1]} == {3}


def test_bad_settings_fail(attributes) -> None:
    with pytest.raises(ValueError, match="weight must be > 0"):
        CounterfactualPenalty(attributes, weight=0.0)
    with pytest.raises(ValueError, match="unknown list similarity"):
        CounterfactualPenalty(attributes, weight=1.0, metric="tau")
    assert CounterfactualPenalty(attributes, weight=1.0, n_values=10_000).n_values == attributes.n_values


def test_config_builds_the_penalty_and_estimate_counts_its_calls() -> None:
    from promptopt.config import config_from_dict
    from promptopt.experiments.assembly import build_problem
    from promptopt.experiments.estimate_cost import estimate, format_estimate

    raw = {"data": {"synthetic": {"n_users": 60, "n_items": 120}}, "ranker": {"backend": "simulated"},
           "templates": {"include": list(INCLUDE)}, "ppo": {"total_timesteps": 64},
           "reward": {"fairness_weight": 0.3, "fairness_values": 4}}
    config = config_from_dict(raw)
    *_, problem = build_problem(config)
    assert problem.penalty is not None and problem.penalty.weight == 0.3
    assert problem.calls_per_episode == 1 + 4
    est = estimate(config, sample=20)
    assert est.calls_per_episode == 5 and est.fairness_copies == 4
    plain = estimate(config_from_dict({**raw, "reward": {}}), sample=20)
    assert est.distinct_total == pytest.approx(5 * plain.distinct_total, rel=0.01)
    assert "4 of them counterfactual copies" in format_estimate(est)
    assert np.isfinite(est.prompt_tokens)
