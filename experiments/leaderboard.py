"""A sweep's trials as the leaderboard (``leaderboard.csv`` and ``leaderboard.md``, best first).

The trials come from the optuna study itself (:func:`study_results`), so a worker that shares a
study with others (``promptopt sweep --storage``) lists every worker's trials, and its own finished
ones are never lost from the table when another worker rewrites it. Each trial carries what the
table needs in its user attribute :data:`TRIAL_ATTR` (the overrides' values, run directory, worker,
seconds, error), set by the worker that runs it.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class SweepSpec(Protocol):
    """What the leaderboard reads of a sweep (:class:`promptopt.experiments.local_sweep.SweepSpec` has it)."""

    name: str
    method: str
    metric: str
    goal: str

TRIAL_ATTR = "promptopt"
"""optuna user attribute of a trial: ``{"params", "run_dir", "worker", "seconds", "error"}``."""
_STATES = {"COMPLETE": "complete", "FAIL": "failed", "RUNNING": "running", "PRUNED": "pruned",
           "WAITING": "waiting"}


def format_value(value: Any) -> str:
    """A value as wandb writes it into ``--name=value`` (parsed back by the config loader)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def as_overrides(params: Mapping[str, Any]) -> list[str]:
    """``{"ppo.learning_rate": 3e-4}`` -> ``["--ppo.learning_rate=0.0003"]`` (what ``${args}`` gives)."""
    return [f"--{k}={format_value(v)}" for k, v in params.items()]


@dataclass(frozen=True)
class TrialResult:
    """One finished (or failed, or still running) trial."""

    number: int
    params: Mapping[str, Any]
    value: float | None
    state: str
    run_dir: str
    seconds: float
    error: str = ""
    worker: str = ""


def study_results(study: Any) -> list[TrialResult]:
    """Every trial of ``study`` that a sweep worker started, in trial-number order.

    A trial another worker left failed without an error (optuna's heartbeat marked it: that worker
    was killed mid-trial) says so.
    """
    out = []
    for trial in study.get_trials(deepcopy=False):
        info = trial.user_attrs.get(TRIAL_ATTR)
        if not isinstance(info, dict):
            continue
        state = _STATES.get(trial.state.name, trial.state.name.lower())
        error = str(info.get("error") or "")
        if state == "failed" and not error:
            error = f"its worker ({info.get('worker', '?')}) stopped before the trial ended"
        value = float(trial.value) if state == "complete" and trial.value is not None else None
        out.append(TrialResult(trial.number, dict(info.get("params") or {}), value, state,
                               str(info.get("run_dir", "")), float(info.get("seconds") or 0.0), error,
                               str(info.get("worker", ""))))
    return sorted(out, key=lambda r: r.number)


def ranked(spec: SweepSpec, results: Sequence[TrialResult]) -> list[TrialResult]:
    """Completed trials best first, then failed (and running) ones."""
    sign = -1.0 if spec.goal == "maximize" else 1.0
    return sorted(results, key=lambda r: (r.value is None, sign * (r.value or 0.0), r.number))


def write_leaderboard(spec: SweepSpec, results: Sequence[TrialResult], output_dir: Path, *,
                      config_path: str | None = None) -> tuple[Path, Path]:
    """``leaderboard.csv`` and ``leaderboard.md`` in ``output_dir``, best trial first.

    Each file is replaced whole (written aside, then renamed), so workers sharing ``output_dir``
    never leave a torn table. With ``config_path``, the markdown ends with the command that scores
    the best trial on test users.
    """
    names = sorted({k for r in results for k in r.params})
    rows = ranked(spec, results)
    header = ["rank", "trial", spec.metric, "state", *names, "seconds", "run_dir", "worker", "error"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for k, r in enumerate(rows, 1):
        writer.writerow([k, r.number, "" if r.value is None else f"{r.value:.6g}", r.state,
                         *[format_value(r.params.get(n)) for n in names], f"{r.seconds:.1f}",
                         r.run_dir, r.worker, r.error])
    shown = header[:-3]
    md = [f"# Sweep `{spec.name}` ({spec.method}, {spec.goal} `{spec.metric}`)", "",
          "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for k, r in enumerate(rows, 1):
        value = r.state if r.value is None else f"{r.value:.4f}"
        md.append("| " + " | ".join([str(k), str(r.number), value, r.state,
                                     *[format_value(r.params.get(n)) for n in names],
                                     f"{r.seconds:.0f}"]) + " |")
    failed = [r for r in rows if r.error]
    if failed:
        md += ["", "Failed trials:", ""] + [f"- trial {r.number}: {r.error}" for r in failed]
    best = next((r for r in rows if r.value is not None), None)
    if config_path and best is not None:
        md += ["", f"Every value above is on validation users. Score the best trial ({best.number}) once on "
               "test users:", "", "```",
               " ".join(["promptopt train", config_path, "--eval.split=test", *as_overrides(best.params)]),
               "```"]
    csv_path, md_path = output_dir / "leaderboard.csv", output_dir / "leaderboard.md"
    _replace(csv_path, buffer.getvalue())
    _replace(md_path, "\n".join(md) + "\n")
    return csv_path, md_path


def _replace(path: Path, text: str) -> None:
    aside = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with aside.open("w", newline="", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(aside, path)
