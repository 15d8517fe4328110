"""The study's analysis and report: pooled intervals, the five targets, plots and docs/RESULTS.md.

Everything here reads the plain ``run`` dict :func:`experiments.study.run_study` writes to
``study.json``; every number in the report is computed from it (nothing is typed by hand).
Seeds share the test users, so a selector's pooled value for a user is its mean over seeds, and
intervals are percentile bootstraps over users of those means (paired: of per-user differences).
"""

from __future__ import annotations

import json
import os
import platform
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

NONINFERIORITY = -0.005
"""Margin of target 1: the paired lower bound of policy - best fixed must exceed it."""
SELECTORS = (
    "random",
    "best_fixed",
    "epsilon_greedy",
    "linucb",
    "mlp_ppo",
    "policy",
    "policy_safe",
    "realistic",
    "oracle",
)
LABELS = {
    "random": "random template",
    "best_fixed": "best fixed template (exhaustive sweep)",
    "epsilon_greedy": "epsilon-greedy (same budget)",
    "linucb": "LinUCB (same budget)",
    "mlp_ppo": "MLP-only PPO",
    "policy": "LightGCN+MLP PPO (raw argmax)",
    "policy_safe": "LightGCN+MLP PPO + validated gate",
    "realistic": "realistic per-user bound",
    "oracle": "oracle in hindsight (upper bound)",
}
B = 2000
TITLES = {"accuracy": "Accuracy-only reward (w = 0)", "robust": "Drift-robust reward (w > 0)"}


