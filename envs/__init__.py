"""Gymnasium environments of promptopt; importing this package registers ``promptopt/PromptRec-v0``.

The registration uses an entry-point string, so ``import envs`` stays light (no stable-baselines3,
no torch): :class:`PromptRecEnv` and :class:`BatchedPromptRecVecEnv` load on first access.

    import gymnasium as gym
    from promptopt import envs  # noqa: F401  (registers the id)
    env = gym.make("promptopt/PromptRec-v0", problem=problem, ranker=ranker)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gymnasium.envs.registration import register, registry

if TYPE_CHECKING:
    from promptopt.envs.prompt_rec import PromptRecEnv
    from promptopt.envs.vec_env import BatchedPromptRecVecEnv

ENV_ID = "promptopt/PromptRec-v0"
"""Versioned, namespaced id; bump the version whenever observations or rewards change."""

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="promptopt.envs.prompt_rec:PromptRecEnv")

__all__ = ["ENV_ID", "BatchedPromptRecVecEnv", "PromptRecEnv"]


def __getattr__(name: str) -> Any:
    if name == "PromptRecEnv":
        from promptopt.envs.prompt_rec import PromptRecEnv

        return PromptRecEnv
    if name == "BatchedPromptRecVecEnv":
        from promptopt.envs.vec_env import BatchedPromptRecVecEnv

        return BatchedPromptRecVecEnv
    raise AttributeError(f"module 'promptopt.envs' has no attribute {name!r}")
