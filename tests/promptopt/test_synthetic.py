"""The seeded synthetic generator: reproducible, readable, valid, and drifting when asked."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from promptopt.data import make_synthetic
from promptopt.data.synthetic import GENRES


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b = make_synthetic(40, 80, seed=3), make_synthetic(40, 80, seed=3)
    for column in ("users", "items", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(a, column), getattr(b, column))
    assert a.item_titles == b.item_titles and a.user_attributes == b.user_attributes
    assert not np.array_equal(a.items, make_synthetic(40, 80, seed=4).items)


def test_sizes_and_value_ranges() -> None:
    data = make_synthetic(n_users=50, n_items=120, n_genres=6, mean_history=20, seed=0)
    assert (data.n_users, data.n_items) == (50, 120)
    assert data.history_lengths.min() >= 8
    assert data.history_lengths.max() <= 60  # at most half the catalogue
    assert set(np.unique(data.ratings).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert data.genre_names == GENRES[:6]
    assert all(1 <= len(g) <= 3 and set(g) <= set(GENRES[:6]) for g in data.item_genres)
    assert all(1950 <= y <= 2023 for y in data.item_years)


def test_titles_are_readable_and_unique_and_carry_the_year() -> None:
    data = make_synthetic(n_users=5, n_items=700, seed=0)
    assert len(set(data.item_titles)) == data.n_items
    for title, year in zip(data.item_titles, data.item_years):
        assert title.startswith("The ") and title.endswith(f"({year})")


def test_histories_are_chronological_without_repeats() -> None:
    data = make_synthetic(n_users=30, n_items=100, seed=2)
    for user in range(data.n_users):
        rows = data.user_rows(user)
        assert (np.diff(data.timestamps[rows]) > 0).all()
        assert len(set(data.items[rows].tolist())) == rows.stop - rows.start


def test_some_users_have_attributes_and_some_do_not() -> None:
    data = make_synthetic(n_users=100, n_items=60, seed=0)
    known = sum(bool(data.user_attribute(u)) for u in range(data.n_users))
    assert 40 < known < 95
    assert set(data.user_attributes) == {"age", "gender", "occupation"}


def _taste_change(data) -> float:
    """Mean cosine distance between the genre mix of a user's first and last third of history."""
    index = {g: k for k, g in enumerate(data.genre_names)}
    genre = np.zeros((data.n_items, len(index)))
    for item, genres in enumerate(data.item_genres):
        genre[item, [index[g] for g in genres]] = 1.0
    distances = []
    for user in range(data.n_users):
        items = data.items[data.user_rows(user)]
        third = len(items) // 3
        early, late = genre[items[:third]].sum(0), genre[items[-third:]].sum(0)
        distances.append(1 - early @ late / (np.linalg.norm(early) * np.linalg.norm(late)))
    return float(np.mean(distances))


def test_drift_changes_tastes_over_time() -> None:
    kwargs = {"n_users": 300, "n_items": 300, "mean_history": 30, "seed": 0}
    stable = _taste_change(make_synthetic(drift=0.0, **kwargs))
    drifting = _taste_change(make_synthetic(drift=1.0, **kwargs))
    assert drifting > stable + 0.05, (stable, drifting)  # ~0.41 vs ~0.52 across seeds


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_genres": 1}, "n_genres must be in 2..16"),
    ({"n_items": 10}, "n_items must be >= 30"),
    ({"mean_history": 3}, "mean_history >= 8"),
    ({"drift": 1.5}, "drift must be in"),
])
def test_bad_sizes(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_synthetic(**kwargs)


def test_user_ids_are_contiguous_strings() -> None:
    data = make_synthetic(n_users=12, n_items=40, seed=0)
    assert data.user_ids == tuple(str(u) for u in range(1, 13))
    assert list(itertools.islice(data.item_ids, 3)) == ["1", "2", "3"]


def test_start_days_puts_more_users_on_both_sides_of_a_late_time_cut() -> None:
    from promptopt.splits import time_cut_at_quantile

    def spanning(data) -> float:
        cut = time_cut_at_quantile(data, 0.8)
        return float(np.mean([
            (t < cut).any() and (t >= cut).any()
            for t in (data.timestamps[data.user_rows(u)] for u in range(data.n_users))
        ]))

    kwargs = {"n_users": 300, "n_items": 200, "mean_history": 30, "seed": 0}
    spread, packed = spanning(make_synthetic(**kwargs)), spanning(make_synthetic(start_days=30, **kwargs))
    assert packed > spread + 0.1, (spread, packed)
    # The default keeps the data it always had (the same draws, the same timestamps).
    assert np.array_equal(make_synthetic(start_days=3 * 365, **kwargs).timestamps,
                          make_synthetic(**kwargs).timestamps)
    with pytest.raises(ValueError, match="start_days must be in"):
        make_synthetic(start_days=0, **kwargs)
