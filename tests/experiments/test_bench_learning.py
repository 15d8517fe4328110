"""The planted benchmark's gated learners are the library's safe policy (promptopt.safe_policy)."""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.config import GateConfig, RewardConfig, SplitConfig
from promptopt.data import make_synthetic
from promptopt.experiments.bench.learning_gates import gated_name_of, safe_variants
from promptopt.experiments.study.choice_rules import CountingRanker
from promptopt.fallback import stack_masks
from promptopt.llm.simulated import SimulatedRanker
from promptopt.problem import RecProblem
from promptopt.safe_policy import GatedSelector
from promptopt.selectors import template_scores
from promptopt.splits import split_users
from promptopt.templates import TemplateCatalog


@pytest.fixture(scope="module")
def problem():
    data = make_synthetic(n_users=400, n_items=150, n_genres=8, mean_history=20, seed=3)
    split = split_users(data, val_fraction=0.25, test_fraction=0.25, seed=0)
    catalog = TemplateCatalog.load("movies")
    return RecProblem.build(data, split, catalog, RewardConfig(), SplitConfig(n_negatives=19), seed=0)


class ScoreTable:
    """A 'fitted bandit' whose predicted reward of (user, template) is a given table."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table
        self._features = np.arange(len(table))[:, None]

    def expected_rewards(self, x: np.ndarray) -> np.ndarray:
        return self.table[x[:, 0].astype(np.int64)]


def test_the_gated_learners_are_the_librarys_gated_selector(problem) -> None:
    ranker = SimulatedRanker(problem.data, problem.catalog, noise=0.05, seed=0)
    n_users, n_t = problem.data.n_users, problem.n_templates
    truth = np.array([[ranker.expected_quality(u, t) for t in range(n_t)] for u in range(n_users)])
    pool = problem.pool("train")[:60]
    worst = int(np.argmin(truth[pool].mean(axis=0)))
    misled = np.zeros_like(truth)
    misled[:, worst] = 1.0  # prefers the worst template for everyone, by a wide margin
    fitted = {"linucb": (ScoreTable(truth), 7, {"a"}), "epsilon_greedy": (ScoreTable(misled), 3, {"b"})}
    counter = CountingRanker(ranker)
    safe = safe_variants(problem, counter, fitted, pool, seed=0, gate=GateConfig())
    assert set(safe) == {"linucb_safe", "epsilon_greedy_safe"}
    val, test = problem.pool("val"), problem.pool("test")
    masks = stack_masks(problem.action_mask, test, n_t)
    rows = np.arange(test.size)
    for name, (gated, calls, spent) in safe.items():
        assert isinstance(gated, GatedSelector) and gated.name == name
        # Its calls: the pool's scan of every template, the validation answers, the learner's own.
        assert calls == len(spent) >= pool.size * 3 + val.size + 1
        choices = gated.select(test)
        assert masks[rows, choices].all()  # never a template the user cannot fill
        defaults = gated.decide(test).defaults
        value = truth[test, choices].mean()
        if name == "linucb_safe":  # the true best template per user: the gate lets it deviate
            assert gated.threshold is not None and np.any(choices != defaults)
            assert value > truth[test, defaults].mean() + 0.01
        else:  # the misled learner's validated gain is negative: it never deviates
            assert gated.threshold is None
            np.testing.assert_array_equal(choices, defaults)
    # The default is the head of the pool's scan: the best mean reward among the users who can fill it.
    scan, _ = template_scores(problem, ranker, pool)
    assert safe["epsilon_greedy_safe"][0].order.default == int(np.nanargmax(np.nanmean(scan, axis=0)))


def test_gated_names_follow_the_cli() -> None:
    assert gated_name_of("policy_raw") == "policy"
    assert gated_name_of("policy_raw+paired") == "policy+paired"
    assert gated_name_of("mlp_ppo+paired") == "mlp_ppo+paired_safe"
    assert gated_name_of("linucb") == "linucb_safe"
