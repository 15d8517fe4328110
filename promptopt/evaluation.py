"""Evaluate a selector on held-out users: per-user metrics, bootstrap intervals, spend.

The protocol (see ``docs/env.md``): every selector is scored through the same
:class:`~promptopt.problem.RecProblem`, hence on identical tasks and shown orders; one ranker call
per user with the chosen template (times the views and shuffled copies of the reward). Users are
grouped by the period of their task's target (``source``: before the drift time cut, ``target``:
from it on) so the drop under drift can be reported.

Intervals are bootstrap intervals of the mean over users, computed by
:func:`scipy.stats.bootstrap` (``scipy`` comes with the ``train`` extra and is imported when an
interval is computed). ``method="percentile"`` (the default):

.. math::

    \\bar x^{*}_b = \\frac{1}{n} \\sum_{i=1}^{n} x_{I_{b,i}},\\quad I_{b,i} \\sim U\\{1..n\\},
    \\qquad [\\,q_{(1-c)/2}(\\bar x^{*}),\\; q_{(1+c)/2}(\\bar x^{*})\\,]

``method="bca"``: the bias-corrected and accelerated interval (Efron 1987), which moves the
percentiles to correct the median bias and the skewness of :math:`\\bar x^{*}` (per-user NDCG of a
weak ranker is skewed: many zeros); second-order accurate where the percentile interval is first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from promptopt.llm.types import Ranker
from promptopt.metrics import METRIC_NAMES
from promptopt.selectors import Selector, Spend

if TYPE_CHECKING:
    from promptopt.problem import Period, RecProblem

REWARD_KEYS: tuple[str, ...] = ("reward", "accuracy", "robustness")
"""Per-user reward terms reported beside :data:`~promptopt.metrics.METRIC_NAMES`."""

_CHUNK = 200  # bootstrap resamples per vectorised batch (bounds memory at 200 x n floats)

IntervalMethod = Literal["percentile", "bca"]
_SCIPY_METHOD = {"percentile": "percentile", "bca": "BCa"}


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap confidence interval over ``n`` values."""

    mean: float
    low: float
    high: float
    n: int

    def to_json(self) -> dict[str, float | int]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    method: IntervalMethod = "percentile",
) -> Interval:
    """Bootstrap interval of the mean of ``values`` (``nan`` bounds when empty).

    Args:
        values: One value per user.
        n_bootstrap: Resamples.
        confidence: Coverage of the interval.
        seed: Seed of the resamples (the same seed, the same resamples).
        method: ``"percentile"`` or ``"bca"`` (see the module docstring).

    Raises:
        ValueError: ``n_bootstrap < 1``, ``confidence`` outside ``(0, 1)`` or an unknown method.
    """
    low, high, _ = _bootstrap(values, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed,
                              method=method)
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean()) if x.size else float("nan")
    return Interval(mean, low, high, int(x.size))


def _bootstrap(
    values: Sequence[float] | np.ndarray, *, n_bootstrap: int, confidence: float, seed: int,
    method: IntervalMethod,
) -> tuple[float, float, np.ndarray]:
    """``(low, high, bootstrap means)`` by :func:`scipy.stats.bootstrap`.

    Shapes: ``values (n,)`` -> bootstrap means ``(n_bootstrap,)`` (empty when ``n < 2`` or every value
    is the same: every resample's mean is then that value, and so are both bounds).
    """
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if method not in _SCIPY_METHOD:
        raise ValueError(f"method must be one of {', '.join(_SCIPY_METHOD)}, got {method!r}")
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan"), np.zeros(0)
    if x.size < 2 or np.ptp(x) == 0.0:  # degenerate: scipy refuses one value; BCa divides by 0
        return float(x[0]), float(x[0]), np.full(n_bootstrap, float(x[0]))
    from scipy.stats import bootstrap

    result = bootstrap((x,), np.mean, n_resamples=n_bootstrap, confidence_level=confidence,
                       method=_SCIPY_METHOD[method], vectorized=True, batch=_CHUNK,
                       rng=np.random.default_rng(seed))
    interval = result.confidence_interval
    return float(interval.low), float(interval.high), np.asarray(result.bootstrap_distribution)


@dataclass(frozen=True, eq=False)
class SelectorEvaluation:
    """A selector's results on a set of users.

    Attributes:
        name: The selector's name.
        users: ``(n,)`` evaluated users (those with a task), in input order.
        templates: ``(n,)`` template chosen for each.
        periods: ``(n,)`` ``"source"`` / ``"target"`` period of each user's task.
        per_user: ``(n,)`` values per key of :data:`METRIC_NAMES` and :data:`REWARD_KEYS`.
        summary: Mean and interval of every key over all users.
        by_period: The same per period (only periods with users).
        spend: Requests and tokens the evaluation calls cost.
        selection_spend: What the selector itself spent to choose (the oracle's sweep), if known.
        invalid: Users given a template they cannot fill (scored 0).
    """

    name: str
    users: np.ndarray
    templates: np.ndarray
    periods: np.ndarray
    per_user: dict[str, np.ndarray]
    summary: dict[str, Interval]
    by_period: dict[str, dict[str, Interval]]
    spend: Spend
    selection_spend: Spend | None = None
    invalid: int = 0
    confidence: float = 0.95
    extra: dict[str, Any] = field(default_factory=dict)

    def mean(self, key: str = "ndcg@10") -> float:
        return self.summary[key].mean

    def template_usage(self) -> dict[int, int]:
        """How many users got each template."""
        values, counts = np.unique(self.templates, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts)}

    def to_json(self) -> dict[str, Any]:
        """JSON-able summary (no per-user arrays)."""
        def spend(s: Spend | None) -> dict[str, int] | None:
            return None if s is None else {"calls": s.calls, "cached": s.cached, "tokens": s.tokens}

        return {
            "name": self.name,
            "n_users": int(self.users.size),
            "confidence": self.confidence,
            "summary": {k: v.to_json() for k, v in self.summary.items()},
            "by_period": {p: {k: v.to_json() for k, v in m.items()} for p, m in self.by_period.items()},
            "spend": spend(self.spend),
            "selection_spend": spend(self.selection_spend),
            "invalid": self.invalid,
            "template_usage": {str(k): v for k, v in self.template_usage().items()},
        }


