"""Sweeps across machines: ``promptopt sweep --storage`` workers share one optuna study.

The real check starts two ``promptopt sweep`` processes at once on one SQLite database and on one
journal file and counts the trials by number: every number once, none lost, each worker its own.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from promptopt.errors import ConfigError
from promptopt.experiments.local_sweep import load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[2]


def _sweep_file(tmp_path: Path, config: str = "cfg.yaml", **fields) -> Path:
    raw = {"program": "experiments/train.py", "method": "random",
           "metric": {"name": "val/ndcg@10", "goal": "maximize"},
           "parameters": {"ppo.learning_rate": {"distribution": "log_uniform_values",
                                                "min": 1e-4, "max": 1e-2}},
           "command": ["${env}", "${interpreter}", "${program}", config, "--eval.split=val", "${args}"]}
    raw.update(fields)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _storage(kind: str, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else str(tmp_path / "study.journal")


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "leaderboard.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_workers_one_after_another_continue_one_study(kind, tmp_path) -> None:
    """A second worker on the same storage numbers on from the first; the leaderboard lists both."""
    spec = load_sweep(_sweep_file(tmp_path))
    storage = _storage(kind, tmp_path)
    out = tmp_path / "out"

    def trial(overrides, run_dir):
        rate = float(overrides[0].split("=")[1])
        return {"val/ndcg@10": rate}

    first = run_sweep(spec, count=2, output_dir=out, trial_fn=trial, seed=1, storage=storage)
    second = run_sweep(spec, count=3, output_dir=out, trial_fn=trial, seed=2, storage=storage)
    assert [r.number for r in first] == [0, 1] and [r.number for r in second] == [2, 3, 4]
    rows = _rows(out)
    assert sorted(int(r["trial"]) for r in rows) == [0, 1, 2, 3, 4]
    assert all(r["state"] == "complete" for r in rows)
    values = [float(r["val/ndcg@10"]) for r in rows]
    assert values == sorted(values, reverse=True)
    assert {r["run_dir"] for r in rows} == {str(out / f"trial-{n:03d}") for n in range(5)}


def test_without_storage_each_sweep_is_its_own_study(tmp_path) -> None:
    spec = load_sweep(_sweep_file(tmp_path))
    for k in range(2):
        results = run_sweep(spec, count=2, output_dir=tmp_path / f"out{k}",
                            trial_fn=lambda o, d: {"val/ndcg@10": 1.0})
        assert [r.number for r in results] == [0, 1]


def test_a_stored_study_of_another_sweep_is_refused(tmp_path) -> None:
    storage = _storage("sqlite", tmp_path)
    ok = lambda o, d: {"val/ndcg@10": 0.5}  # noqa: E731
    run_sweep(load_sweep(_sweep_file(tmp_path)), count=1, output_dir=tmp_path / "a", trial_fn=ok,
              storage=storage)
    other = load_sweep(_sweep_file(tmp_path, parameters={"ppo.ent_coef": {"values": [0.0, 0.1]}}))
    with pytest.raises(ConfigError, match=r"holds a study 'sweep' of a different sweep.*--study-name"):
        run_sweep(other, count=1, output_dir=tmp_path / "b", trial_fn=ok, storage=storage)
    flipped = load_sweep(_sweep_file(tmp_path, metric={"name": "val/ndcg@10", "goal": "minimize"}))
    with pytest.raises(ConfigError, match="of a different sweep"):
        run_sweep(flipped, count=1, output_dir=tmp_path / "b", trial_fn=ok, storage=storage)
    # Under another study name the same storage takes it.
    results = run_sweep(other, count=1, output_dir=tmp_path / "c", trial_fn=ok, storage=storage,
                        study_name="entropy")
    assert [r.state for r in results] == ["complete"]


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("postgresql+nosuchdriver://u:SECRET@127.0.0.1:1/db", "optuna cannot open it"),
        ("{tmp}/no/such/folder/study.journal", "does not exist; create it"),
        ("{tmp}", "is a folder; give a journal file path"),
    ],
)
def test_a_bad_storage_is_one_line_and_hides_credentials(tmp_path, storage, message, capsys) -> None:
    from promptopt.experiments.cli import main

    sweep = _sweep_file(tmp_path, config=str(ROOT / "experiments" / "configs" / "quickstart.yaml"))
    code = main(["sweep", str(sweep), "--count", "1", "--storage", storage.format(tmp=tmp_path),
                 "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert "SECRET" not in err[0]
    assert not (tmp_path / "out").exists(), "nothing starts before the storage opens"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_worker_processes_share_one_study(kind, tmp_path, tiny_config) -> None:
    """Two ``promptopt sweep`` processes at once on one storage: each trial number runs exactly once."""
    config = tiny_config(tmp_path, policy={"kind": "mlp"}, eval={"selectors": ["best_fixed", "policy"]})
    sweep = _sweep_file(tmp_path, config=str(config))
    storage = _storage(kind, tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PROMPTOPT_PROGRESS": "0"}
    command = [sys.executable, "-m", "promptopt", "sweep", str(sweep), "--count", "2", "--storage", storage,
               "--output-dir", str(tmp_path / "sweep")]  # one folder, as on a shared disk
    workers = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    logs = [w.communicate(timeout=900) for w in workers]
    for worker, (_out, err) in zip(workers, logs):
        assert worker.returncode == 0, err[-3000:]
    started = [[int(n) for n in re.findall(r"sweep sweep trial (\d+): ", err)] for _out, err in logs]
    assert [len(s) for s in started] == [2, 2], started  # each worker ran its --count
    assert sorted(started[0] + started[1]) == [0, 1, 2, 3], "a trial number ran twice or went missing"

    import optuna

    from promptopt.experiments.sweep_storage import open_storage

    study = optuna.load_study(study_name="sweep", storage=open_storage(storage))
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    rates = [t.params["ppo.learning_rate"] for t in trials]
    assert len(set(rates)) == 4, "each worker samples its own parameters"
    rows = _rows(tmp_path / "sweep")
    assert sorted(int(r["trial"]) for r in rows) == [0, 1, 2, 3], "the leaderboard lists both workers"
    assert len({r["worker"] for r in rows}) == 2
    for row in rows:
        assert (Path(row["run_dir"]) / "prompts.json").is_file()


@pytest.mark.parametrize("race", ["table studies already exists",
                                  "UNIQUE constraint failed: alembic_version"])
def test_a_worker_that_loses_the_schema_race_opens_the_winners_tables(race, tmp_path, monkeypatch) -> None:
    """Two workers starting together on a new database: the loser's first open fails with either
    error, depending on where they interleave; it opens the tables the winner made."""
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError

    from promptopt.experiments.sweep_storage import open_storage

    real = optuna.storages.RDBStorage
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    opened = []

    def racing(*args, **kwargs):
        if not opened:  # the winner creates the schema while this worker was creating it too
            opened.append(real(url))
            error = IntegrityError if "UNIQUE" in race else OperationalError
            raise error("CREATE TABLE studies", {}, Exception(race))
        opened.append(real(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    storage = open_storage(url)
    monkeypatch.undo()  # optuna checks isinstance(storage, RDBStorage)
    assert storage is opened[-1] and len(opened) == 2
    optuna.create_study(study_name="s", storage=storage).optimize(lambda t: t.suggest_float("x", 0, 1), 1)
    assert len(optuna.load_study(study_name="s", storage=real(url)).trials) == 1


def test_an_rdb_error_that_is_not_the_schema_race_is_one_line(tmp_path, monkeypatch) -> None:
    import optuna
    from sqlalchemy.exc import OperationalError

    from promptopt.experiments.sweep_storage import open_storage

    calls = []

    def broken(*args, **kwargs):
        calls.append(args)
        raise OperationalError("SELECT 1", {}, Exception("unable to open database file"))

    monkeypatch.setattr(optuna.storages, "RDBStorage", broken)
    with pytest.raises(ConfigError, match="unable to open database file") as info:
        open_storage(f"sqlite:///{tmp_path / 'x.db'}")
    assert len(calls) == 1, "not retried: it is not a race"
    assert "\n" not in str(info.value)
