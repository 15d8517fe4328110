"""Sweeps: wandb's command line parsed into the config, the local optuna runner, the leaderboard."""

from __future__ import annotations

import csv
import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from promptopt.config import load_config
from promptopt.errors import ConfigError
from promptopt.experiments.local_sweep import as_overrides, load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = ROOT / "experiments" / "sweeps"


def _run_train_script(argv: list[str], monkeypatch) -> tuple[str, list[str]]:
    """Run ``experiments/train.py`` as ``wandb agent`` does; return what reached the pipeline."""
    from promptopt.experiments import pipeline

    received: list[tuple[str, list[str]]] = []

    def train_from_cli(config_path, *, overrides=(), output_dir=None, resume=None):
        received.append((config_path, list(overrides)))
        raise ConfigError("stopped before training: the test only reads the command line")

    monkeypatch.setattr(pipeline, "train_from_cli", train_from_cli)
    monkeypatch.setattr(sys, "argv", [str(ROOT / "experiments" / "train.py"), *argv])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(ROOT / "experiments" / "train.py"), run_name="__main__")
    assert exit_.value.code == 2  # the ConfigError above, reported as the CLI reports user errors
    assert len(received) == 1
    return received[0]


def test_a_wandb_agent_command_line_parses_into_the_config(monkeypatch) -> None:
    """Build the argv exactly as ``wandb agent`` does for a sample of the shipped sweep file."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    raw = yaml.safe_load((SWEEPS / "ppo_bayes.yaml").read_text())
    sample = {"ppo.learning_rate": 0.00042, "ppo.ent_coef": 0.05, "ppo.n_epochs": 7,
              "policy.hidden": [64, 64], "reward.views": ["temporal", "dropout"], "seed": 3}
    assert set(sample) - {"reward.views", "seed"} == set(raw["parameters"])
    flags = create_sweep_command_args({"args": {k: {"value": v} for k, v in sample.items()}})["args"]
    assert "--ppo.learning_rate=0.00042" in flags and "--reward.views=['temporal', 'dropout']" in flags
    # The sweep's command: ${interpreter} ${program} CONFIG ${args}
    command = [c for c in raw["command"] if not c.startswith("${")]
    config_path, overrides = _run_train_script([*command, *flags], monkeypatch)
    config = load_config(ROOT / config_path, overrides)
    assert config.ppo.learning_rate == pytest.approx(0.00042)
    assert config.ppo.ent_coef == pytest.approx(0.05)
    assert config.ppo.n_epochs == 7
    assert config.policy.hidden == (64, 64)
    assert config.reward.views == ("temporal", "dropout")
    assert config.seed == 3


@pytest.mark.parametrize("script", ["train", "evaluate", "export"])
def test_the_scripts_run_from_any_folder_as_the_cli(script: str, tmp_path: Path) -> None:
    """``python experiments/<script>.py`` (as wandb agents run the program) is ``promptopt <script>``."""
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / f"{script}.py"), "--help"],
                         capture_output=True, text=True, cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: promptopt {script} ")


def test_no_module_of_experiments_shadows_a_library_when_a_script_runs() -> None:
    """Python puts a script's folder first on ``sys.path``: a module there named like the standard
    library or an installed package would replace it for everything the script imports."""
    import importlib.metadata

    installed = set(sys.stdlib_module_names)
    for dist in importlib.metadata.distributions():  # each file's first folder (or module) is importable
        installed.update(Path(f).parts[0].removesuffix(".py") for f in dist.files or ())
    installed -= {"experiments", "promptopt", "envs", "policies", "tests"}
    ours = {p.stem for p in (ROOT / "experiments").glob("*.py")} | {
        p.name for p in (ROOT / "experiments").iterdir() if (p / "__init__.py").is_file()}
    assert not ours & installed, f"rename experiments/{sorted(ours & installed)}: they shadow libraries"


def test_as_overrides_round_trips_through_the_config() -> None:
    overrides = as_overrides({"ppo.learning_rate": 3e-05, "policy.hidden": [32], "tracking.wandb": False,
                              "budget.max_calls": None})
    assert overrides == ["--ppo.learning_rate=3e-05", "--policy.hidden=[32]", "--tracking.wandb=false",
                         "--budget.max_calls=null"]
    config = load_config(ROOT / "experiments" / "configs" / "quickstart.yaml", overrides)
    assert config.ppo.learning_rate == pytest.approx(3e-05)
    assert (config.policy.hidden, config.tracking.wandb, config.budget.max_calls) == ((32,), False, None)


def _sweep_file(tmp_path: Path, **fields) -> Path:
    raw = {"program": "experiments/train.py", "method": "random",
           "metric": {"name": "val/ndcg@10", "goal": "maximize"},
           "parameters": {"ppo.learning_rate": {"distribution": "log_uniform_values",
                                                "min": 1e-4, "max": 1e-2}},
           "command": ["${env}", "${interpreter}", "${program}", "cfg.yaml", "${args}"]}
    raw.update(fields)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"method": "hyperband"}, "method must be one of"),
        ({"metric": {"goal": "maximize"}}, "metric must be a mapping with a name"),
        ({"parameters": {"ppo.n_steps": {"distribution": "normal", "min": 1, "max": 2}}},
         "parameters.ppo.n_steps: distribution 'normal' is not supported"),
        ({"parameters": {"ppo.n_steps": {"min": 1}}}, "parameters.ppo.n_steps needs"),
            ({"method": "grid"}, "grid search needs a values list for parameters.ppo.learning_rate"),
        ({"metric": {"name": "test/ndcg@10"}}, "is not a validation metric: sweeps tune on validation users"),
        ({"metric": {"name": "eval/ndcg@10"}}, "is not a validation metric"),
        ({"parameters": {"eval.split": {"values": ["val", "test"]}}}, "eval.split cannot be swept"),
    ],
)
def test_bad_sweep_files_fail_at_load(tmp_path, fields, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_sweep(_sweep_file(tmp_path, **fields))


def test_grid_runs_each_point_once_and_records_failures(tmp_path) -> None:
    path = _sweep_file(tmp_path, method="grid", metric={"name": "val/drop", "goal": "minimize"},
                       parameters={"reward.robust_weight": {"values": [0.0, 0.3, 0.6]},
                                   "reward.aggregate": {"values": ["mean_std", "worst"]},
                                   "seed": {"value": 5}})
    spec = load_sweep(path)
    assert spec.config_path == "cfg.yaml" and spec.fixed == {"seed": 5}
    seen: list[list[str]] = []

    def trial(overrides, run_dir):
        seen.append(list(overrides))
        if "--reward.aggregate=worst" in overrides and "--reward.robust_weight=0.6" in overrides:
            raise ConfigError("this trial fails")
        weight = float(next(o for o in overrides if "robust_weight" in o).split("=")[1])
        return {"val/drop": 1.0 - weight + (0.01 if "worst" in " ".join(overrides) else 0.0)}

    results = run_sweep(spec, count=50, output_dir=tmp_path / "out", trial_fn=trial)
    assert len(results) == 6, "a grid stops when every point has run"
    assert len({tuple(sorted(s)) for s in seen}) == 6
    assert all("--seed=5" in s for s in seen)
    assert [r.state for r in results].count("failed") == 1
    with (tmp_path / "out" / "leaderboard.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    assert rows[0]["reward.robust_weight"] == "0.6" and rows[0]["reward.aggregate"] == "mean_std"
    assert rows[-1]["state"] == "failed" and rows[-1]["error"] == "this trial fails"
    values = [float(r["val/drop"]) for r in rows if r["state"] == "complete"]
    assert values == sorted(values)
    markdown = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "minimize `val/drop`" in markdown and "trial" in markdown and "this trial fails" in markdown


def test_a_trial_without_the_metric_fails_that_trial(tmp_path) -> None:
    spec = load_sweep(_sweep_file(tmp_path))
    results = run_sweep(spec, count=2, output_dir=tmp_path / "out", trial_fn=lambda o, d: {"val/other": 1.0})
    assert [r.state for r in results] == ["failed", "failed"]
    assert "did not report the sweep metric 'val/ndcg@10'" in results[0].error


@pytest.mark.slow
def test_local_sweep_runs_three_full_trials(tmp_path, monkeypatch, tiny_config) -> None:
    from promptopt.experiments.local_sweep import sweep as run_local_sweep

    monkeypatch.chdir(tmp_path)
    # Each trial a full run: PPO, best-fixed scan, evaluation, export, wandb offline.
    config = tiny_config(tmp_path, policy={"kind": "mlp"}, tracking={"wandb": True, "mode": "offline"},
                         eval={"selectors": ["random", "best_fixed", "policy", "oracle"]})
    sweep = _sweep_file(tmp_path, method="bayes",
                        parameters={"ppo.learning_rate": {"distribution": "log_uniform_values",
                                                          "min": 1e-4, "max": 1e-2},
                                    "ppo.ent_coef": {"values": [0.0, 0.05]}},
                        command=["${env}", "${interpreter}", "${program}", str(config), "${args}"])
    out = run_local_sweep(sweep, count=3, output_dir=tmp_path / "sweep", seed=0)
    with (out / "leaderboard.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and all(r["state"] == "complete" for r in rows), rows
    values = [float(r["val/ndcg@10"]) for r in rows]
    assert values == sorted(values, reverse=True)
    best = rows[0]
    command = (out / "leaderboard.md").read_text().split("```")[1].strip()
    assert command.startswith(f"promptopt train {config} --eval.split=test")
    assert f"--ppo.ent_coef={best['ppo.ent_coef']}" in command
    for row in rows:
        trial_dir = Path(row["run_dir"])
        metrics = json.loads((trial_dir / "metrics.json").read_text())
        assert metrics["evaluation"]["split"] == "val", "trials never score test users"
        assert not any(k.startswith("test/") for k in metrics["summary"])
        assert (trial_dir / "prompts.json").is_file()
        assert list((trial_dir / "wandb").glob("offline-run-*")), "each trial logs to wandb offline"
        trained = load_config(trial_dir / "config.yaml")
        assert f"{trained.ppo.learning_rate:.6g}" == f"{float(row['ppo.learning_rate']):.6g}"


def test_the_metric_name_is_checked_before_the_first_trial(tmp_path, tiny_config) -> None:
    """A typo in metric.name fails at once, naming the closest key, before any trial is paid for."""
    from promptopt.experiments.local_sweep import sweep as run_local_sweep

    config = tiny_config(tmp_path)
    sweep = _sweep_file(tmp_path, metric={"name": "val/ndcg@01"},
                        command=["${env}", "${interpreter}", "${program}", str(config), "${args}"])
    with pytest.raises(ConfigError, match=r"will not report metric 'val/ndcg@01'; did you mean .*ndcg@10"):
        run_local_sweep(sweep, count=3, output_dir=tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()


def test_a_sweep_whose_every_trial_failed_exits_non_zero(tmp_path, tiny_config, capsys) -> None:
    from promptopt.experiments.cli import main

    # Every trial asks for more negatives than the data has: a user error per trial, after loading.
    config = tiny_config(tmp_path, split={"n_negatives": 500})
    sweep = _sweep_file(tmp_path, command=["${env}", "${interpreter}", "${program}", str(config), "${args}"])
    code = main(["sweep", str(sweep), "--count", "2", "--output-dir", str(tmp_path / "sweep")])
    err = capsys.readouterr().err
    assert code == 2
    assert "every trial failed (2 of 2)" in err and "split.n_negatives=500" in err
    assert "failed" in (tmp_path / "sweep" / "leaderboard.md").read_text()


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_sweeps_tune_on_validation_users(path: Path) -> None:
    from promptopt.experiments.local_sweep import check_metric

    spec = load_sweep(path)
    raw = yaml.safe_load(path.read_text())
    assert spec.metric.startswith("val/") and "--eval.split=val" in raw["command"]
    check_metric(spec, load_config(ROOT / spec.config_path, ["--eval.split=val"]))