def hardware() -> dict[str, Any]:
    """CPU model, cores, OS, Python and torch versions of this machine."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        torch_version, gpu = torch.__version__, torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        torch_version, gpu = "absent", False
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch_version,
        "gpu": gpu,
    }


def cache_summary(run: Mapping[str, Any]) -> dict[str, float] | None:
    """Answers in the run's cache file and the minutes between the first and the last one stored.

    The study's cache holds exactly the requests its answer tables need, so this is what a run from
    a cold cache pays (``None`` when the cache is off or missing).
    """
    from promptopt.llm.cache_store import CacheStore

    cache = run["config"]["experiment"]["cache"]
    if not cache.get("enabled") or not Path(cache["path"]).is_file():
        return None
    store = CacheStore(cache["path"], create=False)
    try:
        summary = store.summary()
    finally:
        store.close()
    span = (summary.last_created or 0) - (summary.first_created or 0)
    return {"entries": summary.entries, "minutes": span / 60}


def boot(x: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap interval of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    means = x[np.random.default_rng(seed).integers(0, x.size, (B, x.size))].mean(axis=1)
    return float(x.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def fmt(cell: tuple[float, float, float], signed: bool = False) -> str:
    mean, low, high = cell
    if not np.isfinite(mean):
        return "n/a"
    f = "{:+.4f}" if signed else "{:.4f}"
    return f"{f.format(mean)} [{f.format(low)}, {f.format(high)}]"


class Pooled:
    """Per-user values of every (reward, period, selector), averaged over seeds."""

    def __init__(self, run: Mapping[str, Any]) -> None:
        self.run = run
        self.seeds = run["seeds"]

    def values(
        self,
        reward: str,
        period: str,
        selector: str,
        metric: str = "ndcg@10",
        seeds: Sequence[int] | None = None,
    ) -> dict[int, float]:
        sums: dict[int, list[float]] = {}
        for k, seed in enumerate(self.seeds):
            if seeds is not None and k not in seeds:
                continue
            res = seed["rewards"][reward]["results"].get(period, {}).get(selector)
            if res is None:
                continue
            for u, v in zip(res["users"], res["per_user"][metric]):
                sums.setdefault(int(u), []).append(float(v))
        return {u: float(np.mean(v)) for u, v in sums.items()}

    def mean(self, reward: str, period: str, selector: str, **kw: Any) -> tuple[float, float, float]:
        return boot(np.array(list(self.values(reward, period, selector, **kw).values())))

    def paired(
        self, reward: str, period: str, a: str, b: str, reward_b: str | None = None, **kw: Any
    ) -> tuple[float, float, float]:
        va, vb = self.values(reward, period, a, **kw), self.values(reward_b or reward, period, b, **kw)
        common = sorted(set(va) & set(vb))
        return boot(np.array([va[u] - vb[u] for u in common]))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


# ---------------------------------------------------------------------- targets
def target_noninferiority(p: Pooled) -> list[dict[str, Any]]:
    out = []
    for reward in ("accuracy", "robust"):
        for name in ("policy_safe", "policy"):
            cell = p.paired(reward, "last", name, "best_fixed")
            out.append(
                {
                    "reward": reward,
                    "selector": name,
                    "diff": cell,
                    "noninferior": cell[1] > NONINFERIORITY,
                    "superior": cell[1] > 0,
                }
            )
    return out


def target_budget(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    tables = run["tables"]
    ids = run["templates"]
    for seed in run["seeds"]:
        for reward, res in seed["rewards"].items():
            sweep = np.array(tables[f"train_{reward}"]["reward"], dtype=np.float64)
            winner, found = res["sweep_order"][0], res["identified"]
            ok = np.isfinite(sweep[:, winner]) & np.isfinite(sweep[:, found])
            gap = boot(sweep[ok, winner] - sweep[ok, found], seed=seed["seed"])
            within = found == winner or gap[1] <= 0
            calls = res["train"]["policy"]["distinct_calls"]
            share = calls / res["exhaustive_calls"]
            out.append(
                {
                    "seed": seed["seed"],
                    "reward": reward,
                    "winner": ids[winner],
                    "identified": ids[found],
                    "gap": gap,
                    "within": within,
                    "calls": calls,
                    "exhaustive": res["exhaustive_calls"],
                    "share": share,
                    "met": within and share <= run["config"]["study"]["budget_share"] + 1e-9,
                }
            )
    return out


def target_drift(p: Pooled) -> dict[str, Any]:
    """Source - target NDCG@10 drop per reward and its reduction (accuracy drop - robust drop)."""
    out: dict[str, Any] = {}
    for name in ("policy_safe", "policy", "best_fixed"):
        src = {r: p.values(r, "source", name) for r in ("accuracy", "robust")}
        tgt = {r: p.values(r, "target", name) for r in ("accuracy", "robust")}
        us, ut = (
            sorted(set(src["accuracy"]) & set(src["robust"])),
            sorted(set(tgt["accuracy"]) & set(tgt["robust"])),
        )
        if not us or not ut:
            continue
        s_a, s_r = np.array([src["accuracy"][u] for u in us]), np.array([src["robust"][u] for u in us])
        t_a, t_r = np.array([tgt["accuracy"][u] for u in ut]), np.array([tgt["robust"][u] for u in ut])
        rng = np.random.default_rng(0)
        i, j = rng.integers(0, len(us), (B, len(us))), rng.integers(0, len(ut), (B, len(ut)))
        red = (s_a[i] - s_r[i]).mean(1) - (t_a[j] - t_r[j]).mean(1)
        point = (s_a.mean() - t_a.mean()) - (s_r.mean() - t_r.mean())
        out[name] = {
            "drop_accuracy": float(s_a.mean() - t_a.mean()),
            "drop_robust": float(s_r.mean() - t_r.mean()),
            "reduction": (float(point), float(np.quantile(red, 0.025)), float(np.quantile(red, 0.975))),
            "n_source": len(us),
            "n_target": len(ut),
        }
    return out


def signal_search(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per template family: does per-user choice beat the family's own best fixed template?

    For each family F (and the whole catalog) on test users' last item: the family's best fixed
    template f (chosen on training users) minus the global best fixed g, and, against f (paired):
    the oracle within F, the realistic per-user bound (best member on the user's earlier targets)
    and a ridge selector on observation features deviating from f only where its predicted gain
    passes a margin validated on validation users.
    """
    from experiments.study import ridge_choices

    ids, tables = run["templates"], run["tables"]

    def arr(name: str) -> np.ndarray:
        return np.array([[np.nan if v is None else v for v in row] for row in tables[name]["ndcg"]])

    train, val, last = arr("train_accuracy"), arr("val"), arr("test_last")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        earlier = np.nanmean(np.stack([arr("test_back1"), arr("test_back2")]), axis=0)
    g = int(np.nanargmax(np.nanmean(train, axis=0)))
    families = {"all templates": list(ids), **run["config"]["study"]["families"]}
    out = []
    for family, members in families.items():
        idx = [ids.index(t) for t in members]
        f = idx[int(np.nanargmax(np.nanmean(train[:, idx], axis=0)))]
        k_f = idx.index(f)

        def filled(table: np.ndarray, idx: list[int] = idx, f: int = f) -> np.ndarray:
            # A user who cannot fill a member keeps the family's best fixed template.
            return np.where(np.isfinite(table[:, idx]), table[:, idx], table[:, [f]])

        sub, sub_val, sub_train = filled(last), filled(val), filled(train)
        ok = np.isfinite(sub[:, k_f]) & np.isfinite(last[:, g])
        base = sub[:, k_f]
        e = np.where(np.isfinite(earlier[:, idx]), earlier[:, idx], -np.inf)
        e[~np.isfinite(e).any(axis=1) | (e.max(axis=1) == -np.inf), k_f] = 0.0
        real = sub[np.arange(len(sub)), e.argmax(axis=1)]
        adv_e, adv_l = earlier[:, idx] - earlier[:, [f]], sub - sub[:, [k_f]]
        both = np.isfinite(adv_e) & np.isfinite(adv_l) & (np.arange(len(idx))[None, :] != k_f)
        corr = float(np.corrcoef(adv_e[both], adv_l[both])[0, 1]) if both.sum() > 2 else float("nan")
        ridge_vals = []
        for seed in run["seeds"]:
            feats = np.array(seed["features"])
            pos = {u: i for i, u in enumerate(seed["feature_users"])}
            x = {
                k: feats[[pos[u] for u in tables[k]["users"]]] for k in ("train_accuracy", "val", "test_last")
            }
            gains = sub_train - sub_train[:, [k_f]]
            best_margin, best_gain = np.inf, 0.0
            for margin in (0.0, 0.02, 0.05, 0.1):
                pick = ridge_choices(x["train_accuracy"], gains, x["val"], margin)
                chosen = np.where(
                    pick >= 0, sub_val[np.arange(len(sub_val)), np.maximum(pick, 0)], sub_val[:, k_f]
                )
                gain = float(np.nanmean(chosen - sub_val[:, k_f]))
                if gain > best_gain:
                    best_margin, best_gain = margin, gain
            pick = ridge_choices(x["train_accuracy"], gains, x["test_last"], best_margin)
            ridge_vals.append(np.where(pick >= 0, sub[np.arange(len(sub)), np.maximum(pick, 0)], base))
        ridge = np.mean(ridge_vals, axis=0)
        out.append(
            {
                "family": family,
                "templates": members,
                "family_best": ids[f],
                "global_best": ids[g],
                "fixed": boot(base[ok] - last[ok, g]),
                "oracle": boot(sub.max(axis=1)[ok] - base[ok]),
                "realistic": boot(real[ok] - base[ok]),
                "ridge": boot(ridge[ok] - base[ok]),
                "corr": corr,
            }
        )
    return out


