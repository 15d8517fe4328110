"""The layout of a run directory: one place that names every file a run writes.

::

    runs/<config name>-<YYYYmmdd-HHMMSS>/
      config.yaml          the resolved config (every field, overrides applied)
      lightgcn.pt          pretrained LightGCN embeddings (torch tensors, no pickled objects)
      agent.zip            the LightGCN+MLP PPO agent (stable-baselines3 zip)
      agent_mlp.zip        the MLP-only PPO agent (the graph ablation), when evaluated
      checkpoints/         resumable checkpoints (<agent>_<steps>.zip + state JSON)
      metrics.json         training curve, LLM spend, evaluation, and a flat ``summary``
      prompts.json         the prompt book
      report.md            the human-readable report
      plots/*.png          learning curve, template usage, methods with intervals, drift
      train.log            the run's log lines
      wandb/               wandb's files (offline runs sync from here)
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from promptopt.errors import ConfigError


def default_run_dir(name: str, root: str | Path = "runs", *, now: datetime | None = None) -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>`` (a numeric suffix keeps two runs in one second apart)."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    base = Path(root) / f"{safe}-{stamp}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory (nothing is created until asked)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def lightgcn(self) -> Path:
        return self.root / "lightgcn.pt"

    def agent(self, kind: str = "policy") -> Path:
        """``agent.zip`` for the LightGCN+MLP policy, ``agent_mlp.zip`` for the MLP-only ablation."""
        return self.root / ("agent.zip" if kind == "policy" else f"agent_{kind}.zip")

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def prompts(self) -> Path:
        return self.root / "prompts.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def wandb(self) -> Path:
        return self.root / "wandb"

    def create(self) -> RunDir:
        self.root.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(exist_ok=True)
        self.plots.mkdir(exist_ok=True)
        return self

    def require(self, what: str = "a run directory") -> RunDir:
        """Check that this looks like a run directory (it has config.yaml).

        Raises:
            ConfigError: Missing directory or config.yaml, saying which command makes one.
        """
        if not self.root.is_dir():
            raise ConfigError(f"{self.root} does not exist: expected {what} made by `promptopt train`")
        if not self.config.is_file():
            raise ConfigError(
                f"{self.root} has no config.yaml: expected {what} made by `promptopt train`"
            )
        return self

    # ------------------------------------------------------------------ metrics.json
    def read_metrics(self) -> dict[str, Any]:
        """The run's metrics.json (an empty dict when it does not exist yet)."""
        if not self.metrics.is_file():
            return {}
        try:
            return json.loads(self.metrics.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{self.metrics} is not valid JSON (line {exc.lineno}): delete it "
                              "and re-run `promptopt evaluate`") from None

    def update_metrics(self, section: str, value: Any, summary: dict[str, float] | None = None) -> dict:
        """Replace one top-level section of metrics.json and merge ``summary`` keys; atomic write."""
        metrics = self.read_metrics()
        metrics[section] = value
        if summary:
            metrics.setdefault("summary", {}).update(summary)
        write_json(self.metrics, metrics)
        return metrics


def write_json(path: Path, payload: Any) -> Path:
    """Write indented JSON atomically (a temporary file renamed over the target)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=_default) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)
    return path


def _default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
