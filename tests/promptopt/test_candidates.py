"""Candidate sampling: seeded, never a seen item, target position uniform in the shown order."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from promptopt.candidates import CandidateSampler
from promptopt.errors import ConfigError
from promptopt.splits import TaskBuilder, split_users


def test_same_seed_same_candidates_and_a_different_seed_differs() -> None:
    sampler = CandidateSampler(500, n_negatives=19)
    first = sampler.sample(3, {1, 2}, np.random.default_rng(11))
    assert first == sampler.sample(3, {1, 2}, np.random.default_rng(11))
    assert first != sampler.sample(3, {1, 2}, np.random.default_rng(12))


@pytest.mark.parametrize("strategy", ["uniform", "popularity"])
def test_negatives_are_unseen_distinct_and_include_the_target(strategy: str) -> None:
    n_items = 60
    popularity = np.arange(n_items)[::-1].copy()
    sampler = CandidateSampler(n_items, n_negatives=19, strategy=strategy, popularity=popularity)
    rng = np.random.default_rng(0)
    for trial in range(300):
        seen = set(rng.choice(n_items, size=30, replace=False).tolist())
        target = next(iter(seen))
        shown = sampler.sample(target, seen, rng)
        assert len(shown) == 20 and len(set(shown)) == 20
        assert target in shown
        assert not (set(shown) - {target}) & seen, f"trial {trial}: a seen item was drawn as a negative"


def test_target_position_is_uniform_over_many_tasks() -> None:
    sampler = CandidateSampler(1000, n_negatives=19)
    rng = np.random.default_rng(5)
    positions = [sampler.sample(7, {1, 2, 3}, rng).index(7) for _ in range(4000)]
    counts = np.bincount(positions, minlength=20)
    assert stats.chisquare(counts).pvalue > 1e-3, counts


def test_task_builder_target_positions_are_uniform(synthetic_data) -> None:
    """The same check on real tasks: seeded per (user, row, view, repeat), shuffled shown order."""
    split = split_users(synthetic_data, seed=0)
    builder = TaskBuilder(synthetic_data, CandidateSampler(synthetic_data.n_items, 19), seed=3)
    users = np.concatenate([split.train, split.val, split.test])
    positions = [
        builder.task(int(u), synthetic_data.history_length(int(u)) - 1, repeat=r).target_position
        for u in users for r in range(30)
    ]
    counts = np.bincount(positions, minlength=20)
    assert len(positions) >= 3000
    assert stats.chisquare(counts).pvalue > 1e-3, counts


def test_uniform_negatives_cover_the_eligible_items_evenly() -> None:
    sampler = CandidateSampler(50, n_negatives=5)
    rng = np.random.default_rng(1)
    seen = {0, 1, 2, 3, 4}
    draws = np.concatenate([sampler.sample(0, seen, rng) for _ in range(3000)])
    counts = np.bincount(draws, minlength=50)
    assert counts[1:5].sum() == 0
    assert stats.chisquare(counts[5:]).pvalue > 1e-3


def test_popularity_negatives_favour_popular_items() -> None:
    popularity = np.zeros(200)
    popularity[:20] = 1000.0
    sampler = CandidateSampler(200, n_negatives=10, strategy="popularity", popularity=popularity)
    rng = np.random.default_rng(2)
    draws = np.concatenate([sampler.sample(150, set(), rng) for _ in range(200)])
    negatives = draws[draws != 150]
    # 20 items hold 20 * 1001 / (20 * 1001 + 180) ~ 99% of the weight.
    assert (negatives < 20).mean() > 0.9


def test_item_pool_restricts_negatives() -> None:
    pool = np.arange(100, 130)
    sampler = CandidateSampler(200, n_negatives=9, item_pool=pool)
    shown = sampler.sample(5, set(), np.random.default_rng(0))
    assert set(shown) - {5} <= set(pool.tolist())


def test_too_few_eligible_items_is_a_clear_error() -> None:
    sampler = CandidateSampler(10, n_negatives=9)
    with pytest.raises(ValueError, match=r"for target item 0, need 9: lower split\.n_negatives"):
        sampler.sample(0, {1, 2}, np.random.default_rng(0))
    with pytest.raises(ConfigError):  # a user error: one line from the CLI, a checkpoint mid-training
        sampler.sample(0, {1, 2}, np.random.default_rng(0))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_negatives": 0}, "n_negatives must be >= 1"),
    ({"strategy": "random"}, "strategy must be 'uniform' or 'popularity'"),
    ({"strategy": "popularity"}, "needs the item popularity"),
])
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CandidateSampler(100, **kwargs)
