"""Ranking metrics against hand-computed values and their invariants."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from promptopt.metrics import (
    METRIC_NAMES,
    all_metrics,
    hit_at_k,
    hit_at_k_batch,
    metric_fn,
    mrr,
    mrr_batch,
    ndcg_at_k,
    ndcg_at_k_batch,
    ranks_batch,
    target_rank,
)


def test_hand_computed_values() -> None:
    ranking = [30, 10, 20, 40]
    # Target 20 sits at 0-based rank 2: DCG = 1 / log2(4) = 0.5.
    assert ndcg_at_k(ranking, 20, 10) == pytest.approx(0.5)
    assert ndcg_at_k(ranking, 10, 10) == pytest.approx(1 / math.log2(3))  # 0.6309...
    assert ndcg_at_k(ranking, 20, 2) == 0.0
    assert hit_at_k(ranking, 20, 3) == 1.0 and hit_at_k(ranking, 20, 2) == 0.0
    assert mrr(ranking, 20) == pytest.approx(1 / 3)
    assert mrr(ranking, 40) == pytest.approx(0.25)


def test_perfect_ranking_scores_one_for_every_metric() -> None:
    assert all(value == 1.0 for value in all_metrics([7, 1, 2], 7).values())


def test_k_larger_than_the_list_and_absent_target() -> None:
    assert ndcg_at_k([1, 2], 2, 100) == pytest.approx(1 / math.log2(3))
    assert hit_at_k([1, 2], 2, 100) == 1.0
    for name in METRIC_NAMES:
        assert metric_fn(name)([1, 2, 3], 99) == 0.0
    assert ndcg_at_k([], 1, 5) == 0.0 and mrr([], 1) == 0.0
    assert target_rank([4, 5], 5) == 1 and target_rank([4, 5], 6) is None


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        ndcg_at_k([1], 1, 0)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        hit_at_k_batch(np.array([0]), 0)


def test_metric_names() -> None:
    assert metric_fn("recall@5")([3, 4, 5, 6, 7, 8], 7) == 1.0  # recall@k == hit@k, one relevant
    assert metric_fn("NDCG@1")([3, 4], 3) == 1.0
    assert metric_fn("mrr")([3, 4], 4) == 0.5
    assert set(all_metrics([1, 2], 2)) == set(METRIC_NAMES)
    for bad in ("ndcg", "hit@x", "map@10", "mrr@5", "ndcg@0"):
        with pytest.raises(ValueError):
            metric_fn(bad)


def test_batched_equals_scalar() -> None:
    rng = np.random.default_rng(0)
    n, length = 500, 20
    rankings = np.stack([rng.permutation(40)[:length] for _ in range(n)])
    targets = rng.integers(0, 40, size=n)  # about half are absent from their list
    ranks = ranks_batch(rankings, targets)
    assert (ranks == -1).any() and (ranks >= 0).any()
    for k in (1, 5, 10, 50):
        np.testing.assert_allclose(
            ndcg_at_k_batch(ranks, k), [ndcg_at_k(r.tolist(), t, k) for r, t in zip(rankings, targets)]
        )
        np.testing.assert_allclose(
            hit_at_k_batch(ranks, k), [hit_at_k(r.tolist(), t, k) for r, t in zip(rankings, targets)]
        )
    np.testing.assert_allclose(mrr_batch(ranks), [mrr(r.tolist(), t) for r, t in zip(rankings, targets)])


def test_metrics_are_bounded_and_monotone_in_rank() -> None:
    ranking = list(range(20))
    values = [ndcg_at_k(ranking, t, 10) for t in ranking]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a >= b for a, b in itertools.pairwise(values))
    # RPP: a random ranking of 10 candidates scores NDCG@10 = 0.454 in expectation.
    assert np.mean([ndcg_at_k(list(range(10)), t, 10) for t in range(10)]) == pytest.approx(0.4544, abs=1e-4)
