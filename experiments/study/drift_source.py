"""``study.drift_from``: a report's drift section taken from another finished study.

RESULTS.md can hold numbers of two protocols: the selectors and targets 1-3 and 5 from the study
itself, the drift section and targets 4 / 4' from a ``split.protocol: deploy`` study on the same data
and templates (issue 17: "states which protocol produced each number; its drift section uses the
deployment protocol"). The helpers here read that run, check it fits, and say where its numbers
come from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptopt.errors import ConfigError


def read_drift_run(path: str, run: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``study.drift_from`` run (``None`` when unset).

    Raises:
        ConfigError: The file is missing or unreadable, or its run is on other data or templates.
    """
    if not path:
        return None
    check_drift_from(path)
    try:
        drift_run = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"study.drift_from {path}: cannot read a study.json ({exc})") from None
    missing = [k for k in ("config", "seeds", "data", "templates") if not isinstance(drift_run, dict)
               or k not in drift_run]
    if missing:
        raise ConfigError(f"study.drift_from {path}: not a finished study's study.json (no {missing[0]!r}):"
                          " point it at the study.json in the other study's study.work_dir")
    for key in ("data", "templates"):
        if drift_run.get(key) != run.get(key):
            raise ConfigError(
                f"study.drift_from {path}: its {key} ({drift_run.get(key)!r}) is not this run's"
                f" ({run.get(key)!r}): run that study on the same data and templates"
            )
    return drift_run


def check_drift_from(path: str) -> None:
    """Fail before any work when ``study.drift_from`` names no file (the study that writes it runs first).

    Raises:
        ConfigError: Naming the path and the fix.
    """
    if path and not Path(path).is_file():
        what = "is a folder, not a study.json" if Path(path).is_dir() else "does not exist"
        raise ConfigError(
            f"study.drift_from {path} {what} (from {Path.cwd()}): run the study that writes it"
            " first (its study.work_dir holds study.json), or set study.drift_from to ''"
        )


def drift_origin(drift_run: Mapping[str, Any] | None) -> str:
    """Where the drift section's numbers come from when another run holds them ('' for this run)."""
    if drift_run is None:
        return ""
    study = drift_run["config"]["study"]
    return (f"These numbers come from another study, `{study_command(drift_run)}` (its raw results"
            f" `{study.get('work_dir', 'runs/study')}/study.json`, its own report `{study.get('output')}`;"
            " same data and templates, its own split and training under its protocol), read through"
            " `study.drift_from`.")


def study_command(run: Mapping[str, Any]) -> str:
    """The command that reproduces ``run`` (its config is named after its experiment)."""
    return f"promptopt study {config_path(run)}"


def config_path(run: Mapping[str, Any]) -> str:
    """The study config of ``run``: named after its experiment."""
    return f"experiments/configs/{run['config']['experiment'].get('name', 'study_ml100k')}.yaml"
