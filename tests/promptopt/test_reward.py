"""The reward: hand-computed breakdowns for every aggregate, w = 0 ablation, robustness ordering."""

from __future__ import annotations

import dataclasses
import math

import pytest

from promptopt.reward import (
    RewardBreakdown,
    accuracy_score,
    combine,
    robustness_score,
    view_score,
)

VIEWS = {"base": 0.8, "temporal": 0.4, "dropout": 0.6}
STD = math.sqrt((0.2**2 + 0.2**2 + 0.0) / 3)  # population std of (0.8, 0.4, 0.6)


def test_view_score_averages_the_metric_over_shuffled_copies() -> None:
    # Target 7 at rank 0 in the first copy and rank 1 in the second.
    score = view_score([(7, 1, 2), (1, 7, 2)], 7, "ndcg@10")
    assert score == pytest.approx((1.0 + 1.0 / math.log2(3)) / 2)
    assert view_score([(1, 7, 2)], 7, "hit@1") == 0.0
    assert view_score([(1, 7, 2)], 7, "mrr") == pytest.approx(0.5)
    assert accuracy_score([(1, 2, 7)], 7, "ndcg@2") == 0.0


def test_view_score_rejects_empty_and_unknown_metric() -> None:
    with pytest.raises(ValueError, match="at least one ranking"):
        view_score([], 1)
    with pytest.raises(ValueError, match="unknown metric 'precision@3'"):
        view_score([(1,)], 1, "precision@3")


@pytest.mark.parametrize(
    ("aggregate", "kwargs", "expected"),
    [
        ("mean_std", {"std_penalty": 1.0}, 0.6 - STD),
        ("mean_std", {"std_penalty": 0.5}, 0.6 - 0.5 * STD),
        ("mean_std", {"std_penalty": 0.0}, 0.6),
        ("worst", {}, 0.4),
        ("cvar", {"cvar_alpha": 0.5}, 0.5),  # ceil(1.5) = 2 worst views: (0.4 + 0.6) / 2
        ("cvar", {"cvar_alpha": 1 / 3}, 0.4),  # exactly one view
        ("cvar", {"cvar_alpha": 1.0}, 0.6),  # all views: the mean
    ],
)
def test_robustness_aggregates_by_hand(aggregate: str, kwargs: dict, expected: float) -> None:
    assert robustness_score(list(VIEWS.values()), aggregate, **kwargs) == pytest.approx(expected)


def test_combine_hand_computed_breakdown() -> None:
    out = combine(VIEWS, robust_weight=0.5, aggregate="mean_std", std_penalty=1.0)
    assert out.accuracy == pytest.approx(0.8)
    assert out.robustness == pytest.approx(0.6 - STD)
    assert out.total == pytest.approx(0.5 * 0.8 + 0.5 * (0.6 - STD))
    assert list(out.per_view) == ["base", "temporal", "dropout"]
    worst = combine(VIEWS, robust_weight=0.25, aggregate="worst")
    assert worst.total == pytest.approx(0.75 * 0.8 + 0.25 * 0.4)


@pytest.mark.parametrize("aggregate", ["mean_std", "worst", "cvar"])
def test_weight_zero_is_the_accuracy(aggregate: str) -> None:
    out = combine(VIEWS, robust_weight=0.0, aggregate=aggregate)
    assert out.total == out.accuracy == pytest.approx(0.8)
    assert out.robustness != pytest.approx(out.accuracy)  # the term is still reported


@pytest.mark.parametrize("aggregate", ["mean_std", "worst", "cvar"])
def test_template_collapsing_under_drift_loses_to_a_steady_one(aggregate: str) -> None:
    collapsing = {"base": 0.9, "temporal": 0.1, "dropout": 0.15, "popular_negatives": 0.1}
    steady = {"base": 0.7, "temporal": 0.65, "dropout": 0.7, "popular_negatives": 0.6}
    # Accuracy alone prefers the collapsing template ...
    assert combine(collapsing).total > combine(steady).total
    # ... the drift-robust reward prefers the steady one.
    robust = {"robust_weight": 0.5, "aggregate": aggregate}
    assert combine(collapsing, **robust).total < combine(steady, **robust).total


def test_without_drift_views_robustness_equals_accuracy() -> None:
    for aggregate in ("mean_std", "worst", "cvar"):
        out = combine({"base": 0.37}, robust_weight=0.7, aggregate=aggregate)
        assert out.robustness == pytest.approx(0.37)
        assert out.total == pytest.approx(0.37)


def test_bad_arguments_name_the_value() -> None:
    with pytest.raises(ValueError, match="at least one view"):
        robustness_score([])
    with pytest.raises(ValueError, match="unknown robustness aggregate 'median'"):
        robustness_score([0.1], "median")
    with pytest.raises(ValueError, match="cvar_alpha must be in"):
        robustness_score([0.1], "cvar", cvar_alpha=0.0)
    with pytest.raises(ValueError, match="std_penalty must be >= 0, got -1"):
        robustness_score([0.1], "mean_std", std_penalty=-1)
    with pytest.raises(ValueError, match="robust_weight must be in"):
        combine({"base": 0.5}, robust_weight=1.5)
    with pytest.raises(ValueError, match="'base' view"):
        combine({"temporal": 0.5})


def test_breakdown_is_frozen_and_owns_its_views() -> None:
    views = dict(VIEWS)
    out = combine(views, robust_weight=0.3)
    views["base"] = 0.0
    assert out.per_view["base"] == 0.8
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.total = 1.0  # type: ignore[misc]
    as_dict = out.to_dict()
    assert as_dict["per_view"] == VIEWS and as_dict["total"] == out.total
    assert isinstance(RewardBreakdown(1.0, 1.0, 1.0).per_view, dict)
