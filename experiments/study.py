"""The study of issue 7: does per-user prompt choice pay on real data? One command reproduces it.

    python -m experiments.study experiments/configs/study_ml100k.yaml [--data.path=...] [--study.seeds=[0]]
    promptopt study experiments/configs/study_ml100k.yaml

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
   seeded pool of training users holding ``budget_share`` of the exhaustive sweep's calls, then a
   safety gate: the policy keeps the template it identified as best for everyone and deviates for a
   user only where its probability margin passes a threshold validated on validation users.
3. Evaluation on test users (NDCG@10 of the last item, paired bootstrap intervals, pooled over
   seeds by averaging each user's value), drift drops, the search for signal, RESULTS.md and plots.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.config import ExperimentConfig, apply_overrides, config_from_dict
from promptopt.errors import ConfigError

logger = logging.getLogger("promptopt.study")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "ml-100k"
"""Where ``data.path: null`` points (MovieLens-100K next to the repository; never copied)."""


@dataclass(frozen=True)
class StudyConfig:
    """The protocol's own settings (the ``study`` section of the YAML)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds (LightGCN, PPO, bandits, random baseline)."""
    data_seed: int = 0
    """Seed of the user sample, the split, candidates and shown orders (fixed across seeds)."""
    robust_weight: float = 0.5
    """w of the drift-robust reward (the accuracy-only reward has w = 0)."""
    budget_share: float = 0.3
    """Share of the exhaustive sweep's calls the learned selectors may spend in training."""
    gate_grid: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)
    """Candidate probability margins of the safety gate (chosen on validation users)."""
    families: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Template families of the search for signal: name -> template ids."""
    output: str = "docs/RESULTS.md"
    """The generated report."""
    plots_dir: str = "docs/results"
    """PNG plots and the attempts log."""
    work_dir: str = "runs/study"
    """Agents, embeddings and raw results."""
    chunk: int = 512
    """Requests per ranker call while filling the answer tables."""
    pool_share: float = 0.3
    """Share of the training users PPO and the bandits train on (<= budget_share)."""
    confirm: bool = True
    """After PPO, spend the rest of the budget comparing the policy's top-2 templates on more users."""
    note: str = ""
    """What this attempt changed (kept with its measured numbers in the attempts log)."""


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> tuple[ExperimentConfig, StudyConfig]:
    """Read the study YAML; ``--study.key=v`` overrides go to ``study``, the rest to ``experiment``.

    Raises:
        ConfigError: Missing file, unknown key, bad value.
    """
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"study config {path} does not exist") from None
    except yaml.YAMLError:
        raise ConfigError(f"study config {path} is not valid YAML") from None
    if not isinstance(raw, dict) or set(raw) - {"study", "experiment"}:
        raise ConfigError(f"{path}: expected the sections 'study' and 'experiment', got {sorted(raw)}")
    study_over = [o for o in overrides if o.lstrip("-").startswith("study.")]
    exp_over = [o for o in overrides if o not in study_over]
    notes = [o.split("=", 1)[1] for o in study_over if o.lstrip("-").startswith("study.note=")]
    study_over = [o for o in study_over if not o.lstrip("-").startswith("study.note=")]
    study_raw = apply_overrides({"study": raw.get("study") or {}}, study_over)["study"]
    if notes:  # free text: never parsed as YAML
        study_raw["note"] = notes[-1]
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    unknown = sorted(set(study_raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key 'study.{unknown[0]}' (known: {', '.join(sorted(known))})")
    try:
        study = StudyConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in study_raw.items()})
        study = dataclasses.replace(study, families={k: tuple(v) for k, v in study.families.items()})
    except (TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: bad study section: {exc}") from None
    if (
        not study.seeds
        or not 0 < study.pool_share <= study.budget_share <= 1
        or not 0 < study.robust_weight <= 1
    ):
        raise ConfigError(
            f"{path}: study needs seeds, 0 < pool_share <= budget_share <= 1 and robust_weight in (0, 1]"
        )
    experiment = apply_overrides(raw.get("experiment") or {}, exp_over)
    experiment.setdefault("name", path.stem)
    config = config_from_dict(experiment, source=str(path))
    if config.data.format != "synthetic" and config.data.path is None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, path=str(DEFAULT_DATA)))
    return config, study


