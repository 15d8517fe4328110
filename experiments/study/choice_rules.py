"""Rules of the study that choose templates besides the safe policy: per-user bounds, ridge, call counts.

The safe policy itself (the default of the training-budget scan, the gate and its validated rule)
is library code, :mod:`promptopt.safe_policy`, which the study calls like every other path.

* :class:`CountingRanker` — passes requests on and counts the distinct ones (a budget's calls);
* :func:`realistic_choices` / :class:`PerUserChoiceSelector` — the best template on each user's
  earlier targets (a realistic per-user bound);
* :func:`ridge_choices` — deviate from a default where a ridge regression on features predicts a gain;
* :func:`bootstrap_bounds` — the percentile bootstrap of the pooled intervals.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

GATE_BOOTSTRAP_RESAMPLES = 1000
"""Resamples of the bootstrap that validates a gate threshold."""


def bootstrap_bounds(
    values: np.ndarray | Sequence[float],
    *,
    n_resamples: int = GATE_BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile-bootstrap bounds of the mean of ``values`` (``scipy.stats.bootstrap``).

    Resamples are drawn from ``numpy.random.default_rng(seed)``. ``nan`` bounds when ``values`` is
    empty or holds a non-finite value; a single value is its own interval.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0 or not np.isfinite(x).all():
        return float("nan"), float("nan")
    if x.size == 1:  # every resample is the one value (scipy needs two)
        return float(x[0]), float(x[0])
    from scipy.stats import bootstrap

    interval = bootstrap(
        (x,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        random_state=np.random.default_rng(seed),
    ).confidence_interval
    return float(interval.low), float(interval.high)


# ---------------------------------------------------------------------- counting the calls of a budget
class CountingRanker:
    """Passes requests on and counts the distinct ones: the calls a run with its own cold cache pays."""

    def __init__(self, ranker: Any) -> None:
        self.ranker = ranker
        self.seen: set[Any] = set()
        self.requests = 0
        self.identity = ranker.identity

    def rank(self, requests: Sequence[Any]) -> list[Any]:
        self.requests += len(requests)
        self.seen.update(requests)
        return self.ranker.rank(requests)

    @property
    def calls(self) -> int:
        return len(self.seen)


# ---------------------------------------------------------------------- per-user choices
class PerUserChoiceSelector:
    """A precomputed template per user; ``default`` for a user without one."""

    def __init__(self, name: str, choices: dict[int, int], default: int) -> None:
        self.name, self.choices, self.default = name, choices, default

    def select(self, users: np.ndarray) -> np.ndarray:
        return np.array([self.choices.get(int(u), self.default) for u in users], dtype=np.int64)


def realistic_choices(
    earlier: Sequence[np.ndarray], users: np.ndarray, order: Sequence[int]
) -> dict[int, int]:
    """Per user, the template with the best mean score on the user's earlier targets.

    Args:
        earlier: ``(n, T)`` scores per earlier target (``nan``: invalid or no such target), rows
            aligned with ``users``.
        users: ``(n,)`` users.
        order: Every template, best first: breaks ties (and chooses for a user without scores).
    """
    stacked = np.stack(list(earlier))  # (k, n, T)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # users without an earlier target
        mean = np.nanmean(stacked, axis=0)
    rank = np.empty(len(order), dtype=np.float64)
    rank[list(order)] = np.arange(len(order))
    out = {}
    for i, user in enumerate(users):
        row = np.where(np.isfinite(mean[i]), mean[i], -np.inf)
        top = np.flatnonzero(row >= row.max() - 1e-12)
        out[int(user)] = int(top[np.argmin(rank[top])])
    return out


def ridge_choices(
    x_train: np.ndarray, gains_train: np.ndarray, x_eval: np.ndarray, margin: float, ridge: float = 10.0
) -> np.ndarray:
    """Per template, ridge-regress the gain over the default on features; deviate where > ``margin``.

    A template with fewer than 5 known training gains is never chosen.

    Shapes: ``x_train (n, d)``, ``gains_train (n, K)`` (``nan`` = unknown), ``x_eval (m, d)`` ->
    ``(m,)`` index of the chosen template among the K, ``-1`` = the default.
    """
    xb = np.hstack([x_train, np.ones((len(x_train), 1))])
    eb = np.hstack([x_eval, np.ones((len(x_eval), 1))])
    pred = np.full((len(x_eval), gains_train.shape[1]), -np.inf)
    for k in range(gains_train.shape[1]):
        ok = np.isfinite(gains_train[:, k])
        if ok.sum() < 5:
            continue
        a = xb[ok].T @ xb[ok] + ridge * np.eye(xb.shape[1])
        pred[:, k] = eb @ np.linalg.solve(a, xb[ok].T @ gains_train[ok, k])
    best = pred.argmax(axis=1)
    return np.where(pred[np.arange(len(pred)), best] > margin, best, -1)
