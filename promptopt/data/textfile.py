"""Reading a dataset's own text files, with errors that name the path, the line and the expectation.

Every loader reads through these helpers, so a missing file, an empty file, an undecodable byte,
a wrong separator or a truncated line always fails the same way: one :class:`DataFormatError`
whose message names the file, the line (1-based) and what was expected there.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

from promptopt.errors import DataFormatError

_YEAR_5000 = 95_617_584_000  # Unix seconds of 5000-01-01: larger values are milliseconds, not seconds

# Separators a user might have used by mistake, checked when a line has too few fields.
_OTHER_SEPARATORS: tuple[tuple[str, str], ...] = (
    ("::", "'::'"), ("\t", "tab"), (",", "','"), (";", "';'"), ("|", "'|'"),
)


def require_file(folder: Path, name: str, what: str) -> Path:
    """``folder / name`` when it is a file.

    Raises:
        DataFormatError: The folder or the file does not exist.
    """
    if not folder.exists():
        raise DataFormatError(f"{folder}: dataset folder does not exist (expected a folder holding {name})")
    if not folder.is_dir():
        raise DataFormatError(f"{folder}: expected a dataset folder, got a file")
    path = folder / name
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found (expected {what})")
    return path


def read_text(path: Path, encoding: str, what: str) -> str:
    """The whole file decoded strictly with ``encoding`` (a UTF-8 byte-order mark is dropped, whatever
    the encoding: read as Latin-1 it would become ``ï»¿`` glued to the first id, a phantom user).

    Args:
        path: The file.
        encoding: ``"utf-8"``, ``"latin-1"`` ...
        what: What the file should hold, for error messages (``"tab-separated user item ..."``).

    Raises:
        DataFormatError: Missing, unreadable, empty, or holding a byte that is not ``encoding``.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(f"{path}: file not found (expected {what})") from None
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not raw.strip():
        raise DataFormatError(f"{path}: file is empty (expected {what})")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        byte = raw[exc.start]
        raise DataFormatError(
            f"{path}, line {line}: byte 0x{byte:02x} cannot be decoded as {encoding} "
            f"(expected {what} encoded as {encoding}; re-save the file as {encoding})"
        ) from None


