"""The safe policy: the best fixed template by default, the learned choice only where it was shown to pay.

The selector a run calls ``policy`` is never the learned policy alone. It is

* a **default**: the templates ranked by the training-budget scan (every template scored on
  training users, within the run's own budget), served as a :class:`~promptopt.fallback.FallbackOrder`
  — the best fixed template, or the next one a user can fill;
* a **gate**: for a user whose policy puts a probability margin of at least ``threshold`` on its
  greedy template over the user's default, that template instead;
* a **rule** (:class:`GateRule`): the threshold, chosen among a grid on validation users only and
  accepted only when its per-user gain over the default (paired: the same tasks, candidates and
  shown order) has a bootstrap lower bound above 0; otherwise the gate never deviates and the
  policy *is* the best fixed template.

Formally, for user :math:`u` with policy probabilities :math:`p_u`, greedy template
:math:`g_u = \\arg\\max_t p_u(t)` and default :math:`d_u`, the gated choice is

.. math::

    c_u(\\tau) = g_u \\text{ if } g_u \\ne d_u \\text{ and } p_u(g_u) - p_u(d_u) \\ge \\tau,
    \\text{ else } d_u,

and on validation users :math:`V` the gain of :math:`\\tau` is the mean of
:math:`\\Delta_u(\\tau) = s_u(c_u(\\tau)) - s_u(d_u)`. The rule keeps the :math:`\\tau` with the
largest mean gain among those whose lower bound :math:`\\text{LB}_{1-\\alpha/K}(\\Delta(\\tau)) > 0`,
and :math:`\\tau = \\infty` (never deviate) when there is none. The rule keeps the best of :math:`K`
candidate thresholds, so each is tested at level :math:`\\alpha/K` (Bonferroni): the chance that any
threshold without a real gain passes stays below :math:`\\alpha` (``gate.confidence`` is the
family-wise coverage). Without the correction, picking the best of five margins on a few validation
users accepts noise.

Pure numpy: train, evaluate, export, the prompt book and the study all use these functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from promptopt.config import GATE_THRESHOLDS
from promptopt.evaluation import bootstrap_interval
from promptopt.fallback import FallbackOrder, MaskFn, stack_masks


class ProbabilisticPolicy(Protocol):
    """What the gate needs of a learned policy (``promptopt.policies.selectors.PPOSelector`` has it)."""

    def action_probabilities(self, users: np.ndarray) -> np.ndarray:
        """Shapes: ``(n,) -> (n, T)``; templates a user cannot fill have probability 0."""
        ...


# ---------------------------------------------------------------------- the gate
def gate_choices(probs: np.ndarray, defaults: np.ndarray, threshold: float | None) -> np.ndarray:
    """Per user, the greedy template where its margin over the user's default passes ``threshold``.

    Args:
        probs: ``(n, T)`` policy probabilities.
        defaults: ``(n,)`` each user's default template (or one int for everyone).
        threshold: The margin; ``None`` or ``inf``: never deviate.

    Shapes: -> ``(n,)`` int64.
    """
    probs = np.asarray(probs, dtype=np.float64)
    defaults = np.broadcast_to(np.asarray(defaults, dtype=np.int64), (len(probs),))
    if threshold is None or not np.isfinite(threshold) or len(probs) == 0:
        return defaults.copy()
    greedy, margin = greedy_margins(probs, defaults)
    return np.where((greedy != defaults) & (margin >= threshold), greedy, defaults).astype(np.int64)


def greedy_margins(probs: np.ndarray, defaults: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each user's greedy template and its probability margin over the default.

    Shapes: ``probs (n, T)``, ``defaults (n,)`` -> ``(n,)`` int64, ``(n,)`` float64.
    """
    if len(probs) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    greedy = probs.argmax(axis=1).astype(np.int64)
    rows = np.arange(len(probs))
    return greedy, probs[rows, greedy] - probs[rows, defaults]


@dataclass(frozen=True)
class ThresholdCheck:
    """One candidate threshold measured on the validation users.

    Attributes:
        threshold: The probability margin.
        deviations: Validation users the gate sends to the policy's choice.
        gain: Mean per-user gain over the default, and its bootstrap bounds (all validation users).
        low, high: The bounds.
        accepted: The lower bound is above 0 and some user deviates.
    """

    threshold: float
    deviations: int
    gain: float
    low: float
    high: float
    accepted: bool

    def to_json(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "deviations": self.deviations, "gain": self.gain,
                "low": self.low, "high": self.high, "accepted": self.accepted}


