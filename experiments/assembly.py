"""Assembly of a run from its config: the problem, the cached ranker, the training env, the agents.

Every phase (train, evaluate, export, estimate, study) builds its pieces through these functions, so
they see the same data, split, catalog, ranker and agent architecture. Heavy libraries are imported
inside the functions that need them.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from promptopt.config import ExperimentConfig
from promptopt.errors import ConfigError

if TYPE_CHECKING:
    from experiments.rundir import RunDir
    from promptopt.data.interactions import InteractionData
    from promptopt.llm.types import Ranker
    from promptopt.problem import RecProblem
    from promptopt.splits import UserSplit
    from promptopt.templates import TemplateCatalog

logger = logging.getLogger(__name__)


def build_problem(config: ExperimentConfig) -> tuple[InteractionData, UserSplit, TemplateCatalog, RecProblem]:
    """Load the data, split users, load the catalog and assemble the :class:`RecProblem`.

    Raises:
        ConfigError / DataFormatError / TemplateError: With the offending key or file.
    """
    from promptopt.data import load_data
    from promptopt.problem import RecProblem
    from promptopt.splits import split_users
    from promptopt.templates import TemplateCatalog

    data = load_data(config.data)
    s = config.split
    try:
        split = split_users(data, val_fraction=s.val_fraction, test_fraction=s.test_fraction,
                            min_history=s.min_history, seed=config.seed, max_users=s.max_users)
    except ValueError as exc:
        raise ConfigError(f"split: {exc}") from None
    catalog = TemplateCatalog.load(config.templates.catalog, include=config.templates.include,
                                   max_history=config.templates.max_history)
    problem = RecProblem.build(data, split, catalog, config.reward, config.split, seed=config.seed)
    logger.info("%s; users train/val/test %d/%d/%d; %d templates; %d request(s) per episode",
                data.describe(), len(split.train), len(split.val), len(split.test), len(catalog),
                problem.calls_per_episode)
    return data, split, catalog, problem


def make_run_ranker(config: ExperimentConfig, problem: RecProblem) -> Ranker:
    """The config's ranker, behind the answer cache and the budget."""
    from promptopt.llm.budget import Budget
    from promptopt.llm.factory import make_ranker

    b = config.budget
    budget = Budget.from_config(b) if (b.max_calls, b.max_tokens, b.max_cost) != (None, None, None) else None
    return make_ranker(config.ranker, cache=config.cache, budget=budget, data=problem.data,
                       catalog=problem.catalog, profile=problem.profile)


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


def make_env(config: ExperimentConfig, problem: RecProblem, ranker: Ranker, n_envs: int | None = None) -> Any:
    """The batched training env (one ranker call per step for all sub-environments)."""
    from envs.vec_env import BatchedPromptRecVecEnv

    return BatchedPromptRecVecEnv(problem, ranker, n_envs or config.env.n_envs, seed=config.seed,
                                  users="train", action_space=config.env.action_space)


def load_agent(run: RunDir, config: ExperimentConfig, problem: RecProblem, ranker: Ranker, kind: str) -> Any:
    """A trained agent of the run (weights only: ``set_parameters``, nothing unpickled)."""
    from policies.agent import make_agent

    path = run.agent(kind)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: train first (promptopt train --resume {run.root})")
    agent = make_agent(make_env(config, problem, ranker), agent_config(config, kind),
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
