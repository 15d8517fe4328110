"""The OpenAI-compatible backend against a real local HTTP server through the official client."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import re
import threading
import time
from pathlib import Path

import pytest

from promptopt.config import RankerConfig
from promptopt.errors import ConfigError, RankerError
from promptopt.llm.cache import CachedRanker, CacheStore, PartialBatchError
from promptopt.llm.openai_backend import OpenAIRanker
from promptopt.llm.parsing import parse_ranking
from promptopt.llm.types import RankRequest
from promptopt.testing import LocalOpenAIServer, default_answer

KEY_ENV = "PROMPTOPT_TEST_LLM_KEY"
FAKE_KEY = "sk-promptopt-FAKE-7c1d9e2b4a6f"


@pytest.fixture(autouse=True)
def _key(monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)


def _requests(n: int, *, tag: str = "user", k: int = 5, sample_id: int = 0) -> list[RankRequest]:
    out = []
    for i in range(n):
        texts = [f"Movie {i}-{j} ({1990 + j})" for j in range(k)]
        listing = "\n".join(f"{j + 1}. {t}" for j, t in enumerate(texts))
        prompt = f"{tag} {i}: rank the candidates.\n{listing}"
        ids = [10 * i + j for j in range(k)]
        out.append(RankRequest.from_prompt(prompt, ids, texts, sample_id=sample_id))
    return out


def _ranker(server: LocalOpenAIServer, **kwargs) -> OpenAIRanker:
    options = {"api_key_env": KEY_ENV, "backoff_s": 0.001, "max_backoff_s": 0.05, "timeout_s": 5.0}
    options.update(kwargs)
    return OpenAIRanker("local-test", base_url=server.base_url, **options)


def test_missing_key_is_a_clear_error_before_any_call(monkeypatch) -> None:
    with LocalOpenAIServer() as server:
        for value in (None, ""):
            if value is None:
                monkeypatch.delenv(KEY_ENV)
            else:
                monkeypatch.setenv(KEY_ENV, value)
            with pytest.raises(RankerError, match=f"{KEY_ENV} is not set or empty"):
                _ranker(server)
        assert server.stats().total_requests == 0


def test_answers_are_parsed_against_the_shown_order_with_usage() -> None:
    requests = _requests(12)
    with LocalOpenAIServer() as server, _ranker(server) as ranker:
        out = ranker.rank(requests)
        assert server.last_authorization == f"Bearer {FAKE_KEY}"
    for request, response in zip(requests, out):
        expected = default_answer([{"role": "user", "content": request.prompt}], {})
        assert response.raw_text == expected
        assert response.ranking == parse_ranking(expected, request)[0]
        assert response.parse.complete
        assert response.usage.prompt_tokens == len(request.prompt.split())
        assert response.usage.completion_tokens == len(expected.split())
        assert response.latency_s > 0 and not response.cached
    assert ranker.counters["calls"] == 12 and ranker.counters["succeeded"] == 12


def test_concurrency_is_bounded_and_used() -> None:
    with LocalOpenAIServer(latency_s=0.2) as server:  # long enough for every slot to fill on a busy machine
        with _ranker(server, concurrency=4) as ranker:
            ranker.rank(_requests(12))
        assert server.stats().max_in_flight == 4
        server.reset_counters()
        with _ranker(server, concurrency=16) as ranker:
            ranker.rank(_requests(32, tag="wide"))
        assert 8 <= server.stats().max_in_flight <= 16


def test_every_transient_failure_is_retried() -> None:
    kinds = ("429", "500", "reset", "malformed", "empty", "truncated", "hang")
    with LocalOpenAIServer(hang_s=10.0) as server, _ranker(server, timeout_s=0.5, concurrency=1) as ranker:
        server.fail_next(*kinds)
        out = ranker.rank(_requests(3))
        stats = server.stats()
    assert len(out) == 3 and all(r.parse.complete for r in out)
    assert stats.failures == dict.fromkeys(kinds, 1)
    counters = ranker.counters
    assert counters["retries"] == len(kinds)
    assert counters["calls"] == 3 + len(kinds)
    assert counters.get("failures", 0) == 0
    assert counters["error:timeout"] == 1 and counters["error:429"] == 1 and counters["error:bad_answer"] == 2


def test_retry_after_is_honoured() -> None:
    with LocalOpenAIServer(retry_after_s=0.4) as server, _ranker(server, max_backoff_s=5.0) as ranker:
        server.fail_next("429")
        start = time.perf_counter()
        ranker.rank(_requests(1))
        elapsed = time.perf_counter() - start
    assert elapsed >= 0.4  # backoff alone would wait about 1 ms
    assert ranker.counters["retries"] == 1


def test_failures_beyond_the_retry_budget_name_the_server_and_keep_answers(tmp_path: Path) -> None:
    requests = _requests(6)
    with LocalOpenAIServer() as server:
        server.fail_matching("user 4:", "500")
        backend = _ranker(server, max_retries=2)
        with pytest.raises(PartialBatchError) as info:
            backend.rank(requests)
        error = info.value
        assert server.base_url in str(error) and "HTTP 500" in str(error)
        assert sorted(error.completed) == [0, 1, 2, 3, 5] and list(error.failed) == [4]
        assert backend.counters["failures"] == 1 and backend.counters["retries"] == 2

        cached = CachedRanker(backend, tmp_path / "c.sqlite")
        with pytest.raises(RankerError, match="5 of 6 answers of this batch were saved"):
            cached.rank(requests)
        server.clear_failures()
        server.reset_counters()
        out = cached.rank(requests)  # only the failed request is sent again
        assert server.stats().total_requests == 1
        assert [r.cached for r in out] == [True] * 4 + [False, True]
        cached.close()


def test_permanent_errors_are_not_retried() -> None:
    with LocalOpenAIServer() as server, _ranker(server, max_retries=5) as ranker:
        server.fail_next("401")
        with pytest.raises(PartialBatchError, match="HTTP 401 AuthenticationError") as info:
            ranker.rank(_requests(1))
        assert server.stats().total_requests == 1
    assert FAKE_KEY not in str(info.value)


def test_fault_injection_run_completes_and_counts_add_up(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="promptopt.llm.openai_backend")
    with LocalOpenAIServer(failure_rate=0.2, seed=3, hang_s=10.0) as server:
        with _ranker(server, timeout_s=0.5, concurrency=8, max_retries=10) as ranker:
            out = []
            for batch in range(4):
                out += ranker.rank(_requests(20, tag=f"batch{batch}"))
        stats = server.stats()
    counters = ranker.counters
    assert len(out) == 80 and all(r.parse.complete for r in out)
    assert stats.total_failures >= 8  # about 20% of ~100 attempts
    assert counters["retries"] == stats.total_failures
    assert counters["calls"] == 80 + counters["retries"]
    assert counters.get("failures", 0) == 0
    batch_lines = [r.getMessage() for r in caplog.records if "batch of 20" in r.getMessage()]
    assert len(batch_lines) == 4
    logged = [re.search(r"(\d+) calls, (\d+) retries, (\d+) failures", line).groups() for line in batch_lines]
    assert sum(int(retries) for _, retries, _ in logged) == counters["retries"]
    assert sum(int(calls) for calls, _, _ in logged) == counters["calls"]


def test_key_never_reaches_identity_cache_logs_or_pickles(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "c.sqlite"
    with LocalOpenAIServer() as server:
        backend = _ranker(server)
        with CachedRanker(backend, path) as ranker:
            ranker.rank(_requests(4))
            server.fail_next("401")
            with pytest.raises(RankerError):
                ranker.rank(_requests(1, tag="fails"))
        export = tmp_path / "export.jsonl"
        with export.open("w") as fh:
            CacheStore(path, create=False).export_jsonl(fh)
        dumped = pickle.dumps(backend)
    assert FAKE_KEY not in json.dumps(dict(backend.identity))
    assert FAKE_KEY not in repr(backend)
    assert FAKE_KEY.encode() not in dumped
    assert FAKE_KEY not in caplog.text
    for file in tmp_path.iterdir():
        assert FAKE_KEY.encode() not in file.read_bytes(), file.name


def test_identity_strips_credentials_and_query_from_the_url() -> None:
    with LocalOpenAIServer() as server:
        url = server.base_url.replace("http://", "http://alice:pw@") + "/?api-version=1&token=abc"
        ranker = OpenAIRanker("m", base_url=url, api_key_env=KEY_ENV, temperature=0.3, seed=7, max_tokens=64)
        assert ranker.identity == {
            "backend": "openai", "model": "m", "temperature": 0.3, "seed": 7, "max_tokens": 64,
            "base_url": server.base_url,
        }


def test_sample_id_changes_the_seed_sent() -> None:
    seeds: list[int] = []

    def answer(messages, body):
        seeds.append(body["seed"])
        return "1\n2\n3\n4\n5"

    with LocalOpenAIServer(answer=answer) as server, _ranker(server, seed=100, concurrency=1) as ranker:
        ranker.rank(_requests(1, sample_id=0) + _requests(1, sample_id=3))
    assert seeds == [100, 103]


def test_rank_works_from_threads_and_inside_a_running_event_loop() -> None:
    with LocalOpenAIServer() as server, _ranker(server) as ranker:
        results: dict[str, int] = {}

        def in_thread(name: str) -> None:
            results[name] = len(ranker.rank(_requests(3, tag=name)))

        threads = [threading.Thread(target=in_thread, args=(f"t{i}",)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        async def in_loop() -> int:
            return len(ranker.rank(_requests(2, tag="loop")))

        assert asyncio.run(in_loop()) == 2
        assert results == {"t0": 3, "t1": 3, "t2": 3}


def test_pickled_copy_and_reuse_after_close_work() -> None:
    with LocalOpenAIServer() as server:
        ranker = _ranker(server)
        first = ranker.rank(_requests(2))
        ranker.close()
        again = ranker.rank(_requests(2))  # a new loop and client after close
        assert [(r.ranking, r.raw_text) for r in again] == [(r.ranking, r.raw_text) for r in first]
        clone = pickle.loads(pickle.dumps(ranker))
        assert [r.ranking for r in clone.rank(_requests(2))] == [r.ranking for r in first]
        ranker.close()
        clone.close()


def test_cost_from_the_price_table_and_config() -> None:
    with LocalOpenAIServer() as server:
        config = RankerConfig(backend="openai", model="local-test", base_url=server.base_url,
                              api_key_env=KEY_ENV, price_prompt_per_1m=2.0, price_completion_per_1m=8.0,
                              concurrency=3)
        ranker = OpenAIRanker.from_config(config)
        usage = ranker.rank(_requests(1))[0].usage
        assert ranker.concurrency == 3
        expected = (2.0 * usage.prompt_tokens + 8.0 * usage.completion_tokens) / 1e6
        assert ranker.cost_of(usage) == pytest.approx(expected)
        ranker.close()


@pytest.mark.parametrize(
    "kwargs", [{"concurrency": 0}, {"max_retries": -1}, {"timeout_s": 0}, {"max_tokens": 0}]
)
def test_bad_settings_are_config_errors(kwargs) -> None:
    with pytest.raises(ConfigError, match=f"ranker.{next(iter(kwargs))} must be"):
        OpenAIRanker("m", api_key_env=KEY_ENV, **kwargs)
