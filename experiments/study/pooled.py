"""Per-user results pooled over seeds, and the bootstrap intervals every reported number carries.

Seeds share the test users, so a selector's pooled value for a user is its mean over seeds, and
intervals are percentile bootstraps over users of those means (paired: of per-user differences).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from promptopt.experiments.study.choice_rules import bootstrap_bounds
from promptopt.selector_names import RAW_POLICY, SAFE_POLICY

BOOTSTRAP_RESAMPLES = 2000
"""Resamples of every interval in the report."""

SELECTORS = (
    "random",
    "best_fixed",
    "epsilon_greedy",
    "linucb",
    "mlp_ppo",
    RAW_POLICY,
    SAFE_POLICY,
    "realistic",
    "oracle",
)
"""The selectors the study compares, in report order (named as ``promptopt evaluate`` names them)."""
LEGACY_NAMES = {"policy": RAW_POLICY, "policy_safe": SAFE_POLICY}
"""How a ``study.json`` or attempts-log line written before the names were aligned with the CLI
named the selectors: ``policy`` was the raw argmax, ``policy_safe`` the gated policy. A file is of
that kind when it has a ``policy_safe`` entry (no current file has one)."""


def current_names(run: Mapping[str, Any]) -> dict[str, Any]:
    """``run`` (a ``study.json`` dict) with every selector named as today (a shallow copy; old files
    are renamed by :data:`LEGACY_NAMES`, current ones returned as they are)."""
    seeds = []
    for seed in run.get("seeds", []):
        rewards = {}
        for reward, res in seed.get("rewards", {}).items():
            results = {period: _renamed(by_name) for period, by_name in res.get("results", {}).items()}
            rewards[reward] = {**res, "results": results}
        seeds.append({**seed, "rewards": rewards})
    return {**run, "seeds": seeds}


def _renamed(by_name: Mapping[str, Any]) -> dict[str, Any]:
    if "policy_safe" not in by_name:
        return dict(by_name)
    return {LEGACY_NAMES.get(name, name): value for name, value in by_name.items()}


def current_attempt(attempt: Mapping[str, Any]) -> dict[str, Any]:
    """An attempts-log line with its selector keys (``t1``: ``reward/selector``, ``t4``: selector)
    named as today."""
    t1, t4 = attempt.get("t1", {}), attempt.get("t4", {})
    if not any(k.endswith("/policy_safe") for k in t1) and "policy_safe" not in t4:
        return dict(attempt)

    def rename(key: str) -> str:
        head, slash, name = key.rpartition("/")
        return f"{head}{slash}{LEGACY_NAMES.get(name, name)}"

    renamed = {**attempt, "t1": {rename(k): v for k, v in t1.items()},
               "t4": {rename(k): v for k, v in t4.items()}}
    if "t4_target" in attempt:
        renamed["t4_target"] = {rename(k): v for k, v in attempt["t4_target"].items()}
    return renamed

Interval = tuple[float, float, float]
"""A mean and its 95% interval: ``(mean, low, high)``."""


def mean_interval(values: np.ndarray | Sequence[float], seed: int = 0) -> Interval:
    """Mean of ``values`` and its 95% percentile-bootstrap interval (``nan`` when empty)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    low, high = bootstrap_bounds(x, n_resamples=BOOTSTRAP_RESAMPLES, seed=seed)
    return float(x.mean()), low, high


def difference_of_means_bounds(a: np.ndarray, b: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap bounds of ``mean(a) - mean(b)``, resampling ``a`` and ``b`` independently."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if min(a.size, b.size) < 2:  # a single value is its own resample
        low, high = bootstrap_bounds(
            a.mean() - b if a.size == 1 else a - b.mean(), seed=seed, n_resamples=BOOTSTRAP_RESAMPLES
        )
        return low, high
    from scipy.stats import bootstrap

    def difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return x.mean(axis=axis) - y.mean(axis=axis)

    interval = bootstrap(
        (a, b),
        difference,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        vectorized=True,
        random_state=np.random.default_rng(seed),
    ).confidence_interval
    return float(interval.low), float(interval.high)


class PooledResults:
    """Per-user values of every (reward, period, selector) of a run, averaged over seeds.

    Args:
        run: The ``study.json`` dict :func:`promptopt.experiments.study.protocol.run_study` writes.
    """

    def __init__(self, run: Mapping[str, Any]) -> None:
        self.run = current_names(run)
        self.seeds = self.run["seeds"]

    def values(
        self,
        reward: str,
        period: str,
        selector: str,
        metric: str = "ndcg@10",
        seeds: Sequence[int] | None = None,
    ) -> dict[int, float]:
        """User -> mean over seeds (``seeds``: positions in the run's seed list; default all)."""
        sums: dict[int, list[float]] = {}
        for k, seed in enumerate(self.seeds):
            if seeds is not None and k not in seeds:
                continue
            res = seed["rewards"][reward]["results"].get(period, {}).get(selector)
            if res is None:
                continue
            for u, v in zip(res["users"], res["per_user"][metric]):
                sums.setdefault(int(u), []).append(float(v))
        return {u: float(np.mean(v)) for u, v in sums.items()}

    def mean(self, reward: str, period: str, selector: str, **kw: Any) -> Interval:
        """The selector's mean over users with its interval."""
        return mean_interval(np.array(list(self.values(reward, period, selector, **kw).values())))

    def paired(
        self, reward: str, period: str, a: str, b: str, reward_b: str | None = None, **kw: Any
    ) -> Interval:
        """``a - b`` over the users both have, with its paired interval."""
        va, vb = self.values(reward, period, a, **kw), self.values(reward_b or reward, period, b, **kw)
        common = sorted(set(va) & set(vb))
        return mean_interval(np.array([va[u] - vb[u] for u in common]))
