"""A contextual advantage model over the default template, gated by its own cross-fitted gain.

One scan answers every valid template for every user of a training pool (``pool x templates``
calls, the same as the pool's share of the exhaustive sweep). From it:

1. **The default** is the template with the best mean reward over the pool; as a ranked list, each
   user's default is the first template of the list it can fill (the ranked fallback).
2. **The paired advantage** of template ``t`` for pool user ``u`` is ``reward(u, t) - reward(u,
   default(u))`` on the same task, candidates and shown order: the task's own difficulty cancels,
   which is most of a single target's noise.
3. **A ridge regression per template** predicts the advantage from the user's features (the
   profile statistics, optionally the LightGCN embedding), standardised over the pool.
4. **The gate**: a user deviates to ``argmax_t`` of the predicted gain where it exceeds a margin.
   The margin is chosen on *out-of-fold* predictions (K-fold cross-fitting over pool users: each
   user's gain is predicted by a model that never saw the user), whose realised gain is known from
   the scan at no further cost. A margin is accepted only when the bootstrap lower bound
   (``level``) of that realised per-user gain is above 0; otherwise the selector never deviates
   and is exactly the default.

No call beyond the scan; the rule (margin, out-of-fold gain and its bound) is kept in :attr:`rule`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from promptopt.bandits import Standardiser

if TYPE_CHECKING:
    from promptopt.llm.types import Ranker
    from promptopt.problem import RecProblem

logger = logging.getLogger(__name__)

MARGINS: tuple[float, ...] = (0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12)
"""Margins of predicted gain the gate may deviate at (chosen out of fold)."""


def _ridge(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Weights ``[intercept, *coef]`` of ridge regression (the intercept is not shrunk)."""
    a = np.column_stack([np.ones(len(x)), x])
    penalty = ridge * np.eye(a.shape[1])
    penalty[0, 0] = 0.0
    return np.linalg.solve(a.T @ a + penalty + 1e-9 * np.eye(a.shape[1]), a.T @ y)


def _bootstrap_lower(d: np.ndarray, level: float, n: int, seed: int) -> float:
    means = d[np.random.default_rng(seed).integers(0, d.size, (n, d.size))].mean(axis=1)
    return float(np.quantile(means, 1.0 - level))


