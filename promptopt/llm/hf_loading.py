"""Loading a local causal LM for the hf backend: device, dtype, model files and a path-free fingerprint.

torch and transformers are imported inside the functions, never when this module is imported.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptopt.errors import RankerError
from promptopt.llm.model_files import ModelLocation, read_gguf_header

logger = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")
"""Values of ``ranker.dtype``."""

_VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version", "quantization_config")
"""Config keys that differ between copies of the same weights (a GGUF file's are in its header hash)."""


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a CUDA device is present, else ``"cpu"``; other values as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) asks for no network access."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in ("1", "true", "yes", "on")


def model_fingerprint(model_name_or_path: str, config: Mapping[str, Any]) -> tuple[str, str]:
    """A machine-independent ``(name, sha256 of the config)`` for identities and cache keys.

    A local folder is named by its last path component (its absolute path differs between
    machines); a hub id is kept as is. The hash covers the model config with volatile keys
    (``_name_or_path``, ``transformers_version``, ``quantization_config``) removed, so the same
    weights' config gives the same hash wherever it is stored.
    """
    path = Path(model_name_or_path).expanduser()
    name = path.resolve().name if path.is_dir() else model_name_or_path
    stable = {k: v for k, v in config.items() if k not in _VOLATILE_CONFIG_KEYS}
    digest = hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()
    return name, digest[:16]


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype a model runs in and why (logged once when the model loads)."""

    dtype: Any
    """A ``torch.dtype``."""
    reason: str


@functools.lru_cache(maxsize=8)
def cpu_bfloat16_speedup(hidden: int, intermediate: int, rows: int = 256, repeats: int = 3) -> float:
    """float32 time / bfloat16 time of the model's feed-forward projection on this CPU (> 1: bf16 faster).

    The probe runs ``torch.nn.functional.linear`` (what ``nn.Linear`` calls) of a ``(1, rows, hidden)``
    activation with an ``(intermediate, hidden)`` weight in both dtypes, best of ``repeats`` after a
    warm-up each (256 rows, a short ranking prompt: at a few rows other kernels run). Such
    projections are most of a decoder's forward pass, and whether a CPU has fast bfloat16 kernels
    (AMX, AVX512-BF16) shows in them directly (on an AMD EPYC without them bfloat16 ran about 4x
    slower at a 135M model's sizes). Cached per process and sizes.

    Shapes: ``hidden``, ``intermediate`` are the model's hidden and feed-forward sizes.
    """
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    x32 = torch.randn(1, rows, hidden, generator=gen)
    w32 = torch.randn(intermediate, hidden, generator=gen)
    pairs = {"float32": (x32, w32), "bfloat16": (x32.bfloat16(), w32.bfloat16())}
    best = {name: float("inf") for name in pairs}
    with torch.inference_mode():
        for x, w in pairs.values():
            F.linear(x, w)  # warm-up
        # Alternate the dtypes so a busy machine slows both alike.
        for _ in range(repeats):
            for name, (x, w) in pairs.items():
                start = time.perf_counter()
                F.linear(x, w)
                best[name] = min(best[name], time.perf_counter() - start)
    return best["float32"] / max(best["bfloat16"], 1e-9)


def choose_dtype(dtype: str, device: str, config: Any) -> DtypeChoice:
    """The torch dtype of ``ranker.dtype`` on ``device``.

    ``auto``: bfloat16 on CUDA where supported (else float16); on CPU bfloat16 only where the
    :func:`cpu_bfloat16_speedup` probe shows it at least 10% faster than float32, else float32.

    Raises:
        ValueError: ``dtype`` is not one of :data:`DTYPES`.
    """
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype != "auto":
        return DtypeChoice(getattr(torch, dtype), "set by ranker.dtype")
    if device.startswith("cuda"):
        if torch.cuda.is_bf16_supported():
            return DtypeChoice(torch.bfloat16, "auto: CUDA supports bfloat16")
        return DtypeChoice(torch.float16, "auto: CUDA without bfloat16")
    if device != "cpu":
        return DtypeChoice(torch.float32, f"auto: float32 on {device}")
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    inner = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or (
        4 * hidden if hidden else None
    )
    if not hidden or not inner:
        return DtypeChoice(torch.float32, "auto: float32 on CPU (model sizes unknown, no probe)")
    speedup = cpu_bfloat16_speedup(int(hidden), int(inner))
    if speedup >= 1.1:
        return DtypeChoice(torch.bfloat16, f"auto: the start-up probe ran bfloat16 {speedup:.2f}x faster")
    return DtypeChoice(torch.float32, f"auto: float32 on CPU (bfloat16 probe speed-up {speedup:.2f}x < 1.1x)")


@dataclass
class LoadedModel:
    """A loaded model, its tokenizer and the identity fields that describe it without paths."""

    model: Any
    tokenizer: Any
    dtype: Any
    name: str
    config_sha256: str
    gguf_sha256: str | None


def load_causal_lm(location: ModelLocation, dtype: str, device: str, offline: bool) -> LoadedModel:
    """``AutoModelForCausalLM`` + ``AutoTokenizer`` from a folder, hub id or GGUF file, on ``device``.

    A GGUF file is dequantised by transformers (about 15 s for 135M parameters on one core). With
    ``dtype="auto"`` on CPU the model loads in float32 and is cast to bfloat16 when the probe says so.

    Raises:
        RankerError: The model cannot be found or loaded, or GGUF support is not installed.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = {"gguf_file": location.gguf_file} if location.gguf_file else {}
    # The CPU probe needs the model's sizes: load in float32 and cast after; elsewhere decide first.
    probe = dtype == "auto" and device == "cpu"
    choice = None if probe else choose_dtype(dtype, device, None)
    start = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(location.source, local_files_only=offline, **gguf)
        model = AutoModelForCausalLM.from_pretrained(
            location.source, dtype=torch.float32 if choice is None else choice.dtype,
            local_files_only=offline, **gguf,
        )
    except ImportError as exc:
        raise RankerError(
            f"hf ranker: loading {location.name} needs a package that is not installed ({exc}); "
            "GGUF files need `pip install 'promptopt[gguf]'` (gguf and accelerate)"
        ) from None
    except (OSError, ValueError) as exc:
        raise RankerError(_load_hint(location, offline, exc)) from None
    if choice is None:
        choice = choose_dtype(dtype, device, model.config)
    model.to(device=device, dtype=choice.dtype)
    model.eval()
    logger.info(
        "hf ranker: loaded %s in %.1f s on %s as %s (%s)", location.name, time.perf_counter() - start,
        device, str(choice.dtype).removeprefix("torch."), choice.reason,
    )
    config = model.config.to_dict()
    name, config_hash = model_fingerprint(location.source, config)
    gguf_hash = None
    if location.gguf_path is not None:
        name = location.name
        gguf_hash = read_gguf_header(location.gguf_path).sha256[:16]
    return LoadedModel(model, tokenizer, choice.dtype, name, config_hash, gguf_hash)


def _load_hint(location: ModelLocation, offline: bool, exc: Exception) -> str:
    name = location.source
    local = Path(name).expanduser().exists()
    where = "a local folder" if local else "the Hugging Face cache"
    if location.gguf_file:
        hint = "check that the file is a GGUF model transformers can read (llama, qwen2, mistral, ...)"
        where = f"the GGUF file {location.gguf_file}"
    elif offline or not local:
        hint = (
            f"download it first on a machine with internet (`hf download {name}`) or pass a local "
            "folder written by save_pretrained"
        )
    else:
        hint = "check that the folder holds config.json, the weights and the tokenizer files"
    mode = " (offline: HF_HUB_OFFLINE is set)" if offline else ""
    return (
        f"hf ranker: cannot load model {location.name!r} from {where}{mode}: {hint} "
        f"({exc.__class__.__name__})"
    )
