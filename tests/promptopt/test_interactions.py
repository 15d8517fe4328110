"""InteractionData: index mapping, ordering, views, and validation errors that name the row."""

from __future__ import annotations

import math

import numpy as np
import pytest

from promptopt.data import InteractionData
from promptopt.errors import DataFormatError

ITEMS = [
    ("m1", "Alpha (1990)", ("Drama",), 1990), ("m2", "Beta", (), None), ("m3", "Gamma", ("A", "B"), 2001),
]


def _data(rows=None, **kwargs) -> InteractionData:
    rows = rows if rows is not None else [
        ("bob", "m2", 3.0, 50), ("ann", "m1", 5.0, 20), ("bob", "m1", float("nan"), 10),
        ("ann", "m3", 4.0, 20), ("ann", "m2", 1.0, 5),
    ]
    return InteractionData.from_raw("t", items=kwargs.pop("items", ITEMS), interactions=rows, **kwargs)


def test_ids_map_to_contiguous_indices_in_order_of_appearance() -> None:
    data = _data()
    assert data.user_ids == ("bob", "ann") and data.item_ids == ("m1", "m2", "m3")
    assert (data.n_users, data.n_items, data.n_interactions) == (2, 3, 5)


def test_rows_are_sorted_by_user_then_time_with_ties_in_file_order() -> None:
    data = _data()
    assert data.users.tolist() == [0, 0, 1, 1, 1]
    assert data.timestamps.tolist() == [10, 50, 5, 20, 20]
    assert data.items.tolist() == [0, 1, 1, 0, 2]  # ann's two t=20 rows keep file order: m1, m3
    assert data.user_rows(1) == slice(2, 5)
    assert data.history_lengths.tolist() == [2, 3]
    assert data.item_popularity.tolist() == [2, 2, 1]
    with pytest.raises(ValueError):
        data.items[0] = 5  # columns are read-only


def test_views() -> None:
    data = _data(users=["bob", "ann", "cat"], user_attributes={"age": ["30", None, ""]})
    assert data.n_users == 3 and data.history_length(2) == 0
    assert data.user_attribute(0) == {"age": "30"}
    assert data.user_attribute(1) == {} and data.user_attribute(2) == {}
    assert data.item_text(2) == "Gamma (A, B)" and data.item_text(1) == "Beta"
    assert data.has_ratings and math.isnan(float(data.ratings[0]))
    assert data.describe() == "t: 3 users, 3 items, 5 interactions"


def test_no_ratings_at_all() -> None:
    data = _data([("u", "m1", float("nan"), 1)])
    assert not data.has_ratings


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"items": [*ITEMS, ("m2", "Again", (), None)]}, r"duplicate item id 'm2' in item row 3"),
    ({"rows": [("u", "m1", 1.0, 1), ("u", "m9", 1.0, 2)]}, r"interaction row 1 names item 'm9'"),
    ({"rows": [("u", "m1", 1.0, 1), ("u", "m2", 1.0, -7)]}, r"interaction row 1 has a negative timestamp -7"),
    ({"users": ["a", "a"]}, r"duplicate user id 'a' in user row 1"),
    ({"users": ["bob"]}, r"interaction row 1 names user 'ann', which is not in the user table"),
])
def test_from_raw_errors_name_the_row(kwargs: dict, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        _data(kwargs.pop("rows", None), **kwargs)


def _direct(**overrides) -> InteractionData:
    fields = {
        "name": "d", "user_ids": ("a", "b"), "item_ids": ("x", "y"), "item_titles": ("X", "Y"),
        "item_genres": ((), ()), "item_years": (None, None), "users": np.array([0, 1]),
        "items": np.array([0, 1]), "ratings": np.array([1.0, 2.0]), "timestamps": np.array([1, 2]),
    }
    fields.update(overrides)
    return InteractionData(**fields)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"item_titles": ("X",)}, r"item_titles has 1 entries but there are 2 items"),
    ({"item_ids": ("x", "x")}, r"item id 'x' appears twice \(second time at row 1\)"),
    ({"users": np.array([0, 2])}, r"interaction row 1 has user index 2 outside 0\.\.1 \(dangling"),
    ({"items": np.array([-1, 1])}, r"interaction row 0 has item index -1 outside 0\.\.1"),
    ({"timestamps": np.array([1, -2])}, r"interaction row 1 has a negative timestamp -2"),
    ({"ratings": np.array([1.0])}, r"interaction columns differ in length"),
    ({"user_attributes": {"age": ("1",)}}, r"user attribute 'age' has 1 entries but there are 2 users"),
])
def test_direct_construction_is_validated(overrides: dict, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        _direct(**overrides)
