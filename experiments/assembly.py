"""Assembly of a run from its config: the problem, the cached ranker, the training env, the agents.

Every phase (train, evaluate, export, estimate, study) builds its pieces through these functions, so
they see the same data, split, catalog, ranker and agent architecture. The env and the agents need
gymnasium, stable-baselines3 and torch: they are imported inside the functions that build them, so
commands that only need the problem (``estimate``, ``templates``) stay light.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from promptopt.config import ExperimentConfig
from promptopt.data import load_data
from promptopt.errors import ConfigError
from promptopt.llm.budget import Budget
from promptopt.llm.factory import make_ranker
from promptopt.llm.simulated import SimulatedRanker
from promptopt.llm.types import Ranker, RankRequest, RankResponse
from promptopt.policies.agent import make_agent
from promptopt.problem import RecProblem
from promptopt.splits import UserSplit, split_for
from promptopt.templates import TemplateCatalog

if TYPE_CHECKING:
    import numpy as np

    from promptopt.data.interactions import InteractionData
    from promptopt.experiments.rundir import RunDir
    from promptopt.fairness.penalty import CounterfactualPenalty

logger = logging.getLogger(__name__)


def build_problem(config: ExperimentConfig) -> tuple[InteractionData, UserSplit, TemplateCatalog, RecProblem]:
    """Load the data, split users, load the catalog and assemble the :class:`RecProblem`.

    Raises:
        ConfigError / DataFormatError / TemplateError: With the offending key or file.
    """
    data = load_data(config.data)
    s = config.split
    most_seen = int(data.history_lengths.max(initial=0))
    if s.n_negatives > data.n_items - most_seen:
        raise ConfigError(
            f"split.n_negatives={s.n_negatives} is more than the {data.n_items - most_seen} items the most "
            f"active user has not interacted with ({data.n_items} items, {most_seen} seen): lower "
            f"split.n_negatives to at most {max(1, data.n_items - most_seen)}"
        )
    try:
        split = split_for(data, s, seed=config.seed)
    except ValueError as exc:
        raise ConfigError(f"split: {exc}") from None
    catalog = TemplateCatalog.load(config.templates.catalog, include=config.templates.include,
                                   max_history=config.templates.max_history)
    try:
        problem = RecProblem.build(data, split, catalog, config.reward, config.split, seed=config.seed,
                                   penalty=fairness_penalty(config))
    except ValueError as exc:
        raise ConfigError(f"split: {exc}") from None
    logger.info("%s; users train/val/test %d/%d/%d; %d templates; %d request(s) per episode",
                data.describe(), len(split.train), len(split.val), len(split.test), len(catalog),
                problem.calls_per_episode)
    return data, split, catalog, problem


def fairness_penalty(config: ExperimentConfig) -> CounterfactualPenalty | None:
    """The fairness-aware reward of ``reward.fairness_weight > 0`` (``None`` when it is 0).

    Its values are drawn from every value of the ``fairness.attributes`` set, at ``K`` = the reward
    metric's cut-off (10 for ``mrr``).

    Raises:
        ConfigError: The attribute set cannot be loaded.
    """
    r = config.reward
    if r.fairness_weight <= 0:
        return None
    from promptopt.fairness.attributes import load_attribute_set
    from promptopt.fairness.penalty import CounterfactualPenalty

    k = int(r.metric.partition("@")[2] or 10)
    return CounterfactualPenalty(load_attribute_set(config.fairness.attributes), weight=r.fairness_weight,
                                 n_values=r.fairness_values, metric=r.fairness_metric, k=k, seed=config.seed)


def make_simulator(config: ExperimentConfig, problem: RecProblem) -> SimulatedRanker:
    """The ``simulated`` backend of the run: built from the problem it simulates.

    It reads the dataset (which candidate the user interacted with), the catalog (a template id's
    slots) and the profile encoder the policy observes, so its hidden rule uses the statistics the
    policy sees. Everything else it learns about a request is the request's typed
    :class:`~promptopt.llm.types.RequestIds`.
    """
    return SimulatedRanker(problem.data, problem.catalog, noise=config.ranker.noise,
                           seed=config.ranker.seed or 0, profile=problem.profile,
                           drift_share=config.ranker.drift_share,
                           drift_strength=config.ranker.drift_strength, time_cut=problem.time_cut)


def make_run_ranker(config: ExperimentConfig, problem: RecProblem, *, run: RunDir | None = None,
                    phase: str = "run") -> Ranker:
    """The config's ranker, behind the answer cache and the budget.

    With ``run``, the budget charges the run's ledger (``RUN_DIR/budget.json``) under ``phase``, so
    its caps hold for the whole run: every phase and every resume spend from one account.
    """
    b = config.budget
    capped = (b.max_calls, b.max_tokens, b.max_cost) != (None, None, None)
    budget = None
    if run is not None and config.cache.enabled:
        budget = Budget.from_config(b, ledger=run.budget, phase=phase)
    elif capped:
        budget = Budget.from_config(b, phase=phase)
    simulator = make_simulator(config, problem) if config.ranker.backend == "simulated" else None
    return make_ranker(config.ranker, cache=config.cache, budget=budget, backend=simulator)


def agent_kinds(config: ExperimentConfig) -> list[str]:
    """Agents a run trains: ``policy`` (``policy.kind``), plus ``mlp`` for the ``mlp_ppo`` baseline."""
    kinds = ["policy"]
    if "mlp_ppo" in config.eval.selectors and config.policy.kind != "mlp":
        kinds.append("mlp")
    return kinds


def agent_config(config: ExperimentConfig, kind: str) -> ExperimentConfig:
    """The config an agent is built from (``mlp``: the same with ``policy.kind: mlp``)."""
    if kind == "mlp":
        return dataclasses.replace(config, policy=dataclasses.replace(config.policy, kind="mlp"))
    return config


def make_env(config: ExperimentConfig, problem: RecProblem, ranker: Ranker, n_envs: int | None = None,
             *, users: str | Sequence[int] | np.ndarray = "train",
             default_order: Sequence[int] | None = None) -> Any:
    """The batched training env (one ranker call per step for all sub-environments).

    ``users``: a split's name or the users episodes are drawn from (the study's training pool).
    ``default_order``: the ranked default templates (:func:`default_order`); the paired reward of
    ``env.reward_baseline: default`` needs it (an env built only to load an agent does not).
    ``env.train_targets`` sets the training users' episode targets.
    """
    from promptopt.envs.vec_env import BatchedPromptRecVecEnv

    baseline = None
    if config.env.reward_baseline == "default" and default_order is not None:
        baseline = list(default_order)
    return BatchedPromptRecVecEnv(problem, ranker, n_envs or config.env.n_envs, seed=config.seed,
                                  users=users, action_space=config.env.action_space,
                                  train_targets=config.env.train_targets, baseline=baseline)


def needs_default(config: ExperimentConfig) -> bool:
    """Whether training ranks a default template first (paired reward or warm start)."""
    return config.env.reward_baseline == "default" or config.policy.warm_start > 0


def default_order(
    config: ExperimentConfig, problem: RecProblem, ranker: Ranker,
    users: Sequence[int] | np.ndarray | None = None,
) -> tuple[list[int], dict[str, Any]]:
    """Templates ranked by mean reward on a seeded sample of ``env.default_scan_users`` training users.

    Every valid template of every sampled user is scored (one ``rank`` call per template, through
    the run's cached ranker, so the answers count in training's spend and later scans reuse them).
    Templates nobody in the sample can fill come last. ``users``: the pool to sample from
    (default: the training users). Returns the order and a JSON-able record of the scan.
    """
    import numpy as np

    from promptopt.selectors import template_scores

    pool = problem.pool("train") if users is None else np.asarray(users, dtype=np.int64)
    n = min(config.env.default_scan_users, pool.size)
    sample = np.sort(np.random.default_rng(config.seed).choice(pool, size=n, replace=False))
    scores, _ = template_scores(problem, ranker, sample)
    valid = np.isfinite(scores)
    means = np.where(valid.any(axis=0), np.nansum(np.where(valid, scores, 0.0), axis=0)
                     / np.maximum(valid.sum(axis=0), 1), -np.inf)
    order = [int(t) for t in np.argsort(-means, kind="stable")]
    ids = problem.catalog.ids
    record = {"users": int(n), "order": [ids[t] for t in order],
              "means": {ids[t]: (float(means[t]) if np.isfinite(means[t]) else None) for t in order}}
    logger.info("default template %s (mean reward %.4f over %d scanned training users)",
                ids[order[0]], means[order[0]], n)
    return order, record


class NoRanker:
    """The ranker of an env that only lends its spaces to an agent being loaded: it ranks nothing.

    Loading an agent builds the training env for its observation and action spaces and action
    masks; no episode is stepped, so no ranker is called. Passing this instead of the run's ranker
    means loading needs no API key, server or model, and a call reaching it is a bug, not a cost.
    """

    identity: Mapping[str, Any] = MappingProxyType({"backend": "none"})

    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        raise RuntimeError("NoRanker was asked to rank: an env built to load an agent was stepped")


def load_agent(run: RunDir, config: ExperimentConfig, problem: RecProblem, kind: str) -> Any:
    """A trained agent of the run (weights only: ``set_parameters``, nothing unpickled).

    Builds no ranker (see :class:`NoRanker`): exporting an ``openai`` run needs no API key and
    exporting an ``hf`` run loads no model.
    """
    path = run.agent(kind)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: train first (promptopt train --resume {run.root})")
    agent = make_agent(make_env(config, problem, NoRanker()), agent_config(config, kind),
                       embeddings_path=run.lightgcn)
    try:
        agent.set_parameters(str(path), exact_match=True)
    except Exception as exc:  # a damaged zip raises many kinds (ValueError, BadZipFile, EOFError ...)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(
            f"cannot load the agent {path}: {reason}; delete it and run `promptopt train --resume "
            f"{run.root}` to rebuild it from the last checkpoint (cached answers are reused)"
        ) from None
    return agent
