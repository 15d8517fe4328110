"""RESULTS.md: the plots, the attempts log and the markdown, from the ``study.json`` dict.

Every number in the report is computed from the run (nothing is typed by hand):
:func:`write_results` measures the targets (:mod:`promptopt.experiments.study.targets`), draws the plots
(:mod:`promptopt.experiments.study.plots`), appends the attempt to ``attempts.jsonl`` and writes
:func:`render`'s markdown: title, setup, the targets' summary, then the detail sections of
:mod:`promptopt.experiments.study.markdown`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptopt.experiments.latex import results_table
from promptopt.experiments.study import markdown
from promptopt.experiments.study.drift_source import config_path, drift_origin, read_drift_run, study_command
from promptopt.experiments.study.markdown import graph_comparison, markdown_table
from promptopt.experiments.study.plots import plot_drift, plot_learning_curves, plot_paired, plot_selectors
from promptopt.experiments.study.pooled import SELECTORS, PooledResults
from promptopt.experiments.study.provenance import answer_cache_summary
from promptopt.experiments.study.targets import (
    NONINFERIORITY_MARGIN,
    TargetResults,
    drift_reduction,
    measure_targets,
)
from promptopt.selector_names import RAW_POLICY, SAFE_POLICY

MET = {True: "**met**", False: "not met"}


def write_results(run: Mapping[str, Any], study: Any, *, append: bool = True) -> Path:
    """Write the plots, append the attempts log (``append``) and write RESULTS.md; returns its path.

    Args:
        run: The ``study.json`` dict.
        study: The :class:`~promptopt.experiments.study.config.StudyConfig` (output paths, note).
        append: Add this run to the attempts log (``False``: only re-render, e.g. ``--report-from``).
    """
    pooled = PooledResults(run)
    drift_run = read_drift_run(study.drift_from, run)
    plots_dir = Path(study.plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        "selectors": plot_selectors(pooled, plots_dir / "selectors.png"),
        "paired": plot_paired(pooled, plots_dir / "paired.png"),
        "curves": plot_learning_curves(run, plots_dir / "learning_curves.png"),
    }
    (plots_dir / "results.tex").write_text(latex_tables(run, pooled), encoding="utf-8")
    targets = measure_targets(run, pooled)
    if drift_run is not None:
        targets = dataclasses.replace(targets, drift=drift_reduction(PooledResults(drift_run)))
    if targets.drift:
        protocol = markdown.protocol_of(drift_run or run)
        plots["drift"] = plot_drift(targets.drift, plots_dir / "drift.png", protocol=protocol)
    log = plots_dir / "attempts.jsonl"
    if append:
        with log.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(attempt_record(run, study, targets, drift_run)) + "\n")
    lines = log.read_text(encoding="utf-8").splitlines() if log.is_file() else []
    attempts = [json.loads(line) for line in lines if line.strip()]
    out = Path(study.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    relative = {k: os.path.relpath(v, out.parent) for k, v in plots.items()}
    out.write_text(render(run, pooled, targets, attempts, relative, drift_run), encoding="utf-8")
    return out


def latex_tables(run: Mapping[str, Any], pooled: PooledResults) -> str:
    """The headline results for papers: one booktabs table per reward, test users' last targets."""
    out = []
    for reward in ("accuracy", "robust"):
        methods = {}
        for name in SELECTORS:
            cells = {}
            for metric in ("ndcg@10", "hit@10", "mrr"):
                values = pooled.values(reward, "last", name, metric=metric)
                if values:
                    interval = pooled.mean(reward, "last", name, metric=metric)
                    cells[metric] = {"mean": interval[0], "low": interval[1], "high": interval[2]}
            if cells:
                methods[name] = {"metrics": cells}
        n_users = max((len(pooled.values(reward, "last", n)) for n in methods), default=0)
        evaluation = {"methods": methods, "split": "test", "n_users": n_users,
                      "note": f"Each user's value is the mean over {len(run.get('seeds', []))} seed(s)."}
        out.append(results_table(evaluation, label=f"tab:promptopt-study-{reward}",
                                 title=f"{run.get('data', 'study')}, {reward} reward"))
    return "\n".join(out)


