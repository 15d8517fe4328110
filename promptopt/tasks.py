"""What a prompt is filled from: a user's context at a point in time and one ranking task."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from promptopt.data.interactions import InteractionData


@dataclass(frozen=True, eq=False)
class UserContext:
    """A user's history strictly before a cut-off, chronological (oldest first).

    Attributes:
        user: Contiguous user index.
        raw_user_id: The dataset's own user id.
        items: Item indices of the history, oldest first.
        ratings: Ratings aligned with ``items`` (``nan`` when unknown).
        timestamps: Unix seconds aligned with ``items``.
        attributes: Known user attributes (age, gender, occupation ...).
    """

    user: int
    raw_user_id: str
    items: tuple[int, ...]
    ratings: tuple[float, ...]
    timestamps: tuple[int, ...]
    attributes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def at(cls, data: InteractionData, user: int, n_history: int) -> UserContext:
        """The first ``n_history`` interactions of ``user`` (the history before row ``n_history``).

        Raises:
            ValueError: ``n_history`` is outside ``0..history_length(user)``.
        """
        rows = data.user_rows(user)
        length = rows.stop - rows.start
        if not 0 <= n_history <= length:
            raise ValueError(
                f"n_history must be in 0..{length} for user {data.user_ids[user]!r}, got {n_history}"
            )
        cut = slice(rows.start, rows.start + n_history)
        return cls(
            user=user,
            raw_user_id=data.user_ids[user],
            items=tuple(data.items[cut].tolist()),
            ratings=tuple(data.ratings[cut].tolist()),
            timestamps=tuple(data.timestamps[cut].tolist()),
            attributes=data.user_attribute(user),
        )

    def __len__(self) -> int:
        return len(self.items)

    def distinct_positions(self) -> list[int]:
        """History positions of each distinct item's latest occurrence, in chronological order.

        Templates list a history item once (e.g. an artist tagged many times) and count a user's
        history in distinct items; hints read the user's recent distinct items.
        """
        seen: set[int] = set()
        keep: list[int] = []
        for pos in range(len(self.items) - 1, -1, -1):
            if self.items[pos] not in seen:
                seen.add(self.items[pos])
                keep.append(pos)
        keep.reverse()
        return keep

    def with_items(self, keep: np.ndarray | list[int]) -> UserContext:
        """A copy holding only the history positions in ``keep`` (kept in chronological order)."""
        keep = sorted(int(k) for k in keep)
        return UserContext(
            user=self.user,
            raw_user_id=self.raw_user_id,
            items=tuple(self.items[k] for k in keep),
            ratings=tuple(self.ratings[k] for k in keep),
            timestamps=tuple(self.timestamps[k] for k in keep),
            attributes=self.attributes,
        )


@dataclass(frozen=True, eq=False)
class RankingTask:
    """One ranking problem: a user's context, a held-out target and the candidates as shown.

    The shown order is part of the task: a prompt lists ``candidates`` in exactly this order, and a
    ranker's answer is read back against exactly this order, so the two can never disagree.

    Attributes:
        task_id: Stable id ``"<raw user>/<target row>/<view>"``.
        context: The history the prompt may use (strictly before the target).
        target: The held-out item index.
        candidates: Item indices in the order shown to the ranker (the target is among them).
        view: ``"base"`` or the name of a drift view (``"temporal"``, ``"dropout"`` ...).
        period: ``"source"`` when the target is before the drift protocol's time cut, else
            ``"target"``.
        target_time: Unix seconds of the target interaction.
    """

    task_id: str
    context: UserContext
    target: int
    candidates: tuple[int, ...]
    view: str = "base"
    period: str = "source"
    target_time: int = 0

    def __post_init__(self) -> None:
        if self.target not in self.candidates:
            raise ValueError(f"task {self.task_id}: target {self.target} is not among the candidates")
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError(f"task {self.task_id}: candidates contain duplicates")

    @property
    def user(self) -> int:
        return self.context.user

    @property
    def target_position(self) -> int:
        """0-based position of the target in the shown order."""
        return self.candidates.index(self.target)
