"""The study end to end at CI size: synthetic data, the simulated ranker, one seed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from promptopt.errors import ConfigError

TEMPLATES = [
    "expert.recent5.none.index",
    "expert.genres10.none.index",
    "expert.profile.none.index",
    "expert.similar.none.index",
]


def study_yaml(tmp_path: Path, **study: Any) -> Path:
    raw = {
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
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_study_writes_a_complete_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from experiments.cli import main

    assert main(["study", str(study_yaml(tmp_path))]) == 0
    report = (tmp_path / "docs" / "RESULTS.md").read_text(encoding="utf-8")
    assert "## How to reproduce" in report and "promptopt study" in report
    assert re.search(r"Hardware: .+, \d+ cores", report)
    assert re.search(r"Wall time: \d+\.\d min", report)
    assert re.search(r"LLM calls \(uncached requests\) this run: [1-9]\d*", report)
    targets = report.split("## Targets", 1)[1].split("\n## ", 1)[0]
    for number in ("1.", "1'.", "2.", "3.", "4.", "5."):
        row = next(line for line in targets.splitlines() if line.startswith(f"| {number}"))
        assert re.search(r"\d+\.\d+", row), row
        assert re.search(r"met|found|policy [<>~] mlp_ppo", row), row
    for section in (
        "## 1. Non-inferiority",
        "## 2. Budget",
        "## 3. What the graph adds",
        "## 4. Drift",
        "## 5. Search for signal",
        "## Per seed",
        "## Attempts",
    ):
        assert section in report
    for name in (
        "best fixed template",
        "LightGCN+MLP PPO + validated gate",
        "LinUCB",
        "MLP-only PPO",
        "oracle in hindsight",
        "realistic per-user bound",
    ):
        assert name in report
    for png in ("selectors.png", "paired.png", "drift.png", "learning_curves.png"):
        path = tmp_path / "docs" / "results" / png
        assert path.stat().st_size > 1000 and f"results/{png}" in report
    assert "## Targets" in capsys.readouterr().out
    # Raw results: the oracle is an upper bound of every selector, per user.
    run = json.loads((tmp_path / "work" / "study.json").read_text(encoding="utf-8"))
    results = run["seeds"][0]["rewards"]["accuracy"]["results"]["last"]
    oracle = np.array(results["oracle"]["per_user"]["ndcg@10"])
    for name in ("best_fixed", "policy", "policy_safe", "linucb", "realistic"):
        assert np.all(np.array(results[name]["per_user"]["ndcg@10"]) <= oracle + 1e-9), name
    # Learned selectors never touch more than budget_share of the exhaustive sweep's calls.
    budget = run["seeds"][0]["rewards"]["accuracy"]
    assert 0 < budget["train"]["policy"]["distinct_calls"] <= 0.3 * budget["exhaustive_calls"]


def test_attempts_are_appended(tmp_path: Path) -> None:
    from experiments.study_report import _attempts_section

    rows = _attempts_section(
        [
            {
                "when": "t",
                "note": "first",
                "seeds": [0],
                "templates": 4,
                "ppo_steps": 64,
                "t1": {"accuracy/policy": [0.01, -0.02, 0.03]},
                "t4": {},
                "t5": {},
                "minutes": 1.0,
            }
        ]
    )
    assert "first" in rows[-2] and "+0.0100 [-0.0200, +0.0300]" in rows[-2]


def test_unknown_study_key_fails_with_its_name(tmp_path: Path) -> None:
    from experiments.study import load_study

    with pytest.raises(ConfigError, match=r"study\.sedes"):
        load_study(study_yaml(tmp_path), ["--study.sedes=[1]"])
    with pytest.raises(ConfigError, match=r"ppo\.total_timestep"):
        load_study(study_yaml(tmp_path), ["--ppo.total_timestep=3"])


def test_family_outside_the_catalog_fails_before_any_call(tmp_path: Path) -> None:
    from experiments.study import load_study, run_study

    config, study = load_study(study_yaml(tmp_path, families={"x": ["expert.nope.none.index"]}))
    with pytest.raises(ConfigError, match=r"expert\.nope\.none\.index"):
        run_study(config, study)
    assert not (tmp_path / "cache.sqlite").exists()


def test_gate_never_deviates_without_validated_gain() -> None:
    from experiments.study import choose_tau, gate_choices

    probs = np.array([[0.2, 0.8], [0.9, 0.1], [0.3, 0.7]])
    assert gate_choices(probs, 0, 0.5).tolist() == [1, 0, 0]
    assert gate_choices(probs, 0, float("inf")).tolist() == [0, 0, 0]
    worse = np.array([[0.5, 0.1], [0.5, 0.5], [0.5, 0.2]])
    assert choose_tau(probs, 0, worse, [0.1, 0.5], seed=0) == float("inf")
    better = np.tile(np.array([[0.1, 0.9]]), (3, 1))
    assert choose_tau(np.tile(probs[:1], (3, 1)), 0, better, [0.1, 0.9], seed=0) == 0.1
