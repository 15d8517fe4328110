"""Fixtures of the study tests: the study at CI size (synthetic data, the simulated ranker, one seed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

TEMPLATES = [
    "expert.recent5.none.index",
    "expert.genres10.none.index",
    "expert.profile.none.index",
    "expert.similar.none.index",
]


def write_study_yaml(tmp_path: Path, experiment: dict[str, Any] | None = None, **study: Any) -> Path:
    """A study YAML under ``tmp_path``: ``study`` updates the protocol, ``experiment`` replaces sections."""
    raw: dict[str, Any] = {
        "study": {
            "seeds": [0],
            "robust_weight": 0.5,
            "budget_share": 0.3,
            "gate_grid": [0.1, 0.3],
            "families": {"recency": TEMPLATES[:3], "hints": [TEMPLATES[1], TEMPLATES[3]]},
            "output": str(tmp_path / "docs" / "RESULTS.md"),
            "plots_dir": str(tmp_path / "docs" / "results"),
            "work_dir": str(tmp_path / "work"),
            "note": "CI",
            **study,
        },
        "experiment": {
            "data": {
                "format": "synthetic",
                "synthetic": {"n_users": 90, "n_items": 120, "n_genres": 8, "mean_history": 24, "seed": 3},
            },
            "split": {
                "val_fraction": 0.2,
                "test_fraction": 0.3,
                "n_targets": 3,
                "n_negatives": 9,
                "drift_quantile": 0.7,
            },
            "templates": {"catalog": "movies", "include": TEMPLATES},
            "ranker": {"backend": "simulated", "noise": 0.05},
            "cache": {"enabled": True, "path": str(tmp_path / "cache.sqlite")},
            "reward": {"views": ["temporal"]},
            "env": {"n_envs": 4},
            "policy": {
                "embedding_dim": 8,
                "n_layers": 1,
                "bpr_epochs": 2,
                "hidden": [16],
                "pi": [16],
                "vf": [16],
            },
            "ppo": {"total_timesteps": 64, "n_steps": 8, "batch_size": 32, "n_epochs": 2},
            "eval": {"n_bootstrap": 100},
            "tracking": {"wandb": False},
        },
    }
    for section, values in (experiment or {}).items():
        raw["experiment"][section] = values
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture()
def study_yaml() -> Callable[..., Path]:
    """``study_yaml(tmp_path, experiment=None, **study) -> Path`` of a written CI-size study YAML."""
    return write_study_yaml
