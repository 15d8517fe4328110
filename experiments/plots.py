"""Plots of a run, drawn from the plain dicts in metrics.json (matplotlib Agg, imported lazily).

Each function takes the section of metrics.json it needs and a path, writes one PNG (for the report)
and a PDF of the same figure beside it (vector, for papers), and returns the PNG's path, or ``None``
when there is nothing to draw (a run without evaluation has no method plot). Bars that are means over
users say over how many (``n=...``), and every axis says which users the numbers come from.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promptopt.experiments.rundir import RunDir

logger = logging.getLogger(__name__)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def training_baselines(scan: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Reference levels of the training reward from best_fixed's scan of every template.

    ``best fixed``: the highest mean reward of a template over the training users who can fill it;
    ``random template``: the mean over every scanned (user, template) pair, what a uniformly random
    valid template earns. Both on the scan's training users, in the reward PPO is trained on.
    """
    scored = [(float(r["mean_reward"]), int(r["n"])) for r in scan if r.get("mean_reward") is not None]
    total = sum(n for _, n in scored)
    if not scored or not total:
        return {}
    return {"best fixed (template scan)": max(m for m, _ in scored),
            "random template (template scan)": sum(m * n for m, n in scored) / total}


def learning_curve(
    curve: Sequence[Mapping[str, float]],
    path: Path,
    *,
    baselines: Mapping[str, float] | None = None,
    baseline_curves: Mapping[str, Sequence[Sequence[float]]] | None = None,
) -> Path | None:
    """Mean episode reward (and its accuracy / robustness parts) against environment steps.

    Args:
        curve: PPO's rows (``step``, ``reward``, ``accuracy``, ``robustness``).
        path: Output PNG.
        baselines: Label -> reward level drawn as a horizontal line (:func:`training_baselines`).
        baseline_curves: Label -> ``[[episodes, mean reward], ...]`` of baselines that learn on
            training users too (the bandits), drawn against the same axis.
    """
    if not curve:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    steps = [row["step"] for row in curve]
    for key, label in (("reward", "PPO reward"), ("accuracy", "PPO accuracy"),
                       ("robustness", "PPO robustness")):
        values = [row.get(key) for row in curve]
        if any(v is not None for v in values):
            ax.plot(steps, [float("nan") if v is None else v for v in values], label=label, marker=".")
    for k, (label, points) in enumerate((baseline_curves or {}).items()):
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], ls="--", lw=1.2, label=f"{label} reward",
                    color=plt.get_cmap("Dark2")(k % 8))
    for k, (label, level) in enumerate((baselines or {}).items()):
        ax.axhline(level, ls=":", lw=1.2, color=("black", "grey", "tab:brown")[k % 3], label=label)
    ax.set_xlabel("environment steps (training users)")
    ax.set_ylabel("mean reward per rollout")
    ax.set_title("Learning curve with training-user baselines")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, plt, path)


def template_usage(usage: Mapping[str, Mapping[str, int]], path: Path, *, top: int = 12) -> Path | None:
    """Stacked bars: share of users in each group that got each template (the ``top`` most used).

    Args:
        usage: group name (e.g. ``short history``) -> template id -> number of users.
        path: Output PNG.
        top: Templates shown individually; the rest are summed into ``other``.
    """
    if not usage or not any(usage.values()):
        return None
    plt = _pyplot()
    totals: dict[str, int] = {}
    for counts in usage.values():
        for tid, n in counts.items():
            totals[tid] = totals.get(tid, 0) + int(n)
    shown = [t for t, _ in sorted(totals.items(), key=lambda kv: -kv[1])[:top]]
    groups = list(usage)
    labels = [f"{g} (n={sum(usage[g].values())})" for g in groups]
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(groups) + 2.2))
    left = [0.0] * len(groups)
    cmap = plt.get_cmap("tab20")
    for k, tid in enumerate([*shown, "other"]):
        shares = []
        for g in groups:
            n_group = sum(usage[g].values()) or 1
            n = (sum(v for t, v in usage[g].items() if t not in shown) if tid == "other"
                 else usage[g].get(tid, 0))
            shares.append(n / n_group)
        if not any(shares):
            continue
        ax.barh(labels, shares, left=left, color=cmap(k % 20), label=tid)
        left = [a + b for a, b in zip(left, shares)]
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the group's evaluated users")
    ax.set_title("Template chosen by the policy, per user group")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, fontsize=7)
    return _save(fig, plt, path)


