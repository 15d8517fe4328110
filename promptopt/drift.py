"""Drift views: the same user's ranking task as the prompt would face it under data drift.

Every view is a real ranking task (its own history, target and candidates) that the ranker is
called on; the reward's robustness term aggregates the views' scores (:mod:`promptopt.reward`).

============================  ===================================================================
view                          what changes (relative to the base task on target row ``r``)
============================  ===================================================================
``temporal``                  the user's **next** interaction (row ``r + 1``) is the target and the
                              history is extended accordingly (it now ends with the base target);
                              uniform negatives as in the base view. When the base target is the
                              user's last interaction there is no next one: the fallback is a
                              *stale history* — the same target, but the history ends
                              ``max(1, round(stale_share * r))`` interactions earlier (what the
                              prompt faces when recent activity has not reached it yet).
``dropout``                   a seeded ``dropout`` share of history items removed (at least one
                              item kept); same target, candidates and shown order.
``truncate``                  only the oldest ``ceil(truncate_keep * n)`` history items kept (at
                              least one); same target, candidates and shown order.
``popular_negatives``         negatives drawn proportionally to popularity (counted on training
                              interactions only); same history and target.
``new_items``                 negatives drawn uniformly among items that first appear in the data
                              after the history's last interaction (or, when fewer than needed, the
                              latest-appearing items); same history and target.
============================  ===================================================================

Under ``split.protocol: deploy`` a view of a source-period task stays in the source period and
simulates the drift from there: the ``temporal`` view's next interaction must be before the time
cut (else the stale-history fallback), ``popular_negatives`` draws by the popularity of the
training rows after a pseudo cut inside the source period (what became popular lately:
:attr:`RecProblem.drift_popularity <promptopt.problem.RecProblem>`), ``new_items`` counts only
items first seen before the cut, and every view's negatives are drawn among items that occur
before it (:class:`~promptopt.splits.TaskBuilder`).

A view never shows its target in its history: every history is a prefix (or a subset of a
prefix) of the interactions before the view's target row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from promptopt.candidates import CandidateSampler
from promptopt.config import DRIFT_VIEWS
from promptopt.data.interactions import InteractionData
from promptopt.splits import TaskBuilder, seeded_rng
from promptopt.tasks import RankingTask, UserContext

__all__ = ["DRIFT_VIEWS", "DriftViews", "shuffled_copy"]


class DriftViews:
    """Builds the drift views of base tasks, deterministically (seeded per task like the base).

    Args:
        data: The dataset.
        builder: The :class:`~promptopt.splits.TaskBuilder` of the base tasks (its seed, sampler
            and time cut are reused, so views are as reproducible as base tasks).
        popularity: ``(n_items,)`` interaction counts on training interactions only.
        dropout: Share of history items the ``dropout`` view removes, in ``[0, 1)``.
        truncate_keep: Share of the (oldest) history the ``truncate`` view keeps, in ``(0, 1]``.
        stale_share: Share of the history the ``temporal`` fallback hides, in ``(0, 1)``.
        next_row: ``(user, row) -> row or None``: the ``temporal`` view's target after ``row``
            (:meth:`~promptopt.episodes.EpisodeTargets.next_row`, which keeps ``deploy``'s
            source-period views before the cut); default: the next interaction, if any.

    Raises:
        ValueError: A share outside its range.
    """

    def __init__(
        self,
        data: InteractionData,
        builder: TaskBuilder,
        *,
        popularity: np.ndarray,
        dropout: float = 0.3,
        truncate_keep: float = 0.5,
        stale_share: float = 0.2,
        next_row: Callable[[int, int], int | None] | None = None,
    ) -> None:
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not 0.0 < truncate_keep <= 1.0:
            raise ValueError(f"truncate_keep must be in (0, 1], got {truncate_keep}")
        if not 0.0 < stale_share < 1.0:
            raise ValueError(f"stale_share must be in (0, 1), got {stale_share}")
        self.data = data
        self.builder = builder
        self.dropout = dropout
        self.truncate_keep = truncate_keep
        self.stale_share = stale_share
        self.next_row = next_row or self._next_interaction
        n_negatives = builder.sampler.n_negatives
        self.popular_sampler = CandidateSampler(
            data.n_items, n_negatives, "popularity", np.asarray(popularity, dtype=np.float64)
        )
        # When each item first appears in the data: a catalogue property (like a release date)
        # used only to pick "new" negatives, never learned from.
        first_seen = np.full(data.n_items, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first_seen, data.items, data.timestamps)
        self._by_first_seen = np.argsort(first_seen, kind="stable")
        self._first_seen_sorted = first_seen[self._by_first_seen]
        # deploy: a source-period task's "new" items are new within the source period.
        self._source_order: tuple[np.ndarray, np.ndarray] | None = None
        if builder.source_only:
            assert builder.time_cut is not None
            early = self._first_seen_sorted < builder.time_cut
            self._source_order = (self._by_first_seen[early], self._first_seen_sorted[early])

    def _next_interaction(self, user: int, row: int) -> int | None:
        return row + 1 if row + 1 < self.data.history_length(user) else None

    def view(self, name: str, base: RankingTask, target_row: int) -> RankingTask:
        """The drift view ``name`` of ``base``, whose target is the user's row ``target_row``.

        Raises:
            ValueError: Unknown view name.
        """
        user = base.user
        if name == "temporal":
            following = self.next_row(user, target_row)
            if following is not None:
                return self.builder.task(user, following, view=name)
            hidden = max(1, round(self.stale_share * target_row))
            stale = UserContext.at(self.data, user, max(1, target_row - hidden))
            if base.target in stale.items:  # a repeated pair: never show the target
                stale = stale.with_items([k for k, i in enumerate(stale.items) if i != base.target])
            return self.builder.task(user, target_row, view=name, context=stale)
        if name == "dropout":
            n = len(base.context)
            n_drop = min(max(n - 1, 0), round(self.dropout * n))
            rng = seeded_rng(self.builder.seed, user, target_row, "dropout-history")
            keep = rng.choice(n, size=n - n_drop, replace=False) if n else np.arange(0)
            return _with_context(base, name, base.context.with_items(keep))
        if name == "truncate":
            n = len(base.context)
            keep = min(n, max(1, math.ceil(self.truncate_keep * n)))
            return _with_context(base, name, base.context.with_items(np.arange(keep)))
        if name == "popular_negatives":
            return self.builder.task(
                user, target_row, view=name, sampler=self.popular_sampler, context=base.context
            )
        if name == "new_items":
            return self.builder.task(
                user, target_row, view=name, sampler=self._new_item_sampler(base), context=base.context
            )
        raise ValueError(f"unknown drift view {name!r}: use one of {', '.join(DRIFT_VIEWS)}")

    def views(self, names: Sequence[str], base: RankingTask, target_row: int) -> list[RankingTask]:
        """:meth:`view` for each name, in order."""
        return [self.view(name, base, target_row) for name in names]

    def _new_item_sampler(self, base: RankingTask) -> CandidateSampler:
        """Uniform negatives among items first seen after the history ends."""
        n_negatives = self.builder.sampler.n_negatives
        order, first_seen = self._by_first_seen, self._first_seen_sorted
        if self._source_order is not None and base.period == "source":
            order, first_seen = self._source_order
        end = base.context.timestamps[-1] if len(base.context) else -1
        start = int(np.searchsorted(first_seen, end, side="right"))
        # Enough items that the user's own (excluded) items cannot exhaust the pool.
        needed = n_negatives + len(self.builder.seen_items(base.user)) + 1
        start = max(0, min(start, order.size - needed))
        return CandidateSampler(self.data.n_items, n_negatives, "uniform", item_pool=order[start:])


def _with_context(base: RankingTask, view: str, context: UserContext) -> RankingTask:
    """``base`` with another history (same target, candidates and shown order)."""
    return RankingTask(
        task_id=_view_id(base.task_id, view),
        context=context,
        target=base.target,
        candidates=base.candidates,
        view=view,
        period=base.period,
        target_time=base.target_time,
    )


def _view_id(task_id: str, view: str) -> str:
    head, _, _ = task_id.rpartition("/")
    return f"{head}/{view}"


def shuffled_copy(task: RankingTask, repeat: int, seed: int) -> RankingTask:
    """The same task with its candidates re-shuffled (position-bias bootstrapping).

    Copy ``repeat`` (>= 1) keeps history, target and candidate set; only the shown order changes,
    seeded by ``(seed, task_id, repeat)``.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1 for a shuffled copy, got {repeat}")
    order = np.array(task.candidates, dtype=np.int64)
    seeded_rng(seed, task.task_id, repeat).shuffle(order)
    return RankingTask(
        task_id=f"{task.task_id}/{repeat}",
        context=task.context,
        target=task.target,
        candidates=tuple(int(x) for x in order),
        view=task.view,
        period=task.period,
        target_time=task.target_time,
    )
