"""FaiRLLM's list similarities and per-attribute summaries: hand-computed cases and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptopt.fairness.similarity import (
    SIMILARITIES,
    jaccard_at_k,
    prag_at_k,
    serp_at_k,
    similarity_fn,
    snsr,
    snsv,
)

NEUTRAL = [1, 2, 3, 4, 5]


def test_identical_lists_score_one_and_disjoint_lists_zero() -> None:
    for fn in SIMILARITIES.values():
        assert fn(NEUTRAL, NEUTRAL, 5) == 1.0
        assert fn(NEUTRAL, [6, 7, 8, 9, 10], 5) == 0.0


def test_jaccard_by_hand() -> None:
    # top-3: {1, 2, 3} vs {2, 1, 9}: 2 shared of 4.
    assert jaccard_at_k(NEUTRAL, [2, 1, 9, 3, 4], 3) == pytest.approx(2 / 4)


def test_serp_weights_shared_items_by_their_rank_in_the_sensitive_list() -> None:
    # K = 3, weights K - r + 1 = 3, 2, 1: 9 (absent) at rank 1 loses 3 of 6, at rank 3 only 1 of 6.
    assert serp_at_k(NEUTRAL, [9, 1, 2], 3) == pytest.approx((2 + 1) / 6)
    assert serp_at_k(NEUTRAL, [1, 2, 9], 3) == pytest.approx((3 + 2) / 6)
    # Order within the shared items does not matter to SERP*, only which ranks they hold.
    assert serp_at_k(NEUTRAL, [3, 2, 1], 3) == 1.0


def test_prag_counts_the_pairs_whose_order_the_neutral_list_keeps() -> None:
    # K = 3: sensitive [2, 1, 3] has pairs (2,1) swapped, (2,3) kept, (1,3) kept: 2 of 3.
    assert prag_at_k(NEUTRAL, [2, 1, 3], 3) == pytest.approx(2 / 3)
    assert prag_at_k(NEUTRAL, [3, 2, 1], 3) == 0.0
    # An upper item missing from the neutral list earns nothing; a missing lower item counts as kept.
    assert prag_at_k(NEUTRAL, [9, 1, 2], 3) == pytest.approx(1 / 3)
    assert prag_at_k(NEUTRAL, [1, 2, 9], 3) == 1.0


def test_short_lists_use_their_own_length_as_k() -> None:
    assert serp_at_k([1, 2], [1, 2], 10) == 1.0
    assert prag_at_k([1], [1], 10) == 1.0 and prag_at_k([1], [2], 10) == 0.0
    assert jaccard_at_k([], [], 3) == 1.0


def test_bad_arguments_fail_with_the_value() -> None:
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        jaccard_at_k(NEUTRAL, NEUTRAL, 0)
    with pytest.raises(ValueError, match="unknown list similarity 'kendall'"):
        similarity_fn("kendall")


def test_snsr_and_snsv_by_hand() -> None:
    assert snsr([0.9, 0.7, 0.8]) == pytest.approx(0.2)
    assert snsv([0.9, 0.7, 0.8]) == pytest.approx(math.sqrt((0.01 + 0.01 + 0) / 3))
    assert snsr([0.5]) == 0.0 and snsv([0.5]) == 0.0


permutations = st.permutations(list(range(12)))


@settings(max_examples=60, deadline=None)
@given(permutations, permutations, st.integers(1, 12))
def test_similarities_are_in_unit_interval_and_one_on_identity(a: list[int], b: list[int], k: int) -> None:
    for name, fn in SIMILARITIES.items():
        value = fn(a, b, k)
        assert 0.0 <= value <= 1.0 + 1e-12, name
        assert fn(a, a, k) == pytest.approx(1.0)
    assert jaccard_at_k(a, b, k) == jaccard_at_k(b, a, k)
    # Same top-k set: Jaccard and SERP* are 1 whatever the order.
    if set(a[:k]) == set(b[:k]):
        assert jaccard_at_k(a, b, k) == 1.0 and serp_at_k(a, b, k) == pytest.approx(1.0)
