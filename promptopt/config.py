"""One frozen dataclass tree per experiment, parsed from YAML only at the edge (CLI, scripts).

Field paths are the names sweeps and command-line overrides use: ``ppo.learning_rate``,
``reward.robust_weight``. Unknown keys and values of the wrong type fail with the key's path, and
so do values outside a field's range: every numeric field declares its bounds in its annotation
(``Annotated[int, Ge(1), Le(4096)]``), every choice is a ``Literal``, and rules between fields live
in the section's ``__post_init__``, so every command rejects the same inputs when the config loads.
Library functions take the sub-config they need, never the whole tree.

The sections themselves, one docstring per field, live in :mod:`promptopt.config_sections` and are
re-exported here; this module assembles them into :class:`ExperimentConfig`, checks the rules between
sections, and loads, overrides and serialises the tree.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any

from annotated_types import MaxLen, MinLen

from promptopt.config_sections import (  # the sections, re-exported: import them from here
    DRIFT_VIEWS,
    GATE_THRESHOLDS,
    BudgetConfig,
    CacheConfig,
    Count,
    DataConfig,
    DriftView,
    EnvConfig,
    EvalConfig,
    ExportConfig,
    FairnessConfig,
    GateConfig,
    Name,
    NonNegative,
    NonNegCount,
    PolicyConfig,
    Positive,
    PPOConfig,
    RankerConfig,
    RewardConfig,
    Seed,
    Share,
    SplitConfig,
    SynthConfig,
    SynthSize,
    TemplatesConfig,
    TrackingConfig,
    _section,
)
from promptopt.errors import ConfigError

__all__ = [
    "DRIFT_VIEWS",
    "GATE_THRESHOLDS",
    "BudgetConfig",
    "CacheConfig",
    "Count",
    "DataConfig",
    "DriftView",
    "EnvConfig",
    "EvalConfig",
    "ExperimentConfig",
    "ExportConfig",
    "FairnessConfig",
    "GateConfig",
    "Name",
    "NonNegCount",
    "NonNegative",
    "PPOConfig",
    "PolicyConfig",
    "Positive",
    "RankerConfig",
    "RewardConfig",
    "Seed",
    "Share",
    "SplitConfig",
    "SynthConfig",
    "SynthSize",
    "TemplatesConfig",
    "TrackingConfig",
    "_section",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "flatten",
    "load_config",
    "parse_scalar",
]


@_section
class ExperimentConfig:
    """Everything one run needs."""

    name: Annotated[str, MinLen(1), MaxLen(200)] = "run"
    """Run name (run directory prefix)."""
    seed: Seed = 0
    """Seed of splits, candidates, PPO and baselines."""
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    templates: TemplatesConfig = field(default_factory=TemplatesConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    fairness: FairnessConfig = field(default_factory=FairnessConfig)

    def __post_init__(self) -> None:
        if self.env.train_targets > self.split.n_targets:
            raise ConfigError(
                f"env.train_targets={self.env.train_targets} asks for more targets per training user than "
                f"the split builds (split.n_targets={self.split.n_targets}): lower env.train_targets or "
                "raise split.n_targets"
            )
        r = self.ranker
        if self.budget.max_cost is not None and r.backend != "openai":
            raise ConfigError(
                f"budget.max_cost={self.budget.max_cost} caps money, but ranker.backend {r.backend!r} has no "
                "price table (only the openai backend is priced): cap budget.max_calls / max_tokens instead"
            )
        if self.budget.max_cost is not None and not (r.price_prompt_per_1m or r.price_completion_per_1m):
            raise ConfigError(
                f"budget.max_cost={self.budget.max_cost} caps money, but ranker.price_prompt_per_1m and "
                "ranker.price_completion_per_1m are 0, so every call would count as free: set the prices "
                "of your model, or cap budget.max_calls / max_tokens instead"
            )


# ---------------------------------------------------------------------- parsing

_SECTIONS: dict[str, type] = {
    cls.__name__: cls
    for cls in (SynthConfig, DataConfig, SplitConfig, TemplatesConfig, RankerConfig, CacheConfig,
                BudgetConfig, RewardConfig, EnvConfig, PolicyConfig, PPOConfig, EvalConfig,
                TrackingConfig, ExportConfig, FairnessConfig)
}


def config_from_dict(raw: Mapping[str, Any], *, source: str = "config") -> ExperimentConfig:
    """Validate a nested mapping into an :class:`ExperimentConfig`.

    Raises:
        ConfigError: One line naming the first bad key path (``ppo.learning_rate``) and why.
    """
    import pydantic

    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return pydantic.TypeAdapter(ExperimentConfig).validate_python(dict(raw))
    except ConfigError as exc:  # raised by a section's own check (__post_init__)
        raise ConfigError(f"{source}: {exc}") from None
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in err["loc"])
        if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            raise ConfigError(f"{source}: unknown key {path!r}{_suggest(path)}") from None
        got = _short(err.get("input"))
        raise ConfigError(f"{source}: {path}: {err['msg']} (got {got}){_suggest_value(err)}") from None


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (an error line stays one readable line)."""
    import reprlib

    from promptopt.redact import redact_urls

    short = reprlib.Repr()  # keyword arguments need Python 3.12
    short.maxlevel, short.maxlist, short.maxdict, short.maxstring, short.maxother = 3, 6, 6, limit, limit
    text = redact_urls(short.repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _suggest_value(err: Mapping[str, Any]) -> str:
    """`` (did you mean 'deploy'?)`` for a mistyped choice of a ``Literal`` field, else ``""``."""
    if err.get("type") != "literal_error" or not isinstance(err.get("input"), str):
        return ""
    import re

    from promptopt.suggest import closest

    choices = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
    close = closest(err["input"], choices)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _suggest(path: str) -> str:
    """`` (did you mean 'ppo.learning_rate'?)`` or the list of keys of the section."""
    from promptopt.suggest import closest

    cls: Any = ExperimentConfig
    parts = path.split(".")
    for part in parts[:-1]:
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        nested = _SECTIONS.get(str(fields.get(part, "")))
        if nested is None:
            return ""
        cls = nested
    names = [f.name for f in dataclasses.fields(cls)]
    prefix = ".".join([*parts[:-1], ""])
    close = closest(parts[-1], names)
    if close:
        return f" (did you mean {prefix + close[0]!r}?)"
    return f" (known keys here: {', '.join(names)})"


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML config and apply ``key.path=value`` overrides (the names wandb sweeps pass).

    Raises:
        ConfigError: Missing or malformed file, unknown key, wrong type.
    """
    from promptopt.strict_yaml import load_strict_yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    raw = load_strict_yaml(text, f"config file {path}", ConfigError) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    raw.setdefault("name", path.stem)
    return config_from_dict(apply_overrides(raw, overrides), source=str(path))


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``--a.b=value`` / ``a.b=value`` overrides applied.

    Values are parsed as YAML scalars (``3e-4`` is read as a float, ``[64,64]`` as a list).
    """
    import copy

    result = copy.deepcopy(dict(raw))
    for item in overrides:
        text = item[2:] if item.startswith("--") else item
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like --section.key=value")
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = parse_scalar(value)
    return result


def parse_scalar(value: str) -> Any:
    """Parse a command-line value: numbers (including ``3e-4``), booleans, null, lists, strings."""
    import yaml

    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(number) and value.strip().lstrip("+-").isdigit():
            return int(value)
        return number
    try:
        return yaml.safe_load(value)
    except (yaml.YAMLError, RecursionError):
        return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain nested dict (tuples as lists), ready for YAML / JSON / wandb."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [convert(v) for v in value]
        return value

    return convert(config)


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"ppo.learning_rate": 3e-4, ...}``: the dotted names sweeps and overrides use."""
    flat: dict[str, Any] = {}
    for key, value in (config_to_dict(config) if not isinstance(config, dict) else config).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
