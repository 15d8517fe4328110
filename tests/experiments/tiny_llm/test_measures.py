"""Merging shuffled copies, chance and position-bias measures of the tiny-LLM results."""

from __future__ import annotations

import itertools
import math

import pytest

from promptopt.experiments.tiny_llm.measures import (
    ShownTask,
    borda_merge,
    chance_ndcg,
    position_buckets,
    summarise,
)
from promptopt.metrics import ndcg_at_k


def test_chance_is_the_mean_ndcg_over_every_position() -> None:
    for n in (5, 12, 20):
        by_position = [ndcg_at_k([*range(p), 99, *range(p, n - 1)], 99, 10) for p in range(n)]
        assert chance_ndcg(n) == pytest.approx(sum(by_position) / n)
    assert chance_ndcg(20) == pytest.approx(0.2272, abs=1e-4)


def test_borda_merge_counts_votes_and_breaks_ties_by_the_first_ranking() -> None:
    assert borda_merge([(1, 2, 3), (2, 1, 3), (2, 3, 1)]) == (2, 1, 3)
    assert borda_merge([(1, 2), (2, 1)]) == (1, 2)  # a tie: the first ranking's order
    with pytest.raises(ValueError, match="same candidates"):
        borda_merge([(1, 2), (1, 3)])
    with pytest.raises(ValueError, match="at least one"):
        borda_merge([])


def test_merging_cancels_a_pure_position_ranker_and_keeps_a_real_preference() -> None:
    # A ranker that answers the shown order, over every rotation of 4 candidates: merged, no
    # candidate wins (all tie, the first ranking decides); a ranker that knows the target keeps it.
    items = (10, 11, 12, 13)
    orders = [items[i:] + items[:i] for i in range(4)]
    positional = [ShownTask(0, c, 12, o, o) for c, o in enumerate(orders)]
    knowing = [ShownTask(0, c, 12, o, (12, *[x for x in o if x != 12])) for c, o in enumerate(orders)]
    pos, know = summarise(positional, n_bootstrap=50), summarise(knowing, n_bootstrap=50)
    assert know["base"]["mean"] == know["merged"]["mean"] == 1.0
    assert pos["base"]["mean"] == pytest.approx(ndcg_at_k(orders[0], 12, 10))
    assert pos["merged"]["mean"] == pytest.approx(ndcg_at_k(orders[0], 12, 10))  # all tied: base order
    assert pos["by_position"][0]["n"] == 4 and pos["top1_position"]["first"] == 1.0
    assert know["top1_position"]["first"] == pytest.approx(0.25)


def test_summarise_groups_by_shown_position_and_pairs_recovery_per_user() -> None:
    shown = []
    for user, copy in itertools.product(range(6), range(2)):
        order = tuple(range(20)) if copy == 0 else tuple(reversed(range(20)))
        target = user  # shown at position user + 1 in the base order, 20 - user in the copy
        shown.append(ShownTask(user, copy, target, order, order))  # answers the shown order
    row = summarise(shown, n_bootstrap=100)
    assert row["n_users"] == 6 and row["orders"] == 2
    assert [b["positions"] for b in row["by_position"]] == [list(x) for x in position_buckets(20)]
    assert row["by_position"][0]["n"] == 5 and row["by_position"][3]["n"] == 5  # 1-5 base, 16-20 copies
    assert row["by_position"][0]["ndcg"] > 0.5 and row["by_position"][3]["ndcg"] == 0.0
    merged = [ndcg_at_k(borda_merge([tuple(range(20)), tuple(reversed(range(20)))]), u, 10) for u in range(6)]
    base = [ndcg_at_k(tuple(range(20)), u, 10) for u in range(6)]
    assert row["recovered"]["mean"] == pytest.approx(sum(m - b for m, b in zip(merged, base)) / 6)
    assert math.isfinite(row["recovered"]["low"])
    with pytest.raises(ValueError, match="base order"):
        summarise([ShownTask(0, 1, 1, (1, 2), (1, 2))])
