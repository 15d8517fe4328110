"""The study's plots: selectors with intervals, paired differences, drift, PPO learning curves.

Each function draws one PNG from the pooled results (or the run dict), a PDF of it beside it, and
returns the PNG's path. Means over users say over how many (``n=...``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.experiments.plots import save_figure
from promptopt.experiments.study.answers import AnswerTable
from promptopt.experiments.study.pooled import SELECTORS, PooledResults
from promptopt.experiments.study.targets import NONINFERIORITY_MARGIN


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_selectors(pooled: PooledResults, path: Path) -> Path:
    """Test NDCG@10 of every selector with its 95% interval, one panel per reward."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, reward in zip(axes, ("accuracy", "robust")):
        names = [n for n in SELECTORS if pooled.values(reward, "last", n)]
        cells = [pooled.mean(reward, "last", n) for n in names]
        y = np.arange(len(names))
        ax.errorbar(
            [c[0] for c in cells],
            y,
            xerr=[[c[0] - c[1] for c in cells], [c[2] - c[0] for c in cells]],
            fmt="o",
            capsize=3,
        )
        ax.set_yticks(y, [f"{n} (n={len(pooled.values(reward, 'last', n))})" for n in names])
        ax.set_title(f"{reward} reward: test NDCG@10 (95% CI)", fontsize=9)
        ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=80)
    plt.close(fig)
    return path


def plot_paired(pooled: PooledResults, path: Path) -> Path:
    """Every selector minus the best fixed template, paired over test users, with the margin."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = [n for n in SELECTORS if n != "best_fixed" and pooled.values("accuracy", "last", n)]
    for k, reward in enumerate(("accuracy", "robust")):
        cells = [pooled.paired(reward, "last", n, "best_fixed") for n in names]
        y = np.arange(len(names)) + (k - 0.5) * 0.3
        ax.errorbar(
            [c[0] for c in cells],
            y,
            xerr=[[c[0] - c[1] for c in cells], [c[2] - c[0] for c in cells]],
            fmt="o",
            capsize=3,
            label=f"{reward} reward",
        )
    ax.axvline(0, color="k", lw=0.8)
    ax.axvline(NONINFERIORITY_MARGIN, color="r", ls="--", lw=0.8, label="non-inferiority margin")
    ax.set_yticks(np.arange(len(names)), names)
    ax.set_xlabel("NDCG@10 minus best fixed template, paired over test users (95% CI)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=80)
    plt.close(fig)
    return path


def plot_drift(drift: Mapping[str, Any], path: Path, *, protocol: str = "leave_last") -> Path:
    """Per selector and reward: source / target NDCG@10 (left) and the paired change (right), 95% CI.

    Args:
        drift: :func:`promptopt.experiments.study.targets.drift_reduction`'s result.
        path: The PNG to write (a PDF beside it).
        protocol: The run's ``split.protocol``, named in the title.
    """
    plt = _pyplot()
    names = list(drift)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    x = np.arange(len(names))
    for k, (reward, period) in enumerate(
        (("accuracy", "source"), ("accuracy", "target"), ("robust", "source"), ("robust", "target"))
    ):
        cells = np.array([drift[n][reward][period] for n in names]).reshape(-1, 3)
        left.bar(x + (k - 1.5) * 0.2, cells[:, 0], 0.2, label=f"{reward}, {period}",
                 yerr=np.abs(cells[:, 1:].T - cells[:, 0]), capsize=2)
    for k, reward in enumerate(("accuracy", "robust")):
        cells = np.array([drift[n][reward]["change"] for n in names]).reshape(-1, 3)
        bars = right.bar(x + (k - 0.5) * 0.35, cells[:, 0], 0.35, label=reward,
                         yerr=np.abs(cells[:, 1:].T - cells[:, 0]), capsize=2)
        if k == 1:
            right.bar_label(bars, labels=[f"n={drift[n]['n_users']}" for n in names], fontsize=5,
                            padding=2)
    for ax in (left, right):
        ax.set_xticks(x, names, rotation=25, fontsize=7)
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3, axis="y")
    left.set_ylabel("NDCG@10 (test users, mean over seeds)")
    right.axhline(0, color="k", lw=0.6)
    right.set_ylabel("change: target - source (paired, 95% CI)")
    fig.suptitle(f"Source vs drifted target period (test users, protocol {protocol})", fontsize=9)
    save_figure(fig, path, dpi=80)
    plt.close(fig)
    return path


def training_levels(table: AnswerTable) -> dict[str, float]:
    """Baseline rewards on training users from the exhaustive sweep (every template, every user).

    ``best fixed``: the best template's mean; ``random``: the mean over every valid (user, template)
    pair; ``oracle``: the mean of each user's best template.
    """
    reward = table.reward
    valid = np.isfinite(reward)
    rows = valid.any(axis=1)
    if not rows.any():
        return {}
    means = np.nanmean(np.where(valid, reward, np.nan)[:, valid.any(axis=0)], axis=0)
    return {"oracle": float(np.nanmax(reward[rows], axis=1).mean()), "best fixed": float(np.max(means)),
            "random": float(reward[valid].mean())}


def plot_learning_curves(run: Mapping[str, Any], path: Path) -> Path:
    """PPO training reward per rollout, per seed, LightGCN+MLP and MLP-only, with the training
    users' baselines (:func:`training_levels` of the exhaustive sweep) as horizontal lines."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
    tables = run.get("tables") or {}
    for ax, reward in zip(axes, ("accuracy", "robust")):
        sweep = tables.get(f"train_{reward}")
        levels = training_levels(AnswerTable.from_json(sweep)) if sweep else {}
        for (label, level), color in zip(levels.items(), ("black", "grey", "tab:brown")):
            ax.axhline(level, ls="--", lw=0.9, color=color, label=f"{label} (training sweep)")
        for seed in run["seeds"]:
            for name, ls in (("policy", "-"), ("mlp_ppo", ":")):
                curve = seed["rewards"][reward]["train"][name]["curve"]
                ax.plot(
                    [c["step"] for c in curve],
                    [c["reward"] for c in curve],
                    ls,
                    label=f"{name} seed {seed['seed']}",
                )
        ax.set_title(f"PPO training reward ({reward}), training users", fontsize=9)
        ax.set_xlabel("episodes")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    save_figure(fig, path, dpi=80)
    plt.close(fig)
    return path
