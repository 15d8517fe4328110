"""The reward: ranking accuracy on the base view plus robustness over drift views (pure functions).

A template is scored on a user's base ranking task and on drift views of it (see
:mod:`promptopt.drift`). Each view's score is the chosen metric (``ndcg@10`` by default) averaged
over the view's ``B`` shuffled candidate orders (position-bias control, LLMRank's bootstrapping):

.. math::

    s_v = \\frac{1}{B} \\sum_{b=1}^{B} m(\\text{ranking}_{v,b}, \\text{target}_v)

The robustness term aggregates the scores of **all** views, the base view included (the
conditions the prompt may face: now and under each drift), so a template that is good on the base
view but collapses on the drift views is penalised for the spread:

* ``mean_std``: :math:`\\bar s - \\lambda \\cdot \\sigma(s)` (population standard deviation);
* ``worst``: :math:`\\min_v s_v`;
* ``cvar``: the mean of the worst :math:`\\lceil \\alpha n \\rceil` scores (at least one).

The total is :math:`(1 - w) \\cdot s_{\\text{base}} + w \\cdot \\text{robustness}`; ``w = 0`` gives
the accuracy-only ablation, and with no drift views robustness equals the accuracy for every
aggregate.

:func:`score_views` does it all for one (user, template) from the rankings of its tasks;
:class:`Scorer` holds the reward settings and applies it to a ranker's responses (every env step).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from promptopt.metrics import METRIC_NAMES, metric_fn

if TYPE_CHECKING:
    from promptopt.config import RewardConfig
    from promptopt.llm.types import RankResponse

AGGREGATES: tuple[str, ...] = ("mean_std", "worst", "cvar")
"""Names accepted by :func:`robustness_score`."""

BASE_VIEW = "base"
"""Name of the undisturbed view; its score is the accuracy term."""


@dataclass(frozen=True)
class RewardBreakdown:
    """The reward of one (user, template) and its parts.

    Attributes:
        total: ``(1 - w) * accuracy + w * robustness`` (minus ``lambda * fairness`` with the
            fairness-aware reward, :mod:`promptopt.fairness.penalty`).
        accuracy: The metric on the base view.
        robustness: The aggregate over all views' scores (base included).
        per_view: Score of every view by name (``"base"`` first).
        fairness: Counterfactual instability of the base ranking under stated sensitive attributes
            (0 unless the fairness-aware reward is on).
    """

    total: float
    accuracy: float
    robustness: float
    per_view: Mapping[str, float] = field(default_factory=dict)
    fairness: float = 0.0

    def to_dict(self) -> dict[str, float | dict[str, float]]:
        """A JSON-able dict (what the env puts in ``info["reward"]``)."""
        return {
            "total": self.total,
            "accuracy": self.accuracy,
            "robustness": self.robustness,
            "per_view": dict(self.per_view),
            "fairness": self.fairness,
        }


def view_score(rankings: Sequence[Sequence[int]], target: int, metric: str = "ndcg@10") -> float:
    """Mean of ``metric`` over a view's rankings (one per shuffled candidate order).

    Args:
        rankings: ``B >= 1`` rankings of the same candidates, best first.
        target: The held-out item.
        metric: ``ndcg@k``, ``hit@k`` or ``mrr`` (see :func:`promptopt.metrics.metric_fn`).

    Raises:
        ValueError: No ranking, or an unknown metric name.
    """
    if len(rankings) == 0:
        raise ValueError("view_score needs at least one ranking")
    fn = metric_fn(metric)
    return float(sum(fn(r, target) for r in rankings) / len(rankings))


def accuracy_score(rankings: Sequence[Sequence[int]], target: int, metric: str = "ndcg@10") -> float:
    """The accuracy term: :func:`view_score` of the base view."""
    return view_score(rankings, target, metric)


def robustness_score(
    values: Sequence[float],
    aggregate: str = "mean_std",
    std_penalty: float = 1.0,
    cvar_alpha: float = 0.5,
) -> float:
    """Aggregate per-view scores into one robustness number.

    Args:
        values: Scores of every view (base included), at least one.
        aggregate: ``"mean_std"`` (mean - std_penalty * std), ``"worst"`` (minimum) or ``"cvar"``
            (mean of the worst ``ceil(cvar_alpha * n)`` values).
        std_penalty: lambda of ``mean_std`` (>= 0).
        cvar_alpha: Share of worst views averaged by ``cvar``, in ``(0, 1]``.

    Raises:
        ValueError: Empty ``values``, unknown aggregate, negative ``std_penalty`` or
            ``cvar_alpha`` outside ``(0, 1]``.
    """
    if len(values) == 0:
        raise ValueError("robustness_score needs at least one view score")
    # Plain Python: a handful of views per step, where numpy's call overhead would dominate.
    vals = [float(v) for v in values]
    n = len(vals)
    if aggregate == "mean_std":
        if std_penalty < 0:
            raise ValueError(f"std_penalty must be >= 0, got {std_penalty}")
        mean = math.fsum(vals) / n
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / n)
        return mean - std_penalty * std
    if aggregate == "worst":
        return min(vals)
    if aggregate == "cvar":
        if not 0.0 < cvar_alpha <= 1.0:
            raise ValueError(f"cvar_alpha must be in (0, 1], got {cvar_alpha}")
        # 1e-9 keeps alpha * n = 2.0000000001 from rounding up to 3 views.
        worst_n = max(1, math.ceil(cvar_alpha * n - 1e-9))
        return math.fsum(sorted(vals)[:worst_n]) / worst_n
    raise ValueError(f"unknown robustness aggregate {aggregate!r}: use one of {', '.join(AGGREGATES)}")


def combine(
    per_view: Mapping[str, float],
    *,
    robust_weight: float = 0.0,
    aggregate: str = "mean_std",
    std_penalty: float = 1.0,
    cvar_alpha: float = 0.5,
) -> RewardBreakdown:
    """Turn per-view scores into a :class:`RewardBreakdown`.

    Args:
        per_view: Score of each view; must hold ``"base"`` (the accuracy).
        robust_weight: ``w`` in ``[0, 1]``.
        aggregate: See :func:`robustness_score`.
        std_penalty: See :func:`robustness_score`.
        cvar_alpha: See :func:`robustness_score`.

    Raises:
        ValueError: No base view or ``robust_weight`` outside ``[0, 1]``.
    """
    if BASE_VIEW not in per_view:
        raise ValueError(f"per_view must hold the {BASE_VIEW!r} view, got {sorted(per_view)}")
    if not 0.0 <= robust_weight <= 1.0:
        raise ValueError(f"robust_weight must be in [0, 1], got {robust_weight}")
    accuracy = float(per_view[BASE_VIEW])
    # A fresh dict (base first): the caller's mapping cannot change the breakdown afterwards.
    ordered = {BASE_VIEW: accuracy}
    for view, score in per_view.items():
        if view != BASE_VIEW:
            ordered[view] = float(score)
    if len(ordered) == 1 and aggregate in AGGREGATES:
        robustness = accuracy  # one view: every aggregate is its score
    else:
        robustness = robustness_score(list(ordered.values()), aggregate, std_penalty, cvar_alpha)
    total = (1.0 - robust_weight) * accuracy + robust_weight * robustness
    return RewardBreakdown(total=total, accuracy=accuracy, robustness=robustness, per_view=ordered)


_BY_RANK: dict[tuple[str, int], dict[str, float]] = {}


def _cached_metrics(rank: int, metric: str) -> dict[str, float]:
    """Shared dict of every metric for 0-based ``rank`` (``-1``: absent); callers must not mutate."""
    found = _BY_RANK.get((metric, rank))
    if found is None:
        names = METRIC_NAMES if metric in METRIC_NAMES else (*METRIC_NAMES, metric)
        # A ranking whose target sits at ``rank`` gives each metric's value at that rank.
        ranking, target = (list(range(rank + 1)), rank) if rank >= 0 else ([0], -1)
        found = _BY_RANK[(metric, rank)] = {n: float(metric_fn(n)(ranking, target)) for n in names}
    return found


def metrics_of_rank(rank: int | None, metric: str = "ndcg@10") -> dict[str, float]:
    """Every metric of :data:`~promptopt.metrics.METRIC_NAMES` (plus ``metric``) of a ranked list
    whose target sits at 0-based ``rank`` (``None``: the target is absent, every metric 0)."""
    return dict(_cached_metrics(-1 if rank is None else rank, metric))


def score_views(
    views: Sequence[str],
    targets: Sequence[int],
    rankings: Sequence[Sequence[int]],
    *,
    metric: str = "ndcg@10",
    robust_weight: float = 0.0,
    aggregate: str = "mean_std",
    std_penalty: float = 1.0,
    cvar_alpha: float = 0.5,
) -> tuple[RewardBreakdown, dict[str, dict[str, float]]]:
    """Score the rankings of a (user, template)'s tasks: per-view metrics and the reward.

    Args:
        views: The view of each task (``"base"`` among them); repeated names are shuffled copies.
        targets: The target of each task.
        rankings: The ranker's ranking of each task's candidates, best first.
        metric: The reward metric. Other arguments: see :func:`combine`.

    Returns:
        The :class:`RewardBreakdown` (view scores = :func:`view_score` of each view's copies) and,
        per view, every metric of :func:`metrics_of_rank` averaged over the view's copies.

    Raises:
        ValueError: Lists of different lengths, no base view, or a bad reward setting.
    """
    if not len(views) == len(targets) == len(rankings):
        raise ValueError(f"{len(views)} tasks but {len(rankings)} responses ({len(targets)} targets)")
    # The hot path of every env step: plain loops, metrics looked up by the target's rank.
    per_view: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    for view, target, ranking in zip(views, targets, rankings):
        try:
            rank = (ranking if isinstance(ranking, (list, tuple)) else list(ranking)).index(target)
        except ValueError:
            rank = -1
        values = _BY_RANK.get((metric, rank)) or _cached_metrics(rank, metric)
        acc = per_view.get(view)
        if acc is None:
            per_view[view] = dict(values)
        else:
            counts[view] = counts.get(view, 1) + 1
            for name, value in values.items():
                acc[name] += value
    for view, count in counts.items():
        per_view[view] = {k: v / count for k, v in per_view[view].items()}
    breakdown = combine({view: m[metric] for view, m in per_view.items()}, robust_weight=robust_weight,
                        aggregate=aggregate, std_penalty=std_penalty, cvar_alpha=cvar_alpha)
    return breakdown, per_view


@dataclass(frozen=True)
class Scorer:
    """The reward settings, applied to a ranker's responses: :func:`score_views` with them bound.

    Attributes:
        metric: The reward metric (``ndcg@k``, ``hit@k`` or ``mrr``).
        robust_weight: ``w`` in ``[0, 1]``. aggregate, std_penalty, cvar_alpha: see
            :func:`robustness_score`.
    """

    metric: str = "ndcg@10"
    robust_weight: float = 0.0
    aggregate: str = "mean_std"
    std_penalty: float = 1.0
    cvar_alpha: float = 0.5

    @classmethod
    def from_config(cls, config: RewardConfig) -> Scorer:
        """The scorer of a (validated) ``reward`` config section."""
        return cls(metric=config.metric, robust_weight=config.robust_weight, aggregate=config.aggregate,
                   std_penalty=config.std_penalty, cvar_alpha=config.cvar_alpha)

    def score(
        self, views: Sequence[str], targets: Sequence[int], responses: Sequence[RankResponse]
    ) -> tuple[RewardBreakdown, dict[str, dict[str, float]]]:
        """Reward breakdown and per-view metrics of ``responses`` to tasks with these views and targets.

        Raises:
            ValueError: Lists of different lengths or no base view.
        """
        return score_views(
            views, targets, [r.ranking for r in responses], metric=self.metric,
            robust_weight=self.robust_weight, aggregate=self.aggregate, std_penalty=self.std_penalty,
            cvar_alpha=self.cvar_alpha,
        )

    def nothing(self) -> tuple[RewardBreakdown, dict[str, dict[str, float]]]:
        """The score of an answer never asked for (an invalid action): 0 for the reward and every metric."""
        return (RewardBreakdown(0.0, 0.0, 0.0, {BASE_VIEW: 0.0}),
                {BASE_VIEW: metrics_of_rank(None, self.metric)})
