"""The experiment configs and sweep files shipped inside the package, usable by name.

``promptopt train quickstart`` works from an installed wheel, outside the repository: a command's
``CONFIG`` (or sweep ``FILE``) is a path when such a file exists, otherwise the name of a shipped
file (``quickstart`` or ``quickstart.yaml`` for ``experiments/configs/quickstart.yaml``).
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import Literal

Kind = Literal["config", "sweep"]
_FOLDERS: dict[str, str] = {"config": "configs", "sweep": "sweeps"}


def _folder(kind: Kind) -> Path:
    return Path(str(resources.files(__package__ or "promptopt.experiments") / _FOLDERS[kind]))


def shipped_names(kind: Kind = "config") -> list[str]:
    """The names of the shipped configs (``kind="config"``) or sweep files (``"sweep"``)."""
    folder = _folder(kind)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def resolve(value: str, kind: Kind = "config") -> str:
    """``value`` when it is an existing file, else the path of the shipped file of that name.

    Raises:
        argparse.ArgumentTypeError: Neither a file nor a shipped name (the message lists the names).
    """
    if Path(value).is_file():
        return value
    name = value[: -len(".yaml")] if value.endswith(".yaml") else value
    if name and "/" not in name and "\\" not in name:
        path = _folder(kind) / f"{name}.yaml"
        if path.is_file():
            return str(path)
    names = ", ".join(shipped_names(kind)) or "none"
    raise argparse.ArgumentTypeError(
        f"{kind} file {value} does not exist, nor is it the name of a shipped {kind} ({names})"
    )


def config_arg(value: str) -> str:
    """argparse ``type=`` of a command's CONFIG argument."""
    return resolve(value, "config")


def sweep_arg(value: str) -> str:
    """argparse ``type=`` of ``promptopt sweep FILE``."""
    return resolve(value, "sweep")
