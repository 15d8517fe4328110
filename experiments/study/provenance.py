"""Where the study's numbers came from: the machine, its load, and what the answer cache holds."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptopt.llm.cache_store import CacheStore


def probe_hardware() -> dict[str, Any]:
    """CPU model, cores, OS, Python and torch versions of this machine, and whether it has a GPU."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        torch_version, gpu = str(torch.__version__), torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        torch_version, gpu = "absent", False
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch_version,
        "gpu": gpu,
    }


def load_average() -> float:
    """The 1-minute load average (``nan`` where the OS has none): the machine was shared or not."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def answer_cache_summary(run: Mapping[str, Any]) -> dict[str, float] | None:
    """Answers in the run's cache file and the minutes between the first and the last one stored.

    The study's cache holds exactly the requests its answer tables need, so this is what a run from
    a cold cache pays (``None`` when the cache is off or missing).
    """
    cache = run["config"]["experiment"]["cache"]
    if not cache.get("enabled") or not Path(cache["path"]).is_file():
        return None
    store = CacheStore(cache["path"], create=False)
    try:
        summary = store.summary()
    finally:
        store.close()
    span = (summary.last_created or 0) - (summary.first_created or 0)
    return {"entries": summary.entries, "minutes": span / 60}
