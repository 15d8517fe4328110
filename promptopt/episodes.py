"""Which target a user's episode uses, and the training mask that hides every such target.

An episode is one (user, target row) pair: the row is the position, in the user's chronological
history, of the interaction the episode's ranking task holds out. Which row is decided here, once,
by the protocol (``split.protocol``, docs/env.md "Protocols"):

``leave_last`` (the default)
    * **training users** (``split.train``): their second-to-last interaction (the latest of the
      earlier targets), so the ``temporal`` drift view has a real "next" interaction — the last one;
    * **validation and test users**: their last interaction (the held-out target of the protocol);
    * ``period="source"`` / ``"target"``: the user's latest interaction before / from the drift
      time cut (no target when the user has none).

``deploy`` (learn on the past, deploy on the future)
    Training and validation users live in the **source period**: their episodes follow the
    ``leave_last`` rules on the interactions before the time cut only (training users the
    second-to-last of those, validation users the last; the ``temporal`` view's next row is
    before the cut too, see :meth:`EpisodeTargets.next_row`). Test users (and any user outside
    the training and validation users) are evaluated on their **first** interaction from the cut
    on, with the history up to it: the first with ``split.min_history - 1`` interactions before it
    whose history can fill at least one template of the catalog (``servable``; a user who arrived
    after the cut is scored once the product could serve it a prompt, and a user it never could
    has no target: reports count such users apart, see :meth:`EpisodeTargets.unservable`);
    ``period="target"`` is that first one too, ``period="source"`` the latest before the cut,
    ``period="last"`` (``final=True``) the last.

Whatever the protocol: ``final=True`` is the last interaction for any user (export, per-user
bounds) and ``row=r`` an explicit target row (e.g. the earlier targets of a test user).

:func:`leak_free_mask` is what graphs, hints and popularity may learn from: it holds no
interaction any of these episodes targets (nor the row after it, the ``temporal`` view's target)
and nothing from the drift time cut on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import numpy as np

from promptopt.data.interactions import InteractionData
from promptopt.splits import training_mask

Period = Literal["source", "target", "last"]
"""Which target of a user to evaluate: the drift protocol's periods (a target before the time
cut, one from it on) or ``"last"``, the user's last interaction (as ``final=True``)."""

Protocol = Literal["leave_last", "deploy"]
"""Which targets episodes use (``split.protocol``; the module doc)."""

PROTOCOLS: tuple[str, ...] = ("leave_last", "deploy")

EpisodeKey = tuple[int, int]
"""``(user, target row)`` of an episode; the row is :data:`NO_TARGET` when there is none."""

NO_TARGET = -1
"""The row of an episode key whose user has no target in the asked period."""


