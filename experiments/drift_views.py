"""Which drift views predict the future: each view's source-period score against the target period's.

    python -m promptopt.experiments.drift_views experiments/configs/ml100k_embedding.yaml \
        --data.path=../shared/data/ml-100k > runs/drift_views.md

Under ``split.protocol: deploy`` (forced here) the robust reward scores every template on a
training or validation user's learning episode: the base task and its drift views, all built
before the time cut (docs/env.md, "Protocols"). The question is whether those scores say anything
about the template's score after the cut. The users measured are the training and validation users
who also have a target from the cut on (the protocol holds it out: nothing learns from it; no test
user is touched). For each (user, template) cell: the view's source-period score (``reward.metric``,
NDCG@10 by default) and the base view's score on the user's first target from the cut on.

Per view, the table gives:

* ``pooled r`` / ``pooled rho``: Pearson / Spearman over all cells;
* ``within-user r``: Pearson after removing each user's mean over templates from both scores (what
  choosing a template *per user* depends on), with a 95% percentile interval from resampling users;
* ``template rho``: Spearman between the templates' mean source score and mean target score (what
  the best fixed template depends on; one point per template, so a coarse number).

``base`` (the accuracy-only reward) is the reference: a view predicts when its within-user interval
is above 0, and adds to the reward when it is above ``base``'s. ``reward`` is the robust total of the
config's aggregate over all the measured views.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence

import numpy as np

STUDY_TEMPLATES = (
    "expert.recent5.none.index", "expert.genres10.none.index", "expert.recent50.none.index",
    "expert.profile.none.index", "expert.similar.none.index", "expert.cowatched.none.index",
    "expert.popular.none.index",
)
"""The study's 7 templates (experiments/configs/study_ml100k.yaml)."""

VIEWS = ("temporal", "dropout", "truncate", "popular_negatives", "new_items")


