"""The SQLite file of an answer cache: batched reads and writes, export, clear, integrity check.

One table ``answers(key, identity, request, response, cost, created)``; every column is JSON text or a
number, never a pickle. WAL journal, ``synchronous=NORMAL`` (survives process crashes), a busy timeout
and ``BEGIN IMMEDIATE`` write transactions, so several processes can share one file. A connection is
never used across ``fork``: a child process opens its own. :class:`promptopt.llm.cache.CachedRanker`
reads and writes through :class:`CacheStore`; ``promptopt cache stats|export|clear`` use it directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from promptopt.errors import PromptoptError
from promptopt.llm.types import RankRequest, RankResponse

SCHEMA_VERSION = 1
"""Version of the row layout (stored in the file; part of every key)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS promptopt_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    cost REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
"""
_ABANDONED: list[sqlite3.Connection] = []
"""Connections inherited through fork: never used or closed by the child (SQLite forbids both)."""


class CacheError(PromptoptError):
    """A cache file is missing, unreadable or not a promptopt answer cache."""


def _cache_failure(path: Path, exc: sqlite3.Error) -> CacheError:
    """A one-line :class:`CacheError` for an SQLite failure on an open cache, saying what to do."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, sqlite3.OperationalError) and "full" in reason:
        return CacheError(f"cache {str(path)!r}: the disk is full ({reason}); free space (or set cache.path "
                          "to another disk) and continue with --resume: answers already stored are kept")
    damaged = any(word in reason for word in ("malformed", "not a database", "corrupt"))
    if damaged or type(exc) is sqlite3.DatabaseError:
        return CacheError(f"cache {str(path)!r} is damaged ({reason}): restore a copy, or move it aside to "
                          "start a new cache (its answers would be asked again), then continue with --resume")
    return CacheError(f"cache {str(path)!r}: {reason}")


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 text: equal values give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class CacheSummary:
    """What a cache file holds (``promptopt cache stats``)."""

    path: str
    entries: int
    size_bytes: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    first_created: float | None
    last_created: float | None
    by_identity: tuple[tuple[str, int], ...]
    """(identity as canonical JSON, entries), most entries first."""


