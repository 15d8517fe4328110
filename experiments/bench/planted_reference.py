"""The informed reference of the planted benchmark: how much of the plant a budget can find at all.

It is **not a learner**: it reads the plant's best fixed template ``f``, its planted template ``t*``
and the statistic the plant is tied to, so only the threshold on that statistic is left to learn.
It spends the whole budget on paired answers ``(f, t*)`` of training users (their episode targets,
then their other logged target), sorts them by the statistic, and deviates to ``t*`` above the
threshold that maximises the summed paired gain (never, when no threshold gains). What it captures
bounds what any learner that must also find ``f``, ``t*`` and the statistic can expect at that
budget and that noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from promptopt.experiments.bench.planted import Plant, table_rows

from promptopt.profile import PROFILE_FEATURES
from promptopt.runner import Episode


class InformedReference:
    """Threshold on the plant's statistic, learned from paired ``(f, t*)`` answers (see module doc)."""

    name = "informed_reference"

    def __init__(self, problem: Any, plant: Plant) -> None:
        if plant.tie not in PROFILE_FEATURES:
            raise ValueError(f"the informed reference needs a profile statistic as tie, got {plant.tie!r}")
        self.problem, self.plant = problem, plant
        self.column = 1 + PROFILE_FEATURES.index(plant.tie)
        self.threshold = float("inf")

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
        stat, gain = [], []
        for i, (u, r) in enumerate(slots):
            f, star = outcomes[2 * i], outcomes[2 * i + 1]
            if f is None or star is None or not (f.valid and star.valid):
                continue
            stat.append(float(problem.observation(u, row=r)[self.column]))
            gain.append(star.metrics["base"]["ndcg@10"] - f.metrics["base"]["ndcg@10"])
        if gain:
            order = np.argsort(-np.asarray(stat), kind="stable")
            summed = np.cumsum(np.asarray(gain)[order])
            best = int(np.argmax(summed))
            if summed[best] > 0:
                self.threshold = float(np.asarray(stat)[order][best])
        return self

    def select(self, users: np.ndarray) -> np.ndarray:
        plant, problem = self.plant, self.problem
        out = np.full(len(users), plant.best, dtype=np.int64)
        for i, u in enumerate(users):
            obs, mask = problem.observation(int(u)), problem.action_mask(int(u))
            if obs[self.column] >= self.threshold and mask[plant.template]:
                out[i] = plant.template
        return out
