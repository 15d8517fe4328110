"""The study's YAML: a ``study`` section (the protocol, :class:`StudyConfig`) and an ``experiment``.

``experiment`` is an ordinary experiment config (every key as in ``experiments/configs/*.yaml``);
``--study.key=value`` overrides go to the protocol, every other ``--section.key=value`` to it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from promptopt.config import ExperimentConfig, apply_overrides, config_from_dict
from promptopt.errors import ConfigError
from promptopt.strict_yaml import load_strict_yaml


@dataclass(frozen=True)
class StudyConfig:
    """The protocol's own settings (the ``study`` section of the YAML)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds (LightGCN, PPO, bandits, random baseline)."""
    data_seed: int = 0
    """Seed of the user sample, the split, candidates and shown orders (fixed across seeds)."""
    robust_weight: float = 0.5
    """w of the drift-robust reward (the accuracy-only reward has w = 0)."""
    budget_share: float = 0.3
    """Share of the exhaustive sweep's calls the learned selectors may spend in training (the safe
    policy's training-budget scan included)."""
    gate_grid: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)
    """Candidate probability margins of the safety gate (chosen on validation users)."""
    families: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Template families of the search for signal: name -> template ids."""
    output: str = "docs/RESULTS.md"
    """The generated report."""
    plots_dir: str = "docs/results"
    """PNG plots and the attempts log."""
    work_dir: str = "runs/study"
    """Agents, embeddings and raw results."""
    chunk: int = 512
    """Requests per ranker call while filling the answer tables."""
    pool_share: float = 0.3
    """Share of the training users PPO and the bandits train on (<= budget_share)."""
    note: str = ""
    """What this attempt changed (kept with its measured numbers in the attempts log)."""
    drift_from: str = ""
    """A finished study's ``study.json`` (e.g. a ``split.protocol: deploy`` study's) whose drift
    results replace this run's in the report: the drift section, its plot and targets 4 / 4' then
    come from that run and name its protocol; everything else from this one. Empty: this run's own."""


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> tuple[ExperimentConfig, StudyConfig]:
    """Read the study YAML; ``--study.key=v`` overrides go to ``study``, the rest to ``experiment``.

    Raises:
        ConfigError: Missing file, unknown key, bad value, a dataset folder that does not exist.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"study config {path} does not exist") from None
    raw = load_strict_yaml(text, f"study config {path}", ConfigError) or {}
    if not isinstance(raw, dict) or set(raw) - {"study", "experiment"}:
        got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise ConfigError(f"{path}: expected the sections 'study' and 'experiment', got {got}")
    study = _study_section(path, raw.get("study") or {}, overrides)
    experiment = apply_overrides(raw.get("experiment") or {}, [o for o in overrides if not _is_study(o)])
    experiment.setdefault("name", path.stem)
    config = config_from_dict(experiment, source=str(path))
    if config.policy.kind != "lightgcn_mlp":
        raise ConfigError(
            f"{path}: experiment.policy.kind must be lightgcn_mlp, got {config.policy.kind!r} (the study "
            "compares the LightGCN+MLP policy with its MLP-only ablation and trains both)"
        )
    _check_data_path(path, config)
    return config, study


def _is_study(override: str) -> bool:
    return override.lstrip("-").startswith("study.")


def _study_section(path: Path, section: dict, overrides: Sequence[str]) -> StudyConfig:
    study_over = [o for o in overrides if _is_study(o)]
    notes = [o.split("=", 1)[1] for o in study_over if o.lstrip("-").startswith("study.note=")]
    study_over = [o for o in study_over if not o.lstrip("-").startswith("study.note=")]
    study_raw = apply_overrides({"study": section}, study_over)["study"]
    if notes:  # free text: never parsed as YAML
        study_raw["note"] = notes[-1]
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    unknown = sorted(set(study_raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key 'study.{unknown[0]}' (known: {', '.join(sorted(known))})")
    try:
        study = StudyConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in study_raw.items()})
        study = dataclasses.replace(study, families={k: tuple(v) for k, v in study.families.items()})
    except (TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: bad study section: {exc}") from None
    if (
        not study.seeds
        or not 0 < study.pool_share <= study.budget_share <= 1
        or not 0 < study.robust_weight <= 1
    ):
        raise ConfigError(
            f"{path}: study needs seeds, 0 < pool_share <= budget_share <= 1 and robust_weight in (0, 1]"
        )
    return study


def _check_data_path(path: Path, config: ExperimentConfig) -> None:
    """A dataset read from files needs its folder: fail before any model is loaded or call is paid."""
    data = config.data
    if data.format == "synthetic":
        return
    if data.path is None or not Path(data.path).is_dir():
        where = "is not set" if data.path is None else f"{data.path!r} is not a folder (from {Path.cwd()})"
        raise ConfigError(
            f"{path}: experiment.data.path {where}: set it in {path} to the {data.format} folder "
            "or pass --data.path=/path/to/it"
        )