class CacheStore:
    """The SQLite file of a cache: reads, batched writes, export, clear, integrity check.

    Args:
        path: The SQLite file.
        create: Create the file (and its folder) when missing; otherwise a missing file is a
            :class:`CacheError`.
        timeout_s: How long a writer waits for another process's transaction (SQLite busy timeout).

    Raises:
        CacheError: The file is missing (``create=False``), unreadable or another kind of database.
    """

    def __init__(self, path: str | Path, *, create: bool = True, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout_s = float(timeout_s)
        if not create and not self.path.is_file():
            raise CacheError(
                f"no cache file at {str(self.path)!r}; check the path (cache.path in the config)"
            )
        if create:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CacheError(f"cannot create the folder of cache {str(self.path)!r}: "
                                 f"{exc.strerror or exc}") from None
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._create = create
        self._connection()  # fail early on a bad file

    def __getstate__(self) -> dict[str, Any]:  # picklable: the child opens its own connection
        return {"path": self.path, "timeout_s": self.timeout_s, "_create": self._create}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._conn = None
        self._pid = -1

    def _connection(self) -> sqlite3.Connection:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                return self._conn
            if self._conn is not None:
                _ABANDONED.append(self._conn)
            try:
                conn = sqlite3.connect(
                    self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False
                )
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
                if self._create:
                    conn.execute("PRAGMA journal_mode = WAL")
                    conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL survives process crashes
                    conn.executescript(_SCHEMA)
                    conn.execute(
                        "INSERT OR IGNORE INTO promptopt_meta VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
                else:
                    query = "SELECT name FROM sqlite_master WHERE type='table'"
                    if "answers" not in {row[0] for row in conn.execute(query)}:
                        conn.close()
                        raise CacheError(
                            f"{str(self.path)!r} is a SQLite file but not a promptopt answer cache"
                        )
            except sqlite3.DatabaseError as exc:
                raise CacheError(f"cannot open cache {str(self.path)!r}: {exc}") from None
            except OSError as exc:  # the folder cannot be made or read
                raise CacheError(f"cannot open cache {str(self.path)!r}: {exc.strerror or exc}") from None
            self._conn, self._pid = conn, os.getpid()
            return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- answers ---------------------------------------------------------------------------------

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored responses (as JSON dicts) of the keys that are present."""
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            conn = self._connection()
            try:
                for start in range(0, len(unique), 500):
                    chunk = unique[start:start + 500]
                    marks = ",".join("?" * len(chunk))
                    for key, response in conn.execute(
                        f"SELECT key, response FROM answers WHERE key IN ({marks})", chunk
                    ):
                        found[key] = json.loads(response)
            except sqlite3.Error as exc:
                raise _cache_failure(self.path, exc) from None
            except ValueError as exc:  # a row whose JSON is not JSON: the file was edited or damaged
                raise CacheError(f"cache {str(self.path)!r} is damaged (a stored answer is not JSON: {exc}); "
                                 "restore a copy or move it aside, then continue with --resume") from None
        return found

    def put_many(self, rows: Sequence[tuple[str, str, RankRequest, RankResponse, float]]) -> int:
        """Store ``(key, identity_json, request, response, cost)`` rows in one transaction.

        Returns:
            Rows inserted (a key already present, e.g. written by another process, is kept as is).
        """
        if not rows:
            return 0
        now = time.time()
        values = [
            (key, identity, canonical_json(request.to_json()), canonical_json(response.to_json()), cost, now)
            for key, identity, request, response, cost in rows
        ]
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                before = conn.total_changes
                conn.executemany("INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?)", values)
                inserted = conn.total_changes - before
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _cache_failure(self.path, exc) from None
                raise
        return inserted

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def identities(self) -> dict[str, int]:
        """Backend identities (canonical JSON) with answers in the file -> their number, most first."""
        with self._lock:
            rows = self._connection().execute(
                "SELECT identity, COUNT(*) AS n FROM answers GROUP BY identity ORDER BY n DESC, identity"
            ).fetchall()
        return {str(identity): int(n) for identity, n in rows}

    # -- inspection (promptopt cache stats | export | clear) ---------------------------------------

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every stored answer, oldest first: key, identity, request, response, cost, created."""
        with self._lock:
            cursor = self._connection().execute(
                "SELECT key, identity, request, response, cost, created FROM answers ORDER BY created, key"
            )
            batch = cursor.fetchmany(1000)
            while batch:
                for key, identity, request, response, cost, created in batch:
                    yield {
                        "key": key, "identity": json.loads(identity), "request": json.loads(request),
                        "response": json.loads(response), "cost": cost, "created": created,
                    }
                batch = cursor.fetchmany(1000)

    def summary(self) -> CacheSummary:
        entries = prompt_tokens = completion_tokens = 0
        cost = 0.0
        first = last = None
        identities: dict[str, int] = {}
        for row in self.rows():
            entries += 1
            usage = row["response"].get("usage", {})
            prompt_tokens += int(usage.get("prompt_tokens", 0))
            completion_tokens += int(usage.get("completion_tokens", 0))
            cost += float(row["cost"])
            first = row["created"] if first is None else min(first, row["created"])
            last = row["created"] if last is None else max(last, row["created"])
            ident = canonical_json(row["identity"])
            identities[ident] = identities.get(ident, 0) + 1
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return CacheSummary(
            path=str(self.path), entries=entries, size_bytes=size, prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens, cost=cost, first_created=first, last_created=last,
            by_identity=tuple(sorted(identities.items(), key=lambda kv: (-kv[1], kv[0]))),
        )

    def export_jsonl(self, out: IO[str]) -> int:
        """Write every prompt and answer as JSON Lines (for audits); returns the number of lines."""
        count = 0
        for row in self.rows():
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
        return count

    def clear(self) -> int:
        """Delete every stored answer; returns how many were deleted."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            deleted = conn.execute("DELETE FROM answers").rowcount
            conn.execute("COMMIT")
            conn.execute("VACUUM")
        return int(deleted)

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``"ok"`` for a sound file."""
        with self._lock:
            return "; ".join(row[0] for row in self._connection().execute("PRAGMA integrity_check"))
