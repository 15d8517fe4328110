"""Turning parsed file rows into a validated :class:`InteractionData`, with file-and-line errors."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

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
    known_items = {row[0] for row in items}
    known_users = None if users is None else set(users)
    keep: list[int] = []
    dropped_first: int | None = None
    n_dropped = 0
    for k, (user, item) in enumerate(zip(rows.users, rows.items)):
        if item not in known_items:
            if unknown_items == "error":
                raise DataFormatError(
                    f"{rows.path}, {unit} {rows.lines[k]}: item {item!r} is not in {items_path} "
                    "(add it to the item file or remove the line)"
                )
            n_dropped += 1
            dropped_first = rows.lines[k] if dropped_first is None else dropped_first
            continue
        if known_users is not None and user not in known_users:
            raise DataFormatError(
                f"{rows.path}, {unit} {rows.lines[k]}: user {user!r} is not in {users_path} "
                "(add the user to the user file or remove the line)"
            )
        keep.append(k)
    if n_dropped:
        logger.warning(
            "%s: dropped %d interactions naming items missing from %s (first at line %d)",
            rows.path, n_dropped, items_path, dropped_first,
        )
    if not keep:
        raise DataFormatError(f"{rows.path}: no interaction names a known item of {items_path}")

    # Earliest interaction per (user, item); ties keep file order.
    keep.sort(key=lambda k: (rows.timestamps[k], rows.lines[k]))
    seen: set[tuple[str, str]] = set()
    unique: list[int] = []
    for k in keep:
        pair = (rows.users[k], rows.items[k])
        if pair not in seen:
            seen.add(pair)
            unique.append(k)
    if len(unique) < len(keep):
        logger.info(
            "%s: kept the earliest of repeated (user, item) pairs, dropping %d later repeats",
            rows.path, len(keep) - len(unique),
        )
    unique.sort(key=lambda k: rows.lines[k])
    interactions = [
        (rows.users[k], rows.items[k], rows.ratings[k], rows.timestamps[k]) for k in unique
    ]
    return InteractionData.from_raw(
        name,
        items=items,
        interactions=interactions,
        item_extra=item_extra,
        users=users,
        user_attributes=user_attributes,
        genre_names=genre_names,
        source=str(rows.path),
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
