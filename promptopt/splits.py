"""User splits, chronological ranking tasks and the drift protocol's time cut.

Leakage rules, enforced here and tested:

* train / validation / test users are disjoint;
* a task's history is strictly the interactions before its target;
* :func:`training_mask` (the graph policies may learn from) keeps, per user, only interactions
  before that user's earliest target row and before the drift time cut.

Datasets with repeated (user, item) pairs (the file loaders keep one per pair, but
:class:`InteractionData` allows repeats) keep the rules too: an earlier occurrence of a task's
target item is left out of the task's history, and of the training mask.
"""

from __future__ import annotations

import weakref
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from promptopt.candidates import CandidateSampler
from promptopt.data.interactions import InteractionData
from promptopt.tasks import RankingTask, UserContext

if TYPE_CHECKING:
    from promptopt.config import SplitConfig


@dataclass(frozen=True, eq=False)
class UserSplit:
    """Disjoint user indices for training, validation and testing."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        sets = [set(map(int, self.train)), set(map(int, self.val)), set(map(int, self.test))]
        if sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2]:
            raise ValueError("train, validation and test users overlap")

    def pool(self, name: str) -> np.ndarray:
        """The users of split ``name`` (``"train"``, ``"val"`` or ``"test"``)."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {name!r}")
        return getattr(self, name)


def split_users(
    data: InteractionData,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    min_history: int = 5,
    seed: int = 0,
    max_users: int | None = None,
    deploy_cut: int | None = None,
) -> UserSplit:
    """Split users with at least ``min_history`` interactions, stratified by history length.

    Users are sorted by history length into strata of ~10 users; each stratum is shuffled with
    ``seed`` and dealt into the three parts in proportion, so every part sees short and long
    histories alike.

    With ``deploy_cut`` (the time cut of ``split.protocol: deploy``), each part holds only users
    who have its targets: training and validation users need ``min_history`` interactions
    before the cut (everything they are learned from is there), test users an interaction from
    the cut on with ``min_history - 1`` before it (their first such one is their target). Users
    with neither are left out; the others are dealt among the parts they can join, in proportion
    to those parts' shares: users who can only be test users (they arrived after the cut) all go
    there, users with no target from the cut on are shared by training and validation, and the
    rest are dealt into all three.

    Args:
        data: The dataset.
        val_fraction: Share of eligible users for validation.
        test_fraction: Share of eligible users for testing.
        min_history: Users with fewer interactions are left out (they cannot give a history and
            a target).
        seed: Seed of the shuffle.
        max_users: Keep at most this many eligible users (a seeded subsample), for quick runs.
        deploy_cut: The ``deploy`` protocol's time cut (Unix seconds); ``None``: ``leave_last``.

    Raises:
        ValueError: Fractions outside ``[0, 1)`` or no eligible users.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}"
        )
    rng = np.random.default_rng(seed)
    lengths = data.history_lengths
    need = max(min_history, 2)
    allowed = _allowed_parts(data, need, deploy_cut)
    eligible = np.flatnonzero((lengths >= need) & allowed.any(axis=1))
    if eligible.size == 0:
        where = "" if deploy_cut is None else " on the side of the time cut their part needs"
        raise ValueError(f"no user has >= {need} interactions{where}: lower split.min_history")
    if max_users is not None and eligible.size > max_users:
        eligible = np.sort(rng.choice(eligible, size=max_users, replace=False))
    order = eligible[np.lexsort((rng.random(eligible.size), lengths[eligible]))]
    parts: list[list[int]] = [[], [], []]
    shares = np.array([1.0 - val_fraction - test_fraction, val_fraction, test_fraction])
    owed = np.zeros(3)
    for start in range(0, order.size, 10):
        stratum = order[start:start + 10].copy()
        rng.shuffle(stratum)
        for user in stratum:
            # Deal each user to the part that is furthest below its share (largest deficit).
            # Among the parts the user can join, in proportion to their shares (all three unless
            # deploy_cut rules some out), so a part's share holds within each kind of user.
            can = allowed[user]
            owed[can] += shares[can] / shares[can].sum()
            part = int(np.argmax(np.where(can, owed, -np.inf)))
            owed[part] -= 1.0
            parts[part].append(int(user))
    return UserSplit(*(np.array(sorted(p), dtype=np.int64) for p in parts))


def split_for(data: InteractionData, split: SplitConfig, *, seed: int) -> UserSplit:
    """:func:`split_users` with the settings of ``split`` (its ``protocol`` included)."""
    cut = time_cut_at_quantile(data, split.drift_quantile) if split.protocol == "deploy" else None
    return split_users(data, val_fraction=split.val_fraction, test_fraction=split.test_fraction,
                       min_history=split.min_history, seed=seed, max_users=split.max_users,
                       deploy_cut=cut)


def check_deploy_split(
    data: InteractionData, split: UserSplit, time_cut: int, *, min_history: int = 2
) -> None:
    """Refuse a split whose users cannot have their ``deploy`` targets (:func:`split_for` makes one
    that can).

    Raises:
        ValueError: A training or validation user with fewer than 2 interactions before the cut,
            or a test user without a target from the cut on; the message names one and the fix.
    """
    allowed = np.concatenate([_allowed_parts(data, 2, time_cut)[:, :2],
                              _allowed_parts(data, min_history, time_cut)[:, 2:]], axis=1)
    for part, name in enumerate(("train", "val", "test")):
        bad = [int(u) for u in split.pool(name) if not allowed[int(u), part]]
        if bad:
            side = "interactions before the time cut" if part < 2 else "target from the time cut on"
            raise ValueError(
                f"split.protocol=deploy: {len(bad)} {name} user(s) lack the {side} (e.g. user "
                f"{data.user_ids[bad[0]]!r}): split them with split_for / split_users(deploy_cut=...)"
            )


def _allowed_parts(data: InteractionData, need: int, deploy_cut: int | None) -> np.ndarray:
    """``(n_users, 3)`` bool: which of train / validation / test each user may join."""
    allowed = np.ones((data.n_users, 3), dtype=bool)
    if deploy_cut is None:
        return allowed
    before = data.timestamps < deploy_cut
    counts = np.concatenate([[0], np.cumsum(before)])
    offsets = data.user_offsets
    n_before = counts[offsets[1:]] - counts[offsets[:-1]]
    # Histories are chronological: a test target from the cut on with need - 1 interactions
    # before it exists when the last interaction is from the cut on and there are need in all.
    n_after = data.history_lengths - n_before
    allowed[:, 0] = allowed[:, 1] = n_before >= need
    allowed[:, 2] = (n_after >= 1) & (data.history_lengths >= need)
    return allowed


def target_rows(data: InteractionData, user: int, n_targets: int = 1) -> list[int]:
    """Positions (within the user's history) of the user's targets, oldest first.

    The last interaction is always the final (test) target; ``n_targets - 1`` earlier ones are
    added when the user has enough history (each target keeps at least one history item).
    """
    if n_targets < 1:
        raise ValueError(f"n_targets must be >= 1, got {n_targets}")
    length = data.history_length(user)
    first = max(1, length - n_targets)
    return list(range(first, length))


def time_cut_at_quantile(data: InteractionData, quantile: float) -> int:
    """The global drift time cut: the ``quantile`` of all interaction timestamps (Unix seconds)."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"drift quantile must be in (0, 1), got {quantile}")
    return int(np.quantile(data.timestamps, quantile))


def pseudo_cut(data: InteractionData, time_cut: int, quantile: float) -> int:
    """A cut inside the source period: the ``quantile`` of the timestamps before ``time_cut``.

    ``split.protocol: deploy`` simulates drift from the past with it (the ``popular_negatives``
    view's recent popularity); falls back to ``time_cut`` when nothing is before it.
    """
    before = data.timestamps[data.timestamps < time_cut]
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"drift quantile must be in (0, 1), got {quantile}")
    return int(np.quantile(before, quantile)) if before.size else int(time_cut)


