"""Contextual bandit baselines: epsilon-greedy and disjoint LinUCB over user features (numpy only).

Both see the same features as the policy (a user's LightGCN embedding and profile statistics,
given as an array) and learn online from the same reward as PPO, one ranker call batch per
``batch_size`` episodes, so with ``steps = ppo.total_timesteps`` they spend the same ranker calls.

Each template ``a`` keeps a ridge regression of the reward on the features ``x`` (a constant 1
is appended): :math:`A_a = \\lambda I + \\sum x x^\\top`, :math:`b_a = \\sum r x`,
:math:`\\hat\\theta_a = A_a^{-1} b_a`.

* epsilon-greedy (Sutton & Barto): a uniformly random valid template with probability
  :math:`\\epsilon`, else :math:`\\arg\\max_a \\hat\\theta_a^\\top x`;
* LinUCB, disjoint model (Li et al., 2010, https://arxiv.org/abs/1003.0146):
  :math:`\\arg\\max_a \\hat\\theta_a^\\top x + \\alpha \\sqrt{x^\\top A_a^{-1} x}`.

After :meth:`fit`, :meth:`select` is greedy (:math:`\\arg\\max_a \\hat\\theta_a^\\top x`) among the
templates the user can fill; ties go to the lowest index.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from promptopt.progress import progress_bar

if TYPE_CHECKING:
    from promptopt.llm.types import Ranker
    from promptopt.problem import RecProblem

logger = logging.getLogger(__name__)


def bandit_features(
    problem: RecProblem, users: Sequence[int] | np.ndarray, embeddings: np.ndarray | None = None
) -> np.ndarray:
    """The bandits' feature table: standardised user embedding ++ profile statistics.

    Args:
        problem: The problem (profile statistics of each user's episode observation).
        users: Users to fill in (e.g. train, validation and test users together).
        embeddings: ``(n_users, d)`` user embeddings (LightGCN), standardised per dimension over
            ``users``; ``None`` gives profile statistics only.

    Returns:
        ``(n_users, d + n_profile)`` float64; rows of users not in ``users`` are zero.
    """
    users = np.asarray(users, dtype=np.int64)
    n_profile = problem.obs_dim - 1
    dim = n_profile + (0 if embeddings is None else int(embeddings.shape[1]))
    table = np.zeros((problem.data.n_users, dim), dtype=np.float64)
    if embeddings is not None:
        emb = np.asarray(embeddings, dtype=np.float64)
        if emb.shape[0] != problem.data.n_users:
            raise ValueError(
                f"embeddings have {emb.shape[0]} rows but the dataset has {problem.data.n_users} users"
            )
        table[users, : emb.shape[1]] = Standardiser.fit(emb[users]).transform(emb[users])
    for user in users:
        table[user, dim - n_profile:] = problem.observation(int(user))[1:]
    return table


class Standardiser:
    """Per-column centring and scaling fitted on some rows: ``(x - mean) / scale``.

    ``scale`` is the column's standard deviation, or 1 for a (numerically) constant column, so a
    feature nobody varies in stays 0 instead of dividing by ~0. The one standardisation of user
    contexts: :func:`bandit_features` (embeddings over the filled users) and
    :class:`promptopt.advantage.AdvantageSelector` (features over its training pool) use it.
    """

    def __init__(self, mean: np.ndarray, scale: np.ndarray) -> None:
        self.mean, self.scale = np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64)

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardiser:
        """Moments of ``x`` (``(n, d)``) over its rows."""
        x = np.asarray(x, dtype=np.float64)
        sd = x.std(axis=0)
        return cls(x.mean(axis=0), np.where(sd > 1e-12, sd, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Shapes: ``(n, d) -> (n, d)`` float64."""
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale


class _LinearBandit:
    """Per-template ridge regressions and the shared online training loop."""

    name = "bandit"

    def __init__(self, n_templates: int, *, ridge: float = 1.0, batch_size: int = 8) -> None:
        if n_templates < 1:
            raise ValueError(f"n_templates must be >= 1, got {n_templates}")
        if ridge <= 0:
            raise ValueError(f"ridge must be > 0, got {ridge}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.n_templates = n_templates
        self.ridge = ridge
        self.batch_size = batch_size
        self.A_inv: np.ndarray | None = None
        self.b: np.ndarray | None = None
        self.pulls = np.zeros(n_templates, dtype=np.int64)
        self.rewards: list[float] = []
        self._problem: RecProblem | None = None
        self._features: np.ndarray | None = None

    # ------------------------------------------------------------------ model
    def _reset(self, dim: int) -> None:
        self.A_inv = np.repeat(np.eye(dim)[None] / self.ridge, self.n_templates, axis=0)
        self.b = np.zeros((self.n_templates, dim))
        self.pulls[:] = 0
        self.rewards = []

    @staticmethod
    def _with_bias(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)

    def theta(self) -> np.ndarray:
        """``(n_templates, dim + 1)`` ridge estimates (the last weight is the intercept)."""
        if self.A_inv is None or self.b is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(...) first")
        return np.einsum("kij,kj->ki", self.A_inv, self.b)

    def expected_rewards(self, x: np.ndarray) -> np.ndarray:
        """Estimated reward of every template. Shapes: ``(n, dim) -> (n, n_templates)``."""
        return self._with_bias(np.asarray(x, dtype=np.float64)) @ self.theta().T

    def _update(self, x: np.ndarray, arms: np.ndarray, rewards: np.ndarray) -> None:
        assert self.A_inv is not None and self.b is not None
        for row, arm, reward in zip(self._with_bias(x), arms, rewards):
            a_inv = self.A_inv[arm]
            v = a_inv @ row
            # Sherman-Morrison: (A + x x^T)^-1 = A^-1 - A^-1 x x^T A^-1 / (1 + x^T A^-1 x)
            a_inv -= np.outer(v, v) / (1.0 + row @ v)
            self.b[arm] += reward * row
            self.pulls[arm] += 1

    def _explore(self, x: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------ training
    def fit(
        self,
        problem: RecProblem,
        ranker: Ranker,
        users: Sequence[int] | np.ndarray,
        features: np.ndarray,
        steps: int,
        seed: int = 0,
    ) -> _LinearBandit:
        """Learn online for ``steps`` episodes (one user and one template each).

        Users are drawn uniformly with replacement from ``users``; each batch of ``batch_size``
        episodes is one :meth:`RecProblem.run` (one ``ranker.rank`` call), rewarded with the
        breakdown's ``total`` exactly as the env rewards PPO.

        Args:
            problem: The problem (tasks, masks, reward).
            ranker: The frozen ranker (usually cached).
            users: Training users.
            features: ``(n_users, dim)`` feature table indexed by user (:func:`bandit_features`).
            steps: Episodes (the PPO budget ``total_timesteps`` for an equal-cost comparison).
            seed: Seed of user sampling, exploration and tie-breaking.

        Raises:
            ValueError: Empty ``users``, ``steps < 1`` or a feature table of the wrong height.
        """
        users = np.asarray(users, dtype=np.int64)
        features = np.asarray(features, dtype=np.float64)
        if users.size == 0:
            raise ValueError("fit needs at least one training user")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if features.ndim != 2 or features.shape[0] != problem.data.n_users:
            raise ValueError(
                f"features must be (n_users={problem.data.n_users}, dim), got {features.shape}"
            )
        if problem.n_templates != self.n_templates:
            raise ValueError(
                f"the selector has {self.n_templates} templates but the problem {problem.n_templates}"
            )
        self._problem, self._features = problem, features
        self._reset(features.shape[1] + 1)
        rng = np.random.default_rng(seed)
        done = 0
        bar = progress_bar(total=steps, desc=f"{self.name}: fitting", unit="episode")
        while done < steps:
            batch = rng.choice(users, size=min(self.batch_size, steps - done))
            x = features[batch]
            masks = np.stack([problem.action_mask(int(u)) for u in batch])
            arms = self._explore(x, masks, rng)
            outcomes = problem.run(batch, arms, ranker)
            keep = np.array([o is not None for o in outcomes])
            rewards = np.array([o.reward.total for o in outcomes if o is not None], dtype=np.float64)
            self._update(x[keep], arms[keep], rewards)
            self.rewards.extend(rewards.tolist())
            done += len(batch)
            bar.update(len(batch))
        bar.close()
        logger.info("%s: %d episodes, mean training reward %.4f", self.name, done,
                    float(np.mean(self.rewards)) if self.rewards else float("nan"))
        return self

    # ------------------------------------------------------------------ selection
    def select(self, users: np.ndarray) -> np.ndarray:
        """Greedy template per user among the valid ones. Shapes: ``(n,) -> (n,)`` int64."""
        if self._problem is None or self._features is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(...) first")
        users = np.asarray(users, dtype=np.int64)
        if users.size == 0:
            return np.zeros(0, dtype=np.int64)
        scores = self.expected_rewards(self._features[users])
        masks = np.stack([self._problem.action_mask(int(u)) for u in users])
        return _masked_argmax(scores, masks)


def _masked_argmax(scores: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Row-wise argmax over allowed entries (every row must allow something; else any entry)."""
    allowed = masks.copy()
    allowed[~allowed.any(axis=1)] = True
    return np.where(allowed, scores, -np.inf).argmax(axis=1).astype(np.int64)


def _random_argmax(scores: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Argmax over allowed entries with ties broken uniformly at random."""
    noise = rng.random(scores.shape) * 1e-9
    return _masked_argmax(scores + noise, masks)


class EpsilonGreedySelector(_LinearBandit):
    """Contextual epsilon-greedy over per-template ridge regressions.

    Args:
        n_templates: Actions.
        epsilon: Exploration probability during :meth:`fit`, in ``[0, 1]``.
        ridge: Ridge strength ``lambda``.
        batch_size: Episodes per ranker call during :meth:`fit`.
        name: Name in reports.
    """

    def __init__(
        self,
        n_templates: int,
        *,
        epsilon: float = 0.1,
        ridge: float = 1.0,
        batch_size: int = 8,
        name: str = "epsilon_greedy",
    ) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        super().__init__(n_templates, ridge=ridge, batch_size=batch_size)
        self.epsilon = epsilon
        self.name = name

    def _explore(self, x: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        arms = _random_argmax(self.expected_rewards(x), masks, rng)
        explore = rng.random(len(arms)) < self.epsilon
        for row in np.flatnonzero(explore):
            valid = np.flatnonzero(masks[row])
            arms[row] = rng.choice(valid) if valid.size else rng.integers(self.n_templates)
        return arms


class LinUCBSelector(_LinearBandit):
    """Disjoint LinUCB: one ridge model per template, optimism ``alpha`` times its std.

    Args:
        n_templates: Actions.
        alpha: Width of the confidence bonus (0 = greedy).
        ridge: Ridge strength ``lambda``.
        batch_size: Episodes per ranker call during :meth:`fit`.
        name: Name in reports.
    """

    def __init__(
        self,
        n_templates: int,
        *,
        alpha: float = 1.0,
        ridge: float = 1.0,
        batch_size: int = 8,
        name: str = "linucb",
    ) -> None:
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        super().__init__(n_templates, ridge=ridge, batch_size=batch_size)
        self.alpha = alpha
        self.name = name

    def upper_bounds(self, x: np.ndarray) -> np.ndarray:
        """:math:`\\hat\\theta_a^\\top x + \\alpha \\sqrt{x^\\top A_a^{-1} x}`.

        Shapes: ``(n, dim) -> (n, n_templates)``.
        """
        assert self.A_inv is not None
        xb = self._with_bias(np.asarray(x, dtype=np.float64))
        width = np.sqrt(np.maximum(np.einsum("ni,kij,nj->nk", xb, self.A_inv, xb), 0.0))
        return self.expected_rewards(x) + self.alpha * width

    def _explore(self, x: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _random_argmax(self.upper_bounds(x), masks, rng)
