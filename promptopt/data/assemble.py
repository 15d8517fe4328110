"""Turning parsed file rows into a validated :class:`InteractionData`, with file-and-line errors."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from promptopt.data.interactions import InteractionData
from promptopt.errors import DataFormatError

logger = logging.getLogger(__name__)

UnknownItems = Literal["error", "drop"]

_TITLE_YEAR = re.compile(r"\((\d{4})(?:\s*[-–]\s*\d{0,4})?\)\s*$")


def year_from_title(title: str) -> int | None:
    """The release year at the end of a MovieLens title: ``"Toy Story (1995)"`` -> ``1995``.

    Series spans (``"Fawlty Towers (1975-1979)"``) give their first year; a title without a
    plausible year (1870..2100) gives ``None``.
    """
    match = _TITLE_YEAR.search(title)
    if match is None:
        return None
    year = int(match.group(1))
    return year if 1870 <= year <= 2100 else None


@dataclass
class InteractionRows:
    """Interaction rows as read from one file, with the line each came from.

    Attributes:
        path: The file the rows came from.
        users: Raw user ids.
        items: Raw item ids.
        ratings: Ratings (``nan`` when the dataset has none).
        timestamps: Unix seconds.
        lines: 1-based line number of each row in ``path``.
    """

    path: Path
    users: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    ratings: list[float] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def append(self, user: str, item: str, rating: float, timestamp: int, line: int) -> None:
        self.users.append(user)
        self.items.append(item)
        self.ratings.append(rating)
        self.timestamps.append(timestamp)
        self.lines.append(line)

    def __len__(self) -> int:
        return len(self.users)


def assemble(
    name: str,
    *,
    items: Sequence[tuple[str, str, Sequence[str], int | None]],
    items_path: Path,
    rows: InteractionRows,
    item_extra: Mapping[str, Sequence[str]] | None = None,
    users: Sequence[str] | None = None,
    users_path: Path | None = None,
    user_attributes: Mapping[str, Sequence[str | None]] | None = None,
    genre_names: Sequence[str] = (),
    unknown_items: UnknownItems = "error",
    item_lines: Sequence[int] | None = None,
    user_lines: Sequence[int] | None = None,
    unit: str = "line",
) -> InteractionData:
    """Validate references, keep each (user, item) pair's earliest interaction, build the data.

    A user meets an item at most once in :class:`InteractionData`, so a ranking target can never
    also appear in its own history; repeated pairs (re-ratings, several tags on one artist) keep
    the earliest row and the count of dropped repeats is logged.

    Args:
        name: Dataset name.
        items: ``(raw_item_id, title, genres, year)`` rows.
        items_path: The file the items came from (error messages).
        rows: The interaction rows.
        item_extra: Further item columns aligned with ``items``.
        users: Raw user ids of a user table (rows naming another user fail), or ``None``.
        users_path: The file the users came from (error messages).
        user_attributes: Attribute columns aligned with ``users``.
        genre_names: The genre vocabulary.
        unknown_items: ``"error"``: an interaction naming an item missing from the item file
            fails with its line; ``"drop"``: such rows are dropped and counted in a warning.
        item_lines: Line of each item in ``items_path`` (duplicate ids are reported by line).
        user_lines: Line of each user in ``users_path``.
        unit: ``"line"`` for text files, ``"row"`` for Parquet.

    Raises:
        DataFormatError: A duplicate item or user id, or an interaction naming an unknown item
            (with ``"error"``) or user; the message names the file and line.
    """
    check_unique([row[0] for row in items], item_lines, items_path, "item", unit)
    if users is not None:
        check_unique(users, user_lines, users_path, "user", unit)
    item_index = {row[0]: k for k, row in enumerate(items)}
    n = len(rows)
    item_of = np.fromiter((item_index.get(raw, -1) for raw in rows.items), dtype=np.int64, count=n)
    lines = np.asarray(rows.lines, dtype=np.int64)
    unknown = np.flatnonzero(item_of < 0)
    if unknown.size:
        k = int(unknown[0])
        if unknown_items == "error":
            raise DataFormatError(
                f"{rows.path}, {unit} {lines[k]}: item {rows.items[k]!r} is not in {items_path} "
                "(add it to the item file or remove the line)"
            )
        logger.warning(
            "%s: dropped %d interactions naming items missing from %s (first at %s %d)",
            rows.path, unknown.size, items_path, unit, lines[k],
        )
    kept = np.flatnonzero(item_of >= 0)
    if kept.size == 0:
        raise DataFormatError(f"{rows.path}: no interaction names a known item of {items_path}")

    if users is not None:
        user_index = {raw: k for k, raw in enumerate(users)}
        user_of = np.fromiter((user_index.get(raw, -1) for raw in rows.users), dtype=np.int64, count=n)
        missing = kept[user_of[kept] < 0]
        if missing.size:
            k = int(missing[0])
            raise DataFormatError(
                f"{rows.path}, {unit} {lines[k]}: user {rows.users[k]!r} is not in {users_path} "
                "(add the user to the user file or remove the line)"
            )
        user_ids = list(users)
    else:
        codes: dict[str, int] = {}
        user_of = np.fromiter((codes.setdefault(raw, len(codes)) for raw in rows.users),
                              dtype=np.int64, count=n)
        user_ids = list(codes)

    # Earliest interaction per (user, item); ties keep file order.
    timestamps = np.asarray(rows.timestamps, dtype=np.int64)
    pair = user_of[kept] * len(items) + item_of[kept]
    order = np.lexsort((lines[kept], timestamps[kept], pair))
    first = np.ones(order.size, dtype=bool)
    first[1:] = pair[order][1:] != pair[order][:-1]
    unique = np.sort(kept[order[first]])  # back to file order
    if unique.size < kept.size:
        logger.info(
            "%s: kept the earliest of repeated (user, item) pairs, dropping %d later repeats",
            rows.path, kept.size - unique.size,
        )
    user_of = user_of[unique]
    if users is None:
        # Users in order of first appearance among the kept rows, as InteractionData.from_raw does.
        present, first_row = np.unique(user_of, return_index=True)
        ranked = present[np.argsort(first_row)]
        remap = np.empty(len(user_ids), dtype=np.int64)
        remap[ranked] = np.arange(ranked.size)
        user_ids = [user_ids[u] for u in ranked]
        user_of = remap[user_of]
    return InteractionData(
        name=name,
        user_ids=tuple(user_ids),
        item_ids=tuple(item_index),
        item_titles=tuple(row[1] for row in items),
        item_genres=tuple(tuple(row[2]) for row in items),
        item_years=tuple(row[3] for row in items),
        users=user_of,
        items=item_of[unique],
        ratings=np.asarray(rows.ratings, dtype=np.float32)[unique],
        timestamps=timestamps[unique],
        item_extra={k: tuple(v) for k, v in (item_extra or {}).items()},
        user_attributes={k: tuple(v) for k, v in (user_attributes or {}).items()},
        genre_names=tuple(genre_names),
    )


def check_unique(ids: Sequence[str], lines: Sequence[int] | None, path: Path | None, what: str,
                 unit: str = "line") -> None:
    """Raise a :class:`DataFormatError` naming both lines of the first id that appears twice."""
    first: dict[str, int] = {}
    for k, raw in enumerate(ids):
        line = lines[k] if lines is not None else k + 1
        if raw in first:
            raise DataFormatError(
                f"{path}, {unit} {line}: duplicate {what} id {raw!r} (first at {unit} {first[raw]}); "
                f"each {what} must appear once"
            )
        first[raw] = line
