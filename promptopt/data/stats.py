"""Dataset statistics: sizes, time span, history lengths and the drift between two periods.

With a drift time cut ``c`` (see :func:`promptopt.splits.time_cut_at_quantile`), interactions
before ``c`` form the source period and the others the target period. The popularity shift is

``KL(P_target || P_source) = sum_i P_target(i) * log(P_target(i) / P_source(i))``

in nats, where ``P(i) = (count(i) + 1) / (N + n_items)`` is the item's add-one smoothed share of the
period's ``N`` interactions (smoothing keeps items unseen in one period finite). The share of new
items is the share of target-period interactions (and of distinct target-period items) whose item
never occurs in the source period.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np

from promptopt.data.interactions import InteractionData

HISTORY_QUANTILES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
"""Quantiles of the per-user history length that :func:`dataset_stats` reports."""


def popularity_kl(source_counts: np.ndarray, target_counts: np.ndarray) -> float:
    """``KL(P_target || P_source)`` in nats of add-one smoothed item shares (see the module doc).

    Shapes:
        source_counts, target_counts: ``(n_items,)`` interaction counts per item.
    """
    source = np.asarray(source_counts, dtype=np.float64) + 1.0
    target = np.asarray(target_counts, dtype=np.float64) + 1.0
    p = target / target.sum()
    q = source / source.sum()
    return float(np.sum(p * np.log(p / q)))


def dataset_stats(data: InteractionData, *, time_cut: int | None = None) -> dict[str, Any]:
    """Sizes, time span and history-length quantiles; with ``time_cut``, both drift periods.

    Args:
        data: The dataset.
        time_cut: Drift time cut in Unix seconds (interactions ``< time_cut`` are the source
            period), or ``None``.

    Returns:
        A flat JSON-able dict: ``name, users, items, interactions, density, has_ratings,
        mean_rating, first_time, last_time, span_days`` and ``history_p0 .. history_p100,
        history_mean``; with a cut also ``time_cut, source_interactions, target_interactions,
        source_users, target_users, source_items, target_items, final_targets_source,
        final_targets_target`` (users whose last interaction, the test target, falls in each
        period), ``popularity_kl`` and ``new_item_share`` (of target interactions) and
        ``new_items_distinct_share`` (of distinct target items).
    """
    lengths = data.history_lengths
    active = lengths[lengths > 0]
    stats: dict[str, Any] = {
        "name": data.name,
        "users": data.n_users,
        "items": data.n_items,
        "interactions": data.n_interactions,
        "density": data.n_interactions / max(data.n_users * data.n_items, 1),
        "has_ratings": data.has_ratings,
        "mean_rating": float(np.nanmean(data.ratings)) if data.has_ratings else None,
    }
    if data.n_interactions:
        first, last = int(data.timestamps.min()), int(data.timestamps.max())
        stats.update(first_time=_iso(first), last_time=_iso(last), span_days=(last - first) / 86400.0)
    for q in HISTORY_QUANTILES:
        stats[f"history_p{round(q * 100)}"] = float(np.quantile(active, q)) if active.size else 0.0
    stats["history_mean"] = float(active.mean()) if active.size else 0.0
    if time_cut is None:
        return stats

    source = data.timestamps < time_cut
    target = ~source
    source_counts = np.bincount(data.items[source], minlength=data.n_items)
    target_counts = np.bincount(data.items[target], minlength=data.n_items)
    offsets = data.user_offsets
    has_history = lengths > 0
    last_rows = offsets[1:][has_history] - 1
    last_in_source = data.timestamps[last_rows] < time_cut
    new_items = (source_counts == 0) & (target_counts > 0)
    n_target = int(target.sum())
    stats.update(
        time_cut=_iso(time_cut),
        source_interactions=int(source.sum()),
        target_interactions=n_target,
        source_users=int(np.unique(data.users[source]).size),
        target_users=int(np.unique(data.users[target]).size),
        source_items=int((source_counts > 0).sum()),
        target_items=int((target_counts > 0).sum()),
        final_targets_source=int(last_in_source.sum()),
        final_targets_target=int((~last_in_source).sum()),
        popularity_kl=popularity_kl(source_counts, target_counts) if n_target and source.any() else None,
        new_item_share=float(target_counts[new_items].sum() / n_target) if n_target else None,
        new_items_distinct_share=(
            float(new_items.sum() / (target_counts > 0).sum()) if n_target else None
        ),
    )
    return stats


def format_stats(stats: dict[str, Any]) -> str:
    """A two-column text table of :func:`dataset_stats`' output, one statistic per row."""
    rows = [(key, _format_value(value)) for key, value in stats.items()]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def _format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e12:
            return str(int(value))
        return f"{value:.4g}" if abs(value) < 1e-2 else f"{value:.4f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
