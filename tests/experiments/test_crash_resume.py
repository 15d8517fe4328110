"""Crash safety: ``promptopt train`` killed by SIGKILL resumes with ``--resume`` and pays for nothing twice.

The run is a real subprocess talking to a local OpenAI-compatible server in this process. The server
decides when to kill it: once a checkpoint exists and more answers arrived after it (so the resumed
run must redo steps whose answers are cached), the first request of the next batch triggers
``SIGKILL`` before it is answered. Every answer the server gave before the kill reached the cache
(the kill falls between batches), so the resumed run must send none of them again.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptopt.experiments.rundir import RunDir
from promptopt.llm.cache import CacheStore
from promptopt.testing import LocalOpenAIServer, default_answer
from tests.experiments.conftest import tiny_config_dict

KEY_ENV = "PROMPTOPT_CRASH_KEY"
AFTER_CHECKPOINT = 12
"""Answers the killed run gets after its first checkpoint (steps the resumed run redoes from the cache)."""


def _digest(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()


def _cached(path: Path) -> set[str]:
    """Digests of the prompts whose answers are committed in the cache file (read by another process)."""
    if not path.is_file():
        return set()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT request FROM answers").fetchall()
    return {_digest(json.loads(r)["messages"][-1][1]) for (r,) in rows}


class KillingServerAnswer:
    """The server's answer function: counts prompts per session and kills the training process once.

    Session 1 is killed when (a) a complete checkpoint exists, (b) ``AFTER_CHECKPOINT`` answers came
    after it, and (c) every prompt answered so far is committed in the cache, i.e. a new batch starts.
    """

    def __init__(self, run_dir: Path, cache: Path) -> None:
        self.checkpoints = RunDir(run_dir).checkpoints
        self.cache = cache
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.session = 1
        self.answered: dict[int, list[str]] = {1: [], 2: []}
        self.after_checkpoint = 0
        self.killed_at_checkpoint: str | None = None
        self.unanswered: list[str] = []  # requests that arrived after the kill decision

    def __call__(self, messages: Sequence[Mapping[str, Any]], body: Mapping[str, Any]) -> str:
        digest = _digest(str(messages[-1]["content"]))
        with self.lock:
            if self.session == 1 and (self.killed_at_checkpoint is not None or self._time_to_kill()):
                self.unanswered.append(digest)
            else:
                self.answered[self.session].append(digest)
                if self.session == 1 and self._checkpoints():
                    self.after_checkpoint += 1
        return default_answer(messages, body)

    def _checkpoints(self) -> list[str]:
        return sorted(p.name for p in self.checkpoints.glob("policy_*.json"))

    def _time_to_kill(self) -> bool:
        done = self._checkpoints()
        if not done or self.after_checkpoint < AFTER_CHECKPOINT:
            return False
        if not set(self.answered[1]) <= _cached(self.cache):
            return False  # inside a batch: its answers are not committed yet
        assert self.process is not None
        self.killed_at_checkpoint = done[-1]
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)
        return True


def _promptopt(*args: str, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "promptopt", *args], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_sigkilled_training_resumes_from_its_checkpoint_without_paying_twice(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cache = tmp_path / "cache.sqlite"
    answer = KillingServerAnswer(run_dir, cache)
    env = {**os.environ, KEY_ENV: "local-any-key", "WANDB_MODE": "disabled"}
    with LocalOpenAIServer(answer=answer) as server:
        raw = tiny_config_dict(
            tmp_path,
            ranker={"backend": "openai", "model": "local-test", "base_url": server.base_url,
                    "api_key_env": KEY_ENV, "concurrency": 4, "timeout_s": 30.0},
            policy={"kind": "mlp"}, eval={"selectors": ["random", "policy"]},
        )
        config_path = tmp_path / "tiny.yaml"
        config_path.write_text(yaml.safe_dump(raw))
        total = raw["ppo"]["total_timesteps"]

        # ------------------------------------------------------------------ session 1: killed
        with answer.lock:  # the answer function may only kill a process it knows
            answer.process = _promptopt("train", str(config_path), "--output-dir", str(run_dir), "--no-eval",
                                        cwd=tmp_path, env=env, log=tmp_path / "session1.log")
        code = answer.process.wait(timeout=600)
        log1 = (tmp_path / "session1.log").read_text(errors="replace")
        assert code == -signal.SIGKILL, f"the run was not killed (exit {code}):\n{log1[-3000:]}"
        assert answer.killed_at_checkpoint is not None
        assert not RunDir(run_dir).agent("policy").exists()

        # The cache survived the kill intact and holds every answer the server gave.
        with sqlite3.connect(cache) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        committed = _cached(cache)
        assert set(answer.answered[1]) == committed
        assert len(answer.answered[1]) == len(committed)  # nothing asked twice within the session
        assert not set(answer.unanswered) & committed

        # ------------------------------------------------------------------ session 2: --resume
        with answer.lock:
            answer.session = 2
        resumed = _promptopt("train", "--resume", str(run_dir), "--no-eval", cwd=tmp_path, env=env,
                             log=tmp_path / "session2.log")
        code = resumed.wait(timeout=600)
        log2 = (tmp_path / "session2.log").read_text(errors="replace")
        assert code == 0, log2[-3000:]

    # Resumed from the checkpoint that existed at the kill, and finished every step.
    steps = int(answer.killed_at_checkpoint.removeprefix("policy_").removesuffix(".json"))
    train_log = RunDir(run_dir).log.read_text(encoding="utf-8")
    assert f"resuming PPO policy from policy_{steps}.zip ({steps}/{total} steps)" in train_log
    metrics = RunDir(run_dir).read_metrics()["train"]
    assert metrics["steps"] == total
    curve = [row["step"] for row in metrics["curve"]]
    assert curve == sorted(set(curve)) and curve[-1] == total
    # Every cached answer was re-used: no prompt answered before the kill was sent again.
    second = answer.answered[2]
    assert second, "the resumed run needed new answers too"
    assert not set(second) & committed
    assert len(set(second)) == len(second)
    store = CacheStore(cache, create=False)
    assert store.integrity_check() == "ok"
    assert len(store) == len(committed) + len(second)
