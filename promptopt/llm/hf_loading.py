"""Loading a local causal LM for the hf backend: device, dtype, model files and a path-free fingerprint.

torch and transformers are imported inside the functions, never when this module is imported.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import statistics
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

BF16_MARGIN = 1.2
"""Median float32/bfloat16 time ratio the CPU probe needs before ``dtype: auto`` picks bfloat16."""
BF16_AGREEMENT = 0.8
"""Share of the probe's rounds in which bfloat16 must be faster."""

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


@dataclass(frozen=True)
class BFloat16Probe:
    """What the start-up probe measured: float32 time / bfloat16 time, one ratio per interleaved round."""

    ratios: tuple[float, ...]
    """Per round (> 1: bfloat16 was faster in that round)."""

    @property
    def median(self) -> float:
        return float(statistics.median(self.ratios))

    @property
    def faster_rounds(self) -> int:
        """Rounds in which bfloat16 was faster than float32."""
        return sum(r > 1.0 for r in self.ratios)

    def prefers_bfloat16(self, margin: float = BF16_MARGIN, agreement: float = BF16_AGREEMENT) -> bool:
        """Whether bfloat16 is clearly faster: median ratio >= ``margin`` and faster in >= ``agreement``
        of the rounds. Anything less keeps float32 (exact, and never much slower than a noisy win)."""
        return self.median >= margin and self.faster_rounds >= agreement * len(self.ratios)

    def describe(self) -> str:
        """``"median 2.10x over 9 interleaved rounds (1.85-2.40x), bfloat16 faster in 9/9"``."""
        return (
            f"median {self.median:.2f}x over {len(self.ratios)} interleaved rounds "
            f"({min(self.ratios):.2f}-{max(self.ratios):.2f}x), bfloat16 faster in "
            f"{self.faster_rounds}/{len(self.ratios)}"
        )


@functools.lru_cache(maxsize=8)
def probe_cpu_bfloat16(hidden: int, intermediate: int, rows: int = 256, rounds: int = 9,
                       calls: int = 3) -> BFloat16Probe:
    """Time the model's feed-forward projection on this CPU in float32 and in bfloat16.

    The probe runs ``torch.nn.functional.linear`` (what ``nn.Linear`` calls) of a ``(1, rows, hidden)``
    activation with an ``(intermediate, hidden)`` weight (256 rows, a short ranking prompt: at a few
    rows other kernels dominate). Such projections are most of a decoder's forward pass, and whether
    a CPU has fast bfloat16 kernels (AMX, AVX512-BF16) shows in them directly (on an AMD EPYC without
    them bfloat16 ran about 4x slower at a 135M model's sizes).

    A loaded machine makes single timings noisy (another process takes the core mid-call), so each
    of ``rounds`` rounds times both dtypes back to back, in alternating order, each as the fastest
    of ``calls`` calls, and keeps their ratio: load that lasts a round slows both alike, and the
    decision reads the median ratio and how many rounds agree (:meth:`BFloat16Probe.prefers_bfloat16`).
    Cached per process and sizes (well under a second at a 135M model's sizes).

    Shapes: ``hidden``, ``intermediate`` are the model's hidden and feed-forward sizes.
    """
    import torch
    import torch.nn.functional as F

    if rounds < 1 or calls < 1:
        raise ValueError(f"rounds and calls must be >= 1, got {rounds} and {calls}")
    gen = torch.Generator().manual_seed(0)
    x32 = torch.randn(1, rows, hidden, generator=gen)
    w32 = torch.randn(intermediate, hidden, generator=gen)
    pairs = {"float32": (x32, w32), "bfloat16": (x32.bfloat16(), w32.bfloat16())}

    def fastest(x: Any, w: Any) -> float:
        best = float("inf")
        for _ in range(calls):
            start = time.perf_counter()
            F.linear(x, w)
            best = min(best, time.perf_counter() - start)
        return max(best, 1e-9)

    ratios = []
    with torch.inference_mode():
        for x, w in pairs.values():
            F.linear(x, w)  # warm-up
        for i in range(rounds):
            order = ("float32", "bfloat16") if i % 2 == 0 else ("bfloat16", "float32")
            seconds = {name: fastest(*pairs[name]) for name in order}
            ratios.append(seconds["float32"] / seconds["bfloat16"])
    return BFloat16Probe(tuple(ratios))


def cpu_bfloat16_speedup(hidden: int, intermediate: int) -> float:
    """The median float32 / bfloat16 time ratio of :func:`probe_cpu_bfloat16` (> 1: bfloat16 faster)."""
    return probe_cpu_bfloat16(hidden, intermediate).median


def choose_dtype(dtype: str, device: str, config: Any) -> DtypeChoice:
    """The torch dtype of ``ranker.dtype`` on ``device``.

    ``auto``: bfloat16 on CUDA where supported (else float16); on CPU bfloat16 only where the
    :func:`probe_cpu_bfloat16` probe shows it clearly faster than float32 (a median ratio of at least
    :data:`BF16_MARGIN` and :data:`BF16_AGREEMENT` of its rounds agreeing), else float32. The
    reason (logged when the model loads) says how sure the probe was.

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
    probe = probe_cpu_bfloat16(int(hidden), int(inner))
    if probe.prefers_bfloat16():
        return DtypeChoice(torch.bfloat16, f"auto: bfloat16 clearly faster, {probe.describe()}")
    return DtypeChoice(
        torch.float32,
        f"auto: float32 on CPU, bfloat16 not clearly faster (needs a median >= {BF16_MARGIN:.2f}x and "
        f"{BF16_AGREEMENT:.0%} of rounds): {probe.describe()}",
    )


@dataclass
class LoadedModel:
    """A loaded model, its tokenizer and the identity fields that describe it without paths."""

    model: Any
    tokenizer: Any
    dtype: Any
    name: str
    config_sha256: str
    gguf_sha256: str | None
    dtype_reason: str = ""
    """Why this dtype (``ranker.dtype``, or what the ``auto`` probe measured)."""


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
    return LoadedModel(model, tokenizer, choice.dtype, name, config_hash, gguf_hash, choice.reason)


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