def check_thresholds(
    probs: np.ndarray,
    defaults: np.ndarray,
    scores: np.ndarray,
    thresholds: Sequence[float],
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[ThresholdCheck]:
    """Every candidate threshold's paired gain over the default on validation users.

    Args:
        probs: ``(n, T)`` policy probabilities of the validation users.
        defaults: ``(n,)`` each validation user's default template.
        scores: ``(n, T)`` the validation users' score with each template; only the default and
            the greedy column are read (``nan``: unknown or unfillable, counted as no gain).
        thresholds: Candidate margins.
        n_bootstrap, confidence, seed: The percentile bootstrap of the mean gain; ``confidence`` is
            family-wise over ``thresholds``: each threshold's bounds are at
            :func:`per_threshold_confidence`.
    """
    level = per_threshold_confidence(confidence, len(thresholds))
    defaults = np.broadcast_to(np.asarray(defaults, dtype=np.int64), (len(probs),))
    rows = np.arange(len(probs))
    checks = []
    for threshold in thresholds:
        choice = gate_choices(probs, defaults, threshold)
        gain = np.nan_to_num(scores[rows, choice] - scores[rows, defaults]) if len(rows) else np.zeros(0)
        deviations = int((choice != defaults).sum())
        if len(gain):
            interval = bootstrap_interval(gain, n_bootstrap=n_bootstrap, confidence=level, seed=seed)
            mean, low, high = interval.mean, interval.low, interval.high
        else:  # no validation user: nothing validated
            mean = low = high = 0.0
        checks.append(ThresholdCheck(float(threshold), deviations, float(mean), float(low), float(high),
                                     bool(deviations and np.any(gain) and low > 0)))
    return checks


def per_threshold_confidence(confidence: float, n_thresholds: int) -> float:
    """Each of ``n_thresholds`` bounds' coverage so that all hold at once with ``confidence``
    (Bonferroni: ``1 - (1 - confidence) / n_thresholds``)."""
    return 1.0 - (1.0 - confidence) / max(1, n_thresholds)


def choose_threshold(checks: Sequence[ThresholdCheck]) -> ThresholdCheck | None:
    """The accepted check with the largest mean gain (the first on ties), or ``None``."""
    accepted = [c for c in checks if c.accepted]
    return max(accepted, key=lambda c: c.gain) if accepted else None


# ---------------------------------------------------------------------- the stored rule
@dataclass(frozen=True)
class GateRule:
    """The validated rule of a run: what ``policy`` serves, and the evidence it was chosen on.

    Attributes:
        order: Template ids ranked by the training-budget scan, best first (the fallback list; its
            head is the default).
        threshold: The accepted probability margin, ``None`` when the gate never deviates.
        metric: What gains were measured in (``reward`` or a base-view metric such as ``ndcg@10``).
        split: The users it was validated on (``val``).
        users: Their raw user ids.
        gain, low, high: The accepted threshold's mean gain over the default and its bounds
            (``0, 0, 0`` when it never deviates).
        confidence: Family-wise coverage of the bounds over every candidate threshold (each check's
            bounds are at :func:`per_threshold_confidence`).
        n_bootstrap: Resamples of the bootstrap.
        seed: Seed of the bootstrap.
        checks: Every candidate threshold's measurement.
        scan: How the default was identified (``split``, ``n_users``, ``metric``, ``calls``) and
            every template's mean (``templates``: ``template_id``, ``mean_reward``, ``n``).
        spend: Ranker requests the scan and the validation sent (``scan_calls``,
            ``scan_uncached``, ``validation_calls``, ``validation_uncached``), when known.
    """

    order: tuple[str, ...]
    threshold: float | None
    metric: str
    split: str
    users: tuple[str, ...]
    gain: float = 0.0
    low: float = 0.0
    high: float = 0.0
    confidence: float = 0.95
    n_bootstrap: int = 1000
    seed: int = 0
    checks: tuple[ThresholdCheck, ...] = ()
    scan: Mapping[str, Any] = field(default_factory=dict)
    spend: Mapping[str, int] = field(default_factory=dict)

    @property
    def default(self) -> str:
        return self.order[0]

    @property
    def deviates(self) -> bool:
        """Whether any user can be sent away from the default."""
        return self.threshold is not None

    def fallback(self, ids: Sequence[str]) -> FallbackOrder:
        """The ranked fallback list over the catalog ``ids``."""
        return FallbackOrder.from_ids(self.order, ids)

    def summary(self) -> str:
        """One line: the default, the threshold and the validated gain (or why it never deviates)."""
        n = len(self.users)
        conf = f"{100 * self.confidence:g}% family-wise over {max(1, len(self.checks))} margins"
        if self.threshold is None:
            return (f"default {self.default!r}; never deviates: no margin in "
                    f"{', '.join(f'{c.threshold:g}' for c in self.checks) or 'the grid'} had a validated "
                    f"{self.metric} gain with a lower bound > 0 ({conf}) on {n} {self.split} users")
        return (f"default {self.default!r}; deviates where the policy's margin >= {self.threshold:g}: "
                f"validated {self.metric} gain {self.gain:+.4f} [{self.low:+.4f}, {self.high:+.4f}] "
                f"({conf}, bootstrap) on {n} {self.split} users")

    def reason(self, deviates: bool, margin: float, default: str, chosen: str) -> str:
        """Why one user gets ``chosen`` (the policy's choice) or ``default``."""
        if deviates:
            return (f"deviates from {default!r} to the policy's {chosen!r}: margin {margin:.3f} >= "
                    f"{self.threshold:g}, validated {self.metric} gain {self.gain:+.4f} "
                    f"[{self.low:+.4f}, {self.high:+.4f}] on {len(self.users)} {self.split} users")
        if self.threshold is None:
            return f"default {default!r}: the gate never deviates (no validated gain on {self.split} users)"
        if chosen == default:
            return f"default {default!r}: the policy's choice is the default"
        return f"default {default!r}: the policy's margin {margin:.3f} < {self.threshold:g} for {chosen!r}"

    def to_json(self) -> dict[str, Any]:
        return {
            "order": list(self.order), "default": self.default, "threshold": self.threshold,
            "metric": self.metric, "split": self.split, "n_users": len(self.users),
            "users": list(self.users), "gain": self.gain, "low": self.low, "high": self.high,
            "confidence": self.confidence, "n_bootstrap": self.n_bootstrap, "seed": self.seed,
            "checks": [c.to_json() for c in self.checks], "scan": dict(self.scan),
            "spend": dict(self.spend), "summary": self.summary(),
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any], *, source: str = "gate rule") -> GateRule:
        """Read :meth:`to_json`'s output.

        Raises:
            ValueError: A missing or mistyped key, in one line naming ``source`` and the key.
        """
        try:
            order = tuple(str(t) for t in payload["order"])
            threshold = payload["threshold"]
            rule = cls(
                order=order,
                threshold=None if threshold is None else float(threshold),
                metric=str(payload["metric"]), split=str(payload["split"]),
                users=tuple(str(u) for u in payload["users"]),
                gain=float(payload["gain"]), low=float(payload["low"]), high=float(payload["high"]),
                confidence=float(payload.get("confidence", 0.95)),
                n_bootstrap=int(payload.get("n_bootstrap", 1000)), seed=int(payload.get("seed", 0)),
                checks=tuple(ThresholdCheck(**c) for c in payload.get("checks", ())),
                scan=dict(payload.get("scan") or {}),
                spend={str(k): int(v) for k, v in (payload.get("spend") or {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: not a valid gate rule ({type(exc).__name__}: {exc})") from None
        if not order:
            raise ValueError(f"{source}: the gate rule's order is empty")
        return rule


def validate_gate(
    probs: np.ndarray,
    order: FallbackOrder,
    masks: np.ndarray,
    scores: np.ndarray,
    *,
    ids: Sequence[str],
    users: Sequence[str],
    thresholds: Sequence[float] = GATE_THRESHOLDS,
    metric: str = "reward",
    split: str = "val",
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    scan: Mapping[str, Any] | None = None,
) -> GateRule:
    """Choose the rule on validation users (see the module docstring).

    Args:
        probs: ``(n, T)`` policy probabilities of the validation users.
        order: The ranked fallback list (the training-budget scan).
        masks: ``(n, T)`` the templates each validation user can fill.
        scores: ``(n, T)`` each validation user's score per template (the default and greedy
            columns are read; see :func:`needed_templates`).
        ids: The catalog's template ids.
        users: The validation users' raw ids.
        thresholds: Candidate margins.
        metric, split: What ``scores`` measure and whose they are (stored with the rule).
        n_bootstrap, confidence, seed: The bootstrap.
        scan: How ``order`` was identified (stored with the rule).
    """
    defaults = order.defaults(masks)
    checks = check_thresholds(probs, defaults, scores, thresholds, n_bootstrap=n_bootstrap,
                              confidence=confidence, seed=seed)
    best = choose_threshold(checks)
    common = {"order": tuple(order.to_ids(ids)), "metric": metric, "split": split,
              "users": tuple(str(u) for u in users), "confidence": confidence,
              "n_bootstrap": n_bootstrap, "seed": seed, "checks": tuple(checks), "scan": dict(scan or {})}
    if best is None:
        return GateRule(threshold=None, **common)
    return GateRule(threshold=best.threshold, gain=best.gain, low=best.low, high=best.high, **common)


def needed_templates(probs: np.ndarray, order: FallbackOrder, masks: np.ndarray) -> np.ndarray:
    """``(n, T)`` bool: the scores :func:`validate_gate` reads (each user's default and greedy template)."""
    need = np.zeros(masks.shape, dtype=bool)
    if len(masks) == 0:
        return need
    rows = np.arange(len(masks))
    need[rows, order.defaults(masks)] = True
    need[rows, np.asarray(probs).argmax(axis=1)] = True
    return need & masks


# ---------------------------------------------------------------------- the selector
@dataclass(frozen=True)
class GateDecision:
    """Per user: the default, the policy's greedy template, its margin, the choice, whether it deviates."""

    defaults: np.ndarray
    greedy: np.ndarray
    margins: np.ndarray
    choices: np.ndarray

    @property
    def deviates(self) -> np.ndarray:
        return self.choices != self.defaults


class GatedSelector:
    """The safe policy as a selector: :func:`gate_choices` over a ranked fallback default.

    Args:
        policy: The learned policy (``action_probabilities``).
        order: The ranked fallback list (defaults per user).
        threshold: The rule's margin (``None``: never deviate).
        masks: ``user -> (T,) bool`` of the context the choice is scored on.
        n_templates: The catalog size.
        name: Report name (``policy``).
    """

    def __init__(
        self,
        policy: ProbabilisticPolicy,
        order: FallbackOrder,
        threshold: float | None,
        masks: MaskFn,
        n_templates: int,
        *,
        name: str = "policy",
    ) -> None:
        self.policy, self.order, self.threshold = policy, order, threshold
        self.masks, self.n_templates, self.name = masks, n_templates, name

    @classmethod
    def from_rule(cls, policy: ProbabilisticPolicy, rule: GateRule, ids: Sequence[str], masks: MaskFn,
                  *, name: str = "policy") -> GatedSelector:
        return cls(policy, rule.fallback(ids), rule.threshold, masks, len(ids), name=name)

    def decide(self, users: np.ndarray) -> GateDecision:
        """The whole decision of every user (what the prompt book stores)."""
        users = np.asarray(users, dtype=np.int64)
        masks = stack_masks(self.masks, users, self.n_templates)
        defaults = self.order.defaults(masks)
        if users.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return GateDecision(empty, empty, np.zeros(0), empty)
        probs = np.asarray(self.policy.action_probabilities(users), dtype=np.float64)
        greedy, margins = greedy_margins(probs, defaults)
        choices = gate_choices(probs, defaults, self.threshold)
        # The policy's probabilities already exclude what a user cannot fill; the repair is the
        # one rule for the case where a user can fill none of its high-probability templates.
        choices = self.order.repair(choices, masks)
        return GateDecision(defaults, greedy, margins, choices)

    def select(self, users: np.ndarray) -> np.ndarray:
        return self.decide(users).choices
