"""The human-readable side of a run: the headline table printed by the CLI and report.md.

Both read only the plain dicts of metrics.json (see :mod:`promptopt.experiments.evaluate_run` for the
``evaluation`` layout), so a report can be rebuilt from a finished run at any time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from promptopt.experiments.rundir import RunDir
from promptopt.metrics import METRIC_NAMES

HEADLINE_METRIC = "ndcg@10"


def metric_label(name: str) -> str:
    """``ndcg@10`` -> ``NDCG@10``, ``hit@5`` -> ``HR@5``, ``mrr`` -> ``MRR``."""
    base, _, k = name.partition("@")
    label = {"ndcg": "NDCG", "hit": "HR", "recall": "Recall", "mrr": "MRR"}.get(base, base)
    return f"{label}@{k}" if k else label


def _cell(value: Mapping[str, float] | None, *, interval: bool = True) -> str:
    if not value:
        return "–"
    if interval and "low" in value and "high" in value:
        return f"{value['mean']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"
    return f"{value['mean']:.3f}"


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[k])) for r in rows)) for k, h in enumerate(header)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def split_label(evaluation: Mapping[str, Any]) -> str:
    """Which users the numbers come from: ``test users (held out, scored once)`` or ``validation users``."""
    split = evaluation.get("split", "test")
    return {"test": "test users (held out)", "val": "validation users (tuning)"}.get(split, f"{split} users")


def headline_table(evaluation: Mapping[str, Any]) -> str:
    """The plain-text table the CLI prints: every selector, NDCG@10 with its interval, the rest means."""
    methods = evaluation.get("methods", {})
    others = [m for m in METRIC_NAMES if m != HEADLINE_METRIC]
    conf = round(100 * evaluation.get("confidence", 0.95))
    header = ["selector", f"{metric_label(HEADLINE_METRIC)} [{conf}% CI]",
              *[metric_label(m) for m in others], "requests"]
    rows = []
    for name, result in methods.items():
        cells = result.get("metrics", {})
        rows.append([name, _cell(cells.get(HEADLINE_METRIC)),
                     *[_cell(cells.get(m), interval=False) for m in others], str(result.get("calls", ""))])
    # Rankings made without the LLM on the same tasks (promptopt.experiments.reference_rows): compare with
    # these first.
    for name, result in evaluation.get("reference", {}).items():
        cells = result.get("metrics", {})
        rows.append([f"ref: {name}", _cell(cells.get(HEADLINE_METRIC)),
                     *[_cell(cells.get(m), interval=False) for m in others], "0 (no LLM)"])
    title = (f"{split_label(evaluation)}: {evaluation.get('n_users', '?')} "
             f"({evaluation.get('n_bootstrap', '?')} bootstrap resamples)")
    return title + "\n" + _text_table(header, rows)


def _paired_text(paired: Mapping[str, Any] | None) -> str:
    if not paired:
        return "No paired comparison (the policy or the best fixed template was not evaluated)."
    conf = round(100 * paired.get("confidence", 0.95))
    verdict = ("better than" if paired["low"] > 0 else "worse than" if paired["high"] < 0
               else "not distinguishable from")
    return (
        f"`{paired['a']}` minus `{paired['b']}` on {metric_label(paired['metric'])}, paired over "
        f"{paired['n_users']} users: **{paired['mean_diff']:+.4f}** ({conf}% bootstrap interval "
        f"[{paired['low']:+.4f}, {paired['high']:+.4f}], two-sided sign-flip p = {paired['p_value']:.3g}; "
        f"{paired['wins']} users better, {paired['losses']} worse, {paired['ties']} tied). "
        f"`{paired['a']}` is {verdict} `{paired['b']}` at this confidence."
    )


def write_report(
    path: Path,
    *,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    plots: Mapping[str, str] | None = None,
    ranker_identity: Mapping[str, Any] | None = None,
) -> Path:
    """Write report.md for a run.

    Args:
        path: Output file.
        config: The resolved config as a plain dict.
        metrics: The run's metrics.json content.
        plots: Plot title -> path relative to the report.
        ranker_identity: The ranker's identity (no secrets).
    """
    train = metrics.get("train", {})
    evaluation = metrics.get("evaluation")
    lines = [f"# Run `{config.get('name', 'run')}`", ""]
    data = config.get("data", {})
    identity = ranker_identity or {"backend": config.get("ranker", {}).get("backend")}
    lines += [
        f"- dataset: `{data.get('format')}`" + (f" at `{data['path']}`" if data.get("path") else ""),
        f"- ranker: `{_identity_text(identity)}`",
        f"- templates: `{config.get('templates', {}).get('catalog')}`; reward: "
        f"`{config.get('reward', {}).get('metric')}` with robust weight "
        f"{config.get('reward', {}).get('robust_weight')}",
        f"- policy: `{config.get('policy', {}).get('kind')}`, PPO {train.get('steps', '?')} steps; "
        f"seed {config.get('seed')}",
    ]
    gcn = train.get("lightgcn") or {}
    if gcn:
        lines.append(f"- LightGCN: {gcn.get('epochs')} BPR epochs, kept epoch {gcn.get('best_epoch')} "
                     f"(validation recall@20 {gcn.get('best_recall', float('nan')):.4f}), "
                     f"{gcn.get('seconds', 0.0):.0f} s")
    if train.get("seconds"):
        lines.append(f"- training wall time: {train['seconds']:.0f} s")
    lines.append("")
    if evaluation:
        users = split_label(evaluation)
        lines += [f"## Selectors on {users}", "", _methods_md(evaluation), "",
                  f"## Policy vs best fixed template ({users})", "",
                  _paired_text(evaluation.get("paired")), ""]
        periods = evaluation.get("periods") or {}
        if periods.get("source") and periods.get("target"):
            protocol = periods.get("protocol", "leave_last")
            lines += [f"## Source vs drifted target period ({users}, protocol {protocol})", "",
                      _periods_md(evaluation), ""]
    else:
        lines += ["Not evaluated yet: run `promptopt evaluate RUN_DIR`.", ""]
    lines += ["## LLM spend", "", _spend_md(train, evaluation), ""]
    scan = (evaluation or {}).get("template_scan") or []
    if scan:
        scanned = max((int(r["n"]) for r in scan), default=0)
        ordered = sorted(scan, key=lambda r: (r["mean_reward"] is None, -(r["mean_reward"] or 0.0)))
        lines += ["## best_fixed's scan: every template on the training users", "",
                  f"Each template scored once on every training user who can fill it (up to {scanned} "
                  "users): the measure `best_fixed` chooses by, and the prompt book's global ranking.", "",
                  _md_table(["template", "mean reward (scan)", "users"],
                            [[f"`{r['template_id']}`",
                              "–" if r["mean_reward"] is None else f"{r['mean_reward']:.4f}", str(r["n"])]
                             for r in ordered[:15]]), ""]
    ranking = train.get("template_ranking") or []
    if ranking:
        lines += ["## Templates PPO chose in training: mean reward of its own episodes", "",
                  "On-policy: each template's mean over the training episodes in which PPO picked it "
                  "(users it chose the template for, early and late in training), not the scan above.", "",
                  _md_table(["template", "mean reward (PPO's episodes)", "episodes"],
                            [[f"`{r['template_id']}`",
                              "–" if r["mean_reward"] is None else f"{r['mean_reward']:.4f}", str(r["n"])]
                             for r in ranking[:15]]), ""]
    if evaluation and evaluation.get("usage_by_group"):
        lines += ["## Template chosen by the policy, per user group", "", _usage_md(evaluation), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{title}]({rel})" for title, rel in plots.items()] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _identity_text(identity: Mapping[str, Any]) -> str:
    keys = [k for k in ("backend", "model", "kind", "mode") if k in identity]
    return ", ".join(f"{k}={identity[k]}" for k in keys) or str(dict(identity))


def _methods_md(evaluation: Mapping[str, Any]) -> str:
    conf = round(100 * evaluation.get("confidence", 0.95))
    header = ["selector", *[f"{metric_label(m)}" for m in METRIC_NAMES], "requests", "tokens"]
    rows = [[f"`{name}`", *[_cell(r.get("metrics", {}).get(m)) for m in METRIC_NAMES],
             str(r.get("calls", "")), str(r.get("tokens", ""))]
            for name, r in evaluation.get("methods", {}).items()]
    rows += [[f"ref: `{name}`", *[_cell(r.get("metrics", {}).get(m)) for m in METRIC_NAMES], "0", "0"]
             for name, r in evaluation.get("reference", {}).items()]
    note = (f"{evaluation.get('n_users')} {evaluation.get('split', 'test')} users; mean "
            f"[{conf}% bootstrap interval, {evaluation.get('n_bootstrap')} resamples]; every selector "
            "ranks identical tasks and shown orders. `ref:` rows rank the same base tasks without the "
            "LLM: training-graph popularity and the run's own LightGCN (user . item).")
    return note + "\n\n" + _md_table(header, rows)


def _periods_md(evaluation: Mapping[str, Any]) -> str:
    periods = evaluation["periods"]
    metric = periods.get("metric", HEADLINE_METRIC)
    rows = []
    changes = periods.get("change") or {}
    for name, drop in (evaluation.get("drop") or {}).items():
        src = periods["source"]["methods"].get(name, {})
        tgt = periods["target"]["methods"].get(name, {})
        change = changes.get(name)
        rows.append([f"`{name}`", _cell(src), _cell(tgt), f"{drop:+.4f}",
                     _cell(change) if change else "n/a", str(change["n_users"]) if change else "0"])
    protocol = periods.get("protocol", "leave_last")
    which = ("its first target from the cut on (target)" if protocol == "deploy"
             else "its latest from the cut on (target)")
    note = (f"Split: {evaluation.get('split', 'test')} users; protocol `{protocol}` (split.protocol). "
            f"{metric_label(metric)} on each user's latest target before the drift time cut (source, "
            f"{periods['source'].get('n_users')} users) and on {which}, "
            f"{periods['target'].get('n_users')} users); drop = source mean - target mean; change = "
            "target - source per user, paired over the users with both (negative: the score falls).")
    return note + "\n\n" + _md_table(
        ["selector", "source", "target", "drop", "change (paired)", "users in both"], rows)


def _spend_md(train: Mapping[str, Any], evaluation: Mapping[str, Any] | None) -> str:
    rows = []
    llm = train.get("llm") or {}
    if llm:
        requests = int(llm.get("calls", 0) + llm.get("hits", 0))
        rows.append(["training", str(requests), str(int(llm.get("calls", 0))), str(int(llm.get("tokens", 0))),
                     f"{llm.get('cache_hit_rate', 0.0):.1%}"])
    if evaluation and evaluation.get("llm"):
        ev = evaluation["llm"]
        rows.append(["evaluation", str(ev.get("calls", 0)), str(ev.get("uncached_calls", ev.get("calls", 0))),
                     str(ev.get("tokens", 0)), f"{ev.get('cache_hit_rate', 0.0):.1%}"])
    if not rows:
        return "No ranker calls recorded."
    note = ("Requests: asked of the cached ranker; calls: sent to the model (cache misses). "
            "Evaluation tokens count every request's answer, cached or not.")
    return note + "\n\n" + _md_table(["phase", "requests", "model calls", "tokens", "cache hit rate"], rows)


def _usage_md(evaluation: Mapping[str, Any]) -> str:
    usage = evaluation["usage_by_group"]
    rows = []
    for group, counts in usage.items():
        total = sum(counts.values()) or 1
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
        rows.append([group, str(total), ", ".join(f"`{t}` {n / total:.0%}" for t, n in top)])
    return _md_table(["group", "users", "most chosen templates"], rows)


def print_summary(run_dir: str | Path, metrics: dict[str, Any]) -> None:
    """Print the headline table and where the run is (the CLI's output)."""
    run = RunDir(Path(run_dir))
    evaluation = metrics.get("evaluation")
    if evaluation:
        print(headline_table(evaluation))
        print()
        for key, label in (("paired", "policy (the safe policy, the default)"),
                           ("paired_raw", "policy_raw (the ungated argmax, an ablation)")):
            paired = evaluation.get(key)
            if paired:
                conf = round(100 * paired.get("confidence", 0.95))
                print(f"{label} - best_fixed, NDCG@10 paired over {paired['n_users']} "
                      f"{split_label(evaluation)}: {paired['mean_diff']:+.4f} [{paired['low']:+.4f}, "
                      f"{paired['high']:+.4f}] ({conf}% bootstrap interval; p = {paired['p_value']:.3g})")
        rule = metrics.get("safe_policy")
        if rule:
            print(f"safe policy rule (validated on {rule.get('n_users', '?')} {rule.get('split', 'val')} "
                  f"users): {rule.get('summary', '')}")
    train_llm = (metrics.get("train") or {}).get("llm") or {}
    eval_llm = (evaluation or {}).get("llm") or {}
    if train_llm or eval_llm:
        print(f"\nranker spend: training {int(train_llm.get('calls', 0))} model calls "
              f"({int(train_llm.get('tokens', 0))} tokens, cache hit rate "
              f"{train_llm.get('cache_hit_rate', 0.0):.0%}); evaluation "
              f"{int(eval_llm.get('uncached_calls', 0))} model calls for {int(eval_llm.get('calls', 0))} "
              f"requests ({int(eval_llm.get('tokens', 0))} tokens)")
    print(f"\nrun directory: {run.root}")
    print(f"report: {run.report}    prompt book: {run.prompts}")
