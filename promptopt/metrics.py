"""Ranking metrics with one relevant item per list: pure functions, no rounding.

With a single relevant item at 0-based rank ``r`` (``r = None`` when absent from the list):

* ``ndcg@k = 1 / log2(r + 2)`` if ``r < k`` else 0 (the ideal DCG is 1);
* ``hit@k = 1`` if ``r < k`` else 0 (equals recall@k with one relevant item);
* ``mrr = 1 / (r + 1)`` (0 when absent).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRIC_NAMES: tuple[str, ...] = (
    "ndcg@1", "ndcg@5", "ndcg@10", "hit@1", "hit@5", "hit@10", "mrr",
)
"""The metrics reported by evaluations, in report order."""


def target_rank(ranking: Sequence[int], target: int) -> int | None:
    """0-based position of ``target`` in ``ranking``, ``None`` when absent."""
    for position, item in enumerate(ranking):
        if item == target:
            return position
    return None


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def ndcg_at_k(ranking: Sequence[int], target: int, k: int) -> float:
    """``1 / log2(rank + 2)`` when the target is in the top ``k`` (0-based rank), else 0."""
    _check_k(k)
    rank = target_rank(ranking, target)
    return 0.0 if rank is None or rank >= k else 1.0 / float(np.log2(rank + 2))


def hit_at_k(ranking: Sequence[int], target: int, k: int) -> float:
    """1 when the target is in the top ``k``, else 0 (recall@k with one relevant item)."""
    _check_k(k)
    rank = target_rank(ranking, target)
    return 0.0 if rank is None or rank >= k else 1.0


def mrr(ranking: Sequence[int], target: int) -> float:
    """Reciprocal rank ``1 / (rank + 1)``; 0 when the target is absent."""
    rank = target_rank(ranking, target)
    return 0.0 if rank is None else 1.0 / (rank + 1)


def metric_fn(name: str):
    """The function for a metric name such as ``"ndcg@10"``, ``"hit@5"`` or ``"mrr"``.

    Raises:
        ValueError: Unknown name or bad ``k``; the message lists the valid forms.
    """
    base, _, k_text = name.lower().partition("@")
    if base == "mrr" and not k_text:
        return mrr
    if base in ("ndcg", "hit", "recall") and k_text.isdigit():
        k = int(k_text)
        _check_k(k)
        fn = ndcg_at_k if base == "ndcg" else hit_at_k
        return lambda ranking, target: fn(ranking, target, k)
    raise ValueError(f"unknown metric {name!r}: use ndcg@K, hit@K, recall@K or mrr (K >= 1)")


def ranks_batch(rankings: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each row's target; ``-1`` when absent.

    Shapes:
        rankings: ``(n, L)`` item ids, best first. targets: ``(n,)``. Returns ``(n,)`` int64.
    """
    rankings = np.asarray(rankings)
    targets = np.asarray(targets)
    hits = rankings == targets[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1), -1).astype(np.int64)


def ndcg_at_k_batch(ranks: np.ndarray, k: int) -> np.ndarray:
    """Vectorised :func:`ndcg_at_k` from 0-based ranks (``-1`` = absent). Shapes: ``(n,) -> (n,)``."""
    _check_k(k)
    ranks = np.asarray(ranks)
    ok = (ranks >= 0) & (ranks < k)
    return np.where(ok, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)


def hit_at_k_batch(ranks: np.ndarray, k: int) -> np.ndarray:
    """Vectorised :func:`hit_at_k` from 0-based ranks. Shapes: ``(n,) -> (n,)``."""
    _check_k(k)
    ranks = np.asarray(ranks)
    return ((ranks >= 0) & (ranks < k)).astype(np.float64)


def mrr_batch(ranks: np.ndarray) -> np.ndarray:
    """Vectorised :func:`mrr` from 0-based ranks. Shapes: ``(n,) -> (n,)``."""
    ranks = np.asarray(ranks)
    return np.where(ranks >= 0, 1.0 / (np.maximum(ranks, 0) + 1.0), 0.0)


def all_metrics(ranking: Sequence[int], target: int) -> dict[str, float]:
    """Every metric of :data:`METRIC_NAMES` for one ranked list."""
    return {name: metric_fn(name)(ranking, target) for name in METRIC_NAMES}
