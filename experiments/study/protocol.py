"""The study's protocol: answer tables, then per seed and reward every selector, then the report.

Protocol (MovieLens-100K, the embedded MiniLM embedding ranker, 20 candidates = target + 19 uniform
negatives in a shuffled shown order). A fixed seeded user sample is split once (``data_seed``) into
train / validation / test users; candidates and shown orders are seeded per task, so every
(user, target, template) request is answered once and reused from the SQLite cache by every
selector and seed. Seeds vary what is learned: LightGCN, PPO, bandits, the random baseline.

1. Answer tables: every template on every training user's episode target (the exhaustive sweep,
   once per reward), every validation user's, and every test user's last item, two earlier targets
   (the realistic per-user bound) and latest source- / target-period items (drift).
2. Per seed and reward (accuracy only, w = 0; drift-robust, w > 0): LightGCN BPR pretraining on the
   leak-free training graph, PPO (LightGCN+MLP and MLP-only) and LinUCB / epsilon-greedy trained on a
   seeded pool of training users (``pool_share``); then the safe policy of every run
   (:mod:`promptopt.safe_policy`): the training-budget scan scores every template on the pool and
   further seeded training users, as many as ``budget_share`` of the exhaustive sweep's calls
   allow (the pool's answers are PPO's own), which ranks the fallback list whose head is the
   default; the gate deviates for a user only where the policy's probability margin passes a
   threshold validated on validation users (paired bootstrap lower bound of the gain > 0).
3. Evaluation on test users (NDCG@10 of the last item, paired bootstrap intervals, pooled over
   seeds by averaging each user's value), drift drops, the search for signal, RESULTS.md and plots.

Data, split, catalog, ranker, training env, PPO training and agent loading are the pipeline's own
(:mod:`promptopt.experiments.assembly`, :func:`promptopt.experiments.training.train_agent`,
:class:`promptopt.experiments.selector_factory.SelectorFactory`), so the study measures what ``promptopt
train`` builds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.bandits import EpsilonGreedySelector, LinUCBSelector, bandit_features
from promptopt.config import ExperimentConfig, config_to_dict
from promptopt.errors import ConfigError
from promptopt.evaluation import evaluate_selector
from promptopt.experiments.assembly import (
    agent_config,
    build_problem,
    default_order,
    make_env,
    make_run_ranker,
    needs_default,
)
from promptopt.experiments.rundir import RunDir
from promptopt.experiments.selector_factory import SelectorFactory
from promptopt.experiments.study.answers import AnswerTable, score_table
from promptopt.experiments.study.choice_rules import CountingRanker, PerUserChoiceSelector, realistic_choices
from promptopt.experiments.study.config import StudyConfig
from promptopt.experiments.study.drift_source import check_drift_from
from promptopt.experiments.study.provenance import load_average, probe_hardware
from promptopt.experiments.study.report import write_results
from promptopt.experiments.tracking import Tracker
from promptopt.experiments.training import train_agent
from promptopt.fallback import FallbackSelector, stack_masks
from promptopt.policies.agent import make_agent
from promptopt.policies.graph import build_graph
from promptopt.policies.lightgcn import pretrain_from_config
from promptopt.problem import Period, RecProblem
from promptopt.safe_policy import GateRule, validate_gate
from promptopt.selectors import FixedSelector, OracleSelector, best_fixed

logger = logging.getLogger("promptopt.study")

PPO_AGENTS = {"policy": "policy", "mlp_ppo": "mlp"}
"""The study's PPO selectors and the pipeline's agent kind each is (LightGCN+MLP, MLP-only)."""
PERIODS: tuple[Period | None, ...] = (None, "source", "target")
"""Test targets every selector is evaluated on: the episode target (the last item, or under
``split.protocol: deploy`` the first from the time cut on), then the two drift periods; ``deploy``
adds each test user's last item (``"last"``, stored as ``final``)."""
RESULT_KEYS = {None: "last", "last": "final"}
"""``study.json``'s key of a period's results (the episode target's key is ``last`` for every protocol)."""


