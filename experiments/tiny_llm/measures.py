"""Measures of one ranker on tasks shown in several orders: metrics, merged copies, position bias.

Every task is shown ``B`` times: the base order and ``B - 1`` shuffled copies (same history, target
and candidate set; :func:`promptopt.drift.shuffled_copy`). For a ranker this gives, per user,

* ``base``: NDCG@10 of the base order's ranking (one call per user: what a run without copies sees);
* ``mean_copies``: the mean NDCG@10 over the ``B`` orders (what ``reward.bootstrap = B`` rewards: the
  same expectation as ``base``, less variance);
* ``merged``: NDCG@10 of the Borda merge of the ``B`` rankings (LLMRank's bootstrapping, Hou et al.
  2024): a candidate's merged score is the sum over orders of ``n - rank``, so a model that only
  prefers early positions spreads its votes over different candidates and the candidate it ranks
  high *whatever* its position wins. What merging recovers is ``merged - base`` (paired per user);
* by shown position: NDCG@10 grouped by where the target was shown (every order counts once), and
  the merged ranking's NDCG@10 grouped by the target's position in the base order.

Chance: a uniformly random ranking of ``n`` candidates has expected NDCG@k
``(1 / n) * sum_{r=1}^{min(k, n)} 1 / log2(r + 1)`` (0.2272 for k = 10, n = 20).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptopt.evaluation import bootstrap_interval
from promptopt.metrics import ndcg_at_k

K = 10
"""NDCG@K throughout."""


def chance_ndcg(n_candidates: int, k: int = K) -> float:
    """Expected NDCG@k of a uniformly random ranking of ``n_candidates`` with one relevant item."""
    return sum(1.0 / math.log2(r + 1) for r in range(1, min(k, n_candidates) + 1)) / n_candidates


def borda_merge(rankings: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """One ranking from several of the same candidates: Borda count, ties in the first ranking's order.

    A candidate at rank ``r`` (0-based) of a ranking of ``n`` gets ``n - r`` points from it.
    """
    if not rankings:
        raise ValueError("borda_merge needs at least one ranking")
    first = list(rankings[0])
    points = dict.fromkeys(first, 0)
    for ranking in rankings:
        if sorted(ranking) != sorted(first):
            raise ValueError("borda_merge: the rankings must hold the same candidates")
        n = len(ranking)
        for r, item in enumerate(ranking):
            points[item] += n - r
    order = sorted(range(len(first)), key=lambda j: (-points[first[j]], j))
    return tuple(first[j] for j in order)


@dataclass(frozen=True)
class ShownTask:
    """One order of one user's task: what was shown and what the ranker answered."""

    user: int
    copy: int
    """0: the base order; 1..B-1: shuffled copies."""
    target: int
    shown: tuple[int, ...]
    ranking: tuple[int, ...]

    @property
    def position(self) -> int:
        """Where the target was shown, 1-based."""
        return self.shown.index(self.target) + 1


def position_buckets(n_candidates: int, width: int = 5) -> list[tuple[int, int]]:
    """``[(1, 5), (6, 10), ...]``: shown positions grouped by ``width`` (the last group may be shorter)."""
    return [(lo, min(lo + width - 1, n_candidates)) for lo in range(1, n_candidates + 1, width)]


def summarise(shown: Sequence[ShownTask], *, n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The JSON of one row: base, mean over copies and merged NDCG@10 (bootstrap intervals over users),
    NDCG@10 by the target's shown position, and the merged ranking's by its base position."""
    by_user: dict[int, list[ShownTask]] = {}
    for task in shown:
        by_user.setdefault(task.user, []).append(task)
    base, mean_copies, merged, merged_pos = [], [], [], []
    for tasks in by_user.values():
        tasks = sorted(tasks, key=lambda t: t.copy)
        head = tasks[0]
        if head.copy != 0:
            raise ValueError(f"user {head.user} has no base order (copy 0)")
        values = [ndcg_at_k(t.ranking, t.target, K) for t in tasks]
        base.append(values[0])
        mean_copies.append(float(np.mean(values)))
        merged_value = ndcg_at_k(borda_merge([t.ranking for t in tasks]), head.target, K)
        merged.append(merged_value)
        merged_pos.append((head.position, merged_value))
    n = len(shown[0].shown) if shown else 0

    def interval(values: Sequence[float]) -> dict[str, Any]:
        return bootstrap_interval(values, n_bootstrap=n_bootstrap, seed=seed).to_json()

    def grouped(pairs: Sequence[tuple[int, float]]) -> list[dict[str, Any]]:
        out = []
        for lo, hi in position_buckets(n):
            values = [v for p, v in pairs if lo <= p <= hi]
            out.append({"positions": [lo, hi], "n": len(values),
                        "ndcg": float(np.mean(values)) if values else float("nan")})
        return out

    all_orders = [(t.position, ndcg_at_k(t.ranking, t.target, K)) for t in shown]
    return {
        "n_users": len(by_user),
        "orders": max((len(t) for t in by_user.values()), default=0),
        "base": interval(base),
        "mean_copies": interval(mean_copies),
        "merged": interval(merged),
        "recovered": interval(np.asarray(merged) - np.asarray(base)),
        "by_position": grouped(all_orders),
        "merged_by_base_position": grouped(merged_pos),
        "top1_position": _top1_positions(shown),
    }


def _top1_positions(shown: Sequence[ShownTask]) -> dict[str, float]:
    """Share of answers whose first item is the candidate shown first, and shown in the first five."""
    if not shown:
        return {"first": float("nan"), "first5": float("nan")}
    positions = [t.shown.index(t.ranking[0]) + 1 for t in shown]
    return {"first": float(np.mean([p == 1 for p in positions])),
            "first5": float(np.mean([p <= 5 for p in positions]))}
