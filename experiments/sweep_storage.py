"""Where a sweep's optuna study lives, so several ``promptopt sweep`` workers can share it.

``--storage`` takes either

* an RDB URL (anything with ``://``): ``sqlite:///sweeps.db`` for workers on one machine or on a
  shared disk, ``postgresql://user:PASSWORD@host/db`` or ``mysql+pymysql://...`` for workers on many
  machines (the driver is the user's: ``pip install psycopg2-binary`` ...). optuna's
  :class:`~optuna.storages.RDBStorage`, with a heartbeat, so a trial whose worker was killed is
  marked failed after :data:`GRACE_S` seconds instead of staying "running" forever;
* a file path: an optuna journal file (:class:`~optuna.storages.JournalStorage`), an append-only log
  guarded by a lock file; safe for workers on one machine or on a disk that supports atomic
  ``symlink`` (most NFS setups; not every network file system).

Every worker that names the same storage and study name (``--study-name``, default: the sweep's
name) joins the same study: optuna hands out trial numbers from the storage, so no two workers run
the same trial, and each worker runs ``--count`` trials (as ``wandb agent --count``).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptopt.errors import ConfigError
from promptopt.redact import redact_url

HEARTBEAT_S = 60
"""How often a worker on an RDB storage marks its running trial alive."""
GRACE_S = 300
"""After this long without a heartbeat, another worker marks that trial failed."""
SQLITE_TIMEOUT_S = 60
"""How long a worker waits for another's SQLite write lock before failing (SQLite's busy timeout)."""
FINGERPRINT_ATTR = "promptopt_sweep"
"""Study user attribute holding the sweep's search space, checked when a worker joins."""


def describe(storage: str | None) -> str:
    """The storage as it may be logged and written down (credentials in URLs hidden)."""
    if storage is None:
        return "in memory (this process only)"
    return redact_url(storage) if "://" in storage else f"journal file {storage}"


def open_storage(storage: str | None) -> Any:
    """The optuna storage ``--storage`` names (``None``: this process's memory).

    Raises:
        ConfigError: An RDB URL optuna cannot open (bad URL, missing driver, unreachable server), or a
            journal file in a folder that does not exist.
    """
    if storage is None:
        return None
    import optuna

    if "://" in storage:
        sqlite = storage.startswith("sqlite")
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if sqlite else {}
        try:
            return _rdb(storage, engine_kwargs)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"--storage {describe(storage)}: the database driver {exc.name!r} is not "
                              "installed (pip install it), or use sqlite:///FILE or a journal file path"
                              ) from None
        except Exception as exc:  # sqlalchemy's errors: a malformed URL, a server that does not answer
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"--storage {describe(storage)}: optuna cannot open it ({redact_url(first)}); "
                              "give an RDB URL such as sqlite:///sweeps.db or a journal file path") from None
    path = Path(storage)
    if not path.parent.is_dir():
        raise ConfigError(f"--storage {storage}: folder {path.parent} does not exist; create it or give "
                          "another journal file path")
    if path.is_dir():
        raise ConfigError(f"--storage {storage} is a folder; give a journal file path "
                          f"(e.g. {path / 'sweep.log'})")
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


SCHEMA_ATTEMPTS = 3
"""Workers starting together on a new database race to create optuna's tables; the loser retries."""


def _rdb(storage: str, engine_kwargs: dict[str, Any]) -> Any:
    """optuna's RDBStorage; a worker that lost the race to create the schema opens it again, finding
    the tables the winner committed. The loser sees either ``UNIQUE constraint failed:
    alembic_version`` (an IntegrityError) or ``table studies already exists`` (an OperationalError),
    depending on where the two workers interleave; any other error is not a race and is raised."""
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" since optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs,
                                                  heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
        except (IntegrityError, OperationalError) as exc:
            lost_race = isinstance(exc, IntegrityError) or "already exists" in str(exc)
            if not lost_race or attempt == SCHEMA_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def fingerprint(method: str, metric: str, goal: str, parameters: Mapping[str, Any],
                fixed: Mapping[str, Any]) -> str:
    """A digest of what a sweep searches: workers of one study must agree on it."""
    text = json.dumps({"method": method, "metric": metric, "goal": goal, "parameters": parameters,
                       "fixed": fixed}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_joined(study: Any, *, digest: str, storage: str | None, goal: str) -> None:
    """Refuse to join a stored study made from another sweep file (or another goal); mark a new one.

    Raises:
        ConfigError: The stored study's search space or direction differs from this sweep's.
    """
    stored = study.user_attrs.get(FINGERPRINT_ATTR)
    direction = study.direction.name.lower()
    wanted = "maximize" if goal == "maximize" else "minimize"
    if (stored is not None and stored != digest) or direction != wanted:
        raise ConfigError(
            f"--storage {describe(storage)} already holds a study {study.study_name!r} of a different sweep "
            f"(its search space, metric or goal differ); pass --study-name NAME to start another study there"
        )
    if stored is None:
        study.set_user_attr(FINGERPRINT_ATTR, digest)
