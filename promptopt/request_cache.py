"""Rendered requests per (episode, template): rendering is the costly part of an env step.

A template renders an episode's tasks into :class:`~promptopt.llm.types.RankRequest` objects once;
later steps of the same (episode, template) reuse them. The cache is bounded (least recently used
entries are dropped). The sample id (temperature > 0, Monte-Carlo estimates) does not change the
rendered text, so every sample id reuses the one rendering of sample 0 and is not stored.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from promptopt.data.interactions import InteractionData
from promptopt.episodes import EpisodeKey
from promptopt.llm.types import RankRequest
from promptopt.tasks import RankingTask

if TYPE_CHECKING:
    from promptopt.templates import CollaborativeHints, TemplateCatalog


class RequestCache:
    """Renders tasks with a catalog's templates and keeps the latest ``size`` request lists.

    Args:
        catalog: The template catalog (the action set).
        data: The dataset (item text of the candidates).
        hints: Collaborative hints for templates that use them (``None``: none).
        size: Request lists kept, one per (episode, template).
    """

    def __init__(
        self,
        catalog: TemplateCatalog,
        data: InteractionData,
        hints: CollaborativeHints | None,
        *,
        size: int = 16384,
    ) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.catalog = catalog
        self.data = data
        self.hints = hints
        self.size = size
        self._lists: OrderedDict[tuple[int, int, int], list[RankRequest]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._lists)

    def render(
        self, tasks: Sequence[RankingTask], template: int, *, sample_id: int = 0
    ) -> list[RankRequest]:
        """The requests of ``tasks`` filled by template index ``template`` (not cached)."""
        filler = self.catalog[template]
        return [filler.request(t, self.data, self.hints, sample_id=sample_id) for t in tasks]

    def get(
        self, key: EpisodeKey, tasks: Sequence[RankingTask], template: int, sample_id: int = 0
    ) -> list[RankRequest]:
        """The requests of episode ``key`` (whose tasks are ``tasks``) under ``template``.

        Sample 0 is rendered once and kept; another sample id is the same requests with that id.
        The returned list is shared: do not modify it.
        """
        entry = (key[0], key[1], template)
        found = self._lists.get(entry)
        if found is None:
            found = self.render(tasks, template)
            self._lists[entry] = found
            if len(self._lists) > self.size:
                self._lists.popitem(last=False)
        else:
            self._lists.move_to_end(entry)
        if sample_id == 0:
            return found
        return [dataclasses.replace(r, sample_id=sample_id) for r in found]