def hints_by_taste(run: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Gain of each template over the global best fixed, per test-user mainstreamness tertile."""
    from promptopt.profile import PROFILE_FEATURES

    ids, tables = run["templates"], run["tables"]
    last = np.array([[np.nan if v is None else v for v in r] for r in tables["test_last"]["ndcg"]])
    train = np.array([[np.nan if v is None else v for v in r] for r in tables["train_accuracy"]["ndcg"]])
    g = int(np.nanargmax(np.nanmean(train, axis=0)))
    main = np.array(run["profile"])[:, PROFILE_FEATURES.index("mainstreamness")]
    cuts = np.quantile(main, [1 / 3, 2 / 3])
    groups = {
        "niche (lowest third)": main <= cuts[0],
        "middle": (main > cuts[0]) & (main <= cuts[1]),
        "mainstream (top third)": main > cuts[1],
    }
    rows = []
    for t, tid in enumerate(ids):
        if t == g:
            continue
        cells = []
        for mask in groups.values():
            d = last[mask, t] - last[mask, g]
            cells.append(fmt(boot(d[np.isfinite(d)]), signed=True))
        rows.append([f"`{tid}`", *cells])
    return ["template - " + f"`{ids[g]}`", *groups], rows


# ---------------------------------------------------------------------- plots
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_selectors(p: Pooled, path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, reward in zip(axes, ("accuracy", "robust")):
        names = [n for n in SELECTORS if p.values(reward, "last", n)]
        cells = [p.mean(reward, "last", n) for n in names]
        y = np.arange(len(names))
        ax.errorbar(
            [c[0] for c in cells],
            y,
            xerr=[[c[0] - c[1] for c in cells], [c[2] - c[0] for c in cells]],
            fmt="o",
            capsize=3,
        )
        ax.set_yticks(y, names)
        ax.set_title(f"{reward} reward: test NDCG@10 (95% CI)", fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_paired(p: Pooled, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = [n for n in SELECTORS if n != "best_fixed" and p.values("accuracy", "last", n)]
    for k, reward in enumerate(("accuracy", "robust")):
        cells = [p.paired(reward, "last", n, "best_fixed") for n in names]
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
    ax.axvline(NONINFERIORITY, color="r", ls="--", lw=0.8, label="non-inferiority margin")
    ax.set_yticks(np.arange(len(names)), names)
    ax.set_xlabel("NDCG@10 minus best fixed template, paired over test users (95% CI)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_drift(p: Pooled, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    names = [
        n
        for n in ("random", "best_fixed", "linucb", "mlp_ppo", "policy", "policy_safe", "oracle")
        if p.values("accuracy", "source", n)
    ]
    x = np.arange(len(names))
    for k, (reward, period) in enumerate(
        (("accuracy", "source"), ("accuracy", "target"), ("robust", "source"), ("robust", "target"))
    ):
        ax.bar(
            x + (k - 1.5) * 0.2,
            [p.mean(reward, period, n)[0] for n in names],
            0.2,
            label=f"{reward}, {period}",
        )
    ax.set_xticks(x, names, rotation=20, fontsize=8)
    ax.set_ylabel("NDCG@10")
    ax.set_title("Source vs drifted target period", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_curves(run: Mapping[str, Any], path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
    for ax, reward in zip(axes, ("accuracy", "robust")):
        for seed in run["seeds"]:
            for name, ls in (("policy", "-"), ("mlp_ppo", ":")):
                curve = seed["rewards"][reward]["train"][name]["curve"]
                ax.plot(
                    [c["step"] for c in curve],
                    [c["reward"] for c in curve],
                    ls,
                    label=f"{name} seed {seed['seed']}",
                )
        ax.set_title(f"PPO training reward ({reward})", fontsize=9)
        ax.set_xlabel("episodes")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- report
def write_results(run: Mapping[str, Any], study: Any, *, append: bool = True) -> Path:
    """Write the plots, append the attempts log (``append``) and write RESULTS.md; returns its path."""
    p = Pooled(run)
    plots_dir = Path(study.plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        "selectors": plot_selectors(p, plots_dir / "selectors.png"),
        "paired": plot_paired(p, plots_dir / "paired.png"),
        "drift": plot_drift(p, plots_dir / "drift.png"),
        "curves": plot_curves(run, plots_dir / "learning_curves.png"),
    }
    t1, t2, t4 = target_noninferiority(p), target_budget(run), target_drift(p)
    t5 = signal_search(run)
    attempt = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "note": study.note,
        "seeds": list(study.seeds),
        "templates": len(run["templates"]),
        "users": run["n_users"],
        "ppo_steps": run["config"]["experiment"]["ppo"]["total_timesteps"],
        "robust_weight": study.robust_weight,
        "minutes": run["seconds"] / 60,
        "t1": {f"{r['reward']}/{r['selector']}": r["diff"] for r in t1},
        "t4": {k: v["reduction"] for k, v in t4.items()},
        "t5": {r["family"]: {"realistic": r["realistic"], "ridge": r["ridge"]} for r in t5},
    }
    log = plots_dir / "attempts.jsonl"
    if append:
        with log.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(attempt) + "\n")
    attempts = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = Path(study.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    rel = {k: os.path.relpath(v, out.parent) for k, v in plots.items()}
    out.write_text(render(run, p, t1, t2, t4, t5, attempts, rel), encoding="utf-8")
    return out


def render(
    run: Mapping[str, Any],
    p: Pooled,
    t1: list[dict[str, Any]],
    t2: list[dict[str, Any]],
    t4: Mapping[str, Any],
    t5: list[dict[str, Any]],
    attempts: list[dict[str, Any]],
    plots: Mapping[str, str],
) -> str:
    """The markdown of RESULTS.md."""
    cfg, hw, study = run["config"], run["hardware"], run["config"]["study"]
    cold = cache_summary(run)
    exp = cfg["experiment"]
    ids = run["templates"]
    seeds = [s["seed"] for s in run["seeds"]]
    yes = {True: "**met**", False: "not met"}
    head = t1[0]
    rob_head = next(r for r in t1 if r["reward"] == "robust" and r["selector"] == "policy_safe")
    budget_ok = all(r["met"] for r in t2)
    worst_share = max(r["share"] for r in t2)
    acc_cells = {n: p.mean("accuracy", "last", n) for n in ("policy", "mlp_ppo", "linucb")}
    drift = t4.get("policy_safe") or next(iter(t4.values()), None)
    helps = [r for r in t5 if max(r["realistic"][1], r["ridge"][1]) > 0]
    best5 = max(((r["family"], k, r[k]) for r in t5 for k in ("realistic", "ridge")), key=lambda c: c[2][0])
    lines = [
        "# Results: does per-user prompt choice pay on real data?",
        "",
        "Generated by `experiments/study.py` (issue 7); every number below is computed by the command,",
        "nothing is typed by hand. Raw per-user results: `runs/study/study.json` (not committed).",
        "",
        "## How to reproduce",
        "",
        "```",
        "promptopt study experiments/configs/study_ml100k.yaml",
        "# or: python -m experiments.study experiments/configs/study_ml100k.yaml \\",
        "#        [--data.path=/path/to/ml-100k] [--study.seeds=[0]]",
        "```",
        "",
        "MovieLens-100K is read from `data.path` (default `../shared/data/ml-100k` next to the repository);",
        "answers are cached in `runs/study/cache.sqlite`, so a re-run only retrains the selectors.",
        "",
        "## Setup",
        "",
        f"* Hardware: {hw['cpu']}, {hw['cores']} cores, GPU: {'yes' if hw['gpu'] else 'none'}; {hw['os']};"
        f" Python {hw['python']}, torch {hw['torch']}. The machine was shared with other jobs"
        f" (1-minute load average {run['load_avg_start']:.1f} at the start,"
        f" {run['load_avg_end']:.1f} at the end).",
        f"* Wall time: {run['seconds'] / 60:.1f} min in total, of which {run['tables_seconds'] / 60:.1f} min"
        " filling the answer tables (ranker calls)."
        + (
            f" The answer cache holds {cold['entries']} answers, stored over {cold['minutes']:.1f} min from"
            " the first to the last: what a run from a cold cache pays for the ranker."
            if cold
            else ""
        ),
        f"* Ranker: `{json.dumps(run['ranker'])}`. LLM calls (uncached requests) this run:"
        f" {run['llm'].get('calls', 0)}, cache hits {run['llm'].get('hits', 0)}, tokens billed"
        f" {run['llm'].get('tokens', 0)}"
        + (
            " (a local embedding model bills none; prompts are truncated at"
            f" {run['ranker']['max_seq_length']}"
            " tokens)."
            if run["ranker"].get("backend") == "embedding" and "max_seq_length" in run["ranker"]
            else "."
        ),
        f"* Data: {run['data']}; {exp['split']['max_users'] or 'all'} users (a seeded sample, data seed"
        f" {study['data_seed']}) split into {run['n_users']['train']} training / {run['n_users']['val']}"
        f" validation / {run['n_users']['test']} test users, fixed across seeds {seeds}.",
        f"* Tasks: {exp['split']['n_negatives'] + 1} candidates (the target + {exp['split']['n_negatives']}"
        f" {exp['split']['negatives']} negatives), shown order shuffled per task; each test user's last item"
        " is the target; training users' episode target is their second-to-last item. Drift: global time"
        f" cut at the {exp['split']['drift_quantile']:.0%} quantile of timestamps; source period = each test"
        " user's latest target before it, target period = from it on.",
        f"* Templates ({len(ids)}): " + ", ".join(f"`{t}`" for t in ids) + ".",
        f"* Rewards: accuracy only (w = 0, NDCG@10) and drift-robust (w = {study['robust_weight']}: "
        f"(1 - w) NDCG@10 + w (mean - {exp['reward']['std_penalty']} std) over the base view and the"
        f" {', '.join(exp['reward']['views'])} view).",
        f"* Learned selectors (PPO, LinUCB, epsilon-greedy) train on a seeded pool of"
        f" {study.get('pool_share', study['budget_share']):.0%} of the training users with every template"
        f" ({exp['ppo']['total_timesteps']} episodes each; answers they already saw come back from the"
        " cache)"
        + (
            f"; then the rest of the budget ({study['budget_share']:.0%} of the exhaustive sweep's distinct"
            " calls, counted exactly) compares PPO's two favourite templates on more training users, and the"
            " better one is the template PPO identified"
            if study.get("confirm")
            else ""
        )
        + ". PPO: "
        f"lr {exp['ppo']['learning_rate']}, {exp['env']['n_envs']} envs x {exp['ppo']['n_steps']} steps per"
        f" rollout, {exp['ppo']['n_epochs']} epochs, entropy {exp['ppo']['ent_coef']}; LightGCN"
        f" {exp['policy']['embedding_dim']}-d, {exp['policy']['n_layers']} layers,"
        f" BPR <= {exp['policy']['bpr_epochs']}"
        " epochs with early stopping.",
        "* `policy_safe` is the LightGCN+MLP PPO policy behind a safety gate: it uses the template the policy"
        " identified as best overall (see above; without the confirmation stage: its highest mean"
        " probability on training users) and deviates to its"
        " greedy choice for a user only when the probability margin passes a threshold chosen on validation"
        " users among " + ", ".join(str(x) for x in study["gate_grid"]) + " (only a threshold whose validated"
        " gain has a 95% bootstrap lower bound > 0 is accepted; otherwise it never deviates).",
        "* Intervals: 95% percentile bootstrap over test users; each user's value is its mean over seeds.",
        "",
        "## Targets",
        "",
        _table(
            ["target", "measured", "95% interval", "status"],
            [
                [
                    "1. non-inferiority: policy_safe - best fixed NDCG@10 (w = 0), lower bound > -0.005",
                    f"{head['diff'][0]:+.4f}",
                    f"[{head['diff'][1]:+.4f}, {head['diff'][2]:+.4f}]",
                    f"{yes[head['noninferior']]}; superiority (> 0): {yes[head['superior']]}",
                ],
                [
                    "1'. the same for the drift-robust policy (w > 0)",
                    f"{rob_head['diff'][0]:+.4f}",
                    f"[{rob_head['diff'][1]:+.4f}, {rob_head['diff'][2]:+.4f}]",
                    f"{yes[rob_head['noninferior']]}; superiority: {yes[rob_head['superior']]}",
                ],
                [
                    "2. budget: best fixed template identified with <="
                    f" {study['budget_share']:.0%} of the exhaustive calls",
                    f"{sum(r['within'] for r in t2)}/{len(t2)} runs identified it;"
                    f" max share {worst_share:.1%}",
                    "see table",
                    yes[budget_ok],
                ],
                [
                    "3. LightGCN+MLP vs MLP-only vs LinUCB (w = 0, same budget), NDCG@10",
                    " / ".join(f"{v[0]:.4f}" for v in acc_cells.values()),
                    " / ".join(f"[{v[1]:.4f}, {v[2]:.4f}]" for v in acc_cells.values()),
                    _versus(p),
                ],
                [
                    "4. drift: robust reward reduces the source -> target NDCG@10 drop (policy_safe)",
                    f"{drift['reduction'][0]:+.4f}" if drift else "n/a",
                    f"[{drift['reduction'][1]:+.4f}, {drift['reduction'][2]:+.4f}]" if drift else "n/a",
                    (
                        yes[drift["reduction"][0] > 0]
                        + ("" if drift["reduction"][1] > 0 else " (interval includes 0)")
                    )
                    if drift
                    else "not measured",
                ],
                [
                    "5. signal: a family where per-user choice beats the best fixed template",
                    f"best: {best5[0]} ({best5[1]} - f) {best5[2][0]:+.4f}",
                    f"[{best5[2][1]:+.4f}, {best5[2][2]:+.4f}]",
                    ("found: " + ", ".join(r["family"] for r in helps)) if helps else "not found",
                ],
            ],
        ),
        "",
    ]
    lines += _selector_section(p, ids)
    lines += _t1_section(t1)
    lines += _t2_section(t2)
    lines += _t3_section(p)
    lines += _t4_section(t4)
    lines += _t5_section(run, t5)
    lines += _seed_section(run, p)
    lines += ["## Plots", ""] + [f"![{k}]({v})" for k, v in plots.items()] + [""]
    lines += _attempts_section(attempts)
    return "\n".join(lines) + "\n"


def _versus(p: Pooled) -> str:
    """``policy > mlp_ppo`` where the paired interval is above 0, ``<`` below, ``~`` otherwise."""
    parts = []
    for other in ("mlp_ppo", "linucb"):
        _, low, high = p.paired("accuracy", "last", "policy", other)
        parts.append(f"policy {'>' if low > 0 else '<' if high < 0 else '~'} {other}")
    return "; ".join(parts) + " (paired 95% CI)"


def _selector_section(p: Pooled, ids: Sequence[str]) -> list[str]:
    out = ["## Selectors on test users (last item)", ""]
    for reward in ("accuracy", "robust"):
        rows = []
        for name in SELECTORS:
            if not p.values(reward, "last", name):
                continue
            d = p.paired(reward, "last", name, "best_fixed") if name != "best_fixed" else None
            rows.append(
                [
                    LABELS[name],
                    fmt(p.mean(reward, "last", name)),
                    fmt(p.mean(reward, "last", name, metric="hit@10")),
                    fmt(p.mean(reward, "last", name, metric="mrr")),
                    fmt(d, signed=True) if d else "-",
                ]
            )
        out += [
            "### " + TITLES[reward],
            "",
            _table(["selector", "NDCG@10", "HR@10", "MRR", "NDCG@10 - best fixed (paired)"], rows),
            "",
        ]
    return out


def _t1_section(t1: list[dict[str, Any]]) -> list[str]:
    rows = [
        [r["reward"], r["selector"], fmt(r["diff"], signed=True), str(r["noninferior"]), str(r["superior"])]
        for r in t1
    ]
    return [
        "## 1. Non-inferiority",
        "",
        _table(
            [
                "reward",
                "selector",
                "NDCG@10 - best fixed [95% CI]",
                "lower bound > -0.005",
                "lower bound > 0",
            ],
            rows,
        ),
        "",
    ]


def _t2_section(t2: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            str(r["seed"]),
            r["reward"],
            f"`{r['winner']}`",
            f"`{r['identified']}`",
            fmt(r["gap"], signed=True),
            str(r["within"]),
            f"{r['calls']} / {r['exhaustive']} = {r['share']:.1%}",
            str(r["met"]),
        ]
        for r in t2
    ]
    return [
        "## 2. Budget: identifying the best fixed template",
        "",
        "The exhaustive sweep scores every training user with every template (and every view of the"
        " robust reward). `gap` is the sweep's winner minus the template PPO identified, in the sweep's"
        " own reward, paired over training users; identified counts when it is the winner or the gap's"
        " interval includes 0. Calls: distinct requests of PPO training and confirmation.",
        "",
        _table(
            [
                "seed",
                "reward",
                "sweep winner",
                "PPO identified",
                "gap [95% CI]",
                "identified",
                "calls / exhaustive",
                "met",
            ],
            rows,
        ),
        "",
    ]


def _t3_section(p: Pooled) -> list[str]:
    rows = []
    for reward in ("accuracy", "robust"):
        for a, b in (
            ("policy", "mlp_ppo"),
            ("policy", "linucb"),
            ("mlp_ppo", "linucb"),
            ("policy", "epsilon_greedy"),
        ):
            rows.append([reward, f"{a} - {b}", fmt(p.paired(reward, "last", a, b), signed=True)])
    return [
        "## 3. What the graph adds (same budget)",
        "",
        _table(["reward", "comparison", "NDCG@10 difference [95% CI]"], rows),
        "",
    ]


def _t4_section(t4: Mapping[str, Any]) -> list[str]:
    rows = [
        [
            k,
            f"{v['drop_accuracy']:+.4f}",
            f"{v['drop_robust']:+.4f}",
            fmt(v["reduction"], signed=True),
            f"{v['n_source']} / {v['n_target']}",
        ]
        for k, v in t4.items()
    ]
    return [
        "## 4. Drift",
        "",
        "Drop = mean NDCG@10 on source-period targets minus on target-period targets (different users"
        " may hold each); reduction = accuracy-only drop minus drift-robust drop (positive: the robust"
        " reward drops less); interval: bootstrap over source and target users independently.",
        "",
        _table(
            ["selector", "drop (w = 0)", "drop (w > 0)", "reduction [95% CI]", "users source / target"], rows
        ),
        "",
    ]


def _t5_section(run: Mapping[str, Any], t5: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            r["family"],
            f"`{r['family_best']}`",
            fmt(r["fixed"], signed=True),
            fmt(r["oracle"], signed=True),
            fmt(r["realistic"], signed=True),
            fmt(r["ridge"], signed=True),
            f"{r['corr']:.3f}",
        ]
        for r in t5
    ]
    header, taste = hints_by_taste(run)
    global_best = t5[0]["global_best"] if t5 else "?"
    return [
        "## 5. Search for signal",
        "",
        "Per template family F, on test users' last item (NDCG@10, paired over users, 95% CI): the family's"
        " best fixed template f (chosen on training users) minus the global best fixed template"
        f" `{global_best}`; then, **against f**: the oracle in hindsight within F (optimistic), the"
        " realistic per-user bound (the member best on the user's 2 earlier targets), and a ridge selector"
        " on observation features (profile statistics + the seed's LightGCN embedding) trained on the"
        " training users' exhaustive answers, deviating from f only where the predicted gain passes a margin"
        " chosen on validation users (averaged over seeds). `corr`: correlation of per-user advantages over"
        " f on the earlier targets with those on the last target. Per-user choice helps where the realistic"
        " bound or the ridge selector is above 0 with its interval.",
        "",
        _table(
            ["family F", "f", "f - global best", "oracle - f", "realistic - f", "ridge - f", "corr"], rows
        ),
        "",
        "Gain of each template over the global best fixed template by the test user's mainstreamness (mean"
        " popularity of their history), where collaborative hints should matter most:",
        "",
        _table(header, taste),
        "",
    ]


def _seed_section(run: Mapping[str, Any], p: Pooled) -> list[str]:
    rows = []
    for k, seed in enumerate(run["seeds"]):
        for reward in ("accuracy", "robust"):
            res = seed["rewards"][reward]
            cells = [
                fmt(p.mean(reward, "last", n, seeds=[k])) for n in ("best_fixed", "policy", "policy_safe")
            ]
            tau = res["tau"]
            rows.append(
                [
                    str(seed["seed"]),
                    reward,
                    *cells,
                    fmt(p.paired(reward, "last", "policy_safe", "best_fixed", seeds=[k]), signed=True),
                    "never deviates" if tau == float("inf") else f"{tau}",
                    f"{seed['lightgcn']['recall@20']:.4f}",
                ]
            )
    return [
        "## Per seed",
        "",
        _table(
            [
                "seed",
                "reward",
                "best fixed",
                "policy",
                "policy_safe",
                "policy_safe - best fixed",
                "gate",
                "LightGCN recall@20",
            ],
            rows,
        ),
        "",
    ]


def _note(note: Any) -> str:
    """The attempt's note as one table cell (a YAML-parsed mapping is joined back)."""
    if isinstance(note, dict):
        note = "; ".join(f"{k}: {v}" for k, v in note.items())
    return str(note or "-").replace("|", "/")


def _attempts_section(attempts: list[dict[str, Any]]) -> list[str]:
    rows = []
    for a in attempts:
        t1 = a["t1"].get("accuracy/policy_safe") or [float("nan")] * 3
        raw = a["t1"].get("accuracy/policy") or [float("nan")] * 3
        t4 = a["t4"].get("policy_safe") or [float("nan")] * 3
        real = max(
            (v["realistic"][0] for k, v in a["t5"].items() if k != "all templates"), default=float("nan")
        )
        rows.append(
            [
                a["when"],
                _note(a["note"]),
                str(a["seeds"]),
                str(a["templates"]),
                str(a["ppo_steps"]),
                fmt(tuple(raw), signed=True),
                fmt(tuple(t1), signed=True),
                fmt(tuple(t4), signed=True),
                f"{real:+.4f}",
                f"{a['minutes']:.1f}",
            ]
        )
    return [
        "## Attempts",
        "",
        "Every run of the study appends its headline numbers to `docs/results/attempts.jsonl`; the"
        " note is the config's `study.note` (what the attempt changed).",
        "",
        _table(
            [
                "when",
                "note",
                "seeds",
                "templates",
                "PPO steps",
                "raw policy - best fixed",
                "policy_safe - best fixed",
                "drift reduction",
                "best family realistic gain",
                "minutes",
            ],
            rows,
        ),
        "",
    ]