def split_lines(text: str) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` of non-blank lines; ``\\r\\n`` and ``\\n`` line ends both work.

    Only ``\\n`` ends a line: latin-1 titles may hold control characters (``\\x85``) that
    :meth:`str.splitlines` would wrongly treat as line breaks.
    """
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if line.strip():
            yield number, line


def split_fields(
    path: Path,
    number: int,
    line: str,
    sep: str,
    n_fields: int,
    what: str,
    *,
    at_least: bool = False,
) -> list[str]:
    """Split one line into exactly (or, with ``at_least``, at least) ``n_fields`` fields.

    Raises:
        DataFormatError: Too few / too many fields; names a separator the line seems to use instead.
    """
    fields = line.split(sep)
    if len(fields) == n_fields or (at_least and len(fields) >= n_fields):
        return fields
    hint = ""
    if len(fields) < n_fields:
        for other, label in _OTHER_SEPARATORS:
            if other != sep and other not in sep and line.count(other) >= n_fields - 1:
                hint = f"; the line looks {label}-separated"
                break
        else:
            hint = "; the line looks truncated"
    expected = f"at least {n_fields}" if at_least else str(n_fields)
    raise DataFormatError(
        f"{path}, line {number}: expected {expected} {_sep_name(sep)}-separated fields ({what}), "
        f"got {len(fields)}{hint}"
    )


def _sep_name(sep: str) -> str:
    return "tab" if sep == "\t" else repr(sep)


def read_table(path: Path, sep: str, n_fields: int, encoding: str, what: str, *,
               header: Sequence[str] | None = None, at_least: bool = False
               ) -> Iterator[tuple[int, list[str]]]:
    """``(line_number, fields)`` of a separated file without quoting (MovieLens ``.dat``, HetRec).

    Args:
        path: The file.
        sep: Field separator.
        n_fields: Fields per line.
        encoding: Text encoding.
        what: The expected columns, for error messages.
        header: When given, the first non-blank line must be this header (case-insensitive).
        at_least: Allow more than ``n_fields`` fields (the last ones are returned as they are).
    """
    text = read_text(path, encoding, what)
    lines = split_lines(text)
    if header is not None:
        number, line = next(lines)
        fields = [f.strip().lower() for f in line.split(sep)]
        if fields[: len(header)] != [h.lower() for h in header]:
            found = line.split(sep)
            hint = "" if len(found) > 1 else f" (the file is not {_sep_name(sep)}-separated?)"
            raise DataFormatError(
                f"{path}, line {number}: expected the header {_sep_name(sep).join(header)!s} "
                f"({_sep_name(sep)}-separated), got {line[:80]!r}{hint}"
            )
    for number, line in lines:
        fields = line.split(sep)
        if len(fields) != n_fields:  # the common case stays one split; the check explains the rest
            fields = split_fields(path, number, line, sep, n_fields, what, at_least=at_least)
        yield number, fields


def read_csv(path: Path, what: str, *, required: Sequence[str], encoding: str = "utf-8"
             ) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Header and ``(line_number, fields)`` rows of a comma-separated file with quoting.

    Quoted fields may hold commas; CRLF and LF line ends both work.

    Raises:
        DataFormatError: Missing columns in the header (with a hint when another separator is
            used), or a row with a different number of fields than the header.
    """
    text = read_text(path, encoding, what)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as exc:
        raise DataFormatError(f"{path}, line 1: malformed CSV header ({exc}); expected {what}") from None
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:  # csv would keep one of them silently
        raise DataFormatError(
            f"{path}, line 1: column {', '.join(map(repr, repeated))} appears more than once in the header; "
            f"rename or remove the extra column (expected {what})"
        )
    missing = [name for name in required if name not in header]
    if missing:
        hint = ""
        if len(header) == 1:
            for other, label in _OTHER_SEPARATORS:
                if other != "," and other in header[0]:
                    hint = f"; the header looks {label}-separated but the file must be comma-separated"
                    break
        raise DataFormatError(
            f"{path}, line 1: header has no column {', '.join(map(repr, missing))} "
            f"(found {', '.join(map(repr, header))}; expected {what}){hint}"
        )

    def rows() -> Iterator[tuple[int, list[str]]]:
        n = len(header)
        try:
            for fields in reader:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if len(fields) != n:
                    raise DataFormatError(
                        f"{path}, line {reader.line_num}: expected {n} comma-separated fields "
                        f"({', '.join(header)}), got {len(fields)}"
                        + ("; the line looks truncated" if len(fields) < n else
                           "; quote fields that contain commas")
                    )
                yield reader.line_num, fields
        except csv.Error as exc:
            raise DataFormatError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from None

    return header, rows()


def parse_int(path: Path, number: int, value: str, column: str, *, unit: str = "line") -> int:
    """An integer field, or a :class:`DataFormatError` naming the line (or row) and the column."""
    try:
        return int(value)
    except ValueError:
        raise DataFormatError(
            f"{path}, {unit} {number}: {column} must be an integer, got {value[:40]!r}"
        ) from None


def parse_float(path: Path, number: int, value: str, column: str, *, unit: str = "line") -> float:
    """A number field, or a :class:`DataFormatError` naming the line (or row) and the column."""
    try:
        return float(value)
    except ValueError:
        raise DataFormatError(
            f"{path}, {unit} {number}: {column} must be a number, got {value[:40]!r}"
        ) from None


def parse_rating(path: Path, number: int, value: str, column: str, *, low: float, high: float,
                 unit: str = "line") -> float:
    """A rating within the release's scale ``[low, high]``; nan, infinities and ``-99`` are errors."""
    rating = parse_float(path, number, value, column, unit=unit)
    if not (math.isfinite(rating) and low <= rating <= high):
        raise DataFormatError(
            f"{path}, {unit} {number}: {column} must be a number from {low:g} to {high:g}, got {value[:40]!r}"
        )
    return rating


def parse_year(path: Path, number: int, value: str, column: str = "year", *, unit: str = "line") -> int:
    """A calendar year from 1 to 4999 (timestamps stop at the year 5000; a loader drops years before
    1970, which Unix time cannot hold)."""
    year = parse_int(path, number, value, column, unit=unit)
    if not 1 <= year < 5000:
        raise DataFormatError(f"{path}, {unit} {number}: {column} must be a year from 1 to 4999, "
                              f"got {value[:40]!r}")
    return year


def parse_timestamp(path: Path, number: int, value: str, column: str = "timestamp", *,
                    unit: str = "line") -> int:
    """Unix seconds from an integer (or a number) or an ISO-8601 date / datetime (UTC if naive).

    Raises:
        DataFormatError: Neither a number nor an ISO date, before 1970 (negative Unix time), or
            after the year 5000 (milliseconds given instead of seconds).
    """
    text = value.strip()
    try:
        seconds = int(float(text))
    except (ValueError, OverflowError):  # OverflowError: "inf", "1e400"
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise DataFormatError(
                f"{path}, {unit} {number}: {column} must be Unix seconds or an ISO-8601 date "
                f"(2008-03-01 or 2008-03-01T12:30:00), got {value[:40]!r}"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = int(moment.timestamp())
    if seconds < 0:
        raise DataFormatError(
            f"{path}, {unit} {number}: {column} {value!r} is before 1970 (expected Unix seconds >= 0)"
        )
    if seconds >= _YEAR_5000:
        raise DataFormatError(
            f"{path}, {unit} {number}: {column} {value!r} is after the year 5000; milliseconds? "
            "(expected Unix seconds: divide by 1000)"
        )
    return seconds