def method_metrics(
    methods: Mapping[str, Mapping[str, Mapping[str, float]]],
    path: Path,
    *,
    metrics: Sequence[str] = ("ndcg@1", "ndcg@5", "ndcg@10", "hit@1", "hit@5", "hit@10", "mrr"),
    users: str = "test users",
) -> Path | None:
    """Grouped bars with interval whiskers: every method on every metric.

    Args:
        methods: method -> metric -> ``{"mean", "low", "high", "n"}``.
        path: Output PNG.
        metrics: Metrics to draw, in order.
        users: Which users the means are over (the axis label).
    """
    if not methods:
        return None
    plt = _pyplot()
    names = list(methods)
    metrics = [m for m in metrics if any(m in methods[n] for n in names)]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(metrics) + 2), 3.8))
    width = 0.8 / max(len(names), 1)
    for k, name in enumerate(names):
        xs, means, errs = [], [], [[], []]
        for j, metric in enumerate(metrics):
            cell = methods[name].get(metric)
            if cell is None:
                continue
            xs.append(j + (k - (len(names) - 1) / 2) * width)
            means.append(cell["mean"])
            errs[0].append(max(cell["mean"] - cell.get("low", cell["mean"]), 0.0))
            errs[1].append(max(cell.get("high", cell["mean"]) - cell["mean"], 0.0))
        n = next((int(c["n"]) for c in methods[name].values() if "n" in c), None)
        ax.bar(xs, means, width=width, yerr=errs, capsize=2, label=name if n is None else f"{name} (n={n})")
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set_ylabel(f"mean over {users}")
    ax.set_title("Selectors with 95% bootstrap intervals")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, plt, path)


def period_comparison(
    source: Mapping[str, Mapping[str, float]],
    target: Mapping[str, Mapping[str, float]],
    path: Path,
    *,
    metric: str = "ndcg@10",
    users: str = "test users",
) -> Path | None:
    """Each method's ``metric`` in the source period next to the drifted target period.

    Each bar is labelled with the number of users its mean rests on (``n=7``): a period may hold
    few users, and its interval says how little that tells.

    Args:
        source: method -> ``{"mean", "low", "high", "n"}`` for ``metric`` in the source period.
        target: the same for the target period.
        path: Output PNG.
        metric: Name for the axis label.
        users: Which users (the axis label).
    """
    names = [n for n in source if n in target]
    if not names:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(names) + 2), 3.6))
    for offset, (label, cells) in zip((-0.2, 0.2), (("source period", source), ("target period", target))):
        means = [cells[n]["mean"] for n in names]
        low = [max(cells[n]["mean"] - cells[n].get("low", cells[n]["mean"]), 0.0) for n in names]
        high = [max(cells[n].get("high", cells[n]["mean"]) - cells[n]["mean"], 0.0) for n in names]
        bars = ax.bar([k + offset for k in range(len(names))], means, width=0.4, yerr=[low, high],
                      capsize=2, label=label)
        counts = [f"n={cells[n]['n']}" if "n" in cells[n] else "" for n in names]
        ax.bar_label(bars, labels=counts, label_type="center", fontsize=7, color="white")
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.set_ylabel(f"{metric} ({users})")
    ax.set_title("Source vs drifted target period")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, plt, path)


def write_run_plots(run: RunDir, metrics: Mapping[str, Any]) -> dict[str, Path]:
    """The run's plots (those with data), title -> PNG path (a PDF lies beside each)."""
    run.plots.mkdir(exist_ok=True)
    evaluation = metrics.get("evaluation") or {}
    periods = evaluation.get("periods") or {}
    users = {"test": "test users", "val": "validation users"}.get(evaluation.get("split", "test"),
                                                                  f"{evaluation.get('split')} users")
    made = {
        "learning curve": learning_curve((metrics.get("train") or {}).get("curve", []),
                                         run.plots / "learning_curve.png",
                                         baselines=training_baselines(evaluation.get("template_scan") or []),
                                         baseline_curves=evaluation.get("bandit_curves") or {}),
        "template usage per user group": template_usage(evaluation.get("usage_by_group") or {},
                                                              run.plots / "template_usage.png"),
        "selectors with intervals": method_metrics(
            {n: r["metrics"] for n, r in (evaluation.get("methods") or {}).items()},
            run.plots / "methods.png", users=users),
        "source vs drift period": period_comparison(
            (periods.get("source") or {}).get("methods", {}),
            (periods.get("target") or {}).get("methods", {}),
            run.plots / "drift.png", users=users),
    }
    return {k: v for k, v in made.items() if v is not None}


def _save(fig: Any, plt: Any, path: Path, *, dpi: int = 110) -> Path:
    save_figure(fig, path, dpi=dpi)
    plt.close(fig)
    return path


def save_figure(fig: Any, path: Path, *, dpi: int = 110) -> Path:
    """Write ``fig`` as ``path`` (PNG) and as the same name with ``.pdf`` (vector, for papers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    fig.savefig(path.with_suffix(".pdf"))
    logger.debug("wrote %s and its PDF", path)
    return path
