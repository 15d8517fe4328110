"""The examples of issue 12 that ended in a traceback: each is now exit 2 with one line, no traceback,
and a run under way keeps its progress (a checkpoint, and every answer already paid for).

The class is closed by ``test_config_fields.py`` (every config field) and the one CLI boundary; these
are the reported cases, run through the real CLI in process.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import shutil
import sqlite3
import subprocess
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptopt.experiments.cli import main
from tests.experiments.conftest import tiny_config_dict

LOGS = ("INFO ", "DEBUG ", "WARNING ")


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(LOGS)]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith(f"promptopt {argv[0]}: error: "), err
    return lines[0]


def _config(folder: Path, **sections: Any) -> Path:
    sections.setdefault("policy", {"kind": "mlp"})
    sections.setdefault("eval", {"selectors": ["random", "best_fixed", "policy"], "n_bootstrap": 50})
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(folder, **sections)), encoding="utf-8")
    return path


@pytest.mark.parametrize(("override", "expected"), [
    ("--split.n_negatives=500", "split.n_negatives=500 is more than the"),
    ("--env.n_envs=0", "env.n_envs: Input should be greater than or equal to 1"),
    ("--ppo.learning_rate=nan", "ppo.learning_rate: Input should be a finite number"),
    ("--ppo.total_timesteps=-10", "ppo.total_timesteps: Input should be greater than or equal to 1"),
])
@pytest.mark.parametrize("no_eval", [False, True])
def test_reported_bad_values(tmp_path: Path, capsys, override: str, expected: str, no_eval: bool) -> None:
    run = tmp_path / "run"
    argv = ["train", str(_config(tmp_path)), "--output-dir", str(run), override] + (["--no-eval"] * no_eval)
    assert expected in _error(argv, capsys)
    assert not run.exists()


def test_a_cuda_device_on_a_machine_without_one(tmp_path: Path, capsys) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    config = _config(tmp_path, ranker={"backend": "embedding", "model": "all-MiniLM-L6-v2"})
    argv = ["train", str(config), "--output-dir", str(tmp_path / "run"), "--ranker.device=cuda"]
    line = _error(argv, capsys)
    assert "ranker.device='cuda' but this machine has no CUDA device" in line and "auto" in line


def test_a_yaml_key_that_is_a_list(tmp_path: Path, capsys) -> None:
    path = tmp_path / "listkey.yaml"
    path.write_text("name: x\nppo:\n  ? [learning_rate, n_steps]\n  : 0.1\n", encoding="utf-8")
    assert "line 3: a key must be a name, not a list" in _error(["train", str(path)], capsys)


def test_a_400_byte_yaml_alias_bomb(tmp_path: Path, capsys) -> None:
    """It used to produce a 580 MB error line and 1.7 GB of memory."""
    levels = "abcdefghi"
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{b}: &{b} [{','.join(f'*{a}' for _ in range(9))}]" for a, b in itertools.pairwise(levels)]
    text = "\n".join(lines) + "\n"
    assert len(text) < 450
    path = tmp_path / "bomb.yaml"
    path.write_text(text, encoding="utf-8")
    tracemalloc.start()
    try:
        line = _error(["train", str(path)], capsys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "aliases expand to more than 100000 values" in line and len(line) < 300
    assert peak < 50 * 2**20, peak


def test_export_output_to_a_directory(trained: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    line = _error(["export", str(trained), "--output", str(folder)], capsys)
    assert "Is a directory" in line and str(folder) in line and "give a file path" in line


# ---------------------------------------------------------------------- failures during training
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained 64 steps (no evaluation), with its answers in ``cache.sqlite`` beside it."""
    folder = tmp_path_factory.mktemp("trained")
    config = _config(folder, ppo={"total_timesteps": 64, "n_steps": 8, "checkpoint_every": 32})
    assert main(["train", str(config), "--output-dir", str(folder / "run"), "--no-eval"]) == 0
    return folder / "run"


def _copy_run(trained: Path, folder: Path) -> tuple[Path, Path]:
    """The trained run and its cache copied to ``folder`` (config.yaml pointing at the copy)."""
    run = folder / "run"
    shutil.copytree(trained, run)
    cache = folder / "cache.sqlite"
    with sqlite3.connect(trained.parent / "cache.sqlite") as source, sqlite3.connect(cache) as target:
        source.backup(target)
    raw = yaml.safe_load((run / "config.yaml").read_text())
    raw["cache"]["path"] = str(cache)
    (run / "config.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    return run, cache


def test_a_cache_with_garbage_pages_mid_training(trained: Path, tmp_path: Path, capsys) -> None:
    """The file opens (its first pages are sound); a lookup during training hits a damaged page."""
    run, cache = _copy_run(trained, tmp_path)
    (run / "agent.zip").unlink()  # as if stopped at its last checkpoint: the resume trains on
    with sqlite3.connect(cache) as db:
        page = db.execute("pragma page_size").fetchone()[0]
        db.execute("pragma journal_mode=delete")
    size = cache.stat().st_size
    assert size > 8 * page
    with cache.open("r+b") as fh:  # garbage over every page after the schema, meta and index roots
        fh.seek(6 * page)
        fh.write(bytes((k * 131 + 7) % 256 for k in range(size - 6 * page)))
    line = _error(["train", "--resume", str(run), "--ppo.total_timesteps=128", "--no-eval"], capsys)
    assert f"cache '{cache}' is damaged" in line and "--resume" in line
    stopped = re.search(r"stopped PPO policy at (\d+)/128 steps, checkpoint (\S+\.zip);", line)
    assert stopped is not None, line
    assert int(stopped.group(1)) >= 32 and Path(stopped.group(2)).is_file()


@contextlib.contextmanager
def _small_disk(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_a_cache_on_a_full_disk_keeps_a_checkpoint(tmp_path: Path, capsys) -> None:
    """The cache fills a 160 kB disk mid-training: one line, a checkpoint, and a resume finishes."""
    with _small_disk(tmp_path / "disk", "160k") as disk:
        config = _config(tmp_path, cache={"path": str(disk / "cache.sqlite")})
        run = tmp_path / "run"
        line = _error(["train", str(config), "--output-dir", str(run), "--no-eval"], capsys)
        assert "the disk is full" in line and "stopped PPO policy at" in line and "--resume" in line
        assert list((run / "checkpoints").glob("policy_*.zip")), "progress was saved"
        moved = tmp_path / "cache.sqlite"
        with sqlite3.connect(disk / "cache.sqlite") as db, sqlite3.connect(moved) as target:
            kept = db.execute("select count(*) from answers").fetchone()[0]
            assert kept > 0 and db.execute("pragma integrity_check").fetchone()[0] == "ok"
            db.backup(target)  # the answers paid for so far, to a disk with space
    # Space again: the run continues from its checkpoint with the answers it kept, and finishes.
    capsys.readouterr()
    assert main(["train", "--resume", str(run), f"--cache.path={moved}", "--no-eval"]) == 0
    with sqlite3.connect(moved) as db:
        assert db.execute("select count(*) from answers").fetchone()[0] >= kept
    assert (run / "agent.zip").is_file()
