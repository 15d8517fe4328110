"""The in-memory dataset every other module reads: users, items with text, timed interactions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from promptopt.errors import DataFormatError


@dataclass(frozen=True, eq=False)
class InteractionData:
    """Users, items and timed interactions with contiguous integer indices.

    Users and items are indexed ``0..n-1``; ``user_ids`` / ``item_ids`` map an index back to the
    dataset's raw id. Interactions are stored column-wise and sorted by user, then time (ties keep
    file order), so a user's history is one contiguous slice (see :attr:`user_offsets`).

    Build it with :meth:`from_raw` (raw ids, validated and mapped) or directly with indices.

    Attributes:
        name: A short dataset name used in reports (``"ml-100k"``, ``"synthetic"``).
        user_ids: Raw user id of each user index.
        item_ids: Raw item id of each item index.
        item_titles: Display title of each item.
        item_genres: Genres (or tags) of each item, possibly empty.
        item_years: Release year of each item, ``None`` when unknown.
        users: ``int64`` user index of each interaction.
        items: ``int64`` item index of each interaction.
        ratings: ``float32`` rating of each interaction (``nan`` when the dataset has none).
        timestamps: ``int64`` Unix seconds of each interaction.
        item_extra: Further item text fields by name (e.g. ``{"url": (...)}``).
        user_attributes: User attributes by name (e.g. ``{"age": ("24", ...)}``), ``None`` = unknown.
        genre_names: The dataset's genre vocabulary in its own order, when it has one.
    """

    name: str
    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    item_titles: tuple[str, ...]
    item_genres: tuple[tuple[str, ...], ...]
    item_years: tuple[int | None, ...]
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    item_extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    user_attributes: Mapping[str, tuple[str | None, ...]] = field(default_factory=dict)
    genre_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n_items = len(self.item_ids)
        for name, column in (("item_titles", self.item_titles), ("item_genres", self.item_genres),
                             ("item_years", self.item_years), *self.item_extra.items()):
            if len(column) != n_items:
                raise DataFormatError(
                    f"{self.name}: {name} has {len(column)} entries but there are {n_items} items"
                )
        for name, column in self.user_attributes.items():
            if len(column) != len(self.user_ids):
                raise DataFormatError(
                    f"{self.name}: user attribute {name!r} has {len(column)} entries "
                    f"but there are {len(self.user_ids)} users"
                )
        _check_unique(self.user_ids, f"{self.name}: user id")
        _check_unique(self.item_ids, f"{self.name}: item id")
        users = np.asarray(self.users, dtype=np.int64)
        items = np.asarray(self.items, dtype=np.int64)
        ratings = np.asarray(self.ratings, dtype=np.float32)
        timestamps = np.asarray(self.timestamps, dtype=np.int64)
        n = len(users)
        if not (len(items) == len(ratings) == len(timestamps) == n):
            raise DataFormatError(
                f"{self.name}: interaction columns differ in length (users={n}, items={len(items)}, "
                f"ratings={len(ratings)}, timestamps={len(timestamps)})"
            )
        _check_range(users, len(self.user_ids), f"{self.name}: interaction", "user index")
        _check_range(items, n_items, f"{self.name}: interaction", "item index")
        negative = np.flatnonzero(timestamps < 0)
        if negative.size:
            row = int(negative[0])
            raise DataFormatError(
                f"{self.name}: interaction row {row} has a negative timestamp {timestamps[row]} "
                "(expected Unix seconds >= 0)"
            )
        order = np.lexsort((np.arange(n), timestamps, users))
        for attr, column in (("users", users), ("items", items), ("ratings", ratings),
                             ("timestamps", timestamps)):
            column = column[order]
            column.setflags(write=False)
            object.__setattr__(self, attr, column)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_raw(
        cls,
        name: str,
        *,
        items: Sequence[tuple[str, str, Sequence[str], int | None]],
        interactions: Sequence[tuple[str, str, float, int]],
        item_extra: Mapping[str, Sequence[str]] | None = None,
        users: Sequence[str] | None = None,
        user_attributes: Mapping[str, Sequence[str | None]] | None = None,
        genre_names: Sequence[str] = (),
        source: str = "",
    ) -> InteractionData:
        """Map raw ids to contiguous indices and validate.

        Args:
            name: Dataset name.
            items: ``(raw_item_id, title, genres, year)`` rows.
            interactions: ``(raw_user_id, raw_item_id, rating, unix_seconds)`` rows; rating may be
                ``nan``.
            item_extra: Further item text columns aligned with ``items``.
            users: Raw user ids in the order of ``user_attributes``; defaults to the users seen in
                ``interactions`` in order of first appearance.
            user_attributes: Attribute columns aligned with ``users``.
            genre_names: The genre vocabulary.
            source: Where the rows came from (a path), used in error messages.

        Raises:
            DataFormatError: Duplicate item or user ids, an interaction naming an unknown item,
                or a negative timestamp; the message names the offending row.
        """
        where = f"{source}: " if source else f"{name}: "
        item_index: dict[str, int] = {}
        for row, (raw, *_rest) in enumerate(items):
            if raw in item_index:
                raise DataFormatError(f"{where}duplicate item id {raw!r} in item row {row}")
            item_index[raw] = row
        user_index: dict[str, int] = {}
        if users is not None:
            for row, raw in enumerate(users):
                if raw in user_index:
                    raise DataFormatError(f"{where}duplicate user id {raw!r} in user row {row}")
                user_index[raw] = row
        n = len(interactions)
        u = np.empty(n, dtype=np.int64)
        i = np.empty(n, dtype=np.int64)
        r = np.empty(n, dtype=np.float32)
        t = np.empty(n, dtype=np.int64)
        fixed_users = users is not None
        for row, (raw_user, raw_item, rating, ts) in enumerate(interactions):
            item = item_index.get(raw_item)
            if item is None:
                raise DataFormatError(
                    f"{where}interaction row {row} names item {raw_item!r}, which is not in the item "
                    "table (add it to the items file or drop the row)"
                )
            user = user_index.get(raw_user)
            if user is None:
                if fixed_users:
                    raise DataFormatError(
                        f"{where}interaction row {row} names user {raw_user!r}, which is not in the "
                        "user table"
                    )
                user = user_index.setdefault(raw_user, len(user_index))
            if ts < 0:
                raise DataFormatError(
                    f"{where}interaction row {row} has a negative timestamp {ts} (expected Unix "
                    "seconds >= 0)"
                )
            u[row], i[row], r[row], t[row] = user, item, rating, ts
        return cls(
            name=name,
            user_ids=tuple(user_index),
            item_ids=tuple(item_index),
            item_titles=tuple(row[1] for row in items),
            item_genres=tuple(tuple(row[2]) for row in items),
            item_years=tuple(row[3] for row in items),
            users=u,
            items=i,
            ratings=r,
            timestamps=t,
            item_extra={k: tuple(v) for k, v in (item_extra or {}).items()},
            user_attributes={k: tuple(v) for k, v in (user_attributes or {}).items()},
            genre_names=tuple(genre_names),
        )

    # ------------------------------------------------------------------ views
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.users)

    @property
    def has_ratings(self) -> bool:
        return bool(np.isfinite(self.ratings).any())

    @cached_property
    def user_offsets(self) -> np.ndarray:
        """``int64`` array of shape ``(n_users + 1,)``: user ``u``'s rows are ``offsets[u]:offsets[u+1]``."""
        counts = np.bincount(self.users, minlength=self.n_users)
        offsets = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        offsets.setflags(write=False)
        return offsets

    def user_rows(self, user: int) -> slice:
        """The interaction rows of ``user``, chronological."""
        return slice(int(self.user_offsets[user]), int(self.user_offsets[user + 1]))

    def history_length(self, user: int) -> int:
        return int(self.user_offsets[user + 1] - self.user_offsets[user])

    @cached_property
    def history_lengths(self) -> np.ndarray:
        """``int64`` array ``(n_users,)`` of interactions per user."""
        return np.diff(self.user_offsets)

    @cached_property
    def item_popularity(self) -> np.ndarray:
        """``int64`` array ``(n_items,)``: number of interactions of each item (whole dataset)."""
        return np.bincount(self.items, minlength=self.n_items)

    def item_text(self, item: int) -> str:
        """A one-line description of an item: title plus genres, used by embedding rankers."""
        genres = self.item_genres[item]
        title = self.item_titles[item]
        return f"{title} ({', '.join(genres)})" if genres else title

    def user_attribute(self, user: int) -> dict[str, str]:
        """The known attributes of ``user`` (attributes that are ``None`` are left out)."""
        return {
            name: value
            for name, column in self.user_attributes.items()
            if (value := column[user]) is not None and value != ""
        }

    def describe(self) -> str:
        return (
            f"{self.name}: {self.n_users} users, {self.n_items} items, "
            f"{self.n_interactions} interactions"
        )


def _check_unique(ids: Sequence[str], what: str) -> None:
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        for row, raw in enumerate(ids):
            if raw in seen:
                raise DataFormatError(f"{what} {raw!r} appears twice (second time at row {row})")
            seen.add(raw)


def _check_range(values: np.ndarray, n: int, where: str, what: str) -> None:
    bad = np.flatnonzero((values < 0) | (values >= n))
    if bad.size:
        row = int(bad[0])
        raise DataFormatError(
            f"{where} row {row} has {what} {values[row]} outside 0..{n - 1} (dangling reference)"
        )
