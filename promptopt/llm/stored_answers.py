"""What every ranker that answers from an SQLite answer file shares.

:class:`~promptopt.llm.cache.CachedRanker` (asks its backend on a miss) and
:class:`~promptopt.llm.replay.ReplayRanker` (never asks anyone) both keep a least-recently-used
memory layer over their :class:`~promptopt.llm.cache_store.CacheStore`, thread-safe
:class:`~promptopt.llm.budget.RankerStats`, and pickle into worker processes with an empty memory
layer and a fresh lock. That part lives here, once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from promptopt.llm.budget import RankerStats
from promptopt.llm.cache_store import CacheStore
from promptopt.llm.types import RankResponse


class StoredAnswers:
    """Memory layer, statistics, pickling and closing over ``store``.

    Args:
        open_store: Opens the answer file (called once ``memory_entries`` is checked).
        memory_entries: Answers also kept in this process's memory (least recently used dropped);
            0 turns the memory layer off.

    Raises:
        ValueError: ``memory_entries`` is negative.
    """

    def __init__(self, open_store: Callable[[], CacheStore], memory_entries: int) -> None:
        if memory_entries < 0:
            raise ValueError(f"memory_entries must be >= 0, got {memory_entries}")
        self.store = open_store()
        self.memory_entries = memory_entries
        self._lock = threading.Lock()
        self._stats = RankerStats()
        self._memory: OrderedDict[str, RankResponse] = OrderedDict()

    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def stats(self) -> RankerStats:
        """Hits, misses, calls, tokens and cost since this ranker was made."""
        with self._lock:
            return self._stats

    def __getstate__(self) -> dict[str, Any]:  # a worker process starts with an empty memory layer
        state = self.__dict__.copy()
        del state["_lock"]
        state["_memory"] = OrderedDict()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __enter__(self) -> StoredAnswers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the SQLite connection."""
        self.store.close()

    def _recall(self, keys: list[str]) -> list[RankResponse | None]:
        """Answers from memory, then from the file (remembered for next time); None for misses."""
        with self._lock:
            results = [self._memory.get(k) for k in keys]
            for k, r in zip(keys, results):
                if r is not None:
                    self._memory.move_to_end(k)
        missing = [k for k, r in zip(keys, results) if r is None]
        if missing:
            rows = self.store.get_many(missing)
            stored = {k: RankResponse.from_json(v, cached=True) for k, v in rows.items()}
            results = [stored.get(k) if r is None else r for k, r in zip(keys, results)]
            self._remember(stored)
        return results

    def _remember(self, answers: Mapping[str, RankResponse]) -> None:
        if not self.memory_entries or not answers:
            return
        with self._lock:
            self._memory.update(answers)
            while len(self._memory) > self.memory_entries:
                self._memory.popitem(last=False)

    def _add(self, delta: RankerStats) -> None:
        with self._lock:
            self._stats = self._stats + delta
