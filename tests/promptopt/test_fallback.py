"""The one fallback rule: a ranked list of templates, the first a user can fill."""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.fallback import FallbackOrder, FallbackSelector
from promptopt.selectors import FixedSelector

# Four templates; user 0 can fill all, user 1 only 0 and 3 (a short history), user 2 none.
MASKS = {0: np.array([True, True, True, True]), 1: np.array([True, False, False, True]),
         2: np.zeros(4, dtype=bool)}


def test_the_first_fillable_template_of_the_ranked_list() -> None:
    order = FallbackOrder([2, 1], n_templates=4)
    assert order.order == (2, 1, 0, 3)  # completed in index order
    assert order.default == 2
    assert [order.first_fillable(MASKS[u]) for u in (0, 1, 2)] == [2, 0, 2]
    masks = np.stack([MASKS[u] for u in (0, 1, 2)])
    assert order.defaults(masks).tolist() == [2, 0, 2]
    # A choice the user can fill is kept; the others fall along the list.
    assert order.repair(np.array([1, 1, 3]), masks).tolist() == [1, 0, 2]
    assert FallbackOrder.from_ids(["c", "a"], ["a", "b", "c"]).order == (2, 0, 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [(([],), "at least one template"), (([1, 1],), "appears twice"), (([5], 4), r"outside 0\.\.3")],
)
def test_a_bad_order_fails_in_one_line(args, message) -> None:
    with pytest.raises(ValueError, match=message):
        FallbackOrder(*args)
    with pytest.raises(ValueError, match="'z' of the fallback order is not in the catalog"):
        FallbackOrder.from_ids(["a", "z"], ["a", "b"])


def test_any_selector_wrapped_never_picks_what_the_user_cannot_fill() -> None:
    class AlwaysLong:
        name = "long"
        spend = "spent"

        def select(self, users: np.ndarray) -> np.ndarray:
            return np.full(len(users), 2, dtype=np.int64)

    wrapped = FallbackSelector(AlwaysLong(), FallbackOrder([2, 3, 0, 1]), MASKS.__getitem__, 4)
    assert wrapped.name == "long" and wrapped.spend == "spent"
    assert wrapped.select(np.array([0, 1])).tolist() == [2, 3]
    assert wrapped.repaired == 1


def test_the_fixed_selector_follows_the_same_rule() -> None:
    fixed = FixedSelector(2, fallback=[3, 0, 1], masks=MASKS.__getitem__)
    assert fixed.select(np.array([0, 1, 2])).tolist() == [2, 3, 2]
