"""The real ``promptopt`` CLI, as a subprocess, on every kind of bad input: exit 2, one line, no traceback.

Each case runs ``python -m promptopt ...`` in a fresh folder. Besides log records (``INFO name: ...``),
stderr must hold exactly one line: the last, ``promptopt COMMAND: error: ...``, naming the problem.
Errors found before any work (config, data, catalog, key) must leave no run directory behind; errors
during training (server down, budget) must leave a checkpoint and say how to resume.

The in-process variants of many config errors are in ``test_cli.py``; this file checks the process.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.experiments.conftest import tiny_config_dict

LOG_RECORD = re.compile(r"^(DEBUG|INFO|WARNING) [\w.]+: ")
MISSING_KEY_ENV = "PROMPTOPT_CLI_ERRORS_UNSET_KEY"


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    expected: str
    """A regular expression the error line must match (after ``promptopt train: error: ``)."""
    leaves_run: bool = False
    leaves_ledger: bool = False
    """The error happens during training: the run directory (with a checkpoint) stays."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_config(folder: Path, name: str, **sections: Any) -> str:
    sections.setdefault("policy", {"kind": "mlp"})  # no LightGCN pretraining: errors come sooner
    sections.setdefault("cache", {"path": str(folder / f"{name}.sqlite")})
    raw = tiny_config_dict(folder, **sections)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return str(path)


def _ml100k(folder: Path, ratings: str) -> str:
    folder.mkdir(parents=True)
    (folder / "u.genre").write_text("unknown|0\nAction|1\nDrama|2\n")
    (folder / "u.item").write_text("".join(f"{k}|Film {k} (1995)|01-Jan-1995||http://x|0|1|0\n"
                                           for k in range(1, 4)))
    (folder / "u.data").write_text(ratings)
    return str(folder)


def _cases(root: Path) -> list[Case]:
    (root / "broken.yaml").write_text("ppo: {learning_rate: [3e-4\nseed: 0\n", encoding="utf-8")
    bad_data = _ml100k(root / "ml-bad", "1\t1\t5\t881250949\n2\t2\t4\n")
    (root / "not-a-run").mkdir()
    (root / "broken-run").mkdir()
    (root / "broken-run" / "config.yaml").write_text("ppo: [1, 2\n", encoding="utf-8")
    server = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    openai = {"backend": "openai", "model": "local-test", "api_key_env": "PROMPTOPT_CLI_ERRORS_KEY",
              "max_retries": 1, "timeout_s": 5.0}
    train = ("train", "--output-dir", "run", "--no-eval")
    return [
        Case("missing config", ("train", "missing.yaml"), r"config file missing\.yaml does not exist"),
        Case("malformed yaml", ("train", "broken.yaml"), r"broken\.yaml: not valid YAML at line \d"),
        Case("unknown key", ("train", _write_config(root, "typo", ppo={"learning_rat": 0.1}), *train[1:]),
             r"unknown key 'ppo\.learning_rat' \(did you mean 'ppo\.learning_rate'\?\)"),
        Case("wrong type", ("train", _write_config(root, "type", ppo={"n_steps": "many"}), *train[1:]),
             r"ppo\.n_steps: .*integer.*'many'"),
        Case("unknown template id",
             ("train", _write_config(root, "tpl", templates={"include": ["expert.recent7.none.index"]}),
              *train[1:]),
             r"'expert\.recent7\.none\.index' matches no template id \(did you mean 'expert\.recent5"),
        Case("missing dataset path",
             ("train", _write_config(root, "nodata", data={"format": "movielens-100k",
                                                           "path": str(root / "nowhere")}), *train[1:]),
             r"nowhere: dataset folder does not exist"),
        Case("malformed dataset file",
             ("train", _write_config(root, "baddata", data={"format": "movielens-100k", "path": bad_data}),
              *train[1:]),
             r"ml-bad/u\.data, line 2: expected 4 tab-separated fields .*got 3; the line looks truncated"),
        Case("missing api key",
             ("train", _write_config(root, "nokey", ranker={**openai, "api_key_env": MISSING_KEY_ENV}),
              *train[1:]),
             rf"environment variable {MISSING_KEY_ENV} is not set or empty: export your API key"),
        Case("unreachable server",
             ("train", _write_config(root, "down", ranker={**openai, "base_url": server}), *train[1:]),
             # The preflight episode fails before LightGCN pretraining: only its spend ledger stays.
             rf"preflight: .* at {re.escape(server)} failed one episode before LightGCN pretraining, "
             rf"nothing was trained \(run the same command again once it answers\): .*connection error",
             leaves_ledger=True),
        Case("budget exhausted",
             ("train", _write_config(root, "budget", budget={"max_calls": 10}), *train[1:]),
             r"ranker budget reached \(max_calls=10.*continue with `promptopt train --resume run "
             r"--budget\.max_calls=N`", leaves_run=True),
        Case("resume missing dir", ("train", "--resume", "nowhere"), r"nowhere does not exist"),
        Case("resume not a run", ("train", "--resume", "not-a-run"), r"not-a-run has no config\.yaml"),
        Case("resume broken config", ("train", "--resume", "broken-run"),
             r"broken-run/config\.yaml: not valid YAML"),
    ]


