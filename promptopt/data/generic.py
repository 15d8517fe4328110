"""The generic layout: ``interactions.csv`` + ``items.csv`` (+ optional ``users.csv``), or Parquet.

Any dataset can be brought to promptopt in this layout; ``promptopt data synth DEST`` writes an
example. Each table is read from ``NAME.csv`` (UTF-8, comma-separated, header row, quoted fields)
or, when that is absent, from ``NAME.parquet`` (needs ``pyarrow``).

* ``interactions``: columns ``user``, ``item``, ``timestamp`` (Unix seconds or an ISO-8601
  date/time, UTC when naive) and optionally ``rating`` (empty = none).
* ``items``: ``item``, the title column (``title_column``), optionally the genres column
  (``genres_column``, ``|``-separated) and ``year``; every other column is kept as item text.
* ``users`` (optional): ``user`` and attribute columns (``age``, ``gender``, ...).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from promptopt.data.assemble import InteractionRows, assemble
from promptopt.data.interactions import InteractionData
from promptopt.data.textfile import parse_float, parse_int, parse_timestamp, read_csv
from promptopt.errors import DataFormatError

_INTERACTIONS = "CSV with header user,item,rating,timestamp (rating optional)"


def load_generic(
    path: str | Path,
    *,
    title_column: str = "title",
    genres_column: str | None = "genres",
    genres_separator: str = "|",
) -> InteractionData:
    """Read the generic layout from a folder.

    Args:
        path: Folder holding ``interactions.csv`` / ``items.csv`` (or their ``.parquet`` twins).
        title_column: Column of the items table holding the display title.
        genres_column: Column of the items table holding genres, ``None`` when there is none.
        genres_separator: Separator between genres in that column.

    Raises:
        DataFormatError: Missing folder, file or column; a malformed value (named with its
            file, line and column); an interaction naming an unknown item.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataFormatError(
            f"{folder}: dataset folder does not exist (expected a folder holding interactions.csv "
            "and items.csv)"
        )
    table_path, unit, header, rows = _open_table(
        folder, "items", "item table with columns item," + title_column,
        required=("item", title_column),
    )
    if genres_column is not None and genres_column not in header:
        raise DataFormatError(
            f"{table_path}: no genres column {genres_column!r} (found {', '.join(header)}); "
            "name the right one with data.genres_column, or set it to null when there is none"
        )
    col = {name: k for k, name in enumerate(header)}
    extra_columns = [c for c in header if c not in ("item", title_column, genres_column, "year")]
    items: list[tuple[str, str, tuple[str, ...], int | None]] = []
    item_lines: list[int] = []
    extra: dict[str, list[str]] = {c: [] for c in extra_columns}
    vocab: dict[str, None] = {}
    items_path = table_path
    for number, fields in rows:
        genres: tuple[str, ...] = ()
        if genres_column is not None:
            genres = tuple(g.strip() for g in fields[col[genres_column]].split(genres_separator)
                           if g.strip())
            vocab.update(dict.fromkeys(genres))
        year = None
        if "year" in col and fields[col["year"]].strip():
            year = parse_int(items_path, number, fields[col["year"]].strip(), "year", unit=unit)
        items.append((fields[col["item"]].strip(), fields[col[title_column]].strip(), genres, year))
        item_lines.append(number)
        for c in extra_columns:
            extra[c].append(fields[col[c]])

    users = attributes = user_lines = users_path = None
    if _exists(folder, "users"):
        users_path, _, header, user_rows = _open_table(
            folder, "users", "user table with a user column", required=("user",))
        ucol = {name: k for k, name in enumerate(header)}
        names = [c for c in header if c != "user"]
        users, user_lines = [], []
        attributes = {c: [] for c in names}
        for number, fields in user_rows:
            users.append(fields[ucol["user"]].strip())
            user_lines.append(number)
            for c in names:
                attributes[c].append(fields[ucol[c]].strip() or None)

    inter_path, unit, header, inter_rows = _open_table(
        folder, "interactions", _INTERACTIONS, required=("user", "item", "timestamp"))
    icol = {name: k for k, name in enumerate(header)}
    has_rating = "rating" in icol
    data_rows = InteractionRows(inter_path)
    for number, fields in inter_rows:
        rating = float("nan")
        if has_rating and fields[icol["rating"]].strip():
            rating = parse_float(inter_path, number, fields[icol["rating"]], "rating", unit=unit)
            if not math.isfinite(rating):
                raise DataFormatError(
                    f"{inter_path}, {unit} {number}: rating must be finite or empty, "
                    f"got {fields[icol['rating']]!r}"
                )
        data_rows.append(
            fields[icol["user"]].strip(), fields[icol["item"]].strip(), rating,
            parse_timestamp(inter_path, number, fields[icol["timestamp"]], unit=unit), number,
        )
    return assemble(
        folder.resolve().name or "generic", items=items, items_path=items_path, rows=data_rows,
        item_extra=extra, users=users, users_path=users_path, user_attributes=attributes,
        genre_names=list(vocab), item_lines=item_lines, user_lines=user_lines, unit=unit,
    )


