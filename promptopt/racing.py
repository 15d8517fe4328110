"""A sequential design for per-user template choice under a call budget: race, then paired stumps.

:class:`~promptopt.advantage.AdvantageSelector` answers every template for every user of a pool:
most of its budget goes to templates that are clearly worse than the default. This selector spends
the same budget adaptively (every answer through the run's cached ranker; ``calls`` bounds the
requests it sends):

1. **Race.** Training users' episode targets, in a seeded order, answer *every* template they
   can fill, in batches, until ``race_share`` of the budget is spent. The leader (best mean
   reward) and the ``challengers`` next best are the only templates compared further (a template
   far below the leader on average would need a very large gain on some users to pay anywhere).
2. **Paired comparisons.** The rest of the budget answers the leader and the challengers, and
   only them, on further tasks: the episode targets of users not yet seen, then every training
   user's other targets (``targets`` per user, :meth:`RecProblem.training_rows`), so the same
   budget buys about ``n_templates / (1 + challengers)`` times more paired comparisons. The
   **default** is the compared template with the best mean reward over all these tasks (race and
   paired), and the default's first fallbacks are the other compared templates.
3. **A stump of the paired advantage.** For challenger ``c`` and default ``d`` on the same task,
   candidates and shown order, the **graded signal** ``s = (g_c - g_d) + (1 - beta) (g_d - mean
   g_d)``, with ``g`` the ``graded`` metric (default MRR: the reciprocal rank of the target over
   the whole ranking, not only whether it is in the top 10) and ``beta = cov(g_d, g_c) / var(g_d)``
   (the control-variate coefficient, estimated from the same answers), has less noise than the
   reward difference (on the planted benchmark's real answers: a planted-vs-other contrast 1.2x
   larger relative to its noise than the NDCG@10 difference's). A least-squares regression stump
   of ``s`` (one profile statistic, one threshold) proposes where ``c`` differs; each side of the
   split then gets the compared template (the default or a challenger) with the best mean *reward*
   there, so the rule does not depend on which of two close templates led the race. The
   challenger whose split gains most reward over the default is kept.
4. **Cross-fitted gate.** Users are split into ``folds``; each fold's rule is fitted on the other
   folds and applied to the held-out users, whose realised reward gain (0 where the rule keeps
   the default) is known from their answers at no further cost. The rule is accepted only when
   the bootstrap lower bound (one-sided ``level``, over users) of that gain is above 0; otherwise
   the selector never deviates and is exactly the default (a ranked fallback list: the race's
   template means).

The rule (default, challengers, feature, threshold, the template of each side, out-of-fold gain and
bound, calls spent) is kept in :attr:`rule`; a user whose side's template is the default, or who
cannot fill it, gets the default.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from promptopt.advantage import _bootstrap_lower
from promptopt.runner import Episode

if TYPE_CHECKING:
    from promptopt.llm.types import Ranker
    from promptopt.problem import RecProblem

logger = logging.getLogger(__name__)

Stump = tuple[int, float, int, int]
"""``(feature column, threshold, template where x >= threshold, template where x < threshold)``."""
GRADED_METRICS = ("mrr", "ndcg@10", "ndcg@5", "ndcg@1", "reward")
"""Signals the stumps may be fitted on (base-view metrics, or the reward total itself)."""


class RacingSelector:
    """Race the templates, compare the leader and its challengers in pairs, gate a stump (see module).

    Args:
        n_templates: Catalog size.
        challengers: Templates behind the leader a user may deviate to (>= 1).
        race_share: Share of the budget the race spends, in ``(0, 1)``.
        batch: Tasks per race round (the budget is checked between rounds).
        targets: Targets per training user (``RecProblem.training_rows``), >= 1.
        folds: Cross-fitting folds over users (>= 2).
        level: One-sided confidence of the out-of-fold gain's lower bound that must be > 0.
        graded: The stumps' signal (:data:`GRADED_METRICS`).
        min_leaf: Smallest share of the compared tasks on either side of a stump.
        n_bootstrap: Bootstrap resamples.
        name: Selector name.
    """

    def __init__(
        self,
        n_templates: int,
        *,
        challengers: int = 2,
        race_share: float = 0.45,
        batch: int = 40,
        targets: int = 2,
        folds: int = 5,
        level: float = 0.95,
        graded: str = "mrr",
        min_leaf: float = 0.1,
        n_bootstrap: int = 2000,
        name: str = "racing",
    ) -> None:
        checks = (
            (n_templates >= 1, f"n_templates must be >= 1, got {n_templates}"),
            (
                1 <= challengers < max(n_templates, 2),
                f"challengers must be in [1, n_templates), got {challengers}",
            ),
            (0.0 < race_share < 1.0, f"race_share must be in (0, 1), got {race_share}"),
            (batch >= 1, f"batch must be >= 1, got {batch}"),
            (targets >= 1, f"targets must be >= 1, got {targets}"),
            (folds >= 2, f"folds must be >= 2, got {folds}"),
            (0.5 <= level < 1.0, f"level must be in [0.5, 1), got {level}"),
            (graded in GRADED_METRICS, f"graded must be one of {', '.join(GRADED_METRICS)}, got {graded!r}"),
            (0.0 < min_leaf < 0.5, f"min_leaf must be in (0, 0.5), got {min_leaf}"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.n_templates, self.challengers, self.race_share = n_templates, challengers, race_share
        self.batch, self.targets, self.folds, self.level = batch, targets, folds, level
        self.graded, self.min_leaf, self.n_bootstrap, self.name = graded, min_leaf, n_bootstrap, name
        self.order: list[int] = []
        self.rule: dict[str, Any] = {}
        self._stump: Stump | None = None
        self._problem: RecProblem | None = None
        self._features: np.ndarray | None = None

    # ------------------------------------------------------------------ answering
    def fit(
        self,
        problem: RecProblem,
        ranker: Ranker,
        users: Sequence[int] | np.ndarray,
        features: np.ndarray,
        calls: int,
        *,
        seed: int = 0,
    ) -> RacingSelector:
        """Spend at most ``calls`` requests on ``users``' tasks, then fit and gate the rule.

        Args:
            problem: The problem (tasks, masks, reward).
            ranker: The frozen (cached) ranker.
            users: Training users.
            features: ``(n_users, d)`` feature table read by user index (profile statistics:
                :func:`promptopt.bandits.bandit_features` without embeddings).
            calls: The budget in ranker requests (each answered template of a task costs
                ``problem.calls_per_episode``).
            seed: The users' order, the folds and the bootstrap.

        Raises:
            ValueError: No user, or a budget too small for one round of the race.
        """
        users = np.asarray(users, dtype=np.int64)
        if users.size == 0:
            raise ValueError("the racing selector needs at least one training user")
        self._problem, self._features = problem, np.asarray(features, dtype=np.float64)
        rng = np.random.default_rng(seed)
        order = rng.permutation(users)
        rows = {int(u): problem.training_rows(int(u), self.targets) for u in order}
        slots = [
            (int(u), rows[int(u)][k]) for k in range(self.targets) for u in order if k < len(rows[int(u)])
        ]
        cost = problem.calls_per_episode
        spent, answers, users_of, i = 0, [], [], 0  # answers[slot]: template -> (reward, graded)

        def answer(chunk: list[tuple[int, int]], templates: Sequence[int] | None) -> int:
            episodes, owners = [], []
            for k, (user, row) in enumerate(chunk):
                mask = problem.action_mask(user, row=row)
                for t in range(self.n_templates) if templates is None else templates:
                    if mask[t]:
                        episodes.append(Episode(user, int(t), row=row))
                        owners.append((k, int(t)))
            got: list[dict[int, tuple[float, float]]] = [{} for _ in chunk]
            for (k, t), outcome in zip(owners, problem.run_episodes(episodes, ranker) if episodes else []):
                if outcome is not None and outcome.valid:
                    reward = float(outcome.reward.total)
                    graded = (
                        reward if self.graded == "reward" else float(outcome.metrics["base"][self.graded])
                    )
                    got[k][t] = (reward, graded)
            answers.extend(got)
            users_of.extend(user for user, _ in chunk)
            return len(episodes) * cost

        race_budget = self.race_share * calls

        def price(user: int, row: int) -> int:
            return int(problem.action_mask(user, row=row).sum()) * cost

        while i < len(slots) and spent < race_budget:
            # A round of `batch` tasks, cut short where it would pass the race's share (the first
            # task is always raced) or the whole budget.
            chunk, need = [], 0
            for user, row in slots[i : i + self.batch]:
                more = price(user, row)
                if spent + need + more > calls or (chunk and spent + need + more > race_budget):
                    break
                chunk.append((user, row))
                need += more
            if not chunk:
                break
            spent += answer(chunk, None)
            i += len(chunk)
        if not answers:
            raise ValueError(f"a budget of {calls} calls does not pay for the race's first task")
        race = len(answers)
        means = self._means(answers)
        self.order = [int(t) for t in np.argsort(-np.nan_to_num(means, nan=-np.inf), kind="stable")]
        default, rivals = (
            self.order[0],
            [t for t in self.order[1 : 1 + self.challengers] if np.isfinite(means[t])],
        )
        compared = [default, *rivals]
        while i < len(slots) and rivals:
            user, row = slots[i]
            need = int(problem.action_mask(user, row=row)[compared].sum()) * cost
            if spent + need > calls:
                break
            spent += answer([slots[i]], compared)
            i += 1
        # The compared templates were answered on every task since the race: re-rank them on all
        # those tasks (several times the race's), the rest keep the race's order behind them.
        both = [a for a in answers if all(t in a for t in compared)]
        if rivals and both:
            ranked = sorted(compared, key=lambda t: -np.mean([a[t][0] for a in both]))
            self.order = ranked + [t for t in self.order if t not in compared]
            default, rivals = ranked[0], ranked[1:]
        self._fit_rule(answers, np.array(users_of), default, rivals, rng, seed)
        ids = problem.catalog.ids
        self.rule.update(
            {
                "default": ids[default],
                "order": [ids[t] for t in self.order],
                "challengers": [ids[t] for t in rivals],
                "race_tasks": race,
                "paired_tasks": len(answers) - race,
                "calls": spent,
                "budget": calls,
            }
        )
        logger.info("%s: %s", self.name, self.rule)
        return self

    @staticmethod
    def _means(answers: list[dict[int, tuple[float, float]]]) -> np.ndarray:
        templates = {t for a in answers for t in a}
        out = np.full(max(templates, default=0) + 1, np.nan)
        for t in templates:
            out[t] = np.mean([a[t][0] for a in answers if t in a])
        return out

    # ------------------------------------------------------------------ the rule
    def _fit_rule(
        self,
        answers: list[dict[int, tuple[float, float]]],
        users_of: np.ndarray,
        default: int,
        rivals: list[int],
        rng: np.random.Generator,
        seed: int,
    ) -> None:
        self._stump = None
        self.rule = {
            "feature": None,
            "threshold": None,
            "above": None,
            "below": None,
            "validated_gain": 0.0,
            "lower_bound": 0.0,
            "level": self.level,
            "validated_on": "out-of-fold training users",
        }
        assert self._features is not None and self._problem is not None
        uniq = np.unique(users_of)
        if not rivals or uniq.size < 2 * self.folds:
            self.rule["validated_on"] = (
                f"nothing: {uniq.size} users, {2 * self.folds} needed for {self.folds} folds"
            )
            return
        fold_of = dict(zip(uniq.tolist(), (rng.permutation(uniq.size) % self.folds).tolist()))
        fold = np.array([fold_of[int(u)] for u in users_of])
        realised = np.zeros(len(answers))
        for k in range(self.folds):
            stump = self._best_stump(answers, users_of, fold != k, default, rivals)
            if stump is None:
                continue
            for q in np.flatnonzero(fold == k):
                realised[q] = self._gain(stump, answers[q], int(users_of[q]), default)
        per_user = np.array([realised[users_of == u].mean() for u in uniq])
        lower = _bootstrap_lower(per_user, self.level, self.n_bootstrap, seed) if np.any(per_user) else 0.0
        self.rule.update(validated_gain=float(per_user.mean()), lower_bound=float(lower))
        if lower <= 0:
            return
        stump = self._best_stump(answers, users_of, np.ones(len(answers), dtype=bool), default, rivals)
        if stump is None:
            return
        from promptopt.profile import PROFILE_FEATURES

        self._stump = stump
        j, threshold, above, below = stump
        names, ids = list(PROFILE_FEATURES), self._problem.catalog.ids
        self.rule.update(
            feature=names[j] if self._features.shape[1] == len(names) else j,
            threshold=threshold,
            above=ids[above],
            below=ids[below],
        )

    def _best_stump(
        self,
        answers: list[dict[int, tuple[float, float]]],
        users_of: np.ndarray,
        use: np.ndarray,
        default: int,
        rivals: list[int],
    ) -> Stump | None:
        """The split with the largest total reward gain over the default on the ``use`` tasks.

        Each challenger's graded signal proposes a split (:func:`_stump`); each side of it gets the
        compared template (default or challenger) with the best mean reward there. ``None``: no
        split gains.
        """
        assert self._features is not None
        compared = [default, *rivals]
        idx = np.array(
            [q for q in np.flatnonzero(use) if all(t in answers[q] for t in compared)], dtype=np.int64
        )
        if idx.size < 20:
            return None
        x = self._features[users_of[idx]]
        reward = np.array([[answers[q][t][0] for t in compared] for q in idx]) - np.array(
            [[answers[q][default][0]] for q in idx]
        )
        g_d = np.array([answers[q][default][1] for q in idx])
        best, best_total = None, 1e-12
        for t in rivals:
            g_c = np.array([answers[q][t][1] for q in idx])
            var = g_d.var()
            beta = float(np.clip(np.cov(g_d, g_c)[0, 1] / var, 0.0, 1.0)) if var > 1e-12 else 1.0
            signal = (g_c - g_d) + (1.0 - beta) * (g_d - g_d.mean())
            split = _stump(x, signal, max(2, int(np.ceil(self.min_leaf * idx.size))))
            if split is None:
                continue
            j, threshold, _ = split
            side = x[:, j] >= threshold
            up, down = reward[side].sum(axis=0), reward[~side].sum(axis=0)  # per compared template
            total = float(up.max() + down.max())
            if total > best_total:
                best = (j, threshold, compared[int(up.argmax())], compared[int(down.argmax())])
                best_total = total
        return best

    def _gain(self, stump: Stump, answer: dict[int, tuple[float, float]], user: int, default: int) -> float:
        assert self._features is not None
        t = self._leaf(stump, user)
        if t != default and t in answer and default in answer:
            return answer[t][0] - answer[default][0]
        return 0.0

    def _leaf(self, stump: Stump, user: int) -> int:
        assert self._features is not None
        j, threshold, above, below = stump
        return above if self._features[user, j] >= threshold else below

    # ------------------------------------------------------------------ selecting
    def select(self, users: np.ndarray) -> np.ndarray:
        if self._problem is None or self._features is None:
            raise RuntimeError("call fit() first")
        users = np.asarray(users, dtype=np.int64)
        out = np.zeros(users.size, dtype=np.int64)
        for i, u in enumerate(users):
            mask = self._problem.action_mask(int(u))
            out[i] = next((t for t in self.order if mask[t]), self.order[0])
            if self._stump is not None and out[i] == self.order[0]:
                t = self._leaf(self._stump, int(u))
                if mask[t]:
                    out[i] = t
        return out


def _stump(x: np.ndarray, s: np.ndarray, min_leaf: int) -> tuple[int, float, bool] | None:
    """Least-squares regression stump of ``s`` on one column of ``x``: ``(column, threshold, above)``,
    ``above`` when the side ``x >= threshold`` has the larger mean of ``s`` (``None``: no valid split)."""
    n = len(s)
    best, out = -np.inf, None
    centred = s - s.mean()
    for j in range(x.shape[1]):
        order = np.argsort(-x[:, j], kind="stable")
        xs = x[order, j]
        top = np.cumsum(centred[order])[:-1]  # sum over the k + 1 largest values
        k = np.arange(1, n)
        ok = (k >= min_leaf) & (n - k >= min_leaf) & (xs[:-1] != xs[1:])
        if not ok.any():
            continue
        score = np.where(ok, top**2 * n / (k * (n - k)), -np.inf)  # between-group sum of squares
        i = int(np.argmax(score))
        if score[i] > best:
            best, out = score[i], (j, float(xs[i]), bool(top[i] > 0))
    return out
