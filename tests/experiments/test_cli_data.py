"""``promptopt data``: in-process through promptopt.experiments.cli.main and as a real subprocess."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from promptopt.data import DATASET_FORMATS, make_synthetic
from promptopt.data.fetch import ARCHIVES
from promptopt.experiments.cli import main
from promptopt.experiments.commands import data as data_command

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "promptopt.experiments.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def test_synth_writes_the_generic_layout_that_stats_reads_back(tmp_path: Path, capsys) -> None:
    dest = tmp_path / "synth"
    assert main(["data", "synth", str(dest), "--n-users", "30", "--n-items", "60", "--seed", "2"]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["interactions.csv", "items.csv", "users.csv"]
    capsys.readouterr()
    assert main(["data", "stats", str(dest), "--format", "generic", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    expected = make_synthetic(n_users=30, n_items=60, seed=2)
    assert (stats["users"], stats["items"], stats["interactions"]) == (
        expected.n_users, expected.n_items, expected.n_interactions)
    assert stats["source_interactions"] + stats["target_interactions"] == expected.n_interactions


def test_stats_table_has_drift_rows_unless_disabled(capsys) -> None:
    assert main(["data", "stats", "--format", "synthetic"]) == 0
    table = capsys.readouterr().out
    names = [line.split()[0] for line in table.splitlines()]
    assert {"users", "interactions", "span_days", "history_p50", "popularity_kl"} <= set(names)
    assert main(["data", "stats", "--format", "synthetic", "--drift-quantile", "0"]) == 0
    assert "popularity_kl" not in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["data", "stats", "MISSING", "--format", "movielens-1m"],
    ["data", "stats", "--format", "generic"],
    ["data", "stats", "--format", "synthetic", "--drift-quantile", "1.5"],
    ["data", "synth", "DEST", "--n-items", "5"],
])
def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys, argv: list[str]) -> None:
    argv = [str(tmp_path / a) if a in ("MISSING", "DEST") else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("promptopt data: error: ") and "\n" not in err


def test_subprocess_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    out = _cli("data", "stats", str(missing), "--format", "lastfm")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"promptopt data: error: {missing}: dataset folder does not exist "
        "(expected a folder holding tags.dat)"
    ]
    out = _cli("data", "stats", str(missing), "--format", "movielens-5m")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "invalid choice: 'movielens-5m'" in out.stderr and "Traceback" not in out.stderr


def test_subprocess_fetch_offline_says_where_to_put_files(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = _cli("data", "fetch", "movielens-100k", str(tmp_path), "--url", f"http://127.0.0.1:{port}/a.zip",
               "--timeout", "2")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    error = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and str(tmp_path / "ml-100k" / "u.data") in error[0]


def test_subprocess_synth_then_stats(tmp_path: Path) -> None:
    dest = tmp_path / "s"
    assert _cli("data", "synth", str(dest), "--n-users", "12", "--n-items", "40").returncode == 0
    out = _cli("data", "stats", str(dest), "--format", "generic", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["users"] == 12


def test_cli_choices_match_the_library() -> None:
    # The command module keeps its imports stdlib-only, so it repeats these names: keep them in sync.
    assert data_command._FORMATS == DATASET_FORMATS
    assert tuple(ARCHIVES) == data_command._FETCHABLE