def training_mask(
    data: InteractionData,
    users: Iterable[int] | None = None,
    *,
    n_targets: int = 1,
    time_cut: int | None = None,
) -> np.ndarray:
    """Boolean mask over interactions that a policy's graph may use.

    For each user in ``users`` (default: all), keeps interactions before the user's earliest
    target row (see :func:`target_rows`) and, when ``time_cut`` is given, strictly before it.
    Earlier interactions with one of the user's target items (repeated pairs) are left out too.
    Users outside ``users`` contribute nothing.
    """
    mask = np.zeros(data.n_interactions, dtype=bool)
    pool = range(data.n_users) if users is None else users
    for user in pool:
        user = int(user)
        rows = data.user_rows(user)
        if rows.stop - rows.start < 2:
            continue
        targets = target_rows(data, user, n_targets)
        before = slice(rows.start, rows.start + targets[0])
        target_items = data.items[[rows.start + row for row in targets]]
        mask[before] = ~np.isin(data.items[before], target_items)
    if time_cut is not None:
        mask &= data.timestamps < time_cut
    return mask


def seeded_rng(seed: int, *keys: int | str) -> np.random.Generator:
    """A generator determined by ``seed`` and ``keys`` alone (order-independent task building)."""
    words = [seed & 0xFFFFFFFF]
    for key in keys:
        words.append(zlib.crc32(key.encode()) if isinstance(key, str) else int(key) & 0xFFFFFFFF)
    return np.random.default_rng(words)


