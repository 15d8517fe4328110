"""Build the ranker a config's ``ranker`` section describes, wrapped in the answer cache when enabled.

Every backend is imported on demand, so choosing ``hf`` never imports the openai client, and
``embedding`` over an API never imports torch. The ``simulated`` backend is not built here: it
simulates a particular problem (its data, catalog and profile statistics), so whoever holds the
problem builds it (``promptopt.experiments.assembly.make_simulator``) and passes it as ``backend`` to be
cached.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from promptopt.errors import ConfigError
from promptopt.llm.grounding import make_grounder
from promptopt.redact import MARK

if TYPE_CHECKING:
    from promptopt.config import CacheConfig, RankerConfig
    from promptopt.llm.budget import Budget
    from promptopt.llm.types import Ranker

logger = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("embedding", "openai", "hf", "simulated", "replay")
"""Values of ``ranker.backend``."""


def make_ranker(
    config: RankerConfig,
    *,
    cache: CacheConfig | None = None,
    budget: Budget | None = None,
    backend: Ranker | None = None,
) -> Ranker:
    """The backend of ``config.backend`` (or ``backend``, built by the caller), wrapped in a
    :class:`~promptopt.llm.cache.CachedRanker` (sharing ``budget``) when ``cache`` is given and enabled.

    Args:
        config: The ``ranker`` section.
        cache: The ``cache`` section; ``None`` or ``enabled: false`` = no cache.
        budget: Caps shared by the run's rankers; enforced by the cache layer, so a budget with a cap
            needs the cache.
        backend: A backend built elsewhere, to be cached and budgeted here: required for
            ``simulated`` (a :class:`~promptopt.llm.simulated.SimulatedRanker` of the problem).

    Raises:
        ConfigError: Unknown backend, ``simulated`` without ``backend``, or a budget cap without the
            cache.
        RankerError: The backend cannot be built (model not found, API key variable unset).
    """
    if config.backend not in BACKENDS:
        raise ConfigError(
            f"ranker.backend must be one of {', '.join(BACKENDS)}, got {config.backend!r}"
        )
    if config.base_url is not None and MARK in config.base_url:
        raise ConfigError(
            f"ranker.base_url {config.base_url!r} lost its credentials when the run's config.yaml was "
            "written (they are never stored): continue with `promptopt train --resume RUN_DIR "
            "--ranker.base_url=URL` (it also evaluates and exports), or keep keys out of URLs: put "
            "the key in the environment variable named by ranker.api_key_env"
        )
    if config.backend == "replay":  # the cache itself: never wrapped, nothing to budget
        from promptopt.llm.replay import ReplayRanker

        path = config.replay_cache or (cache.path if cache is not None else None)
        if path is None:
            raise ConfigError("ranker.backend 'replay' needs ranker.replay_cache or cache.path: the answer "
                              "cache that holds the logged answers")
        return ReplayRanker(path, config.replay_identity)
    cached = cache is not None and cache.enabled
    if budget is not None and not cached and any(
        cap is not None for cap in (budget.max_calls, budget.max_tokens, budget.max_cost)
    ):
        raise ConfigError(
            f"a ranker budget ({budget!r}) is enforced by the answer cache, which is disabled: "
            "set cache.enabled: true or remove the budget caps"
        )
    if backend is None:
        if config.backend == "hf" or (config.backend == "embedding" and not config.embedding_api):
            check_device(config.device)
        backend = _backend(config)
    if not cached:
        return backend
    assert cache is not None
    from promptopt.llm.cache import CachedRanker

    logger.info("ranker %s cached in %s", dict(backend.identity), cache.path)
    return CachedRanker(backend, cache.path, budget=budget)


def check_device(device: str) -> None:
    """Refuse a torch device this machine does not have (``cuda`` without a CUDA GPU, ``cuda:3`` of two).

    Raises:
        ConfigError: Naming ``ranker.device``, what the machine has, and the fix.
    """
    if device in ("auto", "cpu"):
        return
    import torch

    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device (or a CPU-only torch)"
            raise ConfigError(f"ranker.device={device!r} but this machine has {have}: use ranker.device: "
                              "auto (a GPU when there is one) or cpu")
    elif device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("ranker.device='mps' but Apple's MPS backend is not available here: use "
                          "ranker.device: auto or cpu")


def _backend(config: RankerConfig) -> Ranker:
    if config.backend == "simulated":
        raise ConfigError(
            "ranker.backend 'simulated' simulates a problem, so it is built from one: pass "
            "backend=SimulatedRanker(data, catalog, ...) to make_ranker "
            "(promptopt.experiments.assembly.make_run_ranker does)"
        )
    if config.backend == "openai":
        from promptopt.llm.openai_backend import OpenAIRanker

        return OpenAIRanker.from_config(config)
    if config.backend == "hf":
        from promptopt.llm.hf_backend import HFRanker

        return HFRanker(
            config.model, mode=config.hf_mode, device=config.device, dtype=config.dtype,
            batch_size=config.batch_size, max_new_tokens=config.max_tokens,
            temperature=config.temperature, seed=config.seed or 0, gguf_file=config.gguf_file,
            length_normalize=config.length_normalize, prompt_style=config.prompt_style,
            grounder=make_grounder(config.grounding, config.grounding_model),
        )
    from promptopt.llm.embedding_backend import EmbeddingRanker

    return EmbeddingRanker(
        config.model, api=config.embedding_api, base_url=config.base_url,
        api_key_env=config.api_key_env, batch_size=config.batch_size, device=config.device,
        timeout_s=config.timeout_s, max_retries=config.max_retries,
    )