def correlations(source: np.ndarray, target: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """The table's numbers for one view: ``(n_users, n_templates)`` scores, ``nan`` = no cell."""
    from scipy.stats import pearsonr, spearmanr

    ok = np.isfinite(source) & np.isfinite(target)
    out: dict = {"cells": int(ok.sum())}
    s, y = source[ok], target[ok]
    flat = np.std(s) > 0 and np.std(y) > 0
    out["pooled_r"] = float(pearsonr(s, y)[0]) if flat else float("nan")
    out["pooled_rho"] = float(spearmanr(s, y)[0]) if flat else float("nan")

    def centred(a: np.ndarray) -> np.ndarray:
        a = np.where(ok, a, np.nan)
        return a - np.nanmean(a, axis=1, keepdims=True)

    cs, cy = centred(source), centred(target)

    def within(rows: np.ndarray) -> float:
        a, b = cs[rows][ok[rows]], cy[rows][ok[rows]]
        return float(np.corrcoef(a, b)[0, 1]) if np.std(a) > 0 and np.std(b) > 0 else float("nan")

    users = np.flatnonzero(ok.sum(axis=1) >= 2)
    out["within_r"] = within(users)
    rng = np.random.default_rng(seed)
    boots = np.array([within(rng.choice(users, size=users.size)) for _ in range(n_boot)])
    boots = boots[np.isfinite(boots)]
    low, high = np.quantile(boots, [0.025, 0.975]) if boots.size else (np.nan, np.nan)
    out["within_low"], out["within_high"] = float(low), float(high)
    with np.errstate(invalid="ignore"):
        ms = np.nanmean(np.where(ok, source, np.nan), axis=0)
        my = np.nanmean(np.where(ok, target, np.nan), axis=0)
    keep = np.isfinite(ms) & np.isfinite(my)
    out["template_rho"] = float(spearmanr(ms[keep], my[keep])[0]) if keep.sum() >= 3 else float("nan")
    out["source_mean"], out["target_mean"] = float(np.mean(s)), float(np.mean(y))
    return out


def measure(config, *, max_users: int | None, seed: int) -> tuple[dict[str, dict], dict]:
    """Score every template on the measured users' source episodes and first targets from the cut on."""
    from promptopt.experiments.assembly import build_problem, make_run_ranker
    from promptopt.problem import RecProblem

    data, split, catalog, problem = build_problem(config)
    accuracy_only = dataclasses.replace(config.reward, robust_weight=0.0)
    future = RecProblem.build(data, split, catalog, accuracy_only, config.split, seed=config.seed,
                              hints=problem.hints)
    learners = np.concatenate([split.train, split.val])
    users = np.array([int(u) for u in learners
                      if problem.key(int(u))[1] >= 0 and future.key(int(u), period="target")[1] >= 0])
    if max_users is not None and users.size > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    if users.size < 3:
        raise SystemExit(f"only {users.size} training/validation users have a target from the cut on: "
                         "lower split.drift_quantile")
    ranker = make_run_ranker(config, problem)
    T = problem.n_templates
    pairs_u = np.repeat(users, T)
    pairs_t = np.tile(np.arange(T), users.size)
    started = time.perf_counter()
    source = problem.run(pairs_u, pairs_t, ranker)
    target = future.run(pairs_u, pairs_t, ranker, period="target")
    seconds = time.perf_counter() - started
    metric = config.reward.metric
    names = ("base", *problem.views, "reward")
    scores = {name: np.full((users.size, T), np.nan) for name in names}
    truth = np.full((users.size, T), np.nan)
    for k, (src, tgt) in enumerate(zip(source, target)):
        i, t = divmod(k, T)
        if src is None or tgt is None or not (src.valid and tgt.valid):
            continue
        truth[i, t] = tgt.metrics["base"][metric]
        for name in names[:-1]:
            scores[name][i, t] = src.metrics[name][metric]
        scores["reward"][i, t] = src.reward.total
    table = {name: correlations(scores[name], truth, seed=seed) for name in names}
    info = {"users": int(users.size), "train": int(np.isin(users, split.train).sum()),
            "templates": T, "time_cut": problem.time_cut, "seconds": round(seconds, 1),
            "requests": int(sum(o.calls for o in source if o) + sum(o.calls for o in target if o)),
            "metric": metric}
    return table, info


def render(table: dict[str, dict], info: dict, config) -> str:
    """The markdown table."""
    import datetime

    cut = datetime.datetime.fromtimestamp(info["time_cut"], datetime.UTC).date().isoformat()
    lines = [
        f"Drift views under split.protocol=deploy: {config.data.format}, ranker {config.ranker.backend} "
        f"({config.ranker.model}), {info['users']} training/validation users ({info['train']} training) "
        f"with a target from the cut on, {info['templates']} templates; cut {cut} "
        f"(split.drift_quantile={config.split.drift_quantile}); {info['metric']}; "
        f"{info['requests']} requests in {info['seconds']} s.",
        "",
        "| view | cells | source mean | target mean | pooled r | pooled rho | within-user r [95%] "
        "| template rho |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in table.items():
        lines.append(
            f"| {name} | {row['cells']} | {row['source_mean']:.3f} | {row['target_mean']:.3f} | "
            f"{row['pooled_r']:.3f} | {row['pooled_rho']:.3f} | "
            f"{row['within_r']:.3f} [{row['within_low']:.3f}, {row['within_high']:.3f}] | "
            f"{row['template_rho']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from promptopt.config import load_config
    from promptopt.errors import PromptoptError

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Any config field can be overridden with --section.key=value.")
    parser.add_argument("config", help="experiment YAML (e.g. experiments/configs/ml100k_embedding.yaml)")
    parser.add_argument("--users", type=int, default=300, help="at most this many measured users (seeded)")
    parser.add_argument("--templates", nargs="+", default=list(STUDY_TEMPLATES), help="template ids")
    parser.add_argument("--views", nargs="+", default=list(VIEWS), help="drift views to measure")
    args, overrides = parser.parse_known_args(argv)
    forced = ["split.protocol=deploy", "reward.robust_weight=0.5",
              f"reward.views=[{','.join(args.views)}]", f"templates.include=[{','.join(args.templates)}]"]
    try:
        config = load_config(args.config, [*overrides, *forced])
        table, info = measure(config, max_users=args.users, seed=config.seed)
    except PromptoptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(table, info, config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