def _exists(folder: Path, name: str) -> bool:
    return (folder / f"{name}.csv").is_file() or (folder / f"{name}.parquet").is_file()


def _open_table(folder: Path, name: str, what: str, *, required: Sequence[str]
                ) -> tuple[Path, str, list[str], Iterator[tuple[int, list[str]]]]:
    """``(path, "line" | "row", header, rows)`` of ``NAME.csv``, else ``NAME.parquet``."""
    csv_path, parquet_path = folder / f"{name}.csv", folder / f"{name}.parquet"
    if csv_path.is_file():
        header, rows = read_csv(csv_path, what, required=required)
        return csv_path, "line", header, rows
    if parquet_path.is_file():
        header, rows = _read_parquet(parquet_path, what, required)
        return parquet_path, "row", header, rows
    raise DataFormatError(f"{csv_path}: file not found (expected {what}, or {parquet_path.name})")


def _read_parquet(path: Path, what: str, required: Sequence[str]
                  ) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Header and ``(row_number, fields as text)`` of a Parquet table (rows counted from 1)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataFormatError(
            f"{path}: reading Parquet needs pyarrow (pip install 'promptopt[parquet]'), or use CSV"
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise DataFormatError(f"{path}: not a readable Parquet file ({exc}); expected {what}") from None
    header = list(table.column_names)
    missing = [c for c in required if c not in header]
    if missing:
        raise DataFormatError(
            f"{path}: no column {', '.join(map(repr, missing))} (found {', '.join(header)}; "
            f"expected {what})"
        )
    if table.num_rows == 0:
        raise DataFormatError(f"{path}: table is empty (expected {what})")
    columns = [[_as_text(v) for v in table.column(c).to_pylist()] for c in header]

    def rows() -> Iterator[tuple[int, list[str]]]:
        for k in range(table.num_rows):
            yield k + 1, [column[k] for column in columns]

    return header, rows()


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "|".join(str(v) for v in value)
    return str(value)


def save_generic(data: InteractionData, dest: str | Path, *, fmt: Literal["csv", "parquet"] = "csv"
                 ) -> list[Path]:
    """Write ``data`` in the generic layout (what :func:`load_generic` reads back).

    Returns:
        The files written.

    Raises:
        DataFormatError: Parquet asked for without pyarrow.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    extra = [name for name in data.item_extra if name not in ("item", "title", "genres", "year")]
    items = {
        "item": list(data.item_ids),
        "title": list(data.item_titles),
        "genres": ["|".join(g) for g in data.item_genres],
        "year": ["" if y is None else str(y) for y in data.item_years],
        **{name: list(data.item_extra[name]) for name in extra},
    }
    ratings = np.asarray(data.ratings, dtype=np.float64)
    interactions = {
        "user": [data.user_ids[u] for u in data.users],
        "item": [data.item_ids[i] for i in data.items],
        "rating": ["" if not np.isfinite(r) else f"{r:g}" for r in ratings],
        "timestamp": [str(int(t)) for t in data.timestamps],
    }
    tables = {"items": items, "interactions": interactions}
    if data.user_attributes:
        tables["users"] = {
            "user": list(data.user_ids),
            **{name: ["" if v is None else v for v in column]
               for name, column in data.user_attributes.items()},
        }
    written = []
    for name, columns in tables.items():
        path = folder / f"{name}.{fmt}"
        if fmt == "csv":
            with path.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(columns)
                writer.writerows(zip(*columns.values()))
        else:
            _write_parquet(path, columns)
        written.append(path)
    return written


def _write_parquet(path: Path, columns: dict[str, list[str]]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataFormatError("writing Parquet needs pyarrow (pip install 'promptopt[parquet]')") from None
    pq.write_table(pa.table(columns), path)
