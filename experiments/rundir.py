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
      results.tex          the headline results as a LaTeX table
      plots/*.png, *.pdf   learning curve, template usage, methods with intervals, drift
      train.log            the run's log lines
      budget.json          the run's spend ledger: calls, tokens, money of every phase and resume
      .lock                held by the promptopt process working in the run (names its pid)
      wandb/               wandb's files (offline runs sync from here)

A run directory is never shared silently: one process at a time holds its lock
(:meth:`RunDir.locked`), and a resume refuses overrides that change what the run is made of
(:func:`check_resume_overrides`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from promptopt.errors import ConfigError

IDENTITY_KEYS: tuple[str, ...] = (
    "seed", "data.", "split.", "templates.", "reward.", "fairness.attributes",
    "ranker.backend", "ranker.model", "ranker.temperature", "ranker.seed", "ranker.hf_mode",
    "ranker.embedding_api", "ranker.noise", "ranker.max_tokens",
)
"""Config keys (or ``section.`` prefixes) that define what a run is: its users and their split, the
tasks, the actions, the reward and the black box answering. A resume may change anything else
(budget, timeouts, concurrency, evaluation and tracking settings)."""


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

    @property
    def budget(self) -> Path:
        """The spend ledger of :class:`promptopt.llm.budget.Budget` (every phase, every resume)."""
        return self.root / "budget.json"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[RunDir]:
        """Hold the run's lock while the block runs (creating the directory when missing).

        Raises:
            ConfigError: Another process holds it; the message names that process's pid.
        """
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
                raise ConfigError(
                    f"{self.root} is in use by another promptopt process (pid {holder}, lock "
                    f"{self.lock_file}): wait for it to finish, or choose another --output-dir"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            try:
                yield self
            finally:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing releases the lock (so does the process dying)

    def holds_work(self) -> bool:
        """Whether the run holds anything worth keeping: checkpoints, weights, agents or paid calls."""
        if self.lightgcn.is_file() or any(self.root.glob("agent*.zip")):
            return True
        if self.checkpoints.is_dir() and any(self.checkpoints.iterdir()):
            return True
        try:
            spent = json.loads(self.budget.read_text(encoding="utf-8")) if self.budget.is_file() else {}
        except (OSError, ValueError):
            return True  # cannot tell: keep it
        return bool(spent.get("calls")) if isinstance(spent, dict) else True

    def first_missing(self) -> Path | None:
        """The outermost folder of ``root`` (``root`` included) that does not exist yet, if any."""
        missing = None
        for path in (self.root, *self.root.parents):
            if path.exists():
                break
            missing = path
        return missing

    def remove_failed_start(self, created: Path | None) -> bool:
        """Delete what a failed start created (``created``: see :meth:`first_missing`) when the run holds
        nothing worth keeping; returns whether it did."""
        if created is None or not self.root.is_dir() or self.holds_work():
            return False
        shutil.rmtree(self.root, ignore_errors=True)
        for parent in self.root.parents:  # folders made for it (runs/), when nothing else is inside
            if created != self.root and parent.is_relative_to(created):
                with contextlib.suppress(OSError):
                    parent.rmdir()
        return not self.root.exists()

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


def check_resume_overrides(old: Any, new: Any, overrides: Any = ()) -> None:
    """Refuse a resume whose overrides change what the run is made of (:data:`IDENTITY_KEYS`).

    Args:
        old: The run's config (its ``config.yaml``).
        new: The same with the resume's overrides applied.
        overrides: The overrides as given (named in the message).

    Raises:
        ConfigError: Naming the first identity key whose value changes, with both values.
    """
    from promptopt.config import flatten

    before, after = flatten(old), flatten(new)
    for key in sorted(before):
        if before[key] == after.get(key):
            continue
        if any(key == k or (k.endswith(".") and key.startswith(k)) for k in IDENTITY_KEYS):
            given = next((o for o in overrides if o.lstrip("-").partition("=")[0] == key), f"--{key}")
            raise ConfigError(
                f"cannot resume with {given}: {key} defines the run ({before[key]!r} -> {after.get(key)!r}); "
                "a resumed run keeps its data, split, seed, templates, reward and model. Start a new run "
                "with the change instead (promptopt train CONFIG --output-dir NEW_DIR ...)"
            )


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