class TaskBuilder:
    """Builds :class:`RankingTask` objects for users and target rows, reproducibly.

    Each task's negatives and shown order come from a generator seeded by
    ``(seed, user, target_row, view, repeat)``, so a task is the same whichever order tasks are
    built in, and the policy, every baseline and the oracle see identical candidates.

    Args:
        data: The dataset.
        sampler: The candidate sampler of base views.
        seed: Seed of candidate sampling and shuffling.
        time_cut: Drift time cut in Unix seconds; ``None`` puts every task in the source period.
        source_only: ``split.protocol: deploy``: a task whose target is before ``time_cut`` draws
            its negatives among the items that occur before the cut and excludes only what the
            user had seen before it, so nothing from the cut on shapes a source-period task.
    """

    def __init__(
        self,
        data: InteractionData,
        sampler: CandidateSampler,
        *,
        seed: int = 0,
        time_cut: int | None = None,
        source_only: bool = False,
    ) -> None:
        if source_only and time_cut is None:
            raise ValueError("source_only needs a time_cut")
        self.data = data
        self.sampler = sampler
        self.seed = seed
        self.time_cut = time_cut
        self.source_only = source_only
        self._seen: dict[tuple[int, bool], np.ndarray] = {}
        self._source_samplers: weakref.WeakKeyDictionary[CandidateSampler, CandidateSampler] = (
            weakref.WeakKeyDictionary())
        self.source_items: np.ndarray | None = None
        """Items that occur before the cut (``source_only``; ``None`` otherwise)."""
        if source_only:
            self.source_items = np.unique(data.items[data.timestamps < time_cut])

    def __getstate__(self) -> dict:
        """Picklable (subprocess env workers): the weak memo of restricted samplers is dropped."""
        state = dict(self.__dict__)
        state["_source_samplers"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._source_samplers = weakref.WeakKeyDictionary()

    def seen_items(self, user: int, *, source: bool = False) -> np.ndarray:
        """Every item the user ever interacted with (never drawn as a negative); with ``source``
        (a ``source_only`` source-period task), only those before the time cut."""
        source = source and self.source_only
        seen = self._seen.get((user, source))
        if seen is None:
            rows = self.data.user_rows(user)
            items = self.data.items[rows]
            if source:
                items = items[self.data.timestamps[rows] < self.time_cut]
            seen = self._seen[(user, source)] = np.unique(items)
        return seen

    def source_sampler(self, sampler: CandidateSampler) -> CandidateSampler:
        """``sampler`` restricted to :attr:`source_items` (memoised per sampler)."""
        assert self.source_items is not None
        found = self._source_samplers.get(sampler)
        if found is None:
            found = self._source_samplers[sampler] = sampler.within(self.source_items)
        return found

    def task(
        self,
        user: int,
        target_row: int,
        *,
        view: str = "base",
        sampler: CandidateSampler | None = None,
        context: UserContext | None = None,
        repeat: int = 0,
    ) -> RankingTask:
        """The task whose target is the user's ``target_row``-th interaction.

        Args:
            user: User index.
            target_row: Position of the target within the user's history (>= 1).
            view: Name of the view, part of the task id and of the seed.
            sampler: Another sampler (a drift view's popularity negatives).
            context: Another history (a drift view's perturbed history); defaults to everything
                before ``target_row``.
            repeat: Index of a re-shuffled copy (position-bias bootstrapping).
        """
        row = self._row(user, target_row)
        target = int(self.data.items[row])
        target_time = int(self.data.timestamps[row])
        rng = seeded_rng(self.seed, user, target_row, view, repeat)
        sampler = sampler or self.sampler
        source = self.source_only and self._period_of(target_time) == "source"
        if source:
            sampler = self.source_sampler(sampler)
        candidates = sampler.sample(target, self.seen_items(user, source=source), rng)
        return RankingTask(
            task_id=f"{self.data.user_ids[user]}/{target_row}/{view}" + (f"/{repeat}" if repeat else ""),
            context=self.context(user, target_row) if context is None else context,
            target=target,
            candidates=candidates,
            view=view,
            period=self._period_of(target_time),
            target_time=target_time,
        )

    def context(self, user: int, target_row: int) -> UserContext:
        """The history a task on ``target_row`` shows by default, without building the task.

        Every interaction before the target, less earlier occurrences of the target item (a
        repeated pair must not show its target). Cheap: no candidates are drawn.
        """
        row = self._row(user, target_row)
        target = int(self.data.items[row])
        context = UserContext.at(self.data, user, target_row)
        if target in context.items:  # a repeated pair: the target must not be in its history
            context = context.with_items([k for k, item in enumerate(context.items) if item != target])
        return context

    def period(self, user: int, target_row: int) -> str:
        """``"source"`` or ``"target"``: the period of a task on ``target_row`` (see :meth:`task`)."""
        return self._period_of(int(self.data.timestamps[self._row(user, target_row)]))

    def _period_of(self, target_time: int) -> str:
        return "source" if self.time_cut is None or target_time < self.time_cut else "target"

    def _row(self, user: int, target_row: int) -> int:
        """The interaction index of the user's ``target_row``-th interaction (checked)."""
        rows = self.data.user_rows(user)
        length = rows.stop - rows.start
        if not 1 <= target_row < length:
            raise ValueError(
                f"target_row must be in 1..{length - 1} for user {self.data.user_ids[user]!r}, "
                f"got {target_row}"
            )
        return rows.start + target_row

    def tasks(self, users: Sequence[int] | np.ndarray, n_targets: int = 1) -> list[RankingTask]:
        """Base-view tasks for every user and each of their ``n_targets`` targets."""
        return [
            self.task(int(user), row)
            for user in users
            for row in target_rows(self.data, int(user), n_targets)
        ]
