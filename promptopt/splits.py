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

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from promptopt.candidates import CandidateSampler
from promptopt.data.interactions import InteractionData
from promptopt.tasks import RankingTask, UserContext


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
) -> UserSplit:
    """Split users with at least ``min_history`` interactions, stratified by history length.

    Users are sorted by history length into strata of ~10 users; each stratum is shuffled with
    ``seed`` and dealt into the three parts in proportion, so every part sees short and long
    histories alike.

    Args:
        data: The dataset.
        val_fraction: Share of eligible users for validation.
        test_fraction: Share of eligible users for testing.
        min_history: Users with fewer interactions are left out (they cannot give a history and
            a target).
        seed: Seed of the shuffle.
        max_users: Keep at most this many eligible users (a seeded subsample), for quick runs.

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
    eligible = np.flatnonzero(lengths >= max(min_history, 2))
    if eligible.size == 0:
        raise ValueError(
            f"no user has >= {max(min_history, 2)} interactions: lower split.min_history"
        )
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
            owed += shares
            part = int(np.argmax(owed))
            owed[part] -= 1.0
            parts[part].append(int(user))
    return UserSplit(*(np.array(sorted(p), dtype=np.int64) for p in parts))


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
    """

    def __init__(
        self,
        data: InteractionData,
        sampler: CandidateSampler,
        *,
        seed: int = 0,
        time_cut: int | None = None,
    ) -> None:
        self.data = data
        self.sampler = sampler
        self.seed = seed
        self.time_cut = time_cut
        self._seen: dict[int, np.ndarray] = {}

    def seen_items(self, user: int) -> np.ndarray:
        """Every item the user ever interacted with (never drawn as a negative)."""
        seen = self._seen.get(user)
        if seen is None:
            seen = np.unique(self.data.items[self.data.user_rows(user)])
            self._seen[user] = seen
        return seen

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
        candidates = (sampler or self.sampler).sample(target, self.seen_items(user), rng)
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
