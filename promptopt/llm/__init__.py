"""The frozen black-box ranker: typed requests and responses, backends, answer cache, parsing, budget.

Names are imported lazily (``promptopt.llm.OpenAIRanker`` loads the openai backend on first use), so
importing the package stays light. Add a public name by adding a line to ``_LAZY``.
"""

from __future__ import annotations

import importlib
from typing import Any

from promptopt.llm.types import OutputFormat, ParseStats, Ranker, RankRequest, RankResponse, TokenUsage

_LAZY: dict[str, str] = {
    # public name -> module under promptopt.llm
    "parse_ranking": "parsing",
    "Budget": "budget",
    "RankerStats": "budget",
    "CachedRanker": "cache",
    "CacheStore": "cache",
    "CacheError": "cache",
    "PartialBatchError": "cache",
    "cache_key": "cache",
    "OpenAIRanker": "openai_backend",
    "HFRanker": "hf_backend",
    "EmbeddingRanker": "embedding_backend",
    "SimulatedRanker": "simulated",
    "ReplayRanker": "replay",
    "make_ranker": "factory",
}

__all__ = ["OutputFormat", "ParseStats", "RankRequest", "RankResponse", "Ranker", "TokenUsage", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'promptopt.llm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"promptopt.llm.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
