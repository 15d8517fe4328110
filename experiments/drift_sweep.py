"""Drop vs robustness weight: a finished robust_weight sweep's trials as a plot and a table.

``python -m promptopt.experiments.drift_sweep SWEEP_DIR [--output PNG] [--selectors policy best_fixed]``

Reads the sweep's ``leaderboard.csv`` (:mod:`promptopt.experiments.leaderboard`) and each completed trial's
``metrics.json``: the trial's ``reward.robust_weight`` (w), its other swept values (one line per
combination, e.g. ``reward.aggregate``), and per selector the NDCG@10 change from the source to the
drifted target period, ``target - source``, paired over the users with a target in both periods
(``evaluation.periods.change``, with its 95% interval), on the users the trials were evaluated on
(``eval.split``: validation users for a sweep). Writes the PNG (a PDF beside it) and a markdown
table beside it (``.md``), each naming the split and the protocol.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptopt.errors import ConfigError
from promptopt.experiments.rundir import RunDir

WEIGHT = "reward.robust_weight"
"""The swept key on the plot's x axis."""


def read_trials(sweep_dir: Path, selectors: Sequence[str]) -> list[dict[str, Any]]:
    """One row per completed trial and selector: w, the other swept values, change, drop, split.

    Raises:
        ConfigError: No leaderboard, no swept ``reward.robust_weight``, or no completed trial with
            source- and target-period results.
    """
    board = sweep_dir / "leaderboard.csv"
    if not board.is_file():
        raise ConfigError(f"{board} does not exist: pass the folder of a finished `promptopt sweep`")
    with board.open(encoding="utf-8", newline="") as fh:
        trials = list(csv.DictReader(fh))
    if trials and WEIGHT not in trials[0]:
        raise ConfigError(f"{board}: the sweep does not vary {WEIGHT} (columns: {', '.join(trials[0])})")
    fixed = {"rank", "trial", "state", "seconds", "run_dir", "worker", "error", WEIGHT}
    # Swept keys that take one value in every trial (e.g. a grid's `value:`) name no line.
    fixed |= {k for k in (trials[0] if trials else {}) if len({t[k] for t in trials}) == 1}
    rows = []
    for trial in trials:
        if trial["state"] != "complete" or not trial["run_dir"]:
            continue
        evaluation = RunDir(Path(trial["run_dir"])).read_metrics().get("evaluation") or {}
        periods = evaluation.get("periods") or {}
        others = {k: v for k, v in trial.items() if k not in fixed and "/" not in k}
        for name in selectors:
            change = (periods.get("change") or {}).get(name)
            if change is None:
                continue
            rows.append({
                "trial": int(trial["trial"]), "w": float(trial[WEIGHT]), "others": others,
                "selector": name, "change": change, "drop": (evaluation.get("drop") or {}).get(name),
                "split": evaluation.get("split", "?"), "protocol": periods.get("protocol", "leave_last"),
            })
    if not rows:
        raise ConfigError(f"{sweep_dir}: no completed trial has source- and target-period results for "
                          f"{', '.join(selectors)} (eval.periods: true)")
    return sorted(rows, key=lambda r: (r["selector"], sorted(r["others"].items()), r["w"]))


def _line_label(row: dict[str, Any]) -> str:
    others = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in sorted(row["others"].items()))
    return row["selector"] + (f" ({others})" if others else "")


def plot_drop_vs_weight(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """NDCG@10 change (target - source, paired, 95% CI) against w, one line per selector and setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from promptopt.experiments.plots import save_figure

    fig, ax = plt.subplots(figsize=(6, 3.6))
    lines: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        lines.setdefault(_line_label(row), []).append(row)
    for label, points in lines.items():
        w = [p["w"] for p in points]
        mean = [p["change"]["mean"] for p in points]
        err = [[p["change"]["mean"] - p["change"]["low"] for p in points],
               [p["change"]["high"] - p["change"]["mean"] for p in points]]
        ax.errorbar(w, mean, yerr=err, marker="o", capsize=3, label=label)
    ax.axhline(0, color="k", lw=0.6)
    split, protocol = rows[0]["split"], rows[0]["protocol"]
    ax.set_xlabel("robust weight w (reward.robust_weight)")
    ax.set_ylabel(f"NDCG@10 change, target - source\n({split} users, paired, 95% CI)")
    ax.set_title(f"Drop under drift vs robust weight ({split} users, protocol {protocol})", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=90)
    plt.close(fig)
    return path


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a markdown table (split and protocol in the header line)."""
    split, protocol = rows[0]["split"], rows[0]["protocol"]
    out = [f"Split: {split} users; protocol `{protocol}`. Change = target - source NDCG@10 per user, paired "
           "over the users with both periods [95% bootstrap interval]; drop = source mean - target mean.",
           "", "| selector | setting | w | change (paired) | users | drop | trial |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["change"]
        setting = ", ".join(f"{k}={v}" for k, v in sorted(r["others"].items())) or "-"
        drop = "n/a" if r["drop"] is None else f"{r['drop']:+.4f}"
        out.append(f"| {r['selector']} | {setting} | {r['w']:g} | {c['mean']:+.4f} [{c['low']:+.4f}, "
                   f"{c['high']:+.4f}] | {c['n_users']} | {drop} | {r['trial']} |")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Plot a robust_weight sweep's drop under drift vs w.")
    parser.add_argument("sweep_dir", type=Path, help="the folder of a finished `promptopt sweep`")
    parser.add_argument("--output", type=Path, default=None, help="PNG (default SWEEP_DIR/drop_vs_w.png)")
    parser.add_argument("--selectors", nargs="+", default=["policy", "policy_raw", "best_fixed"])
    args = parser.parse_args(argv)
    try:
        rows = read_trials(args.sweep_dir, args.selectors)
    except ConfigError as exc:
        print(f"python -m promptopt.experiments.drift_sweep: error: {exc}", file=sys.stderr)
        return 2
    out = args.output or args.sweep_dir / "drop_vs_w.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_drop_vs_weight(rows, out)
    out.with_suffix(".md").write_text(markdown(rows), encoding="utf-8")
    print(markdown(rows))
    print(f"plot: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
