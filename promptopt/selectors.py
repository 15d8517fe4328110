"""Selectors map users to template indices; the baselines here learn nothing per user.

* :class:`RandomSelector` — a seeded random valid template per user;
* :class:`FixedSelector` / :func:`best_fixed` — one template for everyone, chosen on training users
  by mean reward (falling back to the next best template for a user who cannot fill it);
* :class:`OracleSelector` — the best template in hindsight per user: it scores **every** template
  on the very task it is evaluated on (``n_templates`` calls per user), so it is an optimistic
  upper bound, not a method; its cost is reported in :attr:`OracleSelector.spend`.

Learned selectors (bandits, PPO policies) implement the same :class:`Selector` protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from promptopt.fallback import FallbackOrder
from promptopt.llm.types import Ranker
from promptopt.progress import progress_bar
from promptopt.splits import seeded_rng

if TYPE_CHECKING:
    from promptopt.problem import Outcome, Period, RecProblem

MaskFn = Callable[[int], np.ndarray]


@runtime_checkable
class Selector(Protocol):
    """Picks a template per user.

    Attributes:
        name: Name used in reports (``"random"``, ``"best_fixed"``, ``"oracle"``, ``"policy"``).
    """

    name: str

    def select(self, users: np.ndarray) -> np.ndarray:
        """Shapes: ``users (n,)`` int -> ``(n,)`` int64 template indices."""
        ...


@dataclass(frozen=True)
class Spend:
    """Ranker requests and tokens something cost.

    Attributes:
        calls: Requests sent to the ranker (cached ones included).
        cached: Of those, answers served by a cache.
        tokens: Prompt + completion tokens of all the requests.
    """

    calls: int = 0
    cached: int = 0
    tokens: int = 0

    @property
    def uncached(self) -> int:
        return self.calls - self.cached

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.calls + other.calls, self.cached + other.cached, self.tokens + other.tokens)

    @classmethod
    def of(cls, outcomes: Sequence[Outcome | None]) -> Spend:
        """The total spend of ``outcomes`` (``None`` entries cost nothing)."""
        done = [o for o in outcomes if o is not None]
        return cls(sum(o.calls for o in done), sum(o.cached for o in done),
                   sum(o.usage.total_tokens for o in done))


class RandomSelector:
    """A uniformly random valid template per user, seeded per user (order-independent).

    Args:
        n: Number of templates.
        seed: Seed; the same (seed, user) always gives the same template.
        masks: ``user -> (n,) bool`` valid templates (e.g. ``problem.action_mask``); all when None.
        name: Report name.
    """

    def __init__(self, n: int, seed: int = 0, *, masks: MaskFn | None = None, name: str = "random") -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n = n
        self.seed = seed
        self.masks = masks
        self.name = name

    def select(self, users: np.ndarray) -> np.ndarray:
        out = np.empty(len(users), dtype=np.int64)
        for i, user in enumerate(np.asarray(users, dtype=np.int64)):
            rng = seeded_rng(self.seed, int(user), "random-template")
            valid = np.arange(self.n) if self.masks is None else np.flatnonzero(self.masks(int(user)))
            out[i] = int(valid[rng.integers(len(valid))]) if valid.size else int(rng.integers(self.n))
        return out


class FixedSelector:
    """The same template for every user, or the first valid one of a preference order.

    Args:
        index: The template.
        fallback: Templates to use, in order, for a user who cannot fill ``index``.
        masks: ``user -> (n,) bool`` valid templates; without it ``index`` is always chosen.
        name: Report name.

    Attributes:
        template_means: Mean reward per template on the users it was chosen on (``nan`` = never
            valid), when built by :func:`best_fixed`.
        spend: What choosing it cost.
    """

    def __init__(
        self,
        index: int,
        *,
        fallback: Sequence[int] = (),
        masks: MaskFn | None = None,
        name: str = "fixed",
    ) -> None:
        self.order = (int(index), *(int(i) for i in fallback if int(i) != int(index)))
        self.fallback = FallbackOrder(self.order)
        self.masks = masks
        self.name = name
        self.template_means: np.ndarray | None = None
        self.spend = Spend()

    @property
    def index(self) -> int:
        return self.order[0]

    def select(self, users: np.ndarray) -> np.ndarray:
        out = np.full(len(users), self.order[0], dtype=np.int64)
        if self.masks is None:
            return out
        for i, user in enumerate(np.asarray(users, dtype=np.int64)):
            out[i] = self.fallback.first_fillable(self.masks(int(user)))
        return out


def template_scores(
    problem: RecProblem,
    ranker: Ranker,
    users: Sequence[int] | np.ndarray,
    *,
    metric: str = "reward",
    period: Period | None = None,
    final: bool = False,
    desc: str = "scoring templates",
) -> tuple[np.ndarray, Spend]:
    """Score every valid template for every user: one ``rank`` call per template.

    Args:
        problem: The problem (tasks, masks, reward).
        ranker: The frozen ranker.
        users: Users to score.
        metric: ``"reward"`` (the total) or a base-view metric name such as ``"ndcg@10"``.
        period: Passed to :meth:`RecProblem.run`.
        final: Passed to :meth:`RecProblem.run`.
        desc: What the progress bar says (one step per template).

    Returns:
        ``(n_users, n_templates)`` scores (``nan`` where a template is invalid for the user or the
        user has no task) and the spend.
    """
    users = np.asarray(users, dtype=np.int64)
    scores = np.full((users.size, problem.n_templates), np.nan)
    spend = Spend()
    with progress_bar(total=problem.n_templates, desc=desc, unit="template") as bar:
        for template in range(problem.n_templates):
            rows = [i for i, u in enumerate(users)
                    if problem.action_mask(int(u), period=period, final=final)[template]]
            if rows:
                outcomes = problem.run(users[rows], [template] * len(rows), ranker, period=period,
                                       final=final)
                spend = spend + Spend.of(outcomes)
                for i, outcome in zip(rows, outcomes):
                    if outcome is not None:
                        scores[i, template] = _value(outcome, metric)
            bar.update(1)
    return scores, spend


def _value(outcome: Outcome, metric: str) -> float:
    if metric == "reward":
        return outcome.reward.total
    return outcome.metrics["base"][metric]


def best_fixed(
    problem: RecProblem,
    ranker: Ranker,
    users: Sequence[int] | np.ndarray,
    *,
    metric: str = "reward",
    name: str = "best_fixed",
) -> FixedSelector:
    """The template with the highest mean ``metric`` on ``users`` (choose on training users).

    Every valid (user, template) pair is scored once. Templates are ranked by their mean over
    the users who can fill them; the selector falls back along that ranking for users who cannot
    fill the winner. Ties go to the lower index.

    Raises:
        ValueError: No user could be scored with any template.
    """
    scores, spend = template_scores(problem, ranker, users, metric=metric,
                                    desc=f"{name}: every template on {len(users)} users")
    counts = np.isfinite(scores).sum(axis=0)
    if not counts.any():
        raise ValueError("best_fixed: no (user, template) pair could be scored; pass users with tasks")
    means = np.where(counts > 0, np.nansum(scores, axis=0) / np.maximum(counts, 1), np.nan)
    order = sorted(range(problem.n_templates),
                   key=lambda t: (-means[t] if np.isfinite(means[t]) else np.inf, t))
    selector = FixedSelector(order[0], fallback=order[1:], masks=problem.action_mask, name=name)
    selector.template_means = means
    selector.spend = spend
    return selector


class OracleSelector:
    """The best template in hindsight for each user (an optimistic upper bound).

    :meth:`select` scores every valid template on each user's own task (the task the evaluation
    then scores), so it costs ``n_templates x calls_per_episode`` requests per user.

    Args:
        problem: The problem.
        ranker: The ranker the evaluation uses (wrap it in a cache so the evaluation's repeat
            call of the chosen template is free).
        metric: ``"reward"`` or a base-view metric name.
        period: Passed to :meth:`RecProblem.run` (use the same as the evaluation).
        final: Passed to :meth:`RecProblem.run` (use the same as the evaluation).
        name: Report name.

    Attributes:
        spend: Accumulated cost of all :meth:`select` calls.
        last_scores: ``(n_users, n_templates)`` scores of the last call.
    """

    def __init__(
        self,
        problem: RecProblem,
        ranker: Ranker,
        *,
        metric: str = "reward",
        period: Period | None = None,
        final: bool = False,
        name: str = "oracle",
    ) -> None:
        self.problem = problem
        self.ranker = ranker
        self.metric = metric
        self.period = period
        self.final = final
        self.name = name
        self.spend = Spend()
        self.last_scores: np.ndarray | None = None

    def select(self, users: np.ndarray) -> np.ndarray:
        scores, spend = template_scores(self.problem, self.ranker, users, metric=self.metric,
                                        period=self.period, final=self.final,
                                        desc=f"{self.name}: every template on {len(users)} users")
        self.spend = self.spend + spend
        self.last_scores = scores
        filled = np.where(np.isfinite(scores), scores, -np.inf)
        return filled.argmax(axis=1).astype(np.int64)
