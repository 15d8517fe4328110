"""Dataset statistics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from promptopt.data import InteractionData
from promptopt.data.stats import dataset_stats, format_stats, popularity_kl

DAY = 86_400


@pytest.fixture()
def tiny() -> InteractionData:
    """3 users, 4 items. Source period (t < 10 days): a, a, b, a; target period: c, c, d, b."""
    items = [(i, f"Item {i}", (), None) for i in "abcd"]
    rows = [
        ("u1", "a", 4.0, 1 * DAY), ("u1", "b", 2.0, 2 * DAY), ("u1", "c", 5.0, 11 * DAY),
        ("u2", "a", 3.0, 3 * DAY), ("u2", "c", 1.0, 12 * DAY), ("u2", "d", 5.0, 13 * DAY),
        ("u3", "a", 4.0, 4 * DAY), ("u3", "b", 3.0, 14 * DAY),
    ]
    return InteractionData.from_raw("tiny", items=items, interactions=rows)


def test_sizes_span_and_history_quantiles(tiny: InteractionData) -> None:
    stats = dataset_stats(tiny)
    assert (stats["users"], stats["items"], stats["interactions"]) == (3, 4, 8)
    assert stats["density"] == pytest.approx(8 / 12)
    assert stats["mean_rating"] == pytest.approx(27 / 8)
    assert stats["span_days"] == pytest.approx(13.0)
    assert stats["first_time"] == "1970-01-02 00:00:00"
    # History lengths 3, 3, 2.
    assert stats["history_p0"] == 2 and stats["history_p100"] == 3 and stats["history_p50"] == 3
    assert stats["history_mean"] == pytest.approx(8 / 3)
    assert "time_cut" not in stats


def test_drift_periods_kl_and_new_items(tiny: InteractionData) -> None:
    stats = dataset_stats(tiny, time_cut=10 * DAY)
    assert (stats["source_interactions"], stats["target_interactions"]) == (4, 4)
    assert (stats["source_users"], stats["target_users"]) == (3, 3)
    assert (stats["source_items"], stats["target_items"]) == (2, 3)
    assert (stats["final_targets_source"], stats["final_targets_target"]) == (0, 3)
    # Smoothed shares: source counts a3 b1 c0 d0 -> (4,2,1,1)/8; target a0 b1 c2 d1 -> (1,2,3,2)/8.
    p = np.array([1, 2, 3, 2]) / 8
    q = np.array([4, 2, 1, 1]) / 8
    assert stats["popularity_kl"] == pytest.approx(float(np.sum(p * np.log(p / q))))
    # c and d never occur in the source period: 3 of 4 target interactions, 2 of 3 target items.
    assert stats["new_item_share"] == pytest.approx(0.75)
    assert stats["new_items_distinct_share"] == pytest.approx(2 / 3)


def test_kl_is_zero_for_identical_periods_and_positive_otherwise() -> None:
    counts = np.array([5, 3, 0, 2])
    assert popularity_kl(counts, counts) == pytest.approx(0.0)
    assert popularity_kl(counts, counts[::-1]) > 0.1
    assert math.isfinite(popularity_kl(np.array([10, 0]), np.array([0, 10])))


def test_cut_after_everything_has_an_empty_target_period(tiny: InteractionData) -> None:
    stats = dataset_stats(tiny, time_cut=100 * DAY)
    assert stats["target_interactions"] == 0
    assert stats["popularity_kl"] is None and stats["new_item_share"] is None


def test_format_stats_prints_one_row_per_statistic(tiny: InteractionData) -> None:
    stats = dataset_stats(tiny, time_cut=10 * DAY)
    table = format_stats(stats)
    lines = table.splitlines()
    assert len(lines) == len(stats)
    assert lines[0].split() == ["name", "tiny"]
    assert any(line.split() == ["new_item_share", "0.75"] for line in lines)
    assert any(line.split() == ["has_ratings", "yes"] for line in lines)
