"""A run is one account and one owner: the budget caps the whole run across phases and resumes, a
resume cannot change what the run is made of, a second process is refused, a failed start leaves
nothing behind. Each case is an example of issue 12, driven through the real CLI (in process).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptopt.experiments.cli import main
from tests.experiments.conftest import tiny_config_dict

ROOT = Path(__file__).resolve().parents[2]
LOGS = ("INFO ", "DEBUG ", "WARNING ")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and the one error line (asserting there is exactly one when the code is 2)."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(LOGS)]
    assert "Traceback" not in err
    if code == 2:
        assert len(lines) == 1, err
        return code, lines[0]
    return code, ""


def _config(folder: Path, **sections: Any) -> Path:
    sections.setdefault("policy", {"kind": "mlp"})
    sections.setdefault("eval", {"selectors": ["random", "best_fixed", "policy"], "n_bootstrap": 50,
                                 "bandit_steps": 32})
    raw = tiny_config_dict(folder, **sections)
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _cached(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("select count(*) from answers").fetchone()[0])


def _ledger(run: Path) -> dict[str, Any]:
    return json.loads((run / "budget.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------- the budget is the run's
@pytest.mark.slow
def test_max_calls_caps_training_and_evaluation_together(tmp_path: Path, capsys) -> None:
    """`train CONFIG --budget.max_calls=70` used to make 61 training + 62 evaluation calls and exit 0."""
    config = _config(tmp_path)
    code, line = _run(["train", str(config), "--output-dir", str(tmp_path / "run"), "--budget.max_calls=70"],
                      capsys)
    assert code == 2 and "ranker budget reached (max_calls=70" in line and "--resume" in line
    ledger = _ledger(tmp_path / "run")
    assert ledger["calls"] == 70 == _cached(tmp_path / "cache.sqlite")  # every paid answer is kept


@pytest.mark.slow
def test_the_budget_spans_phases_and_resumes(tmp_path: Path, capsys) -> None:
    config, run, cache = _config(tmp_path), tmp_path / "run", tmp_path / "cache.sqlite"
    assert _run(["train", str(config), "--output-dir", str(run), "--no-eval"], capsys)[0] == 0
    trained = _ledger(run)["calls"]
    assert trained == _cached(cache) > 0 and set(_ledger(run)["phases"]) == {"train"}
    cap = trained + 5
    # Training is done; evaluation (baselines, best-fixed scan, held-out users) spends the same account.
    code, line = _run(["train", "--resume", str(run), f"--budget.max_calls={cap}"], capsys)
    assert code == 2 and f"max_calls={cap}" in line
    ledger = _ledger(run)
    assert ledger["calls"] == cap == _cached(cache)
    assert ledger["phases"]["evaluate"]["calls"] == 5
    # A resume with the same cap continues the account: it sends nothing more.
    code, line = _run(["train", "--resume", str(run), f"--budget.max_calls={cap}"], capsys)
    assert code == 2 and _ledger(run)["calls"] == cap == _cached(cache)
    # A raised cap finishes the run; the ledger still equals what the cache holds.
    assert _run(["train", "--resume", str(run), "--budget.max_calls=100000"], capsys)[0] == 0
    ledger = _ledger(run)
    assert ledger["calls"] == _cached(cache) and (run / "prompts.json").is_file()
    assert {"train", "evaluate"} <= set(ledger["phases"])


@pytest.mark.slow
def test_max_cost_caps_a_priced_server_across_phases(tmp_path: Path, capsys, monkeypatch) -> None:
    """`--budget.max_cost=0.006` against a local OpenAI-compatible server used to spend 0.0126."""
    from promptopt.testing import LocalOpenAIServer

    monkeypatch.setenv("PROMPTOPT_INTEGRITY_KEY", "local")
    with LocalOpenAIServer() as server:
        ranker = {"backend": "openai", "model": "local-test", "base_url": server.base_url,
                  "api_key_env": "PROMPTOPT_INTEGRITY_KEY", "concurrency": 4,
                  "price_prompt_per_1m": 1.0, "price_completion_per_1m": 2.0}
        config = _config(tmp_path, ranker=ranker, ppo={"total_timesteps": 64, "n_steps": 8,
                                                        "checkpoint_every": 32})
        code, line = _run(["train", str(config), "--output-dir", str(tmp_path / "run"),
                           "--budget.max_cost=0.006"], capsys)
    assert code == 2 and "max_cost=0.006" in line
    ledger = _ledger(tmp_path / "run")
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        stored = db.execute("select count(*), sum(cost) from answers").fetchone()
    assert ledger["calls"] == stored[0] and ledger["cost"] == pytest.approx(stored[1])
    # Trimmed to what the money left pays for at the dearest call seen: no more than one call over.
    assert ledger["cost"] <= 0.006 + ledger["max_call_cost"]
    assert ledger["cost"] <= 0.006 * 1.1


def test_a_money_cap_without_prices_is_refused_at_load(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path)
    code, line = _run(["train", str(config), "--output-dir", str(tmp_path / "run"), "--budget.max_cost=1"],
                      capsys)
    assert code == 2 and "budget.max_cost=1" in line and "no price table" in line
    openai = _config(tmp_path, ranker={"backend": "openai", "model": "m"})
    code, line = _run(["estimate", str(openai), "--budget.max_cost=0.5"], capsys)
    assert code == 2 and "ranker.price_prompt_per_1m" in line and "every call would count as free" in line
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------- a run is never silently mixed
def _stored_run(folder: Path) -> Path:
    """A run directory as `promptopt train` leaves it before training (its resolved config.yaml)."""
    run = folder / "run"
    run.mkdir()
    raw = tiny_config_dict(folder, policy={"kind": "mlp"})
    (run / "config.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    return run


@pytest.mark.parametrize("override", [
    "--seed=7", "--data.synthetic.n_users=90", "--data.synthetic.seed=4", "--split.n_negatives=5",
    "--split.test_fraction=0.3", "--templates.include=[expert.recent5.none.index]",
    "--templates.catalog=music", "--reward.robust_weight=0.5", "--reward.metric=hit@5",
    "--ranker.noise=0.5", "--ranker.backend=embedding",
])
def test_resume_refuses_an_override_that_changes_the_run(tmp_path: Path, capsys, override: str) -> None:
    run = _stored_run(tmp_path)
    key = override[2:].partition("=")[0]
    code, line = _run(["train", "--resume", str(run), override], capsys)
    assert code == 2
    assert f"cannot resume with {override}: {key} defines the run" in line
    assert not (run / "checkpoints").exists(), "refused before anything ran"


def test_resume_accepts_budget_and_runtime_overrides(tmp_path: Path, capsys) -> None:
    run = _stored_run(tmp_path)
    code, line = _run(["train", "--resume", str(run), "--budget.max_calls=0", "--ranker.timeout_s=5",
                       "--seed=0"], capsys)  # --seed=0 is the stored seed: no change
    assert code == 2 and "ranker budget reached (max_calls=0" in line  # it ran, and stopped at the cap


def test_a_second_process_on_the_same_output_dir_is_refused_naming_the_first(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\nfrom pathlib import Path\nfrom promptopt.experiments.rundir import RunDir\n"
         "with RunDir(Path(sys.argv[1])).locked():\n    print('locked', flush=True)\n    sys.stdin.read()\n",
         str(run)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        config = _config(tmp_path)
        code, line = _run(["train", str(config), "--output-dir", str(run)], capsys)
        assert code == 2 and f"is in use by another promptopt process (pid {holder.pid}" in line
        assert not (run / "config.yaml").exists(), "the second process wrote nothing"
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)


def test_a_failed_start_leaves_no_directory(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path, templates={"include": ["no.such.template*"]})
    run = tmp_path / "runs" / "new"
    code, line = _run(["train", str(config), "--output-dir", str(run)], capsys)
    assert code == 2 and "no.such.template" in line
    assert not run.exists() and not (tmp_path / "runs").exists(), "a plain re-run must not be refused"
