"""The OpenAI backend against misbehaving local HTTP servers: a wall-clock limit per request, and usage
that a server reports as negative or nonsense never makes a call free for the budget.

The servers are plain ``http.server`` threads on 127.0.0.1 answering valid chat completions, either
trickling the body one byte at a time (each read arrives well within the per-read timeout, so only a
limit on the whole request stops it) or promptly with invalid ``usage``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from promptopt.errors import BudgetExceeded, RankerError
from promptopt.llm.budget import Budget
from promptopt.llm.cache import CachedRanker
from promptopt.llm.openai_backend import OpenAIRanker
from promptopt.llm.types import RankRequest

KEY_ENV = "PROMPTOPT_LIMITS_TEST_KEY"


def _answer(usage: object) -> bytes:
    return json.dumps({
        "id": "x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "1, 2, 3"},
                     "finish_reason": "stop"}],
        "usage": usage,
    }).encode()


@contextmanager
def serve(*, trickle_s: float = 0.0, usage: object = None) -> Iterator[tuple[str, dict[str, int]]]:
    """A chat-completions server; yields its base URL and its counters (requests, bytes sent)."""
    stop = threading.Event()
    counts = {"requests": 0, "bytes": 0}
    body = _answer(usage if usage is not None else {"prompt_tokens": 5, "completion_tokens": 3})

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            counts["requests"] += 1
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            try:
                if not trickle_s:
                    self.wfile.write(body)
                    return
                for k in range(len(body)):  # one byte per trickle_s: each read is quick, the whole is not
                    if stop.wait(trickle_s):
                        return
                    self.wfile.write(body[k:k + 1])
                    self.wfile.flush()
                    counts["bytes"] += 1
            except (BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
                return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", counts
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _request(k: int = 0) -> RankRequest:
    return RankRequest(messages=(("user", f"rank these {k}: 1. a 2. b 3. c"),), candidate_ids=(1, 2, 3),
                       candidate_texts=("a", "b", "c"))


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "local-test-key")


def test_timeout_is_a_wall_clock_limit_on_the_whole_request() -> None:
    """A body trickled at 0.25 s a byte (~60 s in all) is abandoned after timeout_s, not per read."""
    with serve(trickle_s=0.25) as (url, counts):
        ranker = OpenAIRanker("m", base_url=url, api_key_env=KEY_ENV, timeout_s=1.5, max_retries=1,
                              backoff_s=0.0)
        start = time.perf_counter()
        with pytest.raises(RankerError, match=r"timed out after 1\.5 s"):
            ranker.rank([_request()])
        elapsed = time.perf_counter() - start
        ranker.close()
    assert counts["requests"] == 2  # the first attempt and one retry, each cut at 1.5 s
    assert elapsed < 2 * 1.5 + 5.0, elapsed  # far below the ~120 s the trickle would take
    assert ranker.counters["error:timeout"] == 2


@pytest.mark.parametrize("usage", [{"prompt_tokens": -1000, "completion_tokens": -1000},
                                   {"prompt_tokens": "many", "completion_tokens": 2},
                                   {"prompt_tokens": 1.5e30, "completion_tokens": 0}, "none"])
def test_nonsense_usage_never_makes_calls_free(usage: object, tmp_path: Path) -> None:
    """Negative, non-numeric or missing usage is estimated from the text, so a token cap still stops."""
    with serve(usage=usage) as (url, counts):
        ranker = OpenAIRanker("m", base_url=url, api_key_env=KEY_ENV, price_prompt_per_1m=1e5,
                              price_completion_per_1m=1e5)
        budget = Budget(max_tokens=40, max_cost=4.0)
        cached = CachedRanker(ranker, tmp_path / "c.sqlite", budget=budget)
        with pytest.raises(BudgetExceeded):
            for k in range(50):
                cached.rank([_request(k)])
        cached.close()
    spent = budget.spent
    assert 0 < spent.tokens <= 40 + 20 and spent.cost > 0  # estimated: ~9 prompt + 2 answer tokens a call
    assert counts["requests"] < 10
    assert ranker.counters["usage_estimated"] == counts["requests"]