# ---------------------------------------------------------------------- answer tables
@dataclass
class Table:
    """Every template's score for some users on one kind of target (``nan``: invalid / no task).

    Shapes: ``users (n,)``; ``ndcg`` and ``reward`` ``(n, n_templates)``.
    """

    users: np.ndarray
    ndcg: np.ndarray
    reward: np.ndarray

    def rows(self, users: np.ndarray) -> np.ndarray:
        position = {int(u): i for i, u in enumerate(self.users)}
        return np.array([position[int(u)] for u in users], dtype=np.int64)


def score_table(
    problem: Any,
    ranker: Any,
    users: np.ndarray,
    *,
    period: str | None = None,
    back: int | None = None,
    chunk: int = 512,
    label: str = "",
) -> Table:
    """Score every valid template for ``users`` (``back=k``: the target k items before the last)."""
    users = np.asarray(users, dtype=np.int64)
    n, n_t = users.size, problem.n_templates
    ndcg, reward = np.full((n, n_t), np.nan), np.full((n, n_t), np.nan)
    plan: list[tuple[int, int, list, int]] = []
    batch: list = []
    for i, user in enumerate(users):
        row = None if back is None else problem.data.history_length(int(user)) - 1 - back
        if row is not None and row < 1:
            continue
        tasks = problem.tasks(int(user), period=period, row=row)
        if not tasks:
            continue
        mask = problem.action_mask(int(user), period=period, row=row)
        for t in np.flatnonzero(mask):
            plan.append((i, int(t), tasks, len(batch)))
            batch += problem.requests(tasks, int(t))
    started, responses = time.perf_counter(), []
    for start in range(0, len(batch), chunk):
        responses += ranker.rank(batch[start : start + chunk])
        logger.info(
            "answers %s: %d/%d requests (%.1f s)",
            label,
            len(responses),
            len(batch),
            time.perf_counter() - started,
        )
    for i, t, tasks, start in plan:
        breakdown, per_view = problem.score(tasks, responses[start : start + len(tasks)])
        ndcg[i, t], reward[i, t] = per_view["base"]["ndcg@10"], breakdown.total
    return Table(users, ndcg, reward)


class CountingRanker:
    """Passes requests on and counts the distinct ones: the calls a run with its own cold cache pays."""

    def __init__(self, ranker: Any) -> None:
        self.ranker, self.seen, self.requests = ranker, set(), 0
        self.identity = ranker.identity

    def rank(self, requests: Sequence[Any]) -> list[Any]:
        self.requests += len(requests)
        self.seen.update(requests)
        return self.ranker.rank(requests)

    @property
    def calls(self) -> int:
        return len(self.seen)


# ---------------------------------------------------------------------- selectors of the study
class ChoiceSelector:
    """A precomputed template per user (realistic bound, ridge selectors); ``default`` otherwise."""

    def __init__(self, name: str, choices: dict[int, int], default: int) -> None:
        self.name, self.choices, self.default = name, choices, default

    def select(self, users: np.ndarray) -> np.ndarray:
        return np.array([self.choices.get(int(u), self.default) for u in users], dtype=np.int64)


class GatedSelector:
    """The PPO policy with a safety gate: its identified template unless the margin passes ``tau``.

    For user u with policy probabilities p, greedy choice g and default template d: choose g when
    ``p[g] - p[d] >= tau``, else d (``tau = inf``: always d).
    """

    def __init__(self, ppo: Any, default: int, tau: float, name: str = "policy_safe") -> None:
        self.ppo, self.default, self.tau, self.name = ppo, default, tau, name

    def select(self, users: np.ndarray) -> np.ndarray:
        probs = self.ppo.action_probabilities(np.asarray(users, dtype=np.int64))
        return gate_choices(probs, self.default, self.tau)


