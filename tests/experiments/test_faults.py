"""Fault injection: PPO training with the OpenAI-compatible backend against a flaky local server.

The server (:class:`promptopt.testing.LocalOpenAIServer`, real HTTP, real ``openai`` client)
fails 20% of requests with every transient kind (429 with retry-after, 500, connection reset, a hang
past the client's timeout, malformed JSON, no choices, a truncated body). The run must finish, every
failure must be retried, and the counts the run logs must equal the server's own counters. A server
that fails for good must stop the run with one clear line after every answer received is cached and a
checkpoint is saved; once the server is back, ``--resume`` finishes the run without asking twice.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from promptopt.config import ExperimentConfig, config_from_dict
from promptopt.errors import RankerError
from promptopt.experiments import pipeline
from promptopt.experiments.rundir import RunDir
from promptopt.llm.cache import CacheStore
from promptopt.testing import FAILURE_KINDS, LocalOpenAIServer, default_answer
from tests.experiments.conftest import tiny_config_dict

KEY_ENV = "PROMPTOPT_FAULTS_KEY"
SPEND = re.compile(
    r"ranker spend: (?P<requests>\d+) requests, (?P<hits>\d+) cache hits, (?P<sent>\d+) calls sent, "
    r"(?P<failed>\d+) failed, .*; backend: attempts=(?P<attempts>\d+) retries=(?P<retries>\d+) "
    r"succeeded=(?P<succeeded>\d+) failures=(?P<failures>\d+) \((?P<kinds>[^)]*)\)"
)
# How the client names each injected failure when it retries it.
CLIENT_KIND = {"429": "429", "500": "500", "hang": "timeout"}


@pytest.fixture(autouse=True)
def _quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key in the environment, and 50 ms first backoff (not 0.5 s) so that retries cost test time only."""
    from promptopt.llm.openai_backend import OpenAIRanker

    monkeypatch.setenv(KEY_ENV, "local-any-key")
    monkeypatch.setitem(OpenAIRanker.__init__.__kwdefaults__, "backoff_s", 0.05)


def _config(tmp_path: Path, server: LocalOpenAIServer, **ranker: Any) -> ExperimentConfig:
    """The tiny config (80 users, 4 templates, 256 PPO steps, MLP policy) on the server."""
    settings = {"backend": "openai", "model": "local-test", "base_url": server.base_url,
                "api_key_env": KEY_ENV, "concurrency": 4, "timeout_s": 2.0, "max_retries": 8, **ranker}
    return config_from_dict(tiny_config_dict(
        tmp_path, ranker=settings, policy={"kind": "mlp"}, eval={"selectors": ["random", "policy"]},
    ))


def _cached_prompts(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT request FROM answers").fetchall()
    return [json.loads(r)["messages"][-1][1] for (r,) in rows]


def _spend_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    found = []
    for record in caplog.records:
        match = SPEND.search(record.getMessage())
        if match:
            values: dict[str, Any] = {k: int(v) for k, v in match.groupdict().items() if k != "kinds"}
            values["kinds"] = dict(kv.split("=") for kv in match["kinds"].split(", ") if "=" in kv)
            found.append(values)
    return found


@pytest.mark.slow
def test_training_completes_through_20_percent_failures_and_counts_match_the_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with LocalOpenAIServer(failure_rate=0.2, failures=FAILURE_KINDS, hang_s=4.0, seed=5) as server:
        server.fail_next(*FAILURE_KINDS)  # every kind at least once, then 20% at random
        config = _config(tmp_path, server)
        run_dir = pipeline.train(config, tmp_path / "run")
        stats = server.stats()

    # The run finished: every step, the agent saved.
    run = RunDir(run_dir)
    assert run.read_metrics()["train"]["steps"] == config.ppo.total_timesteps
    assert run.agent("policy").is_file()
    # Faults really happened, of every kind, at about the configured rate.
    requests = stats.requests["/v1/chat/completions"]
    assert set(stats.failures) == set(FAILURE_KINDS)
    assert 0.12 <= stats.total_failures / requests <= 0.32, (stats.total_failures, requests)
    # The run logged its final counts; they equal the server's own.
    (spend,) = _spend_lines(caplog)
    assert spend["attempts"] == requests
    assert spend["retries"] == stats.total_failures  # every failure was retried ...
    assert spend["failures"] == 0 and spend["failed"] == 0  # ... and none was given up
    assert spend["succeeded"] == spend["sent"] == stats.succeeded
    assert spend["requests"] >= spend["hits"] + spend["sent"]  # (a request twice in one batch is sent once)
    for server_kind, client_kind in CLIENT_KIND.items():
        assert int(spend["kinds"].get(client_kind, 0)) == stats.failures[server_kind], spend["kinds"]
    assert sum(map(int, spend["kinds"].values())) == stats.total_failures
    # Every answer the server gave is in the cache, once; none was asked for twice.
    assert len(set(stats.prompts)) == len(stats.prompts) == stats.succeeded
    assert sorted(_cached_prompts(Path(config.cache.path))) == sorted(stats.prompts)
    assert CacheStore(config.cache.path, create=False).integrity_check() == "ok"


class _FailsForGoodAfter:
    """Answers normally ``n`` times, then makes the server fail every request with HTTP 500 (it went down)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.answered = 0
        self.server: LocalOpenAIServer | None = None
        self.lock = threading.Lock()

    def __call__(self, messages: Sequence[Mapping[str, Any]], body: Mapping[str, Any]) -> str:
        with self.lock:
            self.answered += 1
            if self.answered == self.n and self.server is not None:
                self.server.fail_matching("", "500")  # every later prompt: a persistent fault
        return default_answer(messages, body)


@pytest.mark.slow
def test_a_server_down_for_good_stops_cleanly_after_caching_then_resume_finishes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    answer = _FailsForGoodAfter(70)
    with LocalOpenAIServer(answer=answer) as server:
        answer.server = server
        config = _config(tmp_path, server, max_retries=2)
        run_dir = tmp_path / "run"
        with pytest.raises(RankerError) as info:
            pipeline.train(config, run_dir)
        down = server.stats()

        message = str(info.value)
        assert "\n" not in message
        assert server.base_url in message and "HTTP 500" in message
        assert "saved to the cache" in message and f"promptopt train --resume {run_dir}" in message
        # Everything the server answered before it went down is in the cache; nothing else.
        assert sorted(_cached_prompts(Path(config.cache.path))) == sorted(down.prompts)
        assert len(down.prompts) == answer.answered >= answer.n  # (a batch's other requests may finish)
        assert down.failures["500"] >= 3  # the first request to fail was tried 1 + max_retries times
        (spend,) = _spend_lines(caplog)
        assert spend["succeeded"] == answer.answered and spend["failures"] >= 1
        assert spend["attempts"] == down.requests["/v1/chat/completions"]
        checkpoints = sorted(RunDir(run_dir).checkpoints.glob("policy_*.json"))
        assert checkpoints, "the stop saved a checkpoint"

        server.clear_failures()  # the server is back
        pipeline.train_from_cli(None, resume=str(run_dir))
        final = server.stats()

    metrics = RunDir(run_dir).read_metrics()["train"]
    assert metrics["steps"] == config.ppo.total_timesteps
    assert [row["step"] for row in metrics["curve"]][-1] == config.ppo.total_timesteps
    # The resumed run re-used every cached answer: no prompt was answered twice.
    assert len(final.prompts) > len(down.prompts)
    assert len(set(final.prompts)) == len(final.prompts)
    assert sorted(_cached_prompts(Path(config.cache.path))) == sorted(final.prompts)
