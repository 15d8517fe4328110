"""A trained (Maskable)PPO policy as a :class:`promptopt.selectors.Selector` (user -> template)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from promptopt.splits import seeded_rng

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

    from promptopt.problem import Period, RecProblem


class PPOSelector:
    """Picks each user's template with a trained PPO / MaskablePPO policy.

    The user's observation is :meth:`RecProblem.observation` (the same the env shows). Templates
    the user cannot fill get probability 0 and the rest are renormalised, for plain PPO too, so
    an invalid template is never chosen (unless a user can fill none: then the raw policy
    probabilities are used). With a ``MultiDiscrete`` (slot) action space a template's
    probability is the product of its slot options' probabilities.

    Args:
        model: The trained SB3 model.
        problem: The problem (observations, masks, catalog).
        deterministic: Most probable valid template (True) or a sample, seeded per user.
        seed: Seed of sampling when not deterministic.
        period: Observation of the user's latest target in this period (as the evaluation uses).
        final: Observation of the user's final target.
        name: Report name.
    """

    def __init__(
        self,
        model: BaseAlgorithm,
        problem: RecProblem,
        *,
        deterministic: bool = True,
        seed: int = 0,
        period: Period | None = None,
        final: bool = False,
        name: str = "policy",
    ) -> None:
        self.model = model
        self.problem = problem
        self.deterministic = deterministic
        self.seed = seed
        self.period = period
        self.final = final
        self.name = name
        space = model.action_space
        if hasattr(space, "nvec"):
            catalog = problem.catalog
            self._slot_vectors: np.ndarray | None = np.array(
                [catalog.slot_vector(i) for i in range(problem.n_templates)], dtype=np.int64
            )
        else:
            if int(space.n) != problem.n_templates:
                raise ValueError(
                    f"the model has {space.n} actions but the catalog {problem.n_templates} templates"
                )
            self._slot_vectors = None

    def observations(self, users: np.ndarray) -> np.ndarray:
        """Shapes: ``(n,) -> (n, obs_dim)`` float32."""
        return np.stack([self.problem.observation(int(u), period=self.period, final=self.final)
                         for u in users]).astype(np.float32)

    def masks(self, users: np.ndarray) -> np.ndarray:
        """Shapes: ``(n,) -> (n, n_templates)`` bool."""
        return np.stack([self.problem.action_mask(int(u), period=self.period, final=self.final)
                         for u in users])

    def policy_probabilities(self, users: np.ndarray) -> np.ndarray:
        """The policy's unmasked probability of every template. Shapes: ``(n,) -> (n, n_templates)``."""
        users = np.asarray(users, dtype=np.int64)
        policy = self.model.policy
        policy.set_training_mode(False)
        obs, _ = policy.obs_to_tensor(self.observations(users))
        with torch.no_grad():
            dist = policy.get_distribution(obs).distribution
        if self._slot_vectors is None:
            return dist.probs.cpu().numpy().astype(np.float64)
        probs = np.ones((users.size, self.problem.n_templates))
        for slot, categorical in enumerate(dist):
            slot_probs = categorical.probs.cpu().numpy()
            probs *= slot_probs[:, self._slot_vectors[:, slot]]
        return probs

    def action_probabilities(self, users: np.ndarray) -> np.ndarray:
        """Probability of each template per user, invalid ones zeroed and the rest renormalised.

        Shapes: ``(n,) -> (n, n_templates)`` float64, rows summing to 1.
        """
        users = np.asarray(users, dtype=np.int64)
        if users.size == 0:
            return np.zeros((0, self.problem.n_templates))
        raw = self.policy_probabilities(users)
        masks = self.masks(users)
        masks[~masks.any(axis=1)] = True
        probs = np.where(masks, raw, 0.0)
        total = probs.sum(axis=1, keepdims=True)
        # A valid template the policy gives (numerically) zero mass still beats an invalid one.
        uniform = masks / masks.sum(axis=1, keepdims=True)
        return np.where(total > 0, probs / np.maximum(total, 1e-300), uniform)

    def select(self, users: np.ndarray) -> np.ndarray:
        """Template per user. Shapes: ``(n,) -> (n,)`` int64."""
        users = np.asarray(users, dtype=np.int64)
        probs = self.action_probabilities(users)
        if self.deterministic:
            return probs.argmax(axis=1).astype(np.int64) if users.size else np.zeros(0, np.int64)
        out = np.empty(users.size, dtype=np.int64)
        for i, user in enumerate(users):
            rng = seeded_rng(self.seed, int(user), "ppo-sample")
            out[i] = int(rng.choice(probs.shape[1], p=probs[i]))
        return out
