"""Fixtures of the experiments tests: a config small enough that a full run takes seconds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml


def tiny_config_dict(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    """80 synthetic users, 4 templates, 10 candidates, the simulated ranker, 256 PPO steps.

    ``sections`` update the matching sections (a dict) or replace a top-level value.
    """
    raw: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "data": {"format": "synthetic",
                 "synthetic": {"n_users": 80, "n_items": 120, "n_genres": 8, "mean_history": 20, "seed": 3}},
        "split": {"n_targets": 3, "n_negatives": 9, "drift_quantile": 0.7},
        "templates": {"catalog": "movies",
                      "include": ["expert.recent5.none.index", "expert.recent10.none.index",
                                  "expert.genres10.none.index", "expert.profile.none.index"]},
        "ranker": {"backend": "simulated", "noise": 0.05},
        "cache": {"enabled": True, "path": str(tmp_path / "cache.sqlite")},
        "reward": {"robust_weight": 0.0},
        "env": {"n_envs": 4},
        "policy": {"embedding_dim": 8, "n_layers": 1, "bpr_epochs": 2, "hidden": [16], "pi": [16],
                   "vf": [16]},
        "ppo": {"total_timesteps": 256, "n_steps": 16, "batch_size": 32, "n_epochs": 2,
                "checkpoint_every": 64},
        "eval": {"n_bootstrap": 200, "bandit_steps": 64},
        "tracking": {"wandb": False},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    return raw


@pytest.fixture()
def tiny_config() -> Callable[..., Path]:
    """``tiny_config(tmp_path, **sections) -> Path`` of a written tiny config YAML."""

    def write(tmp_path: Path, **sections: Any) -> Path:
        path = tmp_path / "tiny.yaml"
        path.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, **sections)))
        return path

    return write
