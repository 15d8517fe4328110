"""Baseline selectors on the simulated ranker: oracle > best fixed > random, and the hidden optimum."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from promptopt.config import RewardConfig, SplitConfig
from promptopt.data import make_synthetic
from promptopt.evaluation import evaluate_selector, paired_difference
from promptopt.llm.simulated import SimulatedRanker
from promptopt.llm.types import RankRequest, RankResponse
from promptopt.problem import RecProblem
from promptopt.selectors import (
    FixedSelector,
    OracleSelector,
    RandomSelector,
    Selector,
    Spend,
    best_fixed,
    template_scores,
)
from promptopt.splits import split_users
from promptopt.templates import TemplateCatalog


class CountingRanker:
    """Wraps a ranker and counts its ``rank`` calls and requests."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.identity = inner.identity
        self.calls = 0
        self.requests = 0

    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        self.calls += 1
        self.requests += len(requests)
        return self.inner.rank(requests)


@pytest.fixture(scope="module")
def world():
    data = make_synthetic(n_users=240, n_items=300, mean_history=30, seed=11)
    split = split_users(data, seed=0)
    catalog = TemplateCatalog.load("movies")
    problem = RecProblem.build(data, split, catalog, RewardConfig(), SplitConfig(), seed=0)
    ranker = SimulatedRanker(data, catalog, noise=0.05, seed=0)
    return problem, ranker


def test_random_selector_is_seeded_per_user_and_respects_masks(world) -> None:
    problem, _ = world
    users = problem.pool("test")
    selector = RandomSelector(problem.n_templates, seed=3, masks=problem.action_mask)
    assert isinstance(selector, Selector) and selector.name == "random"
    chosen = selector.select(users)
    assert chosen.dtype == np.int64 and chosen.shape == users.shape
    np.testing.assert_array_equal(selector.select(users[::-1]), chosen[::-1])  # order-independent
    assert all(problem.action_mask(int(u))[t] for u, t in zip(users, chosen))
    assert len(set(chosen.tolist())) > 8
    assert not np.array_equal(RandomSelector(problem.n_templates, seed=4).select(users), chosen)
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        RandomSelector(0)


def test_fixed_selector_falls_back_for_users_who_cannot_fill_it() -> None:
    masks = {0: np.array([True, True, True]), 1: np.array([False, False, True]),
             2: np.array([False, True, True])}
    selector = FixedSelector(0, fallback=[1, 2], masks=masks.__getitem__)
    assert selector.select(np.array([0, 1, 2])).tolist() == [0, 2, 1]
    assert FixedSelector(1).select(np.array([0, 1, 2])).tolist() == [1, 1, 1]


def test_template_scores_one_call_per_template(world) -> None:
    problem, ranker = world
    counting = CountingRanker(ranker)
    users = problem.pool("val")[:10]
    scores, spend = template_scores(problem, counting, users)
    masks = np.stack([problem.action_mask(int(u)) for u in users])
    assert scores.shape == (10, problem.n_templates)
    np.testing.assert_array_equal(np.isfinite(scores), masks)
    assert counting.calls == int(masks.any(axis=0).sum())
    assert spend == Spend(calls=int(masks.sum()), cached=0, tokens=spend.tokens)
    assert counting.requests == spend.calls and spend.tokens > 0


def test_best_fixed_picks_the_best_mean_on_training_users(world) -> None:
    problem, ranker = world
    train = problem.pool("train")
    selector = best_fixed(problem, ranker, train)
    means = selector.template_means
    assert selector.name == "best_fixed" and means is not None
    assert selector.index == int(np.nanargmax(means))
    by_mean = sorted(range(problem.n_templates), key=lambda t: -np.nan_to_num(means[t], nan=-1))
    assert list(selector.order) == by_mean
    masks = np.stack([problem.action_mask(int(u)) for u in train])
    assert selector.spend.calls == int(masks.sum())
    # The simulator's quality table agrees on which template is best for the training users.
    sim_means = ranker.quality[train].mean(axis=0)
    assert sim_means[selector.index] >= np.max(sim_means) - 0.02


def test_oracle_beats_best_fixed_beats_random(world) -> None:
    problem, ranker = world
    test = problem.pool("test")
    fixed = best_fixed(problem, ranker, problem.pool("train"))
    oracle = OracleSelector(problem, ranker)
    random = RandomSelector(problem.n_templates, seed=0, masks=problem.action_mask)
    evals = {s.name: evaluate_selector(s, problem, ranker, test, n_bootstrap=300)
             for s in (oracle, fixed, random)}
    means = {name: ev.mean("ndcg@10") for name, ev in evals.items()}
    assert means["oracle"] > means["best_fixed"] + 0.1
    assert means["best_fixed"] > means["random"] + 0.05
    assert paired_difference(evals["oracle"], evals["best_fixed"]).interval.low > 0
    assert paired_difference(evals["best_fixed"], evals["random"]).interval.low > 0
    # The oracle's cost: every valid template of every test user.
    masks = np.stack([problem.action_mask(int(u)) for u in test])
    assert oracle.spend.calls == int(masks.sum())
    assert evals["oracle"].selection_spend == oracle.spend
    assert evals["oracle"].spend.calls == test.size


def test_hidden_best_template_is_the_argmax_of_expected_reward(world) -> None:
    problem, _ = world
    data = problem.data
    exact = SimulatedRanker(data, problem.catalog, noise=0.0, seed=0)
    users = problem.pool("test")[:20]
    expected = problem.expected_rewards(users, exact, samples=128)
    masks = np.stack([problem.action_mask(int(u)) for u in users])
    np.testing.assert_array_equal(np.isfinite(expected), masks)
    quality = exact.quality[users]
    # Calibrated: the problem's expected reward is the simulator's hidden quality (NDCG@10, w = 0).
    assert np.max(np.abs(expected - quality)[masks]) < 0.08
    assert np.mean(np.abs(expected - quality)[masks]) < 0.015
    hidden = np.where(masks, quality, -np.inf).argmax(axis=1)
    found = np.where(masks, expected, -np.inf).argmax(axis=1)
    assert np.mean(hidden == found) >= 0.9
    # Where they differ, the two are within sampling noise of each other.
    rows = np.arange(users.size)
    assert np.all(quality[rows, hidden] - quality[rows, found] < 0.03)
    # The simulator's own best template agrees whenever the problem lets the user fill it.
    for u, best, row in zip(users, hidden, masks):
        if row[exact.best_template(int(u))]:
            assert best == exact.best_template(int(u))
