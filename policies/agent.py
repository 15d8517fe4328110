"""``make_agent``: a seeded SB3 ``PPO`` or sb3-contrib ``MaskablePPO`` from the config tree.

The config's ``policy`` section picks the features extractor and the actor / critic heads
(``net_arch=dict(pi=..., vf=...)``); its ``ppo`` section holds SB3 hyper-parameters by their SB3
names. ``policy.kind: lightgcn_mlp`` needs pretrained LightGCN embeddings: pass the file, or
the training graph and a path where the pretrained embeddings are written first.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptopt.config import ExperimentConfig
from promptopt.errors import ConfigError
from promptopt.policies.lightgcn import LightGCNEmbeddings, pretrain_from_config

if TYPE_CHECKING:
    import numpy as np
    from stable_baselines3 import PPO
    from stable_baselines3.common.type_aliases import GymEnv

    from promptopt.policies.graph import InteractionGraph
    from promptopt.problem import RecProblem

logger = logging.getLogger(__name__)


def profile_moments(problem: RecProblem, users: np.ndarray | None = None) -> tuple[list[float], list[float]]:
    """Mean and standard deviation of each profile statistic over ``users`` (default: training users).

    These standardise the observation inside the extractors (:class:`ProfileNormalizer`); they
    come from the users' episode observations, which hold no target.
    """
    import numpy as np

    pool = problem.pool("train") if users is None else np.asarray(users, dtype=np.int64)
    if len(pool) == 0:
        raise ValueError("profile_moments needs at least one user")
    stats = np.stack([problem.observation(int(u))[1:] for u in pool]).astype(np.float64)
    return stats.mean(axis=0).tolist(), stats.std(axis=0).tolist()


def _problem_of(env: GymEnv) -> RecProblem | None:
    """The RecProblem behind a PromptRecEnv / BatchedPromptRecVecEnv (``None`` for other envs)."""
    found = getattr(env, "problem", None)
    if found is None and hasattr(env, "unwrapped"):
        found = getattr(env.unwrapped, "problem", None)
    return found


def policy_kwargs(
    config: ExperimentConfig,
    *,
    embeddings_path: str | Path | None = None,
    graph: InteractionGraph | None = None,
    moments: tuple[list[float], list[float]] | None = None,
) -> dict[str, Any]:
    """The ``policy_kwargs`` SB3 receives: extractor class, its small serialisable kwargs, heads.

    For ``policy.kind: lightgcn_mlp`` the embeddings file must exist, or ``graph`` must be given:
    then LightGCN is pretrained with the ``policy`` section's BPR settings and saved to
    ``embeddings_path`` first. ``moments`` (:func:`profile_moments`) standardise the profile
    statistics.

    Raises:
        ConfigError: ``lightgcn_mlp`` without ``embeddings_path``.
        EmbeddingsFileError: The file is missing and no graph was given, or is unreadable.
    """
    from promptopt.policies.extractor import LightGCNExtractor, ProfileExtractor  # torch, stable-baselines3

    policy = config.policy
    heads = {"pi": list(policy.pi), "vf": list(policy.vf)}
    scaling: dict[str, Any] = {}
    if moments is not None:
        scaling = {"profile_mean": list(moments[0]), "profile_std": list(moments[1])}
    if policy.kind == "mlp":
        return {"features_extractor_class": ProfileExtractor,
                "features_extractor_kwargs": {"hidden": list(policy.hidden), **scaling},
                "net_arch": heads}
    if embeddings_path is None:
        raise ConfigError(
            "policy.kind 'lightgcn_mlp' needs LightGCN embeddings: pass embeddings_path (and the "
            "training graph to pretrain them there), or use policy.kind: mlp"
        )
    path = Path(embeddings_path)
    if not path.is_file() and graph is not None:
        logger.info("pretraining LightGCN (%d users, %d items, %d edges) -> %s",
                    graph.n_users, graph.n_items, graph.n_edges, path)
        pretrain_from_config(graph, policy, seed=config.seed).save(path)
    embeddings = LightGCNEmbeddings.load(path)
    if embeddings.embedding_dim != policy.embedding_dim or embeddings.n_layers != policy.n_layers:
        logger.warning(
            "%s has embedding_dim=%d, n_layers=%d; the config says %d, %d: using the file's",
            path, embeddings.embedding_dim, embeddings.n_layers, policy.embedding_dim, policy.n_layers,
        )
    kwargs: dict[str, Any] = {
        "n_users": embeddings.n_users,
        "embedding_dim": embeddings.embedding_dim,
        "hidden": list(policy.hidden),
        "embeddings_path": str(path),
        "finetune_graph": policy.finetune_graph,
        **scaling,
    }
    if policy.finetune_graph:
        kwargs.update(n_items=embeddings.n_items, n_layers=embeddings.n_layers,
                      n_edges=int(embeddings.edges.shape[1]))
    return {"features_extractor_class": LightGCNExtractor, "features_extractor_kwargs": kwargs,
            "net_arch": heads}


def make_agent(
    env: GymEnv,
    config: ExperimentConfig,
    *,
    embeddings_path: str | Path | None = None,
    graph: InteractionGraph | None = None,
    device: str = "cpu",
    verbose: int = 0,
    tensorboard_log: str | None = None,
    default: int | None = None,
) -> PPO:
    """Build the agent for ``env`` (a ``PromptRecEnv`` or ``BatchedPromptRecVecEnv``).

    ``MaskablePPO`` is used when ``policy.maskable`` and ``env.mask_invalid`` are both true (the
    env must expose ``action_masks()``); plain ``PPO`` otherwise. Seeded with ``config.seed``.
    When the env carries a :class:`~promptopt.problem.RecProblem`, the extractor standardises the
    profile statistics with their moments over the problem's training users.

    Args:
        env: The environment (or vector env).
        config: The experiment config (``policy``, ``ppo``, ``env``, ``seed`` are read).
        embeddings_path: LightGCN embeddings file (``policy.kind: lightgcn_mlp``).
        graph: Training graph: pretrain LightGCN into ``embeddings_path`` when it does not exist.
        device: Torch device; the policy is small, so CPU is usually fastest.
        verbose: SB3 verbosity.
        tensorboard_log: SB3 tensorboard folder (``None`` = none).
        default: The default template of ``policy.warm_start`` (``None``: no warm start, e.g. an
            agent whose weights are loaded next).

    Raises:
        ConfigError: Masking requested but the env has no ``action_masks()``; a bad policy setup.
    """
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.utils import is_masking_supported
    from stable_baselines3 import PPO

    use_masks = config.policy.maskable and config.env.mask_invalid
    if use_masks and not is_masking_supported(env):
        raise ConfigError(
            "policy.maskable is true but the env has no action_masks(): use envs.PromptRecEnv / "
            "BatchedPromptRecVecEnv or set policy.maskable: false"
        )
    algo = MaskablePPO if use_masks else PPO
    problem = _problem_of(env)
    ppo = config.ppo
    n_envs = getattr(env, "num_envs", 1)
    if (ppo.n_steps * n_envs) % ppo.batch_size:
        logger.warning("ppo.n_steps * n_envs = %d is not a multiple of ppo.batch_size = %d",
                       ppo.n_steps * n_envs, ppo.batch_size)
    agent = algo(
        "MlpPolicy",
        env,
        learning_rate=ppo.learning_rate,
        n_steps=ppo.n_steps,
        batch_size=ppo.batch_size,
        n_epochs=ppo.n_epochs,
        gamma=ppo.gamma,
        gae_lambda=ppo.gae_lambda,
        clip_range=ppo.clip_range,
        ent_coef=ppo.ent_coef,
        vf_coef=ppo.vf_coef,
        max_grad_norm=ppo.max_grad_norm,
        policy_kwargs=policy_kwargs(config, embeddings_path=embeddings_path, graph=graph,
                                    moments=None if problem is None else profile_moments(problem)),
        seed=config.seed,
        device=device,
        verbose=verbose,
        tensorboard_log=tensorboard_log,
    )
    if default is not None and config.policy.warm_start > 0:
        warm_start(agent, default, config.policy.warm_start)
    return agent


def warm_start(agent: Any, default: int, probability: float) -> None:
    """Make the untrained policy choose ``default`` with ``probability`` (``policy.warm_start``).

    SB3 initialises the action head with orthogonal weights of gain 0.01, so every logit starts
    near 0; the head's bias then decides the start. The default's bias is set to
    ``log(p (n - 1) / (1 - p))`` and the others' to 0, so with all ``n`` templates valid the default's
    probability is ``p`` (masked templates give their share to the valid ones, the default
    included). PPO then moves away from the default only where its advantage says so.

    Raises:
        ConfigError: The action space is not one discrete choice of a template.
    """
    import math

    import torch
    from gymnasium import spaces

    space = agent.action_space
    if not isinstance(space, spaces.Discrete):
        raise ConfigError("policy.warm_start needs env.action_space: discrete (one action per template)")
    n = int(space.n)
    if not 0 <= default < n:
        raise ValueError(f"default template must be in 0..{n - 1}, got {default}")
    if not 0.0 < probability < 1.0:
        raise ValueError(f"warm start probability must be in (0, 1), got {probability}")
    with torch.no_grad():
        bias = agent.policy.action_net.bias
        bias.zero_()
        if n > 1:
            bias[default] = math.log(probability * (n - 1) / (1.0 - probability))
