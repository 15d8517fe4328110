"""How much of a planted per-user gain does each learner capture, at real answer noise?

The planted benchmark (``experiments/bench/planted.py``): MovieLens-100K, the real MiniLM answers of
every user x template x last three targets replayed from the answer cache with zero model calls, and
for a known share of users, tied to an observable statistic, a planted template ``t*`` whose expected
NDCG@10 is ``gain`` above the best fixed template ``f``. Everything else keeps its real noise.

Per seed (the seed changes the user split, LightGCN, PPO, the bandits and the training pool) and
per budget share ``s`` (of the exhaustive sweep's calls: every training user with every template),
each learner trains on a seeded pool of ``s`` x the training users — so at most ``s`` x exhaustive
distinct requests — and then picks a template for every test user. Printed per learner and share:

* **captured** = ``(value(selector) - value(f)) / (value(oracle) - value(f))`` in expectation over
  the test users (the plant's known values; 1 = every planted user gets ``t*`` and nobody else
  leaves ``f``; 0 = no better than ``f``; negative = worse), mean over seeds with a 95% t-interval
  and every seed's value;
* **realized**: selector - ``f`` in NDCG@10 on the test users' last items as the planted ranker
  answers them (paired bootstrap over test users, pooled over seeds) — what an evaluation sees;
* the distinct calls each learner spent, as a share of the exhaustive sweep.

Usage (build the answer table first, once: ``python -m promptopt.experiments.bench.planted --build``)::

    python -m promptopt.experiments.bench.bench_learning [--seeds 0 1 2 3 4] [--shares 0.1 0.3]
        [--tie top_genre_share]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.experiments.bench.learning_gates import safe_variants
from promptopt.experiments.bench.planted import (
    DEFAULT_CACHE,
    DEFAULT_DATA,
    Plant,
    PlantedRanker,
    bench_config,
    build_table,
    make_plant,
    planted_users,
    population,
    table_rows,
)
from promptopt.experiments.bench.planted_reference import InformedReference
from promptopt.experiments.study.choice_rules import CountingRanker
from promptopt.selector_names import RAW_POLICY

logger = logging.getLogger("promptopt.bench.learning")

LEARNERS = ("policy_raw", "mlp_ppo", "linucb", "epsilon_greedy", "advantage", "racing")
"""LightGCN+MLP PPO (raw argmax: ``policy_raw``, as on the CLI), MLP-only PPO, LinUCB,
epsilon-greedy, the contextual advantage model over the default
(:class:`promptopt.advantage.AdvantageSelector`, profile statistics), and the sequential design
(:class:`promptopt.racing.RacingSelector`: a race of the templates, then paired comparisons of
the leader and its challengers on every training user's targets, a cross-fitted stump; it draws
on all training users, within ``share`` x the exhaustive calls). Each but ``advantage`` and
``racing`` is also printed gated (:func:`safe_variants`): ``policy`` (the CLI's default selector)
and ``<learner>_safe`` (:mod:`promptopt.experiments.bench.learning_gates`)."""
NO_GRAPH = ("advantage", "racing")
"""Learners that need no LightGCN embeddings."""


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the ml-100k folder")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="the answer cache of the table")
    parser.add_argument("--users", type=int, default=500, help="the population (as built by planted.py)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--shares",
        type=float,
        nargs="+",
        default=[0.1, 0.3],
        help="training budgets as shares of the exhaustive sweep's calls",
    )
    parser.add_argument(
        "--tie", default="top_genre_share", help="what planted users share: a profile statistic or 'graph'"
    )
    parser.add_argument("--planted-share", type=float, default=0.3, help="share of users planted")
    parser.add_argument("--gain", type=float, default=0.05, help="expected NDCG@10 gain of t* over f")
    parser.add_argument("--template", default=None, help="the planted template t* (default: see planted.py)")
    parser.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=LEARNERS)
    parser.add_argument("--ppo-steps", type=int, default=None, help="PPO episodes (default: the config's)")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides of the learners (ppo.ent_coef=0.02 ...)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="also train --variant-learners with these overrides, named LEARNER+NAME "
        "(e.g. paired:env.reward_baseline=default); repeatable",
    )
    parser.add_argument(
        "--variant-learners", nargs="+", default=[RAW_POLICY, "mlp_ppo"], choices=LEARNERS,
        help="learners trained again under each --variant",
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the informed reference row")
    parser.add_argument("--racing-level", type=float, default=0.95,
                        help="racing: one-sided confidence of its cross-fitted gate "
                        "(0.5: the out-of-fold mean > 0)")
    parser.add_argument("--json", default=None, help="also write every number to this file")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------- learners
def train_ppo(
    config: Any, kind: str, problem: Any, ranker: Any, pool: np.ndarray, emb_path: Path | None
) -> Any:
    """A (Maskable)PPO agent of ``kind`` trained on episodes of ``pool`` users."""
    from promptopt.envs.vec_env import BatchedPromptRecVecEnv
    from promptopt.experiments.assembly import default_order, needs_default
    from promptopt.policies.agent import make_agent
    from promptopt.policies.selectors import PPOSelector

    cfg = dataclasses.replace(config, policy=dataclasses.replace(config.policy, kind=kind))
    # The paired reward and the warm start rank a default on the pool first (counted calls).
    order = default_order(config, problem, ranker, users=pool)[0] if needs_default(config) else None
    baseline = order if config.env.reward_baseline == "default" else None
    env = BatchedPromptRecVecEnv(problem, ranker, config.env.n_envs, seed=config.seed, users=pool,
                                 train_targets=config.env.train_targets, baseline=baseline)
    agent = make_agent(env, cfg, embeddings_path=emb_path if kind == "lightgcn_mlp" else None,
                       default=None if order is None else order[0])
    agent.learn(total_timesteps=config.ppo.total_timesteps)
    return PPOSelector(agent, problem, name=RAW_POLICY if kind == "lightgcn_mlp" else "mlp_ppo")


def fit_learners(
    names: Sequence[str],
    config: Any,
    problem: Any,
    ranker: Any,
    pool: np.ndarray,
    emb: Any,
    emb_path: Path | None,
    *,
    budget: int = 0,
    racing_level: float = 0.95,
) -> dict[str, tuple[Any, int, set]]:
    """Every learner of ``names`` trained on ``pool``; name -> (selector, distinct calls, requests).

    ``racing`` spends ``budget`` requests on all training users instead of a pool.
    """
    from promptopt.advantage import AdvantageSelector
    from promptopt.bandits import EpsilonGreedySelector, LinUCBSelector, bandit_features
    from promptopt.racing import RacingSelector

    everyone = np.concatenate([problem.split.train, problem.split.val, problem.split.test])
    features = None if emb is None else bandit_features(problem, everyone, emb.user_embeddings.numpy())
    profile = bandit_features(problem, everyone, None)
    makers: dict[str, Callable[[CountingRanker], Any]] = {
        RAW_POLICY: lambda r: train_ppo(config, "lightgcn_mlp", problem, r, pool, emb_path),
        "mlp_ppo": lambda r: train_ppo(config, "mlp", problem, r, pool, emb_path),
        "linucb": lambda r: LinUCBSelector(problem.n_templates, alpha=config.eval.linucb_alpha).fit(
            problem, r, pool, features, config.ppo.total_timesteps, seed=config.seed
        ),
        "epsilon_greedy": lambda r: EpsilonGreedySelector(
            problem.n_templates, epsilon=config.eval.epsilon
        ).fit(problem, r, pool, features, config.ppo.total_timesteps, seed=config.seed),
        "advantage": lambda r: AdvantageSelector(problem.n_templates).fit(
            problem, r, pool, profile, seed=config.seed
        ),
        "racing": lambda r: RacingSelector(problem.n_templates, level=racing_level).fit(
            problem, r, problem.pool("train"), profile, budget, seed=config.seed
        ),
    }
    out = {}
    for name in names:
        counter = CountingRanker(ranker)
        started = time.perf_counter()
        out[name] = (makers[name](counter), counter.calls, counter.seen)
        logger.info("%s: %d distinct calls, %.0f s", name, counter.calls, time.perf_counter() - started)
    return out


# ---------------------------------------------------------------------- the benchmark
def realized(problem: Any, ranker: Any, users: np.ndarray, choices: np.ndarray) -> np.ndarray:
    """NDCG@10 of ``choices`` on the users' episode targets as ``ranker`` answers (0 when invalid)."""
    out = np.zeros(len(users))
    for i, outcome in enumerate(problem.run(users, choices, ranker)):
        if outcome is not None and outcome.valid:
            out[i] = outcome.metrics["base"]["ndcg@10"]
    return out


def t_interval(x: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval of ``x``."""
    from scipy import stats

    x = np.asarray(x, dtype=np.float64)
    if x.size < 2:
        return float(x.mean()), float("nan"), float("nan")
    half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def paired_bootstrap(d: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    means = d[np.random.default_rng(seed).integers(0, d.size, (n, d.size))].mean(axis=1)
    return float(d.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def split_population(data: Any, users: np.ndarray, val: float, test: float, seed: int) -> Any:
    """Train / val / test users of ``users``, stratified by history length (as ``split_users`` deals)."""
    from promptopt.splits import UserSplit

    rng = np.random.default_rng(seed)
    ordered = users[np.argsort([data.history_length(int(u)) for u in users], kind="stable")]
    shares = np.array([1.0 - val - test, val, test])
    parts: list[list[int]] = [[], [], []]
    owed = np.zeros(3)
    for start in range(0, len(ordered), 10):
        for user in rng.permutation(ordered[start : start + 10]):
            owed += shares
            part = int(np.argmax(owed))
            owed[part] -= 1.0
            parts[part].append(int(user))
    return UserSplit(*(np.array(sorted(p), dtype=np.int64) for p in parts))


def setup(args: argparse.Namespace) -> tuple[Any, Any, Plant, PlantedRanker, dict[str, Any], np.ndarray]:
    """The data, the task problem (seed 0), the plant and the planted ranker."""
    from promptopt.experiments.assembly import build_problem
    from promptopt.llm.replay import ReplayRanker

    config = bench_config(args.data, args.cache)
    data, _, _, problem = build_problem(config)
    users = population(problem, args.users)
    base = ReplayRanker(args.cache)
    # The last two targets: every split's test (last) and training (second-to-last) episodes.
    table = build_table(problem, base, users, n_targets=2)
    planted = planted_users(problem, users, tie=args.tie, share=args.planted_share)
    plant = make_plant(table, planted, gain=args.gain, template=args.template, tie=args.tie)
    targets: dict[str, int] = {}
    for u in users:
        for row in table_rows(problem, int(u))[:2]:
            for task in problem.tasks(int(u), row=row):
                targets[task.task_id] = task.target
    raw = {str(r): i for i, r in enumerate(data.user_ids)}
    ranker = PlantedRanker(base, planted, raw, problem.catalog.ids[plant.template], plant.promote, targets)
    # Check the plant on the table itself: the planted users' t* answers over all their targets.
    check = []
    for u in np.flatnonzero(planted)[:200]:
        for row in table_rows(problem, int(u))[:2]:
            tasks = problem.tasks(int(u), row=row)
            _, per_view = problem.score(tasks, ranker.rank(problem.requests(tasks, plant.template)))
            check.append(per_view["base"]["ndcg@10"])
    info = {
        "templates": list(problem.catalog.ids),
        "means": plant.means.round(4).tolist(),
        "best": problem.catalog.ids[plant.best],
        "planted_template": problem.catalog.ids[plant.template],
        "promote": round(plant.promote, 4),
        "planted_users": int(planted.sum()),
        "users": int(users.size),
        "expected_planted_value": round(float(plant.means[plant.best] + plant.gain), 4),
        "measured_planted_value": round(float(np.mean(check)), 4),
        "measured_on": len(check),
        "table_targets": 2,
    }
    return config, problem, plant, ranker, info, users


def run(args: argparse.Namespace) -> dict[str, Any]:
    from promptopt.config import apply_overrides, config_from_dict, config_to_dict
    from promptopt.policies.graph import build_graph
    from promptopt.policies.lightgcn import pretrain_from_config
    from promptopt.problem import RecProblem

    base_config, problem0, plant, ranker, info, users = setup(args)
    raw = config_to_dict(base_config)
    if args.ppo_steps:
        raw["ppo"]["total_timesteps"] = args.ppo_steps
    raw = apply_overrides(raw, args.set)
    data, s = problem0.data, base_config.split
    variants = {}
    for item in args.variant:
        name, _, sets = item.partition(":")
        variants[name] = [f"{kv}" for kv in sets.split(",") if kv]
    results: dict[str, Any] = {"plant": info, "args": vars(args), "seeds": []}
    for seed in args.seeds:
        config = config_from_dict({**raw, "seed": seed}, source="bench_learning")
        configs = {
            name: config_from_dict(apply_overrides({**raw, "seed": seed}, sets), source=f"variant {name}")
            for name, sets in variants.items()
        }
        split = split_population(data, users, s.val_fraction, s.test_fraction, seed)
        # Tasks (candidates, shown orders) keep the table's seed 0; the split varies with the seed.
        problem = RecProblem.build(
            data, split, problem0.catalog, config.reward, config.split, seed=0, hints=problem0.hints
        )
        emb, emb_path = None, None
        if set(args.learners) - set(NO_GRAPH) or variants:  # advantage alone reads profile statistics
            emb = pretrain_from_config(build_graph(data, problem.train_mask), config.policy, seed=seed)
            emb_path = emb.save(Path("runs/bench/learning") / f"seed{seed}" / "lightgcn.pt")
        train, test = problem.pool("train"), problem.pool("test")
        exhaustive = int(sum(problem.action_mask(int(u)).sum() for u in train))
        base = realized(problem, ranker, test, np.full(test.size, plant.best))
        for share in args.shares:
            n_pool = max(1, int(np.floor(share * train.size)))
            pool = np.sort(np.random.default_rng(seed).choice(train, size=n_pool, replace=False))
            budget = int(share * exhaustive)
            fitted = fit_learners(args.learners, config, problem, ranker, pool, emb, emb_path, budget=budget,
                                  racing_level=args.racing_level)
            for vname, vconfig in configs.items():
                more = fit_learners(args.variant_learners, vconfig, problem, ranker, pool, emb, emb_path,
                                    budget=budget, racing_level=args.racing_level)
                fitted.update({f"{k}+{vname}": v for k, v in more.items()})
            row: dict[str, Any] = {"seed": seed, "share": share, "exhaustive": exhaustive, "learners": {}}
            safe = safe_variants(problem, ranker, fitted, pool, seed, config.gate)
            extra = {}
            if not args.no_reference:
                for estimator in ("summed", "stump"):  # the reference's own rule, and the stump's
                    reference = CountingRanker(ranker)
                    informed = InformedReference(problem, plant, estimator=estimator)
                    informed.fit(reference, train, budget)
                    extra[informed.name] = (informed, reference.calls, reference.seen)
            for name, (selector, calls, _) in {**fitted, **safe, **extra}.items():
                choices = selector.select(test)
                gain, oracle, captured = plant.captured(test, choices)
                value = realized(problem, ranker, test, choices)
                row["learners"][name] = {
                    "captured": captured,
                    "gain": gain,
                    "oracle_gain": oracle,
                    "calls": calls,
                    "realized_diff": (value - base).tolist(),
                    "deviates": float(np.mean(choices != plant.best)),
                    "planted_hit": float(np.mean(choices[plant.planted[test]] == plant.template)),
                }
                logger.info(
                    "seed %d share %.2f %s: captured %.3f, calls %d", seed, share, name, captured, calls
                )
            results["seeds"].append(row)
    return results


def report(results: dict[str, Any]) -> str:
    info = results["plant"]
    lines = [
        f"plant: f = {info['best']}, t* = {info['planted_template']}, {info['planted_users']} of "
        f"{info['users']} users planted (tie: {results['args']['tie']}), promote p = {info['promote']}; "
        f"t* on planted users: expected {info['expected_planted_value']}, measured "
        f"{info['measured_planted_value']} over {info['measured_on']} table targets",
        "template means (NDCG@10 over the table): "
        + ", ".join(f"{t} {m:.4f}" for t, m in zip(info["templates"], info["means"])),
        "",
        f"{'learner':<26} | {'share':>5} | {'captured (expectation) mean [95% t-CI]':<40} | "
        f"{'per seed':<34} | {'realized NDCG@10 - f [95% CI]':<30} | calls / exhaustive | deviates | "
        "t* on planted",
        "-" * 190,
    ]
    rows = results["seeds"]
    names = list(dict.fromkeys(n for r in rows for n in r["learners"]))
    for share in results["args"]["shares"]:
        for name in names:
            got = [r["learners"][name] for r in rows if r["share"] == share and name in r["learners"]]
            if not got:
                continue
            mean, lo, hi = t_interval([g["captured"] for g in got])
            per = " ".join(f"{g['captured']:+.2f}" for g in got)
            d = np.concatenate([np.asarray(g["realized_diff"]) for g in got])
            rmean, rlo, rhi = paired_bootstrap(d)
            calls = np.mean([g["calls"] / r["exhaustive"] for g, r in zip(got, rows)])
            lines.append(
                f"{name:<26} | {share:>5.2f} | {mean:+.3f} [{lo:+.3f}, {hi:+.3f}]{'':<19} | {per:<34} | "
                f"{rmean:+.4f} [{rlo:+.4f}, {rhi:+.4f}]  | {calls:>17.1%} | "
                f"{np.mean([g['deviates'] for g in got]):>8.1%} | "
                f"{np.mean([g['planted_hit'] for g in got]):.1%}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    started = time.perf_counter()
    results = run(args)
    results["seconds"] = time.perf_counter() - started
    text = report(results)
    print(f"torch {torch.__version__}, 1 thread; {results['seconds'] / 60:.1f} min")
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
