"""The reward: hand-computed breakdowns for every aggregate, w = 0 ablation, robustness ordering."""

from __future__ import annotations

import dataclasses
import math

import pytest

from promptopt.config import RewardConfig
from promptopt.llm.types import RankResponse
from promptopt.metrics import METRIC_NAMES
from promptopt.reward import (
    RewardBreakdown,
    Scorer,
    accuracy_score,
    combine,
    metrics_of_rank,
    robustness_score,
    score_views,
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


def test_metrics_of_rank_by_hand() -> None:
    at2 = metrics_of_rank(2)
    assert set(at2) == set(METRIC_NAMES)
    assert at2["ndcg@10"] == pytest.approx(0.5) and at2["ndcg@1"] == 0.0
    assert at2["hit@5"] == 1.0 and at2["hit@1"] == 0.0 and at2["mrr"] == pytest.approx(1 / 3)
    assert set(metrics_of_rank(None).values()) == {0.0}
    assert metrics_of_rank(0, "ndcg@3")["ndcg@3"] == 1.0
    at2["mrr"] = 9.0  # a copy: the cache is not affected
    assert metrics_of_rank(2)["mrr"] == pytest.approx(1 / 3)


def test_score_views_averages_copies_and_combines() -> None:
    views = ["base", "temporal", "base", "temporal"]
    targets = [5, 6, 5, 6]
    rankings = [(5, 1, 2), (1, 2, 6), (1, 5, 2), (6, 1, 2)]  # ranks 0, 2, 1, 0
    breakdown, metrics = score_views(views, targets, rankings, metric="mrr", robust_weight=0.5,
                                     aggregate="worst")
    base, temporal = (1 + 1 / 2) / 2, (1 / 3 + 1) / 2
    assert metrics["base"]["mrr"] == pytest.approx(base)
    assert metrics["temporal"]["mrr"] == pytest.approx(temporal)
    assert metrics["base"]["hit@1"] == pytest.approx(0.5)
    assert breakdown.per_view == pytest.approx({"base": base, "temporal": temporal})
    assert breakdown.total == pytest.approx(0.5 * base + 0.5 * min(base, temporal))
    assert breakdown.per_view["temporal"] == pytest.approx(view_score([rankings[1], rankings[3]], 6, "mrr"))
    missing, _ = score_views(["base"], [9], [(1, 2, 3)])
    assert missing.total == 0.0
    with pytest.raises(ValueError, match="2 tasks but 1 responses"):
        score_views(["base", "temporal"], [1, 2], [(1, 2)])


def _ndcg10(position: int) -> float:
    return 1.0 / math.log2(position + 2) if position < 10 else 0.0


def test_scorer_by_hand(robust_problem, synthetic_split) -> None:
    problem = robust_problem
    scorer = Scorer.from_config(problem.reward_config)
    assert scorer == Scorer(robust_weight=0.5)  # the settings of the config (defaults elsewhere)
    user = int(synthetic_split.train[1])
    tasks = problem.tasks(user)
    positions = [0, 3, 12, 1, 2, 3, 0, 5]  # where each task's answer puts the target
    responses = []
    for task, pos in zip(tasks, positions):
        others = [c for c in task.candidates if c != task.target]
        responses.append(RankResponse(ranking=(*others[:pos], task.target, *others[pos:])))
    breakdown, metrics = scorer.score([t.view for t in tasks], [t.target for t in tasks], responses)
    assert (breakdown, metrics) == problem.score(tasks, responses)  # the facade's score is the scorer's
    views = ["base", "temporal", "dropout", "popular_negatives"]
    expected = {v: (_ndcg10(positions[i]) + _ndcg10(positions[i + 4])) / 2 for i, v in enumerate(views)}
    assert breakdown.per_view == pytest.approx(expected)
    reference = combine(expected, robust_weight=0.5)
    assert breakdown.total == pytest.approx(reference.total)
    assert breakdown.accuracy == pytest.approx(expected["base"])
    assert set(metrics) == set(views)
    assert set(metrics["base"]) == set(METRIC_NAMES)
    assert metrics["base"]["hit@1"] == pytest.approx(0.5)  # rank 0 then rank 2
    assert metrics["temporal"]["mrr"] == pytest.approx((1 / 4 + 1 / 4) / 2)
    assert metrics["dropout"]["hit@10"] == pytest.approx(0.5)
    assert expected["temporal"] == pytest.approx(view_score(
        [responses[1].ranking, responses[5].ranking], tasks[1].target))
    with pytest.raises(ValueError, match="8 tasks but 7 responses"):
        scorer.score([t.view for t in tasks], [t.target for t in tasks], responses[:7])


def test_scorer_of_nothing_is_zero_for_every_metric() -> None:
    scorer = Scorer.from_config(RewardConfig(metric="ndcg@3", robust_weight=0.2))
    breakdown, metrics = scorer.nothing()
    assert breakdown == RewardBreakdown(0.0, 0.0, 0.0, {"base": 0.0})
    assert set(metrics) == {"base"} and set(metrics["base"]) == {*METRIC_NAMES, "ndcg@3"}
    assert set(metrics["base"].values()) == {0.0}
    metrics["base"]["mrr"] = 1.0  # a fresh dict each time
    assert scorer.nothing()[1]["base"]["mrr"] == 0.0
