"""One entry point for every dataset layout: :func:`load_dataset` by format name, :func:`load_data`
from a :class:`~promptopt.config.DataConfig`. Loaders read local files only; they never download
(``promptopt data fetch`` does, when asked)."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promptopt.config import DataConfig
from promptopt.data.generic import load_generic
from promptopt.data.interactions import InteractionData
from promptopt.data.lastfm import load_lastfm
from promptopt.data.movielens import load_movielens_1m, load_movielens_100k, load_movielens_latest
from promptopt.data.synthetic import make_synthetic
from promptopt.errors import ConfigError

logger = logging.getLogger(__name__)

LOADERS: dict[str, Callable[..., InteractionData]] = {
    "movielens-100k": load_movielens_100k,
    "movielens-1m": load_movielens_1m,
    "movielens-latest": load_movielens_latest,
    "lastfm": load_lastfm,
    "generic": load_generic,
}
"""Format name -> loader taking the dataset folder and the format's keyword options."""

DATASET_FORMATS: tuple[str, ...] = ("synthetic", *LOADERS)
"""Every ``data.format`` value: the file layouts plus ``synthetic``."""


def load_dataset(format: str, path: str | Path, **options: Any) -> InteractionData:
    """Load the dataset of layout ``format`` from the folder ``path``.

    Args:
        format: One of :data:`LOADERS` (``movielens-100k``, ``movielens-1m``, ``movielens-latest``,
            ``lastfm``, ``generic``).
        path: Folder holding the dataset's own files.
        **options: The format's keyword options (e.g. ``title_column`` for ``generic``); each name
            is checked against the loader, so a typo fails instead of being ignored.

    Raises:
        ConfigError: Unknown format or option.
        DataFormatError: Missing or malformed files (names the path and line).
    """
    loader = LOADERS.get(format)
    if loader is None:
        raise ConfigError(
            f"unknown dataset format {format!r}: use one of {', '.join(LOADERS)} "
            "(or 'synthetic' through load_data)"
        )
    known = [name for name in inspect.signature(loader).parameters if name != "path"]
    for name in options:
        if name not in known:
            choices = ", ".join(known) if known else "none"
            raise ConfigError(f"format {format!r} has no option {name!r} (its options: {choices})")
    start = time.perf_counter()
    data = loader(path, **options)
    logger.info("loaded %s from %s in %.2f s", data.describe(), path, time.perf_counter() - start)
    return data


def load_data(config: DataConfig) -> InteractionData:
    """The dataset a config names: generated for ``synthetic``, else read from ``config.path``.

    Raises:
        ConfigError: ``path`` missing for a file format.
        DataFormatError: Missing or malformed files.
    """
    if config.format == "synthetic":
        return make_synthetic(**dataclasses.asdict(config.synthetic))
    if config.path is None:
        raise ConfigError(
            f"data.path is required for data.format {config.format!r}: set it to the folder holding "
            "the dataset's files (or use data.format: synthetic)"
        )
    options: dict[str, Any] = {}
    if config.format == "generic":
        options = {"title_column": config.title_column, "genres_column": config.genres_column}
    return load_dataset(config.format, config.path, **options)