def evaluate_selector(
    selector: Selector,
    problem: RecProblem,
    ranker: Ranker,
    users: Sequence[int] | np.ndarray,
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    period: Period | None = None,
    final: bool = False,
    method: IntervalMethod = "percentile",
) -> SelectorEvaluation:
    """Score ``selector``'s choice for every user in ONE ``ranker.rank`` call and summarise.

    Args:
        selector: Maps users to templates.
        problem: Tasks, masks and reward (shared by every selector, so tasks are identical).
        ranker: The frozen ranker.
        users: Users to evaluate (test users for the protocol).
        n_bootstrap: Bootstrap resamples.
        confidence: Interval coverage.
        seed: Seed of the resampling.
        period: Evaluate each user's latest target in this period instead of the episode target.
        final: Evaluate each user's last interaction (see :meth:`RecProblem.target_row`).
        method: Bootstrap interval method, ``"percentile"`` or ``"bca"``.

    Raises:
        ValueError: No user has a task, or the selector returned the wrong number of choices.
    """
    users = np.asarray(users, dtype=np.int64)
    choices = np.asarray(selector.select(users), dtype=np.int64)
    if choices.shape != users.shape:
        raise ValueError(
            f"selector {selector.name!r} returned {choices.shape[0]} choices for {users.size} users"
        )
    outcomes = problem.run(users, choices, ranker, period=period, final=final)
    done = [(i, o) for i, o in enumerate(outcomes) if o is not None]
    if not done:
        raise ValueError(f"none of the {users.size} users has a task (period={period!r})")
    keep = np.array([i for i, _ in done], dtype=np.int64)
    per_user: dict[str, np.ndarray] = {
        name: np.array([o.metrics["base"][name] for _, o in done]) for name in METRIC_NAMES
    }
    per_user["reward"] = np.array([o.reward.total for _, o in done])
    per_user["accuracy"] = np.array([o.reward.accuracy for _, o in done])
    per_user["robustness"] = np.array([o.reward.robustness for _, o in done])
    periods = np.array([o.period for _, o in done])

    def summarise(index: np.ndarray) -> dict[str, Interval]:
        return {k: bootstrap_interval(v[index], n_bootstrap=n_bootstrap, confidence=confidence,
                                      seed=seed, method=method) for k, v in per_user.items()}

    by_period = {p: summarise(np.flatnonzero(periods == p))
                 for p in ("source", "target") if (periods == p).any()}
    return SelectorEvaluation(
        name=selector.name,
        users=users[keep],
        templates=choices[keep],
        periods=periods,
        per_user=per_user,
        summary=summarise(np.arange(keep.size)),
        by_period=by_period,
        spend=Spend.of(outcomes),
        selection_spend=getattr(selector, "spend", None),
        invalid=sum(not o.valid for _, o in done),
        confidence=confidence,
    )


@dataclass(frozen=True)
class PairedDifference:
    """Mean per-user difference ``a - b`` with its bootstrap interval.

    Attributes:
        a, b: Names of the two selectors.
        metric: The compared key.
        interval: Mean difference and interval over the users both evaluated.
        share_positive: Share of bootstrap means above 0 (a one-sided bootstrap support for a > b).
    """

    a: str
    b: str
    metric: str
    interval: Interval
    share_positive: float

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "metric": self.metric, **self.interval.to_json(),
                "share_positive": self.share_positive}


def paired_difference(
    a: SelectorEvaluation,
    b: SelectorEvaluation,
    metric: str = "ndcg@10",
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    method: IntervalMethod = "percentile",
) -> PairedDifference:
    """Bootstrap the mean per-user difference ``a - b`` over the users both evaluations hold.

    Raises:
        ValueError: Unknown metric or no common user.
    """
    if metric not in a.per_user or metric not in b.per_user:
        raise ValueError(f"unknown metric {metric!r}: use one of {', '.join(a.per_user)}")
    position = {int(u): i for i, u in enumerate(b.users)}
    pairs = [(i, position[int(u)]) for i, u in enumerate(a.users) if int(u) in position]
    if not pairs:
        raise ValueError(f"evaluations {a.name!r} and {b.name!r} share no user")
    ia, ib = (np.array(x, dtype=np.int64) for x in zip(*pairs))
    diff = a.per_user[metric][ia] - b.per_user[metric][ib]
    low, high, means = _bootstrap(diff, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed,
                                  method=method)
    interval = Interval(float(diff.mean()), low, high, int(diff.size))
    share = float((means > 0).mean())  # the interval's own resamples
    return PairedDifference(a.name, b.name, metric, interval, share)