class EpisodeTargets:
    """Target rows of episodes (see the module doc), memoised per ``(user, period, final)``.

    Args:
        data: The dataset.
        train_users: The training users (their default episode targets the second-to-last row).
        time_cut: The drift protocol's global time cut (Unix seconds).
        protocol: ``"leave_last"`` or ``"deploy"`` (the module doc).
        val_users: The validation users (``deploy`` keeps their targets before the cut).
        min_history: ``split.min_history``: a ``deploy`` test target keeps at least
            ``min_history - 1`` earlier interactions as its history.
        servable: ``(user, row) -> bool``: whether a target at ``row`` leaves a history that can
            fill at least one template (:class:`~promptopt.problem.RecProblem` passes its action
            mask); a ``deploy`` target-period target is the first such row. ``None``: every row.

    Raises:
        ValueError: An unknown protocol.
    """

    def __init__(
        self,
        data: InteractionData,
        train_users: Iterable[int],
        time_cut: int,
        *,
        protocol: Protocol = "leave_last",
        val_users: Iterable[int] = (),
        min_history: int = 2,
        servable: Callable[[int, int], bool] | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        self.data = data
        self.time_cut = time_cut
        self.protocol = protocol
        self.min_history = max(int(min_history), 2)
        self._servable = servable
        self._train_users = frozenset(int(u) for u in train_users)
        self._val_users = frozenset(int(u) for u in val_users)
        self._source_lengths = source_lengths(data, time_cut)
        self._keys: dict[tuple[int, str | None, bool], EpisodeKey] = {}

    def learns_from(self, user: int) -> bool:
        """Whether ``user``'s default episodes are learned from (``deploy``: training and validation
        users, whose targets stay before the cut)."""
        return int(user) in self._train_users or int(user) in self._val_users

    def source_length(self, user: int) -> int:
        """How many of the user's interactions are before the time cut."""
        return int(self._source_lengths[user])

    def horizon(self, user: int) -> int:
        """How many of the user's first interactions its default episodes may target: all of them,
        or under ``deploy`` for a training or validation user, those before the time cut."""
        if self.protocol == "deploy" and self.learns_from(user):
            return self.source_length(user)
        return self.data.history_length(user)

    def target_row(self, user: int, *, period: Period | None = None, final: bool = False) -> int | None:
        """Row of the user's episode target; ``None`` when the user has none (a ``period`` without
        an interaction, or under ``deploy`` a user without one on its side of the cut).

        Raises:
            ValueError: The user has fewer than 2 interactions, or an unknown ``period``.
        """
        length = self.data.history_length(user)
        if length < 2:
            raise ValueError(
                f"user {self.data.user_ids[user]!r} has {length} interaction(s); a task needs >= 2"
            )
        if period == "last":
            return length - 1
        if period is not None:
            if period not in ("source", "target"):
                raise ValueError(f"period must be 'source', 'target', 'last' or None, got {period!r}")
            if period == "target" and self.protocol == "deploy":
                # The first with a history to show that some template can fill.
                servable = self._servable
                found = (r for r in self._deploy_rows(user) if servable is None or servable(int(user), r))
                return next(found, None)
            rows = self.data.user_rows(user)
            times = self.data.timestamps[rows.start + 1:rows.stop]
            hits = np.flatnonzero(times < self.time_cut if period == "source" else times >= self.time_cut)
            return int(hits[-1]) + 1 if hits.size else None
        if final:
            return length - 1
        if self.protocol == "deploy":
            if not self.learns_from(user):
                return self.target_row(user, period="target")
            length = self.source_length(user)
            if length < 2:
                return None
        if int(user) not in self._train_users or length < 3:
            return length - 1
        return length - 2

    def unservable(self, users: Iterable[int]) -> list[int]:
        """The ``users`` with interactions from the time cut on whose ``deploy`` target-period
        target does not exist because no history there can fill a template (``[]`` under
        ``leave_last``). Evaluations drop users without a target; reports count these apart.
        """
        if self.protocol != "deploy" or self._servable is None:
            return []
        return [u for u in map(int, users)
                if self._deploy_rows(u) and self.target_row(u, period="target") is None]

    def _deploy_rows(self, user: int) -> range:
        """The rows a ``deploy`` target-period target may be: from the time cut on (histories are
        chronological, so they follow the user's :meth:`source_length` rows), keeping at least
        ``min_history - 1`` interactions (and one) before them."""
        start = max(self.source_length(user), self.min_history - 1, 1)
        return range(start, self.data.history_length(user))

    def next_row(self, user: int, row: int) -> int | None:
        """The ``temporal`` drift view's target after row ``row``: the next interaction, or ``None``
        when there is none (or, under ``deploy``, when ``row`` is before the cut and the next is
        not: a view built in the source period stays in it)."""
        if row + 1 >= self.data.history_length(user):
            return None
        if self.protocol == "deploy":
            start = self.data.user_rows(user).start
            times = self.data.timestamps
            if times[start + row] < self.time_cut <= times[start + row + 1]:
                return None
        return row + 1

    def training_rows(self, user: int, count: int, *, n_targets: int, temporal: bool) -> list[int]:
        """Target rows of a training user's episodes: its episode target, then up to ``count - 1`` more.

        The others are the user's remaining split targets (the last ``n_targets`` interactions of
        its :meth:`horizon`, each keeping at least one history item), nearest to the episode target
        first, the later one first on a tie; the horizon's last interaction is left out when
        ``temporal`` (the temporal drift view of an episode needs the interaction after its
        target). Every such row is hidden from :func:`leak_free_mask`. A user who is not a training
        user gets its one episode target.

        Raises:
            ValueError: The user has no episode target (``deploy``: fewer than 2 interactions
                before the cut).
        """
        episode = self.target_row(user)
        if episode is None:
            raise ValueError(
                f"user {self.data.user_ids[user]!r} has no {self.protocol} episode target "
                f"({self.source_length(user)} interaction(s) before the time cut): split users with "
                f"split.protocol={self.protocol}"
            )
        if count <= 1 or int(user) not in self._train_users:
            return [episode]
        length = self.horizon(user)
        others = [r for r in range(max(1, length - n_targets), length)
                  if r != episode and not (temporal and r == length - 1)]
        others.sort(key=lambda r: (abs(r - episode), -r))
        return [episode, *others[:count - 1]]

    def key(
        self, user: int, period: Period | None = None, final: bool = False, row: int | None = None
    ) -> EpisodeKey:
        """``(user, target row)`` of the episode; an explicit ``row`` wins over ``period`` / ``final``."""
        if row is not None:
            return (int(user), int(row))
        memo = (user, period, final)
        found = self._keys.get(memo)
        if found is None:
            target = self.target_row(user, period=period, final=final)
            found = self._keys[memo] = (int(user), NO_TARGET if target is None else int(target))
        return found


def source_lengths(data: InteractionData, time_cut: int) -> np.ndarray:
    """``(n_users,)`` int64: how many of each user's interactions are before ``time_cut``.

    Histories are chronological, so these are each user's first rows.
    """
    before = np.concatenate([[0], np.cumsum(data.timestamps < time_cut)])
    offsets = data.user_offsets
    return (before[offsets[1:]] - before[offsets[:-1]]).astype(np.int64)


def leak_free_mask(
    data: InteractionData, *, n_targets: int, time_cut: int, protocol: Protocol = "leave_last"
) -> np.ndarray:
    """:func:`~promptopt.splits.training_mask` that also hides every row an episode may target.

    Per user, rows from the earliest possible target on are hidden (the earlier targets of
    :func:`~promptopt.splits.target_rows`, the second-to-last row of training episodes, the
    latest source-period row of ``period="source"`` episodes; under ``deploy`` the last
    ``n_targets`` interactions before the cut, which training and validation episodes target),
    and so is everything from the time cut on. With repeated (user, item) pairs, earlier
    interactions with a hidden row's item are hidden too, so a target can never be learned from.

    Args:
        data: The dataset.
        n_targets: ``split.n_targets`` (at least 2 rows are hidden per user: training episodes
            target the second-to-last one).
        time_cut: The drift time cut (Unix seconds).
        protocol: ``split.protocol`` (the module doc).

    Shapes:
        Returns ``(n_interactions,)`` bool.
    """
    n_targets = max(n_targets, 2)
    mask = training_mask(data, n_targets=n_targets, time_cut=time_cut)
    offsets = data.user_offsets
    sources = source_lengths(data, time_cut) if protocol == "deploy" else None
    for user in range(data.n_users):
        start, stop = int(offsets[user]), int(offsets[user + 1])
        length = stop - start
        if length < 2:
            continue
        first = max(1, length - n_targets)
        before = np.flatnonzero(data.timestamps[start + 1:stop] < time_cut)
        if before.size:
            first = min(first, int(before[-1]) + 1)
        if sources is not None:
            first = min(first, max(1, int(sources[user]) - n_targets))
        mask[start + first:stop] = False
        items = data.items[start:stop]
        if np.unique(items).size < length:  # repeated pairs
            mask[start:start + first] &= ~np.isin(items[:first], items[first:])
    return mask
