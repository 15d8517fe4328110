"""Candidate lists: the held-out target plus sampled negatives, in a shuffled shown order."""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

import numpy as np

from promptopt.errors import NotEnoughNegatives

NegativeStrategy = Literal["uniform", "popularity"]


class CandidateSampler:
    """Draws ``n_negatives`` items a user never interacted with, then shuffles them with the target.

    Args:
        n_items: Size of the item catalogue.
        n_negatives: Negatives per task (LLMRank and the study use 19, i.e. 20 candidates).
        strategy: ``"uniform"`` over eligible items, or ``"popularity"``: proportional to
            ``popularity + 1`` (popularity counted on training interactions only).
        popularity: ``(n_items,)`` interaction counts; required for ``"popularity"``.
        item_pool: Restrict negatives to these items (e.g. items newer than the history).
    """

    def __init__(
        self,
        n_items: int,
        n_negatives: int = 19,
        strategy: NegativeStrategy = "uniform",
        popularity: np.ndarray | None = None,
        item_pool: np.ndarray | None = None,
    ) -> None:
        if n_negatives < 1:
            raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
        if strategy not in ("uniform", "popularity"):
            raise ValueError(f"strategy must be 'uniform' or 'popularity', got {strategy!r}")
        if strategy == "popularity" and popularity is None:
            raise ValueError("strategy 'popularity' needs the item popularity counts")
        self.n_items = n_items
        self.n_negatives = n_negatives
        self.strategy = strategy
        pool = np.arange(n_items) if item_pool is None else np.asarray(item_pool, dtype=np.int64)
        self._pool = pool
        self._popularity = popularity
        if strategy == "popularity":
            assert popularity is not None
            weights = np.asarray(popularity, dtype=np.float64)[pool] + 1.0
            self._cdf = np.cumsum(weights / weights.sum())
        else:
            self._cdf = None

    def within(self, items: np.ndarray) -> CandidateSampler:
        """The same sampler with its pool narrowed to ``items`` (same strategy and weights)."""
        pool = np.intersect1d(self._pool, np.asarray(items, dtype=np.int64))
        return CandidateSampler(self.n_items, self.n_negatives, self.strategy, self._popularity,
                                item_pool=pool)

    def sample(
        self, target: int, exclude: Collection[int], rng: np.random.Generator
    ) -> tuple[int, ...]:
        """Candidates in shown order: ``target`` plus negatives outside ``exclude``, shuffled.

        Raises:
            NotEnoughNegatives: Fewer eligible items than ``n_negatives`` (a ``ValueError`` too).
        """
        # tolist() turns a seen-items array into Python ints in one call (the per-task hot path).
        banned = set(exclude.tolist()) if isinstance(exclude, np.ndarray) else {int(x) for x in exclude}
        banned.add(int(target))
        chosen: list[int] = []
        seen: set[int] = set()
        # Rejection sampling: users have seen a small share of the catalogue, so this is fast;
        # the attempt cap turns a too-small pool into a clear error instead of a hang.
        for _ in range(50):
            need = self.n_negatives - len(chosen)
            if need == 0:
                break
            draw = self._draw(rng, 2 * need + 8)
            for item in draw:
                item = int(item)
                if item not in banned and item not in seen:
                    seen.add(item)
                    chosen.append(item)
                    if len(chosen) == self.n_negatives:
                        break
        if len(chosen) < self.n_negatives:
            eligible = np.setdiff1d(self._pool, np.fromiter(banned | seen, dtype=np.int64))
            missing = self.n_negatives - len(chosen)
            if eligible.size < missing:
                raise NotEnoughNegatives(
                    f"only {eligible.size + len(chosen)} eligible negatives for target item {target}, "
                    f"need {self.n_negatives}: lower split.n_negatives"
                )
            chosen.extend(int(x) for x in rng.choice(eligible, size=missing, replace=False))
        shown = np.array([int(target), *chosen], dtype=np.int64)
        rng.shuffle(shown)
        return tuple(int(x) for x in shown)

    def _draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if self._cdf is None:
            return self._pool[rng.integers(0, len(self._pool), size=size)]
        idx = np.searchsorted(self._cdf, rng.random(size), side="right")
        return self._pool[np.minimum(idx, len(self._pool) - 1)]
