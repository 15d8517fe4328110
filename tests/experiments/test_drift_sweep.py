"""Drop vs robust weight from a sweep folder: the trials' paired changes, the plot, the table, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from promptopt.experiments.drift_sweep import main, read_trials


def _sweep(tmp_path: Path, weights: list[float]) -> Path:
    """A sweep folder as `promptopt sweep` leaves it: leaderboard.csv and one run folder per trial."""
    out = tmp_path / "sweep"
    out.mkdir()
    rows = []
    for k, w in enumerate(weights):
        run = out / f"trial{k}"
        run.mkdir()
        change = {"mean": -0.2 + 0.1 * w, "low": -0.25 + 0.1 * w, "high": -0.15 + 0.1 * w, "n_users": 40}
        evaluation = {"split": "val", "drop": {"policy": 0.2 - 0.1 * w},
                      "periods": {"protocol": "deploy", "change": {"policy": change}}}
        (run / "metrics.json").write_text(json.dumps({"evaluation": evaluation}), encoding="utf-8")
        rows.append({"rank": k + 1, "trial": k, "val/policy/drift_drop": 0.2 - 0.1 * w, "state": "complete",
                     "reward.aggregate": "mean_std" if k % 2 else "worst", "reward.views": "[temporal]",
                     "reward.robust_weight": w, "seconds": 1.0,
                     "run_dir": str(run), "worker": "w", "error": ""})
    rows.append({**rows[0], "trial": 99, "state": "failed", "run_dir": "", "error": "boom"})
    with (out / "leaderboard.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def test_each_completed_trial_gives_its_weight_and_paired_change(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, [0.6, 0.0, 0.3])
    rows = read_trials(sweep, ["policy", "best_fixed"])
    assert [r["w"] for r in rows] == [0.0, 0.3, 0.6]  # sorted by w, the failed trial left out
    assert {r["selector"] for r in rows} == {"policy"}  # best_fixed has no period results
    assert rows[0]["others"] == {"reward.aggregate": "mean_std"}  # reward.views is the same in every trial
    assert rows[2]["change"]["mean"] == pytest.approx(-0.14)
    assert main([str(sweep), "--selectors", "policy"]) == 0
    png = sweep / "drop_vs_w.png"
    assert png.stat().st_size > 1000 and png.with_suffix(".pdf").is_file()
    table = png.with_suffix(".md").read_text(encoding="utf-8")
    assert table.startswith("Split: val users; protocol `deploy`")
    row = "| policy | reward.aggregate=worst | 0.3 | -0.1700 [-0.2200, -0.1200] | 40 | +0.1700 | 2 |"
    assert row in table


def test_a_folder_without_a_finished_sweep_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "leaderboard.csv does not exist" in err
    sweep = _sweep(tmp_path, [0.0])
    assert main([str(sweep), "--selectors", "oracle"]) == 2
    assert "no completed trial has source- and target-period results for oracle" in capsys.readouterr().err
