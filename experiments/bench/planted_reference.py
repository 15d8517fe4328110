"""The informed reference of the planted benchmark: how much of the plant a budget can find at all.

It is **not a learner**: it reads the plant's best fixed template ``f``, its planted template ``t*``
and the statistic the plant is tied to, so only the threshold on that statistic is left to learn.
It spends the whole budget on paired answers ``(f, t*)`` of training users (their episode targets,
then their other logged target), sorts them by the statistic, and deviates to ``t*`` above the
threshold that maximises the summed paired gain (never, when no threshold gains). What it captures
bounds what any learner that must also find ``f``, ``t*`` and the statistic can expect at that
budget and that noise — as far as its threshold rule goes.

``estimator="stump"`` (``informed_stump``) reads the same answers with a better rule: the
change point of a least-squares stump (:func:`promptopt.racing._stump`) on the graded signal
(the MRR difference with ``f``'s MRR as a control variate, as :class:`~promptopt.racing.RacingSelector`
fits), deviating on the side with the larger signal when its mean paired NDCG@10 gain is > 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from promptopt.experiments.bench.planted import Plant, table_rows
from promptopt.profile import PROFILE_FEATURES
from promptopt.runner import Episode


class InformedReference:
    """Threshold on the plant's statistic, learned from paired ``(f, t*)`` answers (see module doc)."""

    def __init__(self, problem: Any, plant: Plant, *, estimator: str = "summed") -> None:
        if plant.tie not in PROFILE_FEATURES:
            raise ValueError(f"the informed reference needs a profile statistic as tie, got {plant.tie!r}")
        if estimator not in ("summed", "stump"):
            raise ValueError(f"estimator must be 'summed' or 'stump', got {estimator!r}")
        self.problem, self.plant, self.estimator = problem, plant, estimator
        self.name = "informed_reference" if estimator == "summed" else "informed_stump"
        self.column = 1 + PROFILE_FEATURES.index(plant.tie)
        self.threshold = float("inf")
        self.above = True

    def fit(self, ranker: Any, users: np.ndarray, calls: int) -> InformedReference:
        """Spend ``calls`` (two per pair) on pairs of ``users``, episode targets first."""
        problem, plant = self.problem, self.plant
        slots: list[tuple[int, int]] = []
        for back in (1, 0):  # the episode target (second-to-last), then the last interaction
            for u in users:
                rows = table_rows(problem, int(u))
                if back < len(rows):
                    slots.append((int(u), rows[back]))
        slots = slots[: max(calls // 2, 0)]
        episodes = [Episode(u, t, row=r) for u, r in slots for t in (plant.best, plant.template)]
        outcomes = problem.run_episodes(episodes, ranker) if episodes else []
        stat, gain, graded = [], [], []
        for i, (u, r) in enumerate(slots):
            f, star = outcomes[2 * i], outcomes[2 * i + 1]
            if f is None or star is None or not (f.valid and star.valid):
                continue
            stat.append(float(problem.observation(u, row=r)[self.column]))
            gain.append(star.metrics["base"]["ndcg@10"] - f.metrics["base"]["ndcg@10"])
            graded.append((f.metrics["base"]["mrr"], star.metrics["base"]["mrr"]))
        if gain and self.estimator == "summed":
            order = np.argsort(-np.asarray(stat), kind="stable")
            summed = np.cumsum(np.asarray(gain)[order])
            best = int(np.argmax(summed))
            if summed[best] > 0:
                self.threshold = float(np.asarray(stat)[order][best])
        elif len(gain) >= 20:
            self._fit_stump(np.asarray(stat), np.asarray(gain), np.asarray(graded))
        return self

    def _fit_stump(self, stat: np.ndarray, gain: np.ndarray, graded: np.ndarray) -> None:
        from promptopt.racing import _stump

        g_f, g_star = graded[:, 0], graded[:, 1]
        var = g_f.var()
        beta = float(np.clip(np.cov(g_f, g_star)[0, 1] / var, 0.0, 1.0)) if var > 1e-12 else 1.0
        signal = (g_star - g_f) + (1.0 - beta) * (g_f - g_f.mean())
        split = _stump(stat[:, None], signal, max(2, int(np.ceil(0.1 * stat.size))))
        if split is None:
            return
        _, threshold, above = split
        side = stat >= threshold if above else stat < threshold
        if gain[side].mean() > 0:
            self.threshold, self.above = threshold, above

    def select(self, users: np.ndarray) -> np.ndarray:
        plant, problem = self.plant, self.problem
        out = np.full(len(users), plant.best, dtype=np.int64)
        for i, u in enumerate(users):
            obs, mask = problem.observation(int(u)), problem.action_mask(int(u))
            x = obs[self.column]
            if np.isfinite(self.threshold) and ((x >= self.threshold) == self.above) and mask[plant.template]:
                out[i] = plant.template
        return out