def attempt_record(
    run: Mapping[str, Any], study: Any, targets: TargetResults, drift_run: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """This run's line of the attempts log (keys ``t1``, ``t4``, ``t5``: targets 1, 4 and 5; ``t4``
    from the ``study.drift_from`` run when there is one, its protocol as ``drift_protocol``)."""
    return {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "note": study.note,
        "seeds": list(study.seeds),
        "templates": len(run["templates"]),
        "users": run["n_users"],
        "ppo_steps": run["config"]["experiment"]["ppo"]["total_timesteps"],
        "robust_weight": study.robust_weight,
        "minutes": run["seconds"] / 60,
        "t1": {f"{r['reward']}/{r['selector']}": r["diff"] for r in targets.noninferiority},
        "protocol": run["config"]["experiment"]["split"].get("protocol", "leave_last"),
        "drift_protocol": markdown.protocol_of(drift_run or run),
        "t4": {k: v["reduction"] for k, v in targets.drift.items()},
        "t4_target": {k: v["target_gain"] for k, v in targets.drift.items()},
        "t5": {r["family"]: {"realistic": r["realistic"], "ridge": r["ridge"]} for r in targets.signal},
    }


def render(
    run: Mapping[str, Any],
    pooled: PooledResults,
    targets: TargetResults,
    attempts: list[dict[str, Any]],
    plots: Mapping[str, str],
    drift_run: Mapping[str, Any] | None = None,
) -> str:
    """The markdown of RESULTS.md (the drift section from ``drift_run`` when given)."""
    drift_protocol = markdown.protocol_of(drift_run or run)
    lines = title_section(run, drift_run) + setup_section(run)
    lines += targets_section(run, pooled, targets, drift_protocol)
    lines += markdown.selectors_section(pooled, markdown.protocol_of(run))
    lines += markdown.noninferiority_section(targets.noninferiority)
    lines += markdown.budget_section(targets.budget)
    lines += markdown.graph_section(pooled)
    lines += markdown.drift_section(targets.drift, drift_protocol, source=drift_origin(drift_run))
    lines += markdown.signal_section(run, targets.signal)
    lines += markdown.per_seed_section(run, pooled)
    lines += markdown.plots_section(plots)
    lines += markdown.attempts_section(attempts)
    return "\n".join(lines) + "\n"


def title_section(run: Mapping[str, Any], drift_run: Mapping[str, Any] | None = None) -> list[str]:
    """The title, where the numbers come from and how to reproduce them."""
    exp, study = run["config"]["experiment"], run["config"]["study"]
    config = config_path(run)
    protocol = markdown.protocol_of(run)
    if drift_run is None:
        which = f"Every number is from the protocol `split.protocol: {protocol}` (see Setup)"
    else:
        which = (f"Every number is from the protocol `split.protocol: {protocol}` (see Setup) except"
                 f" the drift section and targets 4 / 4', which are from `split.protocol:"
                 f" {markdown.protocol_of(drift_run)}` (`{study_command(drift_run)}`, run first)")
    synthetic = exp["data"]["format"] == "synthetic"
    where = (
        "synthetic data (`data.format: synthetic`, generated from its seed) and the "
        f"`{exp['ranker']['backend']}` ranker"
        if synthetic
        else f"`{exp['data']['format']}` read from `data.path` (`{exp['data'].get('path')}` in the config)"
    )
    return [
        "# Results: does per-user prompt choice pay?"
        + (" (synthetic data, planted drift)" if synthetic else " (real data)"),
        "",
        "Generated by `promptopt study` (`experiments/study/`); every number below is computed by the"
        " command,",
        f"nothing is typed by hand. Raw per-user results: `{study.get('work_dir', 'runs/study')}/study.json`"
        f" (not committed). {which}; each names its users' split.",
        "",
        "## How to reproduce",
        "",
        "```",
        *([study_command(drift_run) + "   # first: the drift section's run"] if drift_run else []),
        f"promptopt study {config}",
        f"# or: python -m promptopt.experiments.study {config} [--study.seeds=[0]]",
        "```",
        "",
        f"Data: {where}; answers are cached in `{exp['cache']['path']}`, so a re-run only retrains the"
        " selectors.",
        "",
    ]


def setup_section(run: Mapping[str, Any]) -> list[str]:
    """Machine, time, ranker and spend, data and split, tasks, templates, rewards, selectors, intervals."""
    cfg, hw, study = run["config"], run["hardware"], run["config"]["study"]
    cold = answer_cache_summary(run)
    exp = cfg["experiment"]
    ids = run["templates"]
    seeds = [s["seed"] for s in run["seeds"]]
    return [
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
        f" validation / {run['n_users']['test']} test users, fixed across seeds {seeds}."
        + fill_sentence(run.get("test_fill")),
        f"* Tasks: {exp['split']['n_negatives'] + 1} candidates (the target + {exp['split']['n_negatives']}"
        f" {exp['split']['negatives']} negatives), shown order shuffled per task. Drift: global time"
        f" cut at the {exp['split']['drift_quantile']:.0%} quantile of timestamps. Protocol:"
        f" {markdown.PROTOCOLS.get(markdown.protocol_of(run), markdown.protocol_of(run))}; "
        + (
            "each test user's default target (the 'last item' rows) is their first target from the cut"
            " on; training and validation users' episodes are before the cut."
            if markdown.protocol_of(run) == "deploy"
            else "each test user's last item is the target; training users' episode target is their"
            " second-to-last item."
        ),
        f"* Templates ({len(ids)}): " + ", ".join(f"`{t}`" for t in ids) + ".",
        f"* Rewards: accuracy only (w = 0, NDCG@10) and drift-robust (w = {study['robust_weight']}: "
        f"(1 - w) NDCG@10 + w (mean - {exp['reward']['std_penalty']} std) over the base view and the"
        f" {', '.join(exp['reward']['views'])} view).",
        f"* Learned selectors (PPO, LinUCB, epsilon-greedy) train on a seeded pool of"
        f" {study.get('pool_share', study['budget_share']):.0%} of the training users with every template"
        f" ({exp['ppo']['total_timesteps']} episodes each; answers they already saw come back from the"
        " cache). The safe policy's training-budget scan then scores every template on the pool and on"
        f" further seeded training users, as many as {study['budget_share']:.0%} of the exhaustive sweep's"
        " distinct calls allow (PPO's included, counted exactly); its best template is the one identified"
        + ". PPO: "
        f"lr {exp['ppo']['learning_rate']}, {exp['env']['n_envs']} envs x {exp['ppo']['n_steps']} steps per"
        f" rollout, {exp['ppo']['n_epochs']} epochs, entropy {exp['ppo']['ent_coef']}; LightGCN"
        f" {exp['policy']['embedding_dim']}-d, {exp['policy']['n_layers']} layers,"
        f" BPR <= {exp['policy']['bpr_epochs']}"
        " epochs with early stopping.",
        "* `policy` is the safe policy, named as every `promptopt` path names it (`promptopt.safe_policy`):"
        " the template the training-budget scan identified (falling back along the scan's ranking for a user"
        " who cannot fill it), and the LightGCN+MLP PPO policy's greedy choice for a user only when its"
        " probability margin passes a threshold chosen on validation users among "
        + ", ".join(str(x) for x in study["gate_grid"]) + " (only a threshold whose validated"
        + (" gain in the run's own reward (gate.metric: reward; the drift-robust run's gate reads its"
           " robust reward)" if exp.get("gate", {}).get("metric", "ndcg@10") == "reward" else " NDCG@10 gain")
        + " has a 95% bootstrap lower bound > 0 is accepted; otherwise it never deviates). `policy_raw` is"
        " the same agent's raw argmax (as in `promptopt evaluate`; study.json files and attempts written"
        " before this naming called them `policy_safe` and `policy`, and are read as such).",
        "* Intervals: 95% percentile bootstrap over test users; each user's value is its mean over seeds.",
        "",
    ]


def targets_section(
    run: Mapping[str, Any], pooled: PooledResults, targets: TargetResults, drift_protocol: str | None = None
) -> list[str]:
    """One row per target: what was measured, its interval, met or not (targets 4 / 4' under
    ``drift_protocol``, the run's own protocol by default)."""
    study = run["config"]["study"]
    noninferiority, budget, drift_by_selector, signal = (
        targets.noninferiority,
        targets.budget,
        targets.drift,
        targets.signal,
    )
    head = noninferiority[0]
    rob_head = next(r for r in noninferiority if r["reward"] == "robust" and r["selector"] == SAFE_POLICY)
    budget_ok = all(r["met"] for r in budget)
    worst_share = max(r["share"] for r in budget)
    acc_cells = {n: pooled.mean("accuracy", "last", n) for n in (RAW_POLICY, "mlp_ppo", "linucb")}
    drift = drift_by_selector.get(SAFE_POLICY) or next(iter(drift_by_selector.values()), None)
    helps = [r for r in signal if max(r["realistic"][1], r["ridge"][1]) > 0]
    best_signal = max(
        ((r["family"], k, r[k]) for r in signal for k in ("realistic", "ridge")), key=lambda c: c[2][0]
    )
    return [
        "## Targets",
        "",
        markdown_table(
            ["target", "measured", "95% interval", "status"],
            [
                [
                    "1. non-inferiority: policy - best fixed NDCG@10 (w = 0), lower bound >"
                    f" {NONINFERIORITY_MARGIN:g}",
                    f"{head['diff'][0]:+.4f}",
                    f"[{head['diff'][1]:+.4f}, {head['diff'][2]:+.4f}]",
                    f"{MET[head['noninferior']]}; superiority (> 0): {MET[head['superior']]}",
                ],
                [
                    "1'. the same for the drift-robust policy (w > 0)",
                    f"{rob_head['diff'][0]:+.4f}",
                    f"[{rob_head['diff'][1]:+.4f}, {rob_head['diff'][2]:+.4f}]",
                    f"{MET[rob_head['noninferior']]}; superiority: {MET[rob_head['superior']]}",
                ],
                [
                    "2. budget: best fixed template identified with <="
                    f" {study['budget_share']:.0%} of the exhaustive calls",
                    f"{sum(r['within'] for r in budget)}/{len(budget)} runs identified it;"
                    f" max share {worst_share:.1%}",
                    "see table",
                    MET[budget_ok],
                ],
                [
                    "3. LightGCN+MLP vs MLP-only vs LinUCB (w = 0, same budget), NDCG@10",
                    " / ".join(f"{v[0]:.4f}" for v in acc_cells.values()),
                    " / ".join(f"[{v[1]:.4f}, {v[2]:.4f}]" for v in acc_cells.values()),
                    graph_comparison(pooled),
                ],
                [
                    f"4. drift ({drift_protocol or markdown.protocol_of(run)}): robust - accuracy-only"
                    " reward, target-period"
                    " NDCG@10 (policy, paired), lower bound > 0",
                    f"{drift['target_gain'][0]:+.4f}" if drift else "n/a",
                    f"[{drift['target_gain'][1]:+.4f}, {drift['target_gain'][2]:+.4f}]" if drift else "n/a",
                    MET[drift["target_gain"][1] > 0] if drift else "not measured",
                ],
                [
                    "4'. drift: the robust reward's change (target - source) is above the accuracy-only"
                    " reward's (policy, paired)",
                    f"{drift['reduction'][0]:+.4f}" if drift else "n/a",
                    f"[{drift['reduction'][1]:+.4f}, {drift['reduction'][2]:+.4f}]" if drift else "n/a",
                    (
                        MET[drift["reduction"][0] > 0]
                        + ("" if drift["reduction"][1] > 0 else " (interval includes 0)")
                    )
                    if drift
                    else "not measured",
                ],
                [
                    "5. signal: a family where per-user choice beats the best fixed template",
                    f"best: {best_signal[0]} ({best_signal[1]} - f) {best_signal[2][0]:+.4f}",
                    f"[{best_signal[2][1]:+.4f}, {best_signal[2][2]:+.4f}]",
                    ("found: " + ", ".join(r["family"] for r in helps)) if helps else "not found",
                ],
            ],
        ),
        "",
    ]


def fill_sentence(fill: Mapping[str, int] | None) -> str:
    """What the test users' episode targets let a selector choose: who has none (left out of every
    score), whose history fills one template only (every selector is forced to it) or every one.
    Empty for studies from before ``test_fill`` was recorded."""
    if not fill:
        return ""
    none = ""
    if fill["no_target"]:
        none = (f" {fill['no_target']} have no target ({fill['unservable']} of them because from the"
                " cut on no history of theirs fills a template) and are left out of every score;")
    if fill.get("fill_none"):
        none += (f" {fill['fill_none']} can fill no template at their target (every selector scores 0"
                 " there);")
    return (f" Of the {fill['users']} test users,{none} {fill['fill_one']} can fill exactly one template"
            f" at their target (every selector is forced to it) and {fill['fill_all']} every template.")
