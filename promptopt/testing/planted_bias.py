"""A ranker wrapper with a planted attribute bias and text-driven jitter, to test fairness audits.

:class:`~promptopt.llm.simulated.SimulatedRanker` never reads the prompt text, so a counterfactual
copy of a prompt gets exactly the neutral answer. :class:`PlantedBiasRanker` wraps any ranker and
makes its answers depend on the text, in two known ways:

* **jitter** (value-blind): ``jitter`` adjacent swaps at positions drawn from a hash of the whole
  prompt, so every different prompt (each copy, and the neutral one) moves a little, in a way no
  attribute value explains: the audit must not flag an attribute for it;
* **bias** (planted): when the prompt holds one of ``triggers`` (e.g. the sentence "I am female.")
  and the request's template matches one of ``templates``, the ranking is rotated by ``shift``
  places (its top items drop to the bottom): the audit must flag the attribute of the trigger, and a
  fairness-aware reward must steer a policy away from the matching templates.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from promptopt.llm.types import Ranker, RankRequest, RankResponse


class PlantedBiasRanker:
    """``inner``'s answers, rotated when a trigger appears and jittered by the prompt's text.

    Args:
        inner: The wrapped ranker (usually the simulator).
        triggers: Texts whose presence in a prompt rotates its ranking.
        templates: Glob patterns of the template ids the bias applies to (``RequestIds.template``).
        shift: Places the ranking is rotated by when triggered.
        jitter: Adjacent swaps per request, at positions hashed from the prompt text (0 = none).
        seed: Seed of the jitter.

    Raises:
        ValueError: A negative ``shift`` or ``jitter``.
    """

    def __init__(self, inner: Ranker, *, triggers: Sequence[str] = (), templates: Sequence[str] = ("*",),
                 shift: int = 5, jitter: int = 0, seed: int = 0) -> None:
        if shift < 0 or jitter < 0:
            raise ValueError(f"shift and jitter must be >= 0, got {shift} and {jitter}")
        self.inner = inner
        self.triggers = tuple(triggers)
        self.templates = tuple(templates)
        self.shift = int(shift)
        self.jitter = int(jitter)
        self.seed = int(seed)
        self.triggered = 0

    @property
    def identity(self) -> Mapping[str, Any]:
        return {**dict(self.inner.identity), "planted_bias": {
            "triggers": list(self.triggers), "templates": list(self.templates), "shift": self.shift,
            "jitter": self.jitter, "seed": self.seed}}

    def biased(self, request: RankRequest) -> bool:
        """Whether the planted bias applies to ``request``."""
        template = request.ids.template if request.ids is not None else ""
        prompt = request.prompt
        return (any(t in prompt for t in self.triggers)
                and any(fnmatch.fnmatchcase(template, p) for p in self.templates))

    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        out = []
        for request, response in zip(requests, self.inner.rank(requests)):
            ranking = list(response.ranking)
            if self.shift and self.biased(request):
                self.triggered += 1
                cut = self.shift % max(len(ranking), 1)
                ranking = ranking[cut:] + ranking[:cut]
            if self.jitter and len(ranking) > 1:
                digest = hashlib.blake2b(f"{self.seed}\x1f{request.prompt}".encode(), digest_size=8).digest()
                rng = np.random.default_rng(int.from_bytes(digest, "little"))
                for pos in rng.integers(0, len(ranking) - 1, size=self.jitter):
                    ranking[pos], ranking[pos + 1] = ranking[pos + 1], ranking[pos]
            out.append(dataclasses.replace(response, ranking=tuple(ranking)))
        return out