def _run(argv: tuple[str, ...], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != MISSING_KEY_ENV}
    env.update({"PROMPTOPT_CLI_ERRORS_KEY": "local-any-key", "WANDB_MODE": "disabled"})
    return subprocess.run([sys.executable, "-m", "promptopt", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Case, Path, Any]]:
    """Every case, each in its own folder, three processes at a time."""
    root = tmp_path_factory.mktemp("cli-errors")
    cases = _cases(root)
    assert [c.name for c in cases] == CASE_NAMES
    folders = {}
    for case in cases:
        folder = root / re.sub(r"\W+", "-", case.name)
        folder.mkdir()
        for item in ("broken.yaml", "not-a-run", "broken-run"):
            if (root / item).is_dir():
                shutil.copytree(root / item, folder / item)
            else:
                shutil.copy(root / item, folder / item)
        folders[case.name] = folder
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip([c.name for c in cases],
                           pool.map(lambda c: _run(c.argv, folders[c.name]), cases)))
    return {c.name: (c, folders[c.name], results[c.name]) for c in cases}


def _error_line(result: subprocess.CompletedProcess[str], command: str = "train") -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    others = [line for line in lines if not LOG_RECORD.match(line)]
    assert len(others) == 1, result.stderr[-2000:]
    assert lines[-1] == others[0], "the error is the last thing printed"
    prefix = f"promptopt {command}: error: "
    assert others[0].startswith(prefix), others[0]
    return others[0][len(prefix):]


CASE_NAMES = [
    "missing config", "malformed yaml", "unknown key", "wrong type", "unknown template id",
    "missing dataset path", "malformed dataset file", "missing api key", "unreachable server",
    "budget exhausted", "resume missing dir", "resume not a run", "resume broken config",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_exits_2_with_one_line_naming_the_problem(outcomes, name: str) -> None:
    case, folder, result = outcomes[name]
    message = _error_line(result)
    assert re.search(case.expected, message), message
    run = folder / "run"
    if case.leaves_run:
        assert sorted(p.name for p in (run / "checkpoints").glob("policy_*.json")), "a checkpoint was saved"
        assert (run / "config.yaml").is_file()
    elif case.leaves_ledger:  # calls were sent: their ledger stays, nothing else
        assert {p.name for p in run.iterdir() if not p.name.startswith(".")} == {"budget.json"}
    else:
        assert not run.exists() and not (folder / "runs").exists(), "a failed start left a run directory"


@pytest.mark.slow
def test_budget_stop_keeps_exactly_the_calls_it_paid_for(outcomes, tmp_path: Path) -> None:
    from promptopt.llm.cache import CacheStore

    case, _folder, result = outcomes["budget exhausted"]
    store = CacheStore(Path(case.argv[1]).with_suffix(".sqlite"), create=False)
    assert len(store) == 10 and store.integrity_check() == "ok"  # budget.max_calls: every call kept
    assert re.search(r"ranker budget reached .*; [1-9]\d* request\(s\) were not sent", result.stderr)


@pytest.mark.slow
def test_resuming_with_a_damaged_checkpoint_is_one_line(outcomes, tmp_path: Path) -> None:
    _case, folder, _result = outcomes["budget exhausted"]
    damaged = tmp_path / "damaged"
    shutil.copytree(folder / "run", damaged)
    for checkpoint in (damaged / "checkpoints").glob("policy_*.zip"):
        checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    result = _run(("train", "--resume", str(damaged), "--no-eval", "--budget.max_calls=100000"), tmp_path)
    message = _error_line(result)
    assert re.search(r"cannot resume from .*damaged/checkpoints/policy_\d+\.zip: .*delete it", message), \
        message
    assert "WARNING promptopt.experiments.training: checkpoint" in result.stderr


@pytest.mark.slow
def test_evaluating_a_run_with_damaged_files_is_one_line(tmp_path: Path) -> None:
    config = _write_config(tmp_path, "small", policy={"kind": "lightgcn_mlp"},
                           ppo={"total_timesteps": 32, "n_steps": 8, "checkpoint_every": 32},
                           eval={"selectors": ["random", "policy"], "n_bootstrap": 20})
    trained = _run(("train", config, "--output-dir", "run", "--no-eval"), tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    damages = {
        "agent.zip": (b"PK\x03\x04 cut", r"cannot load the agent .*agent\.zip: .*promptopt train --resume"),
        "lightgcn.pt": (b"\x80\x02garbage", r"cannot read LightGCN embeddings file .*lightgcn\.pt"),
    }
    for name, (damage, _) in damages.items():
        shutil.copytree(tmp_path / "run", tmp_path / f"damaged-{name}")
        (tmp_path / f"damaged-{name}" / name).write_bytes(damage)
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = pool.map(lambda name: _run(("evaluate", f"damaged-{name}"), tmp_path), damages)
        results = dict(zip(damages, runs))
    for name, (_, expected) in damages.items():
        message = _error_line(results[name], command="evaluate")
        assert re.search(expected, message), message
