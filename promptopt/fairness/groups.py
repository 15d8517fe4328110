r"""Accuracy gaps between the dataset's own user groups (gender, age bracket, occupation ...).

For one user attribute, every selector's per-user NDCG@10 on the evaluation users is averaged per
group (with a percentile bootstrap interval), groups with fewer than ``min_group_users`` users are
listed but left out, and the **gap** is the range of the group means,

.. math:: \mathrm{gap}(s) = \max_g \bar x_{s,g} - \min_g \bar x_{s,g}.

Its interval, and that of the difference between two selectors' gaps
(:math:`\mathrm{gap}(\text{policy}) - \mathrm{gap}(\text{best\_fixed})`), come from one stratified
bootstrap: users are resampled within each group, the same resample for every selector (they are
scored on the same users), and both gaps are recomputed on each resample. The policy **widens** the
gap when that difference's interval lies above 0, **narrows** it when below, and otherwise the
data cannot tell. (The bootstrapped range of group means is biased upwards when the groups are
alike; the bias is shared by both selectors, so the difference is the number to read.)
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptopt.data.interactions import InteractionData
from promptopt.evaluation import Interval, bootstrap_interval


def age_bracket(age: int, bins: Sequence[int]) -> str:
    """``"25-34"`` for 30 with bins ``(18, 25, 35, ...)``; ``"under 18"`` and ``"56+"`` at the ends."""
    if not bins or age < bins[0]:
        return f"under {bins[0]}" if bins else str(age)
    for low, high in itertools.pairwise(bins):
        if low <= age < high:
            return f"{low}-{high - 1}"
    return f"{bins[-1]}+"


def group_labels(data: InteractionData, users: Sequence[int] | np.ndarray, attribute: str,
                 age_bins: Sequence[int] = (18, 25, 35, 45, 50, 56)) -> list[str | None]:
    """The group of each user under ``attribute`` (``None`` when unknown).

    An attribute whose known values are all integers (MovieLens-100K ages) is grouped into
    brackets at ``age_bins``; any other attribute groups by its value.

    Raises:
        KeyError: The dataset has no such attribute.
    """
    if attribute not in data.user_attributes:
        raise KeyError(f"dataset {data.name!r} has no user attribute {attribute!r} "
                       f"(it has: {', '.join(data.user_attributes) or 'none'})")
    column = data.user_attributes[attribute]
    raw = [column[int(u)] for u in users]
    known = [v for v in raw if v is not None]
    numeric = bool(known) and all(v.strip().isdigit() for v in known)
    if numeric:
        return [None if v is None else age_bracket(int(v), age_bins) for v in raw]
    return [None if v is None else v for v in raw]


@dataclass(frozen=True)
class SelectorGap:
    """One selector's group means and its gap.

    Attributes:
        selector: The selector's name.
        groups: Group -> mean NDCG@10 and its interval (every group, small ones included).
        gap: Range of the eligible groups' means, with its stratified bootstrap interval.
        best, worst: The eligible groups with the highest and lowest mean.
    """

    selector: str
    groups: Mapping[str, Interval]
    gap: Interval
    best: str
    worst: str

    def to_json(self) -> dict[str, Any]:
        return {"selector": self.selector, "groups": {g: i.to_json() for g, i in self.groups.items()},
                "gap": self.gap.to_json(), "best_group": self.best, "worst_group": self.worst}


@dataclass(frozen=True)
class GapComparison:
    """``gap(a) - gap(b)`` with its interval, and the verdict."""

    a: str
    b: str
    difference: Interval

    @property
    def verdict(self) -> str:
        if self.difference.low > 0:
            return "widens"
        if self.difference.high < 0:
            return "narrows"
        return "no clear change"

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "difference": self.difference.to_json(), "verdict": self.verdict}


@dataclass(frozen=True)
class AttributeGaps:
    """Every selector's gap under one user attribute.

    Attributes:
        attribute: The dataset's attribute.
        sizes: Group -> evaluation users in it (unknown values left out).
        eligible: Groups with at least ``min_group_users`` users, largest first.
        selectors: Name -> its gap.
        comparison: ``policy`` vs ``best_fixed`` when both are present.
    """

    attribute: str
    sizes: Mapping[str, int]
    eligible: tuple[str, ...]
    selectors: Mapping[str, SelectorGap]
    comparison: GapComparison | None

    def to_json(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "sizes": dict(self.sizes), "eligible": list(self.eligible),
                "selectors": {n: g.to_json() for n, g in self.selectors.items()},
                "comparison": None if self.comparison is None else self.comparison.to_json()}


def _interval(point: float, draws: np.ndarray, confidence: float) -> Interval:
    low, high = np.quantile(draws, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return Interval(float(point), float(low), float(high), int(draws.size))


def group_gaps(
    attribute: str,
    labels: Sequence[str | None],
    values: Mapping[str, np.ndarray],
    *,
    min_group_users: int = 10,
    compare: tuple[str, str] = ("policy", "best_fixed"),
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AttributeGaps:
    """Group means, gaps and the ``compare`` pair's gap difference (see the module docstring).

    Args:
        attribute: The attribute's name (for the result).
        labels: Group of each user (``None``: unknown, left out).
        values: Selector name -> per-user NDCG@10 aligned with ``labels`` (the same users for all).
        min_group_users: Smallest group that counts in a gap.
        compare: ``(a, b)``: report ``gap(a) - gap(b)`` when both are in ``values``.
        n_bootstrap, confidence, seed: The intervals.

    Raises:
        ValueError: A value array not aligned with ``labels``, or ``min_group_users < 1``.
    """
    if min_group_users < 1:
        raise ValueError(f"min_group_users must be >= 1, got {min_group_users}")
    n = len(labels)
    for name, v in values.items():
        if np.asarray(v).shape != (n,):
            raise ValueError(f"values of {name!r} have shape {np.asarray(v).shape}, expected ({n},)")
    members: dict[str, np.ndarray] = {}
    for g in sorted({lab for lab in labels if lab is not None}):
        members[g] = np.array([i for i, lab in enumerate(labels) if lab == g], dtype=np.int64)
    sizes = {g: int(idx.size) for g, idx in members.items()}
    eligible = tuple(sorted((g for g in members if sizes[g] >= min_group_users),
                            key=lambda g: (-sizes[g], g)))
    kw = {"n_bootstrap": n_bootstrap, "confidence": confidence, "seed": seed}
    rng = np.random.default_rng(seed)
    # One stratified resample for every selector: (n_bootstrap, group size) indices per group.
    draws = {g: members[g][rng.integers(0, members[g].size, size=(n_bootstrap, members[g].size))]
             for g in eligible}
    gaps: dict[str, SelectorGap] = {}
    boot_gaps: dict[str, np.ndarray] = {}
    for name, v in values.items():
        x = np.asarray(v, dtype=np.float64)
        groups = {g: bootstrap_interval(x[idx], **kw) for g, idx in members.items()}
        if len(eligible) < 2:
            boot_gaps[name] = np.zeros(n_bootstrap)
            nan = float("nan")
            gaps[name] = SelectorGap(name, groups, Interval(nan, nan, nan, 0), "", "")
            continue
        means = {g: groups[g].mean for g in eligible}
        best, worst = max(eligible, key=means.__getitem__), min(eligible, key=means.__getitem__)
        table = np.stack([x[draws[g]].mean(axis=1) for g in eligible], axis=1)  # (B, groups)
        boot_gaps[name] = table.max(axis=1) - table.min(axis=1)
        gap = _interval(means[best] - means[worst], boot_gaps[name], confidence)
        gaps[name] = SelectorGap(name, groups, gap, best, worst)
    comparison = None
    a, b = compare
    if a in gaps and b in gaps and len(eligible) >= 2:
        point = gaps[a].gap.mean - gaps[b].gap.mean
        comparison = GapComparison(a, b, _interval(point, boot_gaps[a] - boot_gaps[b], confidence))
    return AttributeGaps(attribute, sizes, eligible, gaps, comparison)
