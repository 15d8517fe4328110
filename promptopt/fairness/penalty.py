r"""The fairness-aware reward: subtract the ranking's instability under stated sensitive attributes.

With ``reward.fairness_weight`` :math:`\lambda > 0`, every episode also sends ``reward.fairness_values``
counterfactual copies of its base request (:mod:`promptopt.fairness.counterfactual`), each stating
one value drawn, without replacement and seeded per episode, from all values of the attribute set
(``fairness.attributes``). The episode's counterfactual instability is

.. math::

    I(u, t) = 1 - \frac{1}{m} \sum_{j=1}^{m} \mathrm{Sim@K}(R_{u,t}, R^{a_j}_{u,t})

with :math:`\mathrm{Sim}` one of FaiRLLM's list similarities (:mod:`promptopt.fairness.similarity`,
``reward.fairness_metric``, at ``K`` = the reward metric's cut-off), and the reward becomes

.. math::

    r(u, t) = r_{\text{accuracy + robustness}}(u, t) - \lambda \, I(u, t)

so PPO (and every selector choosing by reward: the best fixed template, the oracle) prefers prompts
whose rankings do not move with a sensitive attribute. The extra cost is stated and bounded: exactly
``m`` requests per episode (:attr:`CounterfactualPenalty.calls_per_episode`, part of
:attr:`RecProblem.calls_per_episode`, so ``promptopt estimate`` and the budget count them). The same
user's episode gets the same values under every template, so templates are compared on the same copies.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from promptopt.episodes import EpisodeKey
from promptopt.fairness.attributes import AttributeSet
from promptopt.fairness.counterfactual import counterfactual_request
from promptopt.fairness.similarity import similarity_fn
from promptopt.llm.types import RankRequest
from promptopt.reward import RewardBreakdown


def instability(neutral: Sequence[int], copies: Sequence[Sequence[int]], metric: str = "serp",
                k: int = 10) -> float:
    """``1 - mean Sim@k(neutral, copy)`` over the copies (0 when there is none)."""
    if not copies:
        return 0.0
    fn = similarity_fn(metric)
    return 1.0 - math.fsum(fn(neutral, c, k) for c in copies) / len(copies)


class CounterfactualPenalty:
    """Counterfactual copies per episode and the reward they take away (see the module docstring).

    Args:
        attributes: The attribute set the values are drawn from.
        weight: :math:`\\lambda > 0`.
        n_values: Copies per episode (at most the set's number of values).
        metric: ``jaccard``, ``serp`` or ``prag``.
        k: Cut-off of the similarity.
        seed: Seed of the per-episode draws.
        cache_size: Episodes whose copies are kept rendered.

    Raises:
        ValueError: A weight <= 0, fewer than one value, or an unknown metric.
    """

    def __init__(self, attributes: AttributeSet, *, weight: float, n_values: int = 2, metric: str = "serp",
                 k: int = 10, seed: int = 0, cache_size: int = 16384) -> None:
        if not weight > 0:
            raise ValueError(f"weight must be > 0, got {weight}")
        if n_values < 1:
            raise ValueError(f"n_values must be >= 1, got {n_values}")
        similarity_fn(metric)
        self.attributes = attributes
        self.cells = attributes.cells()
        self.weight = float(weight)
        self.n_values = min(int(n_values), len(self.cells))
        self.metric = metric
        self.k = int(k)
        self.seed = int(seed)
        self._draws: dict[EpisodeKey, tuple[int, ...]] = {}
        self._copies: OrderedDict[tuple[int, int, int], list[RankRequest]] = OrderedDict()
        self._size = cache_size

    @property
    def calls_per_episode(self) -> int:
        """Extra requests one (user, template) costs: one per drawn value."""
        return self.n_values

    def values(self, key: EpisodeKey) -> list[tuple[str, str]]:
        """``(attribute, value)`` pairs drawn for episode ``key`` (the same under every template)."""
        return [self.cells[i][:2] for i in self._draw(key)]

    def _draw(self, key: EpisodeKey) -> tuple[int, ...]:
        found = self._draws.get(key)
        if found is None:
            rng = np.random.default_rng([self.seed, int(key[0]), max(int(key[1]), 0), 0xFA1])
            found = tuple(int(i) for i in rng.choice(len(self.cells), size=self.n_values, replace=False))
            self._draws[key] = found
        return found

    def copies(self, key: EpisodeKey, template: int, request: RankRequest) -> list[RankRequest]:
        """The counterfactual copies of ``request``, the base request of episode ``key`` under ``template``.

        Rendered once per (episode, template); another sample id is the same copies with that id.
        """
        entry = (int(key[0]), int(key[1]), int(template))
        found = self._copies.get(entry)
        if found is None:
            placement = self.attributes.placement
            base = request if request.sample_id == 0 else dataclasses.replace(request, sample_id=0)
            found = [counterfactual_request(base, self.cells[i][2], placement) for i in self._draw(key)]
            self._copies[entry] = found
            if len(self._copies) > self._size:
                self._copies.popitem(last=False)
        else:
            self._copies.move_to_end(entry)
        if request.sample_id == 0:
            return found
        return [dataclasses.replace(r, sample_id=request.sample_id) for r in found]

    def apply(self, reward: RewardBreakdown, neutral: Sequence[int],
              copies: Sequence[Sequence[int]]) -> RewardBreakdown:
        """``reward`` with ``weight x instability`` taken from its total and the instability recorded."""
        value = instability(neutral, copies, self.metric, self.k)
        return dataclasses.replace(reward, total=reward.total - self.weight * value, fairness=value)

    def describe(self) -> dict[str, object]:
        """JSON-able settings (run metadata)."""
        return {"attributes": self.attributes.name, "weight": self.weight, "n_values": self.n_values,
                "metric": self.metric, "k": self.k, "pool": len(self.cells)}