# ---------------------------------------------------------------------- the whole study
def run_study(config: ExperimentConfig, study: StudyConfig) -> Path:
    """Run every phase and write the report; returns the report's path."""
    check_drift_from(study.drift_from)  # before any call is paid: the study that writes it runs first
    started = time.perf_counter()
    load_start = load_average()
    work = Path(study.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    # ------------------------------------------------------------ data, split, catalog, problems
    rewards = {
        "accuracy": dataclasses.replace(config.reward, robust_weight=0.0),
        "robust": dataclasses.replace(config.reward, robust_weight=study.robust_weight),
    }
    # The split and tasks use the data seed, fixed across study seeds (the same users and candidates).
    data, split, catalog, acc = build_problem(
        dataclasses.replace(config, seed=study.data_seed, reward=rewards["accuracy"])
    )
    for family, ids in study.families.items():
        missing = [t for t in ids if t not in catalog.ids]
        if missing:
            raise ConfigError(
                f"study.families.{family}: {missing[0]!r} is not in the catalog "
                f"(templates.include holds {', '.join(catalog.ids)})"
            )
    problems = {
        "accuracy": acc,
        "robust": RecProblem.build(
            data, split, catalog, rewards["robust"], config.split, seed=study.data_seed, hints=acc.hints
        ),
    }
    ranker = make_run_ranker(config, acc)
    # ------------------------------------------------------------ answer tables (cached)
    tables = fill_answer_tables(problems, ranker, split, chunk=study.chunk)
    tables_seconds = time.perf_counter() - started
    # ------------------------------------------------------------ seeds
    seeds = []
    for seed in study.seeds:
        seeds.append(run_seed(seed, config, study, problems, ranker, tables, work))
        (work / f"seed{seed}" / "result.json").write_text(json.dumps(seeds[-1]), encoding="utf-8")
    stats = getattr(ranker, "stats", None)
    run = {
        "config": {"study": dataclasses.asdict(study), "experiment": config_to_dict(config)},
        "hardware": probe_hardware(),
        "load_avg_start": load_start,
        "load_avg_end": load_average(),
        "seconds": time.perf_counter() - started,
        "tables_seconds": tables_seconds,
        "ranker": dict(ranker.identity),
        "llm": {k: getattr(stats, k, 0) for k in ("calls", "hits", "misses", "tokens")} if stats else {},
        "data": data.describe(),
        "n_users": {"train": len(split.train), "val": len(split.val), "test": len(split.test)},
        "templates": list(catalog.ids),
        "test_fill": fill_counts(acc, split.test),
        "calls_per_episode": {k: p.calls_per_episode for k, p in problems.items()},
        "tables": {name: table.to_json() for name, table in tables.items()},
        "profile": [acc.observation(int(u))[1:].tolist() for u in split.test],
        "seeds": seeds,
    }
    (work / "study.json").write_text(json.dumps(run), encoding="utf-8")
    close = getattr(ranker, "close", None)
    if callable(close):
        close()
    return write_results(run, study)


def fill_counts(problem: Any, users: np.ndarray) -> dict[str, int]:
    """How many of ``users`` have an episode target, and how many templates its history fills:
    ``no_target`` (none; under ``deploy`` also ``unservable``: from the cut on no history fills a
    template, so every score leaves them out), ``fill_none`` (a target no template can fill: every
    selector's action is invalid, reward 0), ``fill_one`` (exactly one: every selector is forced to
    it), ``fill_all`` (every template)."""
    masks = [problem.action_mask(int(u)) for u in users if problem.target_row(int(u)) is not None]
    return {"users": len(users), "no_target": len(users) - len(masks),
            "unservable": len(problem.targets.unservable(users)),
            "fill_none": sum(not m.any() for m in masks),
            "fill_one": sum(int(m.sum()) == 1 for m in masks),
            "fill_all": sum(bool(m.all()) for m in masks)}


def fill_answer_tables(
    problems: Mapping[str, Any], ranker: Any, split: Any, *, chunk: int
) -> dict[str, AnswerTable]:
    """Every answer table of the protocol (step 1), named as ``study.json`` stores them."""
    acc, robust = problems["accuracy"], problems["robust"]
    test = split.test
    return {
        "train_accuracy": score_table(acc, ranker, split.train, label="train", chunk=chunk),
        "val": score_table(acc, ranker, split.val, label="val", chunk=chunk),
        "test_last": score_table(acc, ranker, test, label="test last", chunk=chunk),
        "test_back1": score_table(acc, ranker, test, back=1, label="test earlier 1", chunk=chunk),
        "test_back2": score_table(acc, ranker, test, back=2, label="test earlier 2", chunk=chunk),
        "test_source": score_table(acc, ranker, test, period="source", label="test source", chunk=chunk),
        "test_target": score_table(acc, ranker, test, period="target", label="test target", chunk=chunk),
        "train_robust": score_table(robust, ranker, split.train, label="train robust", chunk=chunk),
        # The drift-robust run's gate is validated on its own reward, as `promptopt train` does it.
        "val_robust": score_table(robust, ranker, split.val, label="val robust", chunk=chunk),
    }


# ---------------------------------------------------------------------- one seed
@dataclass(frozen=True)
class SeedSetup:
    """What every reward of one seed shares."""

    config: ExperimentConfig
    """The experiment config with the seed applied."""
    study: StudyConfig
    accuracy: Any
    """The accuracy-only problem: observations, masks and catalog of every selector."""
    ranker: Any
    """The cached ranker."""
    tables: Mapping[str, AnswerTable]
    pool: np.ndarray
    """Training users the learned selectors train on."""
    features: np.ndarray
    """Bandit features of every user (profile statistics + the seed's LightGCN embedding)."""

    @property
    def seed(self) -> int:
        return self.config.seed


def run_seed(
    seed: int,
    config: ExperimentConfig,
    study: StudyConfig,
    problems: Mapping[str, Any],
    ranker: Any,
    tables: Mapping[str, AnswerTable],
    work: Path,
) -> dict[str, Any]:
    """LightGCN, then per reward: PPO agents, bandits, gate, evaluation of every selector on test users."""
    config = dataclasses.replace(config, seed=seed)
    acc = problems["accuracy"]
    seed_dir = work / f"seed{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    embeddings = pretrain_from_config(build_graph(acc.data, acc.train_mask), config.policy, seed=seed)
    logger.info(
        "seed %d: LightGCN best epoch %d, recall@20 %.4f (%.0f s)",
        seed,
        embeddings.best_epoch,
        embeddings.best_recall,
        embeddings.seconds,
    )
    train, val, test = acc.pool("train"), acc.pool("val"), acc.pool("test")
    n_pool = max(1, int(np.floor(study.pool_share * train.size)))
    pool = np.sort(np.random.default_rng(seed).choice(train, size=n_pool, replace=False))
    everyone = np.concatenate([train, val, test])
    features = bandit_features(acc, everyone, embeddings.user_embeddings.numpy())
    setup = SeedSetup(config, study, acc, ranker, tables, pool, features)
    out: dict[str, Any] = {
        "seed": seed,
        "lightgcn": {
            "best_epoch": embeddings.best_epoch,
            "recall@20": embeddings.best_recall,
            "seconds": embeddings.seconds,
        },
        "pool": pool.tolist(),
        "features": features[everyone].tolist(),
        "feature_users": everyone.tolist(),
        "rewards": {},
    }
    for reward_name, problem in problems.items():
        run = RunDir(seed_dir / reward_name)
        if run.root.exists():  # every study run trains afresh (no resuming an older run's agents)
            shutil.rmtree(run.root)
        run.create()
        embeddings.save(run.lightgcn)
        out["rewards"][reward_name] = run_reward(setup, reward_name, problem, run)
    out["seconds"] = time.perf_counter() - started
    return out


def run_reward(setup: SeedSetup, reward_name: str, problem: Any, run: RunDir) -> dict[str, Any]:
    """One reward of one seed: train the learned selectors, the safe policy's rule, evaluate."""
    acc, config, tables = setup.accuracy, setup.config, setup.tables
    train, test = acc.pool("train"), acc.pool("test")
    sweep = tables[f"train_{reward_name}"]
    means = np.nanmean(sweep.reward, axis=0)
    order = [int(t) for t in np.argsort(-np.where(np.isfinite(means), means, -np.inf), kind="stable")]
    train_stats, counters = train_ppo_agents(config, problem, setup.ranker, setup.pool, run)
    bandits = train_bandits(setup, problem, train_stats)
    agent = SelectorFactory(config, acc, setup.ranker, run).agent("policy")
    rule, scanned = safe_rule(setup, problem, counters["policy"], agent, reward_name=reward_name)
    train_stats["policy"].update(scan_users=int(scanned.size), distinct_calls=counters["policy"].calls)
    factory = SelectorFactory(config, acc, setup.ranker, run, rule=rule)
    identified = acc.catalog.ids.index(rule.default)
    logger.info(
        "seed %d %s: identified %s (sweep winner %s); %s",
        setup.seed,
        reward_name,
        rule.default,
        acc.catalog.ids[order[0]],
        rule.summary(),
    )
    earlier = [tables[name] for name in ("test_back1", "test_back2")]
    realistic = PerUserChoiceSelector(
        "realistic", realistic_choices([t.ndcg[t.rows(test)] for t in earlier], test, order), order[0]
    )
    best = FixedSelector(order[0], fallback=order[1:], masks=acc.action_mask, name="best_fixed")
    fallback = rule.fallback(acc.catalog.ids)

    def selectors(period: Period | None) -> list[Any]:
        def masks(user: int) -> np.ndarray:
            return acc.action_mask(int(user), period=period)

        def safe(selector: Any) -> FallbackSelector:
            return FallbackSelector(selector, fallback, masks, acc.n_templates)

        return [
            factory("random"),
            safe(best),
            safe(bandits["epsilon_greedy"]),
            safe(bandits["linucb"]),
            factory("mlp_ppo", period),
            factory("policy_raw", period),
            factory("policy", period),
            OracleSelector(acc, setup.ranker, metric="ndcg@10", period=period),
        ] + ([safe(realistic)] if period is None else [])

    return {
        "sweep_means": means.tolist(),
        "sweep_order": order,
        "identified": identified,
        "tau": rule.threshold if rule.threshold is not None else float("inf"),  # the study.json key
        "gate": rule.to_json(),
        "train": train_stats,
        "results": evaluate_on_test(setup, selectors),
        "exhaustive_calls": int(train.size * acc.n_templates * problem.calls_per_episode),
    }


def safe_rule(
    setup: SeedSetup, problem: Any, counter: CountingRanker, agent: Any, *, reward_name: str = "accuracy"
) -> tuple[GateRule, np.ndarray]:
    """The safe policy's rule of one reward: the training-budget scan, then the gate on validation users.

    The scan scores every template on the PPO pool and on further seeded training users, as many as
    the budget (``budget_share`` of the exhaustive sweep's distinct calls, PPO's included: it scans
    through PPO's :class:`CountingRanker`) allows; its ranking is the fallback list. The gate is
    validated on the validation users' answers of every template in ``gate.metric``, as ``promptopt
    train`` validates it: ``reward`` (the default) is the run's own reward, so the drift-robust
    run's gate reads the ``val_robust`` answer table and the accuracy-only run's the ``val`` table;
    a base-view metric (``ndcg@10``) reads NDCG@10 of the ``val`` table for both.

    Returns:
        The rule and the scanned training users.
    """
    from promptopt.policies.selectors import PPOSelector  # torch

    acc, study, tables = setup.accuracy, setup.study, setup.tables
    train, val = acc.pool("train"), acc.pool("val")
    cap = int(np.floor(study.budget_share * train.size * acc.n_templates * problem.calls_per_episode))
    rest = np.random.default_rng(setup.seed + 1).permutation(np.setdiff1d(train, setup.pool))
    users: list[int] = []
    spent = set(counter.seen)
    for user in np.concatenate([setup.pool, rest]):
        tasks = problem.tasks(int(user))
        mask = problem.action_mask(int(user))
        new = {r for t in range(acc.n_templates) if mask[t] for r in problem.requests(tasks, t)} - spent
        if len(spent) + len(new) > cap:
            break
        spent |= new
        users.append(int(user))
    scanned = np.array(users, dtype=np.int64)
    fixed = best_fixed(problem, counter, scanned, metric="reward")
    scan = {"split": "train", "n_users": int(scanned.size), "metric": "reward", "calls": counter.calls,
            "templates": [{"template_id": tid, "mean_reward": None if not np.isfinite(m) else float(m)}
                          for tid, m in zip(acc.catalog.ids, fixed.template_means)]}
    metric = setup.config.gate.metric
    if metric == "reward":
        val_table = tables["val_robust"] if reward_name == "robust" else tables["val"]
        val_scores = val_table.reward[val_table.rows(val)]
    elif metric == "ndcg@10":
        val_table = tables["val"]
        val_scores = val_table.ndcg[val_table.rows(val)]
    else:
        raise ConfigError(f"the study validates the gate in gate.metric reward or ndcg@10, got {metric!r}")
    rule = validate_gate(
        PPOSelector(agent, acc).action_probabilities(val),
        fixed.fallback,
        stack_masks(acc.action_mask, val, acc.n_templates),
        val_scores,
        ids=acc.catalog.ids,
        users=[acc.data.user_ids[int(u)] for u in val],
        thresholds=study.gate_grid,
        metric=metric,
        n_bootstrap=setup.config.eval.n_bootstrap,
        seed=setup.seed,
        scan=scan,
    )
    return rule, scanned


def train_ppo_agents(
    config: ExperimentConfig, problem: Any, ranker: Any, pool: np.ndarray, run: RunDir
) -> tuple[dict[str, dict[str, Any]], dict[str, CountingRanker]]:
    """Train the LightGCN+MLP and the MLP-only agent on the user ``pool`` into ``run``.

    Each agent trains through its own :class:`CountingRanker`, so its distinct calls are its own.

    Returns:
        Per selector name (``policy``, ``mlp_ppo``): training stats, and the counting ranker.
    """
    stats: dict[str, dict[str, Any]] = {}
    counters: dict[str, CountingRanker] = {}
    for name, kind in PPO_AGENTS.items():
        counter = counters[name] = CountingRanker(ranker)
        # The paired reward and the warm start rank a default on the pool first (counted calls).
        order = default_order(config, problem, counter, users=pool)[0] if needs_default(config) else None
        env = make_env(config, problem, counter, users=pool, default_order=order)
        cfg = agent_config(config, kind)
        default = None if order is None else order[0]
        started = time.perf_counter()
        state = train_agent(
            kind,
            lambda env=env, cfg=cfg, default=default: make_agent(
                env, cfg, embeddings_path=run.lightgcn, default=default
            ),
            total_timesteps=config.ppo.total_timesteps,
            checkpoint_every=10**9,  # a study run never resumes: no checkpoints
            checkpoint_dir=run.checkpoints,
            output=run.agent(kind),
            tracker=Tracker(),
            ranker=counter,
        )
        stats[name] = {
            "steps": state.steps,
            "seconds": time.perf_counter() - started,
            "distinct_calls": counter.calls,
            "curve": state.curve,
            "template_episodes": state.template_episodes,
            "template_reward": state.template_reward,
        }
    return stats, counters


def train_bandits(setup: SeedSetup, problem: Any, train_stats: dict[str, Any]) -> dict[str, Any]:
    """LinUCB and epsilon-greedy on the pool, as many episodes as PPO; their stats go to ``train_stats``."""
    config, n_templates = setup.config, setup.accuracy.n_templates
    steps = config.ppo.total_timesteps
    bandits = {}
    for bandit in (
        LinUCBSelector(n_templates, alpha=config.eval.linucb_alpha),
        EpsilonGreedySelector(n_templates, epsilon=config.eval.epsilon),
    ):
        counter = CountingRanker(setup.ranker)
        bandits[bandit.name] = bandit.fit(
            problem, counter, setup.pool, setup.features, steps, seed=setup.seed
        )
        train_stats[bandit.name] = {"steps": steps, "distinct_calls": counter.calls}
    return bandits


def evaluate_on_test(setup: SeedSetup, selectors: Any) -> dict[str, dict[str, Any]]:
    """Every selector's per-user results on the test users, per target (``last``, ``source``, ``target``).

    Args:
        setup: The seed.
        selectors: ``period -> selectors`` to evaluate on that target.
    """
    results: dict[str, dict[str, Any]] = {}
    test = setup.accuracy.pool("test")
    deploy = getattr(setup.accuracy, "protocol", "leave_last") == "deploy"
    for period in PERIODS + (("last",) if deploy else ()):
        for selector in selectors(period):
            try:
                evaluation = evaluate_selector(
                    selector,
                    setup.accuracy,
                    setup.ranker,
                    test,
                    period=period,
                    seed=setup.seed,
                    n_bootstrap=setup.config.eval.n_bootstrap,
                )
            except ValueError:  # no test user has a target in this period
                continue
            results.setdefault(RESULT_KEYS.get(period, period), {})[selector.name] = {
                "users": evaluation.users.tolist(),
                "templates": evaluation.templates.tolist(),
                "per_user": {k: v.tolist() for k, v in evaluation.per_user.items()},
            }
    return results
