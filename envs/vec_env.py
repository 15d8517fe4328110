"""``BatchedPromptRecVecEnv``: N prompt-selection envs whose requests go to the ranker in ONE call per step.

An SB3 ``VecEnv`` with exactly the semantics of ``DummyVecEnv([PromptRecEnv, ...])`` — seeds
``seed + i``, auto-reset with ``info["terminal_observation"]`` — except that a step gathers every
sub-environment's requests and sends them to ``ranker.rank`` together: one encode batch for an
embedding model, one concurrent burst for an API, one forward batch for a local LM.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from promptopt.envs.prompt_rec import ActionSpaceKind, PromptRecEnv
from promptopt.llm.types import Ranker
from promptopt.problem import Outcome, RecProblem


class BatchedPromptRecVecEnv(DummyVecEnv):
    """``n_envs`` :class:`~promptopt.envs.prompt_rec.PromptRecEnv` stepped together with one ranker call.

    Args:
        problem: The shared problem (tasks, prompts and rewards are cached once for all).
        ranker: The frozen ranker.
        n_envs: Number of sub-environments.
        seed: Seeds sub-environment ``i`` with ``seed + i`` at the first :meth:`reset` (as
            ``DummyVecEnv.seed`` does); ``None`` = unseeded.
        users: User pool of every sub-environment.
        action_space: ``"discrete"`` or ``"multidiscrete"``.
        train_targets: Episode targets per training user (see
            :class:`~promptopt.envs.prompt_rec.PromptRecEnv`).
        baseline: Ranked default templates of the paired reward (``None`` = the plain reward); the
            default's episodes go in the same ranker call as the chosen ones.

    ``action_masks()`` returns the stacked ``(n_envs, n_actions)`` masks, and
    ``env_method("action_masks")`` works too, so sb3-contrib's ``MaskablePPO`` can use it.
    """

    def __init__(
        self,
        problem: RecProblem,
        ranker: Ranker,
        n_envs: int,
        *,
        seed: int | None = None,
        users: str | Sequence[int] | np.ndarray = "train",
        action_space: ActionSpaceKind = "discrete",
        train_targets: int = 1,
        baseline: Sequence[int] | None = None,
    ) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        make = partial(PromptRecEnv, problem, ranker, users=users, action_space=action_space,
                       train_targets=train_targets, baseline=baseline)
        super().__init__([make for _ in range(n_envs)])
        self.problem = problem
        self.ranker = ranker
        self._prompt_envs: list[PromptRecEnv] = [env.unwrapped for env in self.envs]  # type: ignore[misc]
        if seed is not None:
            self.seed(seed)

    def step_wait(self) -> VecEnvStepReturn:
        plans = [env.plan(action) for env, action in zip(self._prompt_envs, self.actions)]
        episodes, owners = [], []  # owners: (sub-env, 0 = chosen / 1 = the paired baseline's default)
        for i, (env, (_, template)) in enumerate(zip(self._prompt_envs, plans)):
            if template is not None:
                episodes.append(env.episode(template))
                owners.append((i, 0))
            base = env.baseline_episode(template)
            if base is not None:
                episodes.append(base)
                owners.append((i, 1))
        outcomes: list[list[Outcome | None]] = [[None, None] for _ in range(self.num_envs)]
        ran = self.problem.run_episodes(episodes, self.ranker) if episodes else []
        for (i, part), outcome in zip(owners, ran):
            outcomes[i][part] = outcome
        buf_obs = self.buf_obs[None]
        for i, env in enumerate(self._prompt_envs):
            outcome = outcomes[i][0] or self.problem.invalid_outcome(plans[i][0], -1)
            obs, self.buf_rews[i], terminated, truncated, info = env.finish(outcome, outcomes[i][1])
            self.buf_dones[i] = terminated or truncated
            info["TimeLimit.truncated"] = truncated and not terminated
            if self.buf_dones[i]:
                info["terminal_observation"] = obs
                obs, self.reset_infos[i] = env.reset()
            self.buf_infos[i] = info
            buf_obs[i] = obs
        # The info dicts are built fresh every step and held by nobody else, so a shallow copy of
        # the list gives DummyVecEnv's guarantees without its deepcopy (the costliest part of a step).
        return np.copy(buf_obs), np.copy(self.buf_rews), np.copy(self.buf_dones), list(self.buf_infos)

    def action_masks(self) -> np.ndarray:
        """Shapes: ``(n_envs, n_actions)`` bool: each sub-environment's current valid actions."""
        return np.stack([env.action_masks() for env in self._prompt_envs])