class AdvantageSelector:
    """Default template unless a cross-fitted model of the gain over it validates a deviation.

    Args:
        n_templates: Catalog size.
        ridge: Ridge penalty of each template's advantage regression (standardised features).
        folds: Cross-fitting folds over pool users (>= 2).
        margins: Predicted-gain margins the gate may deviate at.
        level: One-sided confidence of the bootstrap lower bound that must be > 0.
        n_bootstrap: Bootstrap resamples.
        name: Selector name.
    """

    def __init__(
        self,
        n_templates: int,
        *,
        ridge: float = 10.0,
        folds: int = 5,
        margins: Sequence[float] = MARGINS,
        level: float = 0.95,
        n_bootstrap: int = 2000,
        name: str = "advantage",
    ) -> None:
        if n_templates < 1:
            raise ValueError(f"n_templates must be >= 1, got {n_templates}")
        if ridge <= 0:
            raise ValueError(f"ridge must be > 0, got {ridge}")
        if folds < 2:
            raise ValueError(f"folds must be >= 2, got {folds}")
        if not margins or min(margins) < 0:
            raise ValueError(f"margins must be a non-empty list of values >= 0, got {list(margins)}")
        if not 0.5 <= level < 1.0:
            raise ValueError(f"level must be in [0.5, 1), got {level}")
        self.n_templates, self.ridge, self.folds = n_templates, ridge, folds
        self.margins, self.level, self.n_bootstrap, self.name = tuple(margins), level, n_bootstrap, name
        self.order: list[int] = []
        self.rule: dict[str, Any] = {}
        self._weights: dict[int, np.ndarray] = {}
        self._features: np.ndarray | None = None
        self._problem: RecProblem | None = None
        self._scaler: Standardiser | None = None

    # ------------------------------------------------------------------ fitting
    def fit(
        self, problem: RecProblem, ranker: Ranker, users: Sequence[int] | np.ndarray, features: np.ndarray,
        *, seed: int = 0, scores: np.ndarray | None = None,
    ) -> AdvantageSelector:
        """Scan ``users`` with every template (or use ``scores``), fit the models and the gate.

        Args:
            problem: The problem (tasks, masks, reward).
            ranker: The frozen ranker (the scan's calls).
            users: The training pool.
            features: ``(n_users, d)`` feature table of every user (e.g.
                :func:`promptopt.bandits.bandit_features`); rows are read by user index.
            seed: Folds and bootstrap.
            scores: A scan already paid for (``template_scores(problem, ranker, users)[0]``).

        A pool of fewer than ``2 x folds`` users cannot be cross-fitted: the selector is then the
        default and its rule says why. Raises ``ValueError`` for an empty pool.
        """
        from promptopt.selectors import template_scores

        users = np.asarray(users, dtype=np.int64)
        if users.size == 0:
            raise ValueError("the advantage model needs at least one pool user")
        self._problem, self._features = problem, np.asarray(features, dtype=np.float64)
        if scores is None:
            scores, _ = template_scores(problem, ranker, users)
        valid = np.isfinite(scores)
        counts = valid.sum(axis=0)
        sums = np.where(valid, scores, 0.0).sum(axis=0)
        means = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
        self.order = [int(t) for t in np.argsort(-means, kind="stable")]
        self._scaler = Standardiser.fit(self._features[users])
        ids = problem.catalog.ids
        if users.size < 2 * self.folds:  # too few users to cross-fit: nothing can be validated
            self.rule = {"default": ids[self.order[0]], "order": [ids[t] for t in self.order], "margin": None,
                         "validated_on": f"nothing: {users.size} pool users, {2 * self.folds} needed for "
                                         f"{self.folds} folds", "validated_gain": 0.0, "lower_bound": 0.0,
                         "level": self.level, "deviates_out_of_fold": 0.0}
            logger.info("%s: default %s, never deviates (%s)", self.name, ids[self.order[0]],
                        self.rule["validated_on"])
            return self
        default = self._defaults(valid)
        rows = np.arange(users.size)
        adv = scores - scores[rows, default][:, None]  # nan where invalid
        xs = self._scaler.transform(self._features[users])
        fold = np.random.default_rng(seed).permutation(users.size) % self.folds
        oof = np.full_like(adv, -np.inf)
        for k in range(self.folds):
            held = fold == k
            weights = self._fit_models(xs[~held], adv[~held], default[~held])
            oof[held] = self._gains(weights, xs[held], valid[held], default[held])
        best_margin, best = None, {"gain": 0.0, "lower": 0.0, "deviates": 0.0}
        for margin in self.margins:
            choice = self._choose(oof, default, margin)
            realised = np.where(choice == default, 0.0, adv[rows, choice])
            if not np.any(realised):
                continue
            lower = _bootstrap_lower(realised, self.level, self.n_bootstrap, seed)
            if lower > 0 and realised.mean() > best["gain"]:
                best_margin = margin
                best = {"gain": float(realised.mean()), "lower": lower,
                        "deviates": float(np.mean(choice != default))}
        self._weights = self._fit_models(xs, adv, default)
        self.rule = {
            "default": ids[self.order[0]], "order": [ids[t] for t in self.order],
            "margin": best_margin,
            "validated_on": f"out-of-fold pool users ({self.folds} folds, {users.size} users)",
            "validated_gain": best["gain"], "lower_bound": best["lower"], "level": self.level,
            "deviates_out_of_fold": best["deviates"],
        }
        logger.info("%s: default %s, margin %s (out-of-fold gain %.4f, lower bound %.4f)", self.name,
                    ids[self.order[0]], best_margin, best["gain"], best["lower"])
        return self

    def _defaults(self, valid: np.ndarray) -> np.ndarray:
        """Per row: the first template of :attr:`order` that is valid (the first of the list if none)."""
        out = np.full(len(valid), self.order[0], dtype=np.int64)
        for i, row in enumerate(valid):
            out[i] = next((t for t in self.order if row[t]), self.order[0])
        return out

    def _fit_models(self, xs: np.ndarray, adv: np.ndarray, default: np.ndarray) -> dict[int, np.ndarray]:
        weights = {}
        for t in range(self.n_templates):
            ok = np.isfinite(adv[:, t]) & (default != t)
            if ok.sum() >= 3:
                weights[t] = _ridge(xs[ok], adv[ok, t], self.ridge)
        return weights

    @staticmethod
    def _gains(
        weights: dict[int, np.ndarray], xs: np.ndarray, valid: np.ndarray, default: np.ndarray
    ) -> np.ndarray:
        """``(n, n_templates)`` predicted gain over each row's default (``-inf``: invalid or no model)."""
        gains = np.full(valid.shape, -np.inf)
        design = np.column_stack([np.ones(len(xs)), xs])
        for t, w in weights.items():
            gains[:, t] = design @ w
        gains[~valid] = -np.inf
        gains[np.arange(len(xs)), default] = 0.0
        return gains

    @staticmethod
    def _choose(gains: np.ndarray, default: np.ndarray, margin: float) -> np.ndarray:
        best = gains.argmax(axis=1)
        top = gains[np.arange(len(gains)), best]
        return np.where((best != default) & (top > margin), best, default).astype(np.int64)

    # ------------------------------------------------------------------ selecting
    def predicted_gains(self, users: np.ndarray) -> np.ndarray:
        """``(len(users), n_templates)`` predicted gain over each user's default (``-inf`` invalid)."""
        if self._problem is None or self._scaler is None or self._features is None:
            raise RuntimeError("call fit() first")
        users = np.asarray(users, dtype=np.int64)
        valid = np.stack([self._problem.action_mask(int(u)) for u in users])
        xs = self._scaler.transform(self._features[users])
        return self._gains(self._weights, xs, valid, self._defaults(valid))

    def select(self, users: np.ndarray) -> np.ndarray:
        if self._problem is None:
            raise RuntimeError("call fit() first")
        users = np.asarray(users, dtype=np.int64)
        valid = np.stack([self._problem.action_mask(int(u)) for u in users])
        default = self._defaults(valid)
        margin = self.rule.get("margin")
        if margin is None:
            return default
        return self._choose(self.predicted_gains(users), default, margin)
