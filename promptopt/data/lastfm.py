"""Loader for Last.fm HetRec-2011 (``hetrec2011-lastfm-2k``): dated tag assignments on artists.

The interactions are the dated tag assignments of ``user_taggedartists.dat`` (a user tagging an
artist on a day), since only they carry time; several tags on one artist keep the earliest date.
Items are the artists of ``artists.dat``; each artist's most used tags become its genres
(restricted to the dataset's most used tags, so the genre vocabulary stays small) and its text.
When ``user_artists.dat`` is present, a user's listening count of an artist becomes a 1-5
rating-like signal: its quintile among that user's artists.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from promptopt.data.assemble import InteractionRows, UnknownItems, assemble
from promptopt.data.interactions import InteractionData
from promptopt.data.textfile import parse_int, parse_rating, parse_year, read_table, require_file
from promptopt.errors import ConfigError, DataFormatError

logger = logging.getLogger(__name__)

_TAGGED = "user_taggedartists.dat"
_TAGGED_COLUMNS = ("userID", "artistID", "tagID", "day", "month", "year")


def load_lastfm(
    path: str | Path,
    *,
    n_genres: int = 64,
    tags_per_artist: int = 5,
    ratings: Literal["weight_quintile", "none"] = "weight_quintile",
    unknown_items: UnknownItems = "drop",
) -> InteractionData:
    """Last.fm HetRec-2K from the folder holding its tab-separated ``.dat`` files (with headers).

    * ``user_taggedartists.dat``: ``userID artistID tagID day month year`` -> interactions at
      midnight UTC of that day.
    * ``artists.dat`` (UTF-8): ``id name url pictureURL`` -> items titled by name, ``url`` kept.
    * ``tags.dat`` (latin-1): ``tagID tagValue``.
    * ``user_artists.dat`` (optional): ``userID artistID weight`` (listening count).

    Args:
        path: The dataset folder.
        n_genres: Size of the genre vocabulary: the most used tags overall.
        tags_per_artist: Genres kept per artist (its most used tags within the vocabulary); the
            artist's most used tags of any kind are kept as the item field ``tags``.
        ratings: ``"weight_quintile"``: rating = 1 + the quintile (0..4) of the listening count among
            the user's artists (``nan`` when the pair is not in ``user_artists.dat``); ``"none"``:
            no ratings.
        unknown_items: What to do with tag assignments naming an artist missing from
            ``artists.dat``: ``"drop"`` (logged) or ``"error"``.

    Raises:
        ConfigError: An option out of range.
        DataFormatError: A missing / empty / malformed file or an impossible date, naming the path
            and line.
    """
    if n_genres < 1 or tags_per_artist < 1:
        raise ConfigError(f"n_genres and tags_per_artist must be >= 1, got {n_genres}, {tags_per_artist}")
    if ratings not in ("weight_quintile", "none"):
        raise ConfigError(f"ratings must be 'weight_quintile' or 'none', got {ratings!r}")
    if unknown_items not in ("drop", "error"):
        raise ConfigError(f"unknown_items must be 'drop' or 'error', got {unknown_items!r}")
    folder = Path(path)

    tags_path = require_file(folder, "tags.dat", "tab-separated 'tagID tagValue' with a header")
    tag_names: dict[str, str] = {}
    for _, (tag_id, value) in read_table(tags_path, "\t", 2, "latin-1", "tagID, tagValue",
                                         header=("tagID", "tagValue")):
        tag_names[tag_id.strip()] = value.strip()

    artists_path = require_file(folder, "artists.dat", "tab-separated 'id name url pictureURL'")
    artist_rows: list[tuple[str, str, str]] = []
    artist_lines: list[int] = []
    for number, fields in read_table(artists_path, "\t", 3, "utf-8", "id, name, url, pictureURL",
                                     header=("id", "name", "url"), at_least=True):
        artist_rows.append((fields[0].strip(), fields[1].strip(), fields[2].strip()))
        artist_lines.append(number)

    tagged_path = require_file(folder, _TAGGED, "tab-separated 'userID artistID tagID day month year'")
    rows = InteractionRows(tagged_path)
    tag_counts: dict[str, Counter[str]] = defaultdict(Counter)
    overall: Counter[str] = Counter()
    early, early_line = 0, 0
    for number, (user, artist, tag, day, month, year) in read_table(
        tagged_path, "\t", 6, "latin-1", ", ".join(_TAGGED_COLUMNS), header=_TAGGED_COLUMNS
    ):
        tag = tag.strip()
        if tag not in tag_names:
            raise DataFormatError(f"{tagged_path}, line {number}: tagID {tag!r} is not in {tags_path}")
        try:
            moment = datetime(parse_year(tagged_path, number, year, "year"),
                              parse_int(tagged_path, number, month, "month"),
                              parse_int(tagged_path, number, day, "day"), tzinfo=timezone.utc)
        except (ValueError, OverflowError) as exc:
            raise DataFormatError(
                f"{tagged_path}, line {number}: day/month/year {day[:20]}/{month[:20]}/{year[:20]} is not a "
                f"date ({exc})"
            ) from None
        artist = artist.strip()
        tag_counts[artist][tag] += 1
        overall[tag] += 1
        seconds = int(moment.timestamp())
        if seconds < 0:
            early += 1
            early_line = early_line or number
            continue
        rows.append(user.strip(), artist, float("nan"), seconds, number)
    if early:
        logger.warning("%s: dropped %d tag assignments dated before 1970 (first at line %d)",
                       tagged_path, early, early_line)

    if ratings == "weight_quintile" and (folder / "user_artists.dat").is_file():
        quintiles = _weight_quintiles(folder / "user_artists.dat")
        rows.ratings = [quintiles.get((u, a), float("nan")) for u, a in zip(rows.users, rows.items)]

    vocabulary = [tag for tag, _ in sorted(overall.items(), key=lambda kv: (-kv[1], int_or_text(kv[0])))]
    genre_ids = set(vocabulary[:n_genres])
    items: list[tuple[str, str, tuple[str, ...], int | None]] = []
    urls: list[str] = []
    tag_text: list[str] = []
    for artist, name, url in artist_rows:
        ranked = [t for t, _ in sorted(tag_counts.get(artist, Counter()).items(),
                                       key=lambda kv: (-kv[1], int_or_text(kv[0])))]
        genres = tuple(tag_names[t] for t in ranked if t in genre_ids)[:tags_per_artist]
        items.append((artist, name, genres, None))
        urls.append(url)
        tag_text.append(", ".join(tag_names[t] for t in ranked[:tags_per_artist]))
    return assemble(
        "lastfm-2k", items=items, items_path=artists_path, rows=rows,
        item_extra={"url": urls, "tags": tag_text},
        genre_names=[tag_names[t] for t in vocabulary[:n_genres]], unknown_items=unknown_items,
        item_lines=artist_lines,
    )


def int_or_text(value: str) -> tuple[int, str]:
    """Sort key ordering numeric ids numerically and others after them."""
    return (int(value), "") if value.isdigit() else (1 << 62, value)


def _weight_quintiles(path: Path) -> dict[tuple[str, str], float]:
    """``(user, artist) -> 1..5``: 1 + floor(5 * share of the user's artists listened to less)."""
    weights: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for number, (user, artist, weight) in read_table(
        path, "\t", 3, "latin-1", "userID, artistID, weight", header=("userID", "artistID", "weight")
    ):
        listened = parse_rating(path, number, weight, "weight", low=0.0, high=math.inf)
        weights[user.strip()].append((listened, artist.strip()))
    result: dict[tuple[str, str], float] = {}
    for user, pairs in weights.items():
        values = sorted(w for w, _ in pairs)
        n = len(values)
        for weight, artist in pairs:
            below = bisect.bisect_left(values, weight)
            result[(user, artist)] = float(1 + min(4, (5 * below) // n))
    return result