def gate_choices(probs: np.ndarray, default: int, tau: float) -> np.ndarray:
    """Shapes: ``probs (n, T)`` -> ``(n,)`` int64 (see :class:`GatedSelector`)."""
    greedy = probs.argmax(axis=1)
    margin = probs[np.arange(len(probs)), greedy] - probs[:, default]
    return np.where((greedy != default) & (margin >= tau), greedy, default).astype(np.int64)


def lower_bound(x: np.ndarray, *, n: int = 1000, seed: int = 0, q: float = 0.025) -> tuple[float, float]:
    """Percentile-bootstrap ``(q, 1 - q)`` bounds of the mean of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    means = x[np.random.default_rng(seed).integers(0, x.size, (n, x.size))].mean(axis=1)
    return float(np.quantile(means, q)), float(np.quantile(means, 1 - q))


def choose_tau(probs: np.ndarray, default: int, val: np.ndarray, grid: Sequence[float], seed: int) -> float:
    """The margin with the best validated gain whose 95% lower bound is > 0; ``inf`` when none is.

    Args:
        probs: ``(n_val, T)`` policy probabilities of validation users.
        default: The default template.
        val: ``(n_val, T)`` NDCG@10 of every template on the validation users' targets.
        grid: Candidate margins.
    """
    best, best_gain = float("inf"), 0.0
    rows = np.arange(len(val))
    for tau in grid:
        choice = gate_choices(probs, default, tau)
        gain = np.nan_to_num(val[rows, choice] - val[rows, default])
        if np.any(gain) and lower_bound(gain, seed=seed)[0] > 0 and gain.mean() > best_gain:
            best, best_gain = float(tau), float(gain.mean())
    return best


def realistic_choices(earlier: Sequence[Table], users: np.ndarray, order: Sequence[int]) -> dict[int, int]:
    """Per user, the template with the best mean NDCG@10 on the earlier targets (ties: ``order``)."""
    stacked = np.stack([t.ndcg[t.rows(users)] for t in earlier])  # (k, n, T)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # users without an earlier target
        mean = np.nanmean(stacked, axis=0)
    rank = np.empty(len(order), dtype=np.float64)
    rank[list(order)] = np.arange(len(order))
    out = {}
    for i, user in enumerate(users):
        row = np.where(np.isfinite(mean[i]), mean[i], -np.inf)
        top = np.flatnonzero(row >= row.max() - 1e-12)
        out[int(user)] = int(top[np.argmin(rank[top])])
    return out


def ridge_choices(
    x_train: np.ndarray, gains_train: np.ndarray, x_eval: np.ndarray, margin: float, ridge: float = 10.0
) -> np.ndarray:
    """Per template, ridge-regress the gain over the default on features; deviate where > margin.

    Shapes: ``x_train (n, d)``, ``gains_train (n, K)`` (nan = unknown), ``x_eval (m, d)`` -> ``(m,)``
    index of the chosen family member, ``-1`` = the default.
    """
    xb = np.hstack([x_train, np.ones((len(x_train), 1))])
    eb = np.hstack([x_eval, np.ones((len(x_eval), 1))])
    pred = np.full((len(x_eval), gains_train.shape[1]), -np.inf)
    for k in range(gains_train.shape[1]):
        ok = np.isfinite(gains_train[:, k])
        if ok.sum() < 5:
            continue
        a = xb[ok].T @ xb[ok] + ridge * np.eye(xb.shape[1])
        pred[:, k] = eb @ np.linalg.solve(a, xb[ok].T @ gains_train[ok, k])
    best = pred.argmax(axis=1)
    return np.where(pred[np.arange(len(pred)), best] > margin, best, -1)


# ---------------------------------------------------------------------- training
def confirm_top2(
    problem: Any,
    counter: CountingRanker,
    mean_probs: np.ndarray,
    pool: np.ndarray,
    train: np.ndarray,
    cap: int,
    *,
    seed: int,
) -> tuple[int, dict[str, Any]]:
    """Spend what is left of the budget comparing the policy's two favourite templates.

    The two templates with the highest mean policy probability are scored on the pool and on
    seeded training users outside it, as many as the remaining distinct calls allow (``cap`` minus
    what ``counter`` has seen); the better mean reward, paired over those users, is identified.
    """
    top = [int(t) for t in np.argsort(-mean_probs, kind="stable")[:2]]
    rest = np.random.default_rng(seed + 1).permutation(np.setdiff1d(train, pool))
    chosen: list[int] = []
    spent = counter.calls
    for user in np.concatenate([pool, rest]):
        tasks = problem.tasks(int(user))
        new = {r for t in top if problem.action_mask(int(user))[t] for r in problem.requests(tasks, t)}
        new -= counter.seen
        if spent + len(new) > cap:
            break
        spent += len(new)
        chosen.append(int(user))
    users = np.array(chosen, dtype=np.int64)
    rewards = np.full((users.size, 2), np.nan)
    for k, template in enumerate(top):
        for i, outcome in enumerate(problem.run(users, [template] * users.size, counter)):
            if outcome is not None and outcome.valid:
                rewards[i, k] = outcome.reward.total
    both = np.isfinite(rewards).all(axis=1)
    means = rewards[both].mean(axis=0) if both.any() else np.zeros(2)
    winner = top[int(np.argmax(means))]
    return winner, {"confirm_users": int(users.size), "confirm_top2": top, "confirm_means": means.tolist()}


def train_ppo(
    config: ExperimentConfig,
    kind: str,
    problem: Any,
    ranker: CountingRanker,
    pool: np.ndarray,
    embeddings: Path,
    out: Path,
) -> tuple[Any, dict[str, Any]]:
    """Train one PPO agent (``lightgcn_mlp`` or ``mlp``) on the user ``pool``; returns it and stats."""
    from envs.vec_env import BatchedPromptRecVecEnv
    from experiments.tracking import Tracker
    from experiments.training import train_agent
    from policies.agent import make_agent

    cfg = dataclasses.replace(config, policy=dataclasses.replace(config.policy, kind=kind))
    env = BatchedPromptRecVecEnv(problem, ranker, config.env.n_envs, seed=config.seed, users=pool)
    if out.exists():
        shutil.rmtree(out)
    started, before = time.perf_counter(), ranker.calls
    state = train_agent(
        kind,
        lambda: make_agent(env, cfg, embeddings_path=embeddings),
        total_timesteps=config.ppo.total_timesteps,
        checkpoint_every=10**9,
        checkpoint_dir=out / "checkpoints",
        output=out / f"{kind}.zip",
        tracker=Tracker(),
        ranker=ranker,
    )
    agent = make_agent(env, cfg, embeddings_path=embeddings)
    agent.set_parameters(str(out / f"{kind}.zip"), exact_match=True)
    stats = {
        "steps": state.steps,
        "seconds": time.perf_counter() - started,
        "distinct_calls": ranker.calls - before,
        "curve": state.curve,
        "template_episodes": state.template_episodes,
        "template_reward": state.template_reward,
    }
    return agent, stats


def run_seed(
    seed: int,
    config: ExperimentConfig,
    study: StudyConfig,
    problems: dict[str, Any],
    ranker: Any,
    tables: dict[str, Table],
    work: Path,
) -> dict[str, Any]:
    """LightGCN, then per reward: PPO agents, bandits, gate, evaluation of every selector on test users."""
    from policies.graph import build_graph
    from policies.lightgcn import pretrain_from_config
    from policies.selectors import PPOSelector
    from promptopt.bandits import EpsilonGreedySelector, LinUCBSelector, bandit_features
    from promptopt.evaluation import evaluate_selector
    from promptopt.selectors import FixedSelector, OracleSelector, RandomSelector

    config = dataclasses.replace(config, seed=seed)
    acc = problems["accuracy"]
    seed_dir = work / f"seed{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    emb = pretrain_from_config(build_graph(acc.data, acc.train_mask), config.policy, seed=seed)
    emb_path = emb.save(seed_dir / "lightgcn.pt")
    logger.info(
        "seed %d: LightGCN best epoch %d, recall@20 %.4f (%.0f s)",
        seed,
        emb.best_epoch,
        emb.best_recall,
        emb.seconds,
    )
    train, val, test = acc.pool("train"), acc.pool("val"), acc.pool("test")
    n_pool = max(1, int(np.floor(study.pool_share * train.size)))
    pool = np.sort(np.random.default_rng(seed).choice(train, size=n_pool, replace=False))
    everyone = np.concatenate([train, val, test])
    features = bandit_features(acc, everyone, emb.user_embeddings.numpy())
    out: dict[str, Any] = {
        "seed": seed,
        "lightgcn": {"best_epoch": emb.best_epoch, "recall@20": emb.best_recall, "seconds": emb.seconds},
        "pool": pool.tolist(),
        "features": features[everyone].tolist(),
        "feature_users": everyone.tolist(),
        "rewards": {},
    }
    for reward_name, problem in problems.items():
        sweep = tables[f"train_{reward_name}"]
        means = np.nanmean(sweep.reward, axis=0)
        order = [int(t) for t in np.argsort(-np.where(np.isfinite(means), means, -np.inf), kind="stable")]
        best = FixedSelector(order[0], fallback=order[1:], masks=acc.action_mask, name="best_fixed")
        agents, train_stats, counters = {}, {}, {}
        for kind, name in (("lightgcn_mlp", "policy"), ("mlp", "mlp_ppo")):
            counters[name] = CountingRanker(ranker)
            agents[name], train_stats[name] = train_ppo(
                config, kind, problem, counters[name], pool, emb_path, seed_dir / reward_name / name
            )
        steps = config.ppo.total_timesteps
        bandits = {}
        for bandit in (
            LinUCBSelector(acc.n_templates, alpha=config.eval.linucb_alpha),
            EpsilonGreedySelector(acc.n_templates, epsilon=config.eval.epsilon),
        ):
            b_rank = CountingRanker(ranker)
            bandits[bandit.name] = bandit.fit(problem, b_rank, pool, features, steps, seed=seed)
            train_stats[bandit.name] = {"steps": steps, "distinct_calls": b_rank.calls}
        policy = PPOSelector(agents["policy"], acc, name="policy")
        mean_probs = policy.action_probabilities(train).mean(axis=0)
        identified = int(mean_probs.argmax())
        if study.confirm:
            cap = int(np.floor(study.budget_share * train.size * acc.n_templates * problem.calls_per_episode))
            identified, confirmation = confirm_top2(
                problem, counters["policy"], mean_probs, pool, train, cap, seed=seed
            )
            train_stats["policy"].update(confirmation, distinct_calls=counters["policy"].calls)
        val_table = tables["val"]
        tau = choose_tau(
            policy.action_probabilities(val),
            identified,
            val_table.ndcg[val_table.rows(val)],
            study.gate_grid,
            seed,
        )
        logger.info(
            "seed %d %s: identified %s (sweep winner %s), gate tau %s",
            seed,
            reward_name,
            acc.catalog.ids[identified],
            acc.catalog.ids[order[0]],
            tau,
        )
        realistic = ChoiceSelector(
            "realistic",
            realistic_choices([tables["test_back1"], tables["test_back2"]], test, order),
            order[0],
        )
        results: dict[str, Any] = {}
        for period in (None, "source", "target"):
            selectors = [
                RandomSelector(acc.n_templates, seed=seed, masks=acc.action_mask),
                best,
                bandits["epsilon_greedy"],
                bandits["linucb"],
                PPOSelector(agents["mlp_ppo"], acc, name="mlp_ppo", period=period),
                PPOSelector(agents["policy"], acc, name="policy", period=period),
                GatedSelector(PPOSelector(agents["policy"], acc, period=period), identified, tau),
                OracleSelector(acc, ranker, metric="ndcg@10", period=period),
            ] + ([realistic] if period is None else [])
            for selector in selectors:
                try:
                    ev = evaluate_selector(
                        selector,
                        acc,
                        ranker,
                        test,
                        period=period,
                        seed=seed,
                        n_bootstrap=config.eval.n_bootstrap,
                    )
                except ValueError:
                    continue
                results.setdefault(period or "last", {})[selector.name] = {
                    "users": ev.users.tolist(),
                    "templates": ev.templates.tolist(),
                    "per_user": {k: v.tolist() for k, v in ev.per_user.items()},
                }
        out["rewards"][reward_name] = {
            "sweep_means": means.tolist(),
            "sweep_order": order,
            "identified": identified,
            "tau": tau,
            "train": train_stats,
            "results": results,
            "exhaustive_calls": int(train.size * acc.n_templates * problem.calls_per_episode),
        }
    out["seconds"] = time.perf_counter() - started
    return out


# ---------------------------------------------------------------------- the whole study
def run_study(config: ExperimentConfig, study: StudyConfig) -> Path:
    """Run every phase and write the report; returns the report's path."""
    import os

    from experiments.assembly import build_problem, make_run_ranker
    from experiments.study_report import hardware, write_results
    from promptopt.problem import RecProblem

    started = time.perf_counter()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
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
    kw = {"chunk": study.chunk}
    tables = {
        "train_accuracy": score_table(acc, ranker, split.train, label="train", **kw),
        "val": score_table(acc, ranker, split.val, label="val", **kw),
        "test_last": score_table(acc, ranker, split.test, label="test last", **kw),
        "test_back1": score_table(acc, ranker, split.test, back=1, label="test earlier 1", **kw),
        "test_back2": score_table(acc, ranker, split.test, back=2, label="test earlier 2", **kw),
        "test_source": score_table(acc, ranker, split.test, period="source", label="test source", **kw),
        "test_target": score_table(acc, ranker, split.test, period="target", label="test target", **kw),
        "train_robust": score_table(problems["robust"], ranker, split.train, label="train robust", **kw),
    }
    tables_seconds = time.perf_counter() - started
    # ------------------------------------------------------------ seeds
    seeds = []
    for seed in study.seeds:
        seeds.append(run_seed(seed, config, study, problems, ranker, tables, work))
        (work / f"seed{seed}" / "result.json").write_text(json.dumps(seeds[-1]), encoding="utf-8")
    stats = getattr(ranker, "stats", None)
    run = {
        "config": {"study": dataclasses.asdict(study), "experiment": _plain(config)},
        "hardware": hardware(),
        "load_avg_start": load_start,
        "load_avg_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
        "seconds": time.perf_counter() - started,
        "tables_seconds": tables_seconds,
        "ranker": dict(ranker.identity),
        "llm": {k: getattr(stats, k, 0) for k in ("calls", "hits", "misses", "tokens")} if stats else {},
        "data": data.describe(),
        "n_users": {"train": len(split.train), "val": len(split.val), "test": len(split.test)},
        "templates": list(catalog.ids),
        "calls_per_episode": {k: p.calls_per_episode for k, p in problems.items()},
        "tables": {
            k: {"users": v.users.tolist(), "ndcg": _nan_list(v.ndcg), "reward": _nan_list(v.reward)}
            for k, v in tables.items()
        },
        "profile": [acc.observation(int(u))[1:].tolist() for u in split.test],
        "seeds": seeds,
    }
    (work / "study.json").write_text(json.dumps(run), encoding="utf-8")
    close = getattr(ranker, "close", None)
    if callable(close):
        close()
    return write_results(run, study)


def _nan_list(a: np.ndarray) -> list:
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in a]


def _plain(config: ExperimentConfig) -> dict[str, Any]:
    from promptopt.config import config_to_dict

    return config_to_dict(config)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="study YAML (experiments/configs/study_ml100k.yaml)")
    parser.add_argument(
        "--report-from", metavar="STUDY_JSON", help="only rewrite the report from a finished run's study.json"
    )
    args, overrides = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config, study = load_study(args.config, overrides)
    if args.report_from:
        from experiments.study_report import write_results

        run = json.loads(Path(args.report_from).read_text(encoding="utf-8"))
        path = write_results(run, study, append=False)
    else:
        path = run_study(config, study)
    print(Path(path).read_text(encoding="utf-8").split("## Targets", 1)[-1].split("\n## ", 1)[0])
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
