"""Identical reruns with the embedding ranker, from a cold and from a warm cache (issue 13, section 5).

Two runs of the same config and seed must choose the same templates and report the same metrics,
whatever the answer cache held at the start; only the spend counters may differ. The warm cache
here is filled in another batch composition (every request encoded on its own, in reverse order)
than the cold run's (the env's steps, the evaluation's calls), which is how an earlier run with
other settings leaves a shared cache behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from promptopt.config import load_config
from promptopt.experiments import pipeline
from promptopt.llm.cache_store import CacheStore
from promptopt.llm.types import RankRequest, RequestIds
from tests.experiments.conftest import tiny_config_dict

SPEND = {"calls", "uncached_calls", "tokens", "seconds", "cache_hit_rate"}


def _config(tmp_path: Path, cache: Path) -> Any:
    raw = tiny_config_dict(
        tmp_path,
        data={"synthetic": {"n_users": 60, "n_items": 90, "n_genres": 8, "mean_history": 16, "seed": 5}},
        templates={"include": ["expert.recent5.none.index", "expert.genres10.none.index",
                               "expert.profile.none.index"]},
        ranker={"backend": "embedding", "model": "all-MiniLM-L6-v2", "device": "cpu", "batch_size": 16},
        cache={"enabled": True, "path": str(cache)},
        ppo={"total_timesteps": 128, "n_steps": 16, "batch_size": 32, "n_epochs": 2, "checkpoint_every": 64},
        eval={"n_bootstrap": 100, "bandit_steps": 32, "periods": False,
              "selectors": ["best_fixed", "epsilon_greedy", "linucb", "policy", "oracle"]},
    )
    path = tmp_path / f"{cache.stem}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def _request(raw: dict[str, Any]) -> RankRequest:
    """The request a cache row stored (as ``RankRequest.to_json`` wrote it)."""
    meta = dict(raw["meta"])
    return RankRequest(
        messages=tuple(tuple(m) for m in raw["messages"]), candidate_ids=tuple(raw["candidate_ids"]),
        candidate_texts=tuple(raw["candidate_texts"]), output_format=raw["output_format"],
        index_base=raw["index_base"], sample_id=raw["sample_id"],
        ids=RequestIds(meta["user"], meta["template"], meta["task"]) if meta else None,
    )


def _without_spend(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_spend(v) for k, v in value.items() if k not in SPEND and k != "llm"}
    if isinstance(value, list):
        return [_without_spend(v) for v in value]
    return value


def _run(config: Any, out: Path) -> dict[str, Any]:
    run = pipeline.train(config, out)
    metrics = pipeline.evaluate(run)
    curve = [{k: v for k, v in row.items() if not k.startswith("llm") and k not in SPEND}
             for row in metrics["train"]["curve"]]
    return {"evaluation": _without_spend(metrics["evaluation"]), "curve": curve,
            "templates": metrics["train"]["template_ranking"]}


@pytest.mark.slow
def test_same_choices_and_metrics_from_a_cold_and_a_warm_cache(tmp_path) -> None:
    from promptopt.llm.embedding_backend import EmbeddingRanker

    cold_cache = tmp_path / "cold.sqlite"
    cold = _run(_config(tmp_path, cold_cache), tmp_path / "cold")
    # Fill another cache with the same requests, each encoded alone, in reverse order.
    requests = [_request(row["request"]) for row in CacheStore(cold_cache, create=False).rows()]
    assert len(requests) > 100
    warm_cache = tmp_path / "warm.sqlite"
    from promptopt.llm.cache import CachedRanker

    with CachedRanker(EmbeddingRanker(None, device="cpu", batch_size=16), warm_cache) as ranker:
        for request in reversed(requests):
            ranker.rank([request])
    warm = _run(_config(tmp_path, warm_cache), tmp_path / "warm")
    assert warm["curve"] == cold["curve"]
    assert warm["templates"] == cold["templates"]
    assert warm["evaluation"] == cold["evaluation"]
    # The warm run paid for nothing new.
    assert len(CacheStore(warm_cache, create=False)) == len(requests)
