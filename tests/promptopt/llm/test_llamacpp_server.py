"""The openai backend against a real OpenAI-compatible server: llama-cpp-python serving SmolLM2-135M-Instruct.

One server process per module, on 127.0.0.1 (``LlamaCppServer``); the tests kill and restart it.
Prompts are short: llama-cpp-python's echo path sorts the whole vocabulary once per prompt token.
"""

from __future__ import annotations

import logging
import threading

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python (the dev extra) is not installed")

from promptopt.errors import RankerError
from promptopt.llm.cache import CachedRanker
from promptopt.llm.llamacpp_server import LlamaCppServer
from promptopt.llm.openai_backend import OpenAIRanker
from tests.promptopt.llm.smollm2_requests import capital_index_request, capital_request, movie_requests

# A busy 2-core machine runs each echo call for tens of seconds: room beyond the suite's 900 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

SCORE_TOLERANCE = 0.5
"""Largest |server - hf| label score allowed. Measured: 0.10 (index labels) and 0.16 (length-normalised
titles); per echoed token up to 0.39 (median 0.06). The server runs the Q4_1 weights with llama.cpp's
kernels, transformers the dequantised float32 weights (docs/rankers_api.md)."""


@pytest.fixture(scope="module")
def server(smollm2_file):
    with LlamaCppServer(smollm2_file, n_ctx=1024, n_threads=2) as running:
        yield running


@pytest.fixture()
def local_key(monkeypatch) -> str:
    monkeypatch.setenv("LLAMACPP_KEY", "any-non-empty-value")
    return "LLAMACPP_KEY"


def _ranker(server, key, **kwargs) -> OpenAIRanker:
    # llama-cpp-python answers one request at a time: with one in flight, none waits past its timeout
    # in the server's queue (and is retried, paying twice) on a busy machine.
    kwargs.setdefault("max_tokens", 48)
    kwargs.setdefault("timeout_s", 600.0)
    kwargs.setdefault("concurrency", 1)
    return OpenAIRanker("smollm2", base_url=server.base_url, api_key_env=key, backoff_s=0.2, **kwargs)


def _assert_permutation(request, response) -> None:
    assert sorted(response.ranking) == sorted(request.candidate_ids)


def test_generation_through_the_server_parses_into_permutations(server, local_key) -> None:
    ranker = _ranker(server, local_key)
    requests = movie_requests()[:2]
    responses = ranker.rank(requests)
    for request, response in zip(requests, responses):
        _assert_permutation(request, response)
        assert response.raw_text.strip()
        assert response.usage.prompt_tokens > 50 and 0 < response.usage.completion_tokens <= 48
        stats = response.parse
        assert stats.found + stats.missing == len(request.candidate_ids)
        assert stats.found >= 1  # the answer names at least one candidate
    assert ranker.counters["calls"] == 2 and ranker.counters.get("retries", 0) == 0


def test_score_mode_agrees_with_the_hf_backend(server, local_key, smollm2_hf, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="promptopt.llm.openai_backend"):
        ranker = _ranker(server, local_key, api_mode="score", tokenizer="smollm2-135m-instruct")
    assert ranker.api_mode == "score", caplog.text  # the alignment probe passed
    assert ranker.identity["api_mode"] == "score" and ranker.identity["chat_template"]
    requests = [capital_request(), capital_index_request()]  # short: every echoed token costs a vocab sort
    for request in requests:  # the same text reaches both models
        assert ranker.score_prompt(request) == smollm2_hf.prompt_text(request)
    api = ranker.rank(requests)
    local = smollm2_hf.rank(requests)
    assert api[0].ranking[0] == local[0].ranking[0] == 1  # "Paris" (title labels)
    for request, a, b in zip(requests, api, local):
        _assert_permutation(request, a)
        assert a.scores is not None and b.scores is not None
        worst = max(abs(x - y) for x, y in zip(a.scores, b.scores))
        assert worst <= SCORE_TOLERANCE, (a.scores, b.scores)
        assert a.ranking[:2] == b.ranking[:2]
    # One HTTP call per candidate, plus the two of the probe; nothing retried.
    assert ranker.counters["calls"] == 2 + sum(len(r.candidate_ids) for r in requests)
    assert ranker.counters.get("retries", 0) == 0


def test_misaligned_echo_logprobs_fall_back_to_chat_with_one_line(server, local_key, caplog) -> None:
    # Without the chat template the prompt does not start with SmolLM2's BOS token, and
    # llama-cpp-python reads every echoed token's log-probability one position late.
    with caplog.at_level(logging.WARNING, logger="promptopt.llm.openai_backend"):
        ranker = _ranker(server, local_key, api_mode="score")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "misaligned" in warnings[0].getMessage()
    assert ranker.api_mode == "chat" and "api_mode" not in ranker.identity


def test_killed_server_loses_nothing_paid_and_a_restart_is_retried(server, local_key, tmp_path) -> None:
    backend = _ranker(server, local_key, max_retries=0)
    cached = CachedRanker(backend, tmp_path / "cache.sqlite")
    first, second, third = movie_requests()
    paid = cached.rank([first, second])
    assert not any(r.cached for r in paid) and backend.counters["calls"] == 2

    server.kill()
    with pytest.raises(RankerError, match=r"2 of 3 answers of this batch were saved|connection"):
        cached.rank([first, second, third])
    assert backend.counters["calls"] == 3  # only the new request was sent, and it failed
    assert cached.stats.failures == 1

    # Restart the server once the first attempt has failed: the retries carry the request over the gap.
    backend.max_retries = 12
    restarted = threading.Event()

    def restart() -> None:
        server.start()
        restarted.set()

    thread = threading.Thread(target=restart)
    before_retry = backend.transport.before_retry

    def restart_on_first_retry(state) -> None:
        before_retry(state)
        if thread.ident is None:
            thread.start()

    backend.transport.before_retry = restart_on_first_retry  # type: ignore[method-assign]
    try:
        out = cached.rank([first, second, third])
    finally:
        if thread.ident is not None:
            thread.join()
    assert restarted.is_set() and server.starts == 2
    assert [r.cached for r in out] == [True, True, False]
    _assert_permutation(third, out[2])
    counters = backend.counters
    assert counters["succeeded"] == 3  # first and second were paid once, in the first batch
    assert counters.get("retries", 0) >= 1 and counters.get("error:connection", 0) >= 1

    # The answer cache: the same requests again cost nothing.
    calls = counters["calls"]
    again = cached.rank([first, second, third])
    assert all(r.cached for r in again) and backend.counters["calls"] == calls
    assert [r.ranking for r in again] == [r.ranking for r in out]
