"""The local OpenAI-compatible test server, spoken to by the official openai client."""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from promptopt.testing import LocalOpenAIServer, default_answer, hashed_embedding

REPO = Path(__file__).resolve().parents[3]


def _client(server: LocalOpenAIServer) -> openai.OpenAI:
    return openai.OpenAI(api_key="anything", base_url=server.base_url, max_retries=0, timeout=5)


def test_chat_completion_has_the_openai_shape() -> None:
    prompt = "Rank:\n1. Alien (1979)\n2. Heat (1995)\n[3] Ran (1985)\nAnswer with numbers."
    with LocalOpenAIServer() as server:
        reply = _client(server).chat.completions.create(
            model="whatever", messages=[{"role": "user", "content": prompt}]
        )
        stats = server.stats()
    content = reply.choices[0].message.content
    assert sorted(int(x) for x in content.split()) == [1, 2, 3]
    assert content == default_answer([{"content": prompt}], {})  # deterministic per prompt
    assert reply.usage.prompt_tokens == len(prompt.split())
    assert stats.requests == {"/v1/chat/completions": 1} and stats.succeeded == 1
    assert stats.prompts == (prompt,)


def test_default_answer_is_json_when_asked_and_differs_between_prompts() -> None:
    listing = "\n".join(f"{i}. Item {i}" for i in range(1, 9))
    answer = default_answer([{"content": f"Return a JSON array.\n{listing}"}], {})
    assert sorted(json.loads(answer)) == list(range(1, 9))
    orders = {default_answer([{"content": f"user {u}\n{listing}"}], {}) for u in range(10)}
    assert len(orders) > 1


def test_embeddings_are_deterministic_normalised_and_word_sensitive() -> None:
    with LocalOpenAIServer(embedding_dim=32) as server:
        client = _client(server)
        texts = ["space opera with robots", "robots in space", "a quiet french romance"]
        first = client.embeddings.create(model="e", input=texts)
        again = client.embeddings.create(model="e", input=texts[0])
    vectors = [d.embedding for d in first.data]
    assert [len(v) for v in vectors] == [32, 32, 32]
    assert vectors[0] == again.data[0].embedding == pytest.approx(hashed_embedding(texts[0], 32))
    assert all(math.isclose(sum(x * x for x in v), 1.0) for v in vectors)

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])


def test_scripted_answer_and_models_route() -> None:
    with LocalOpenAIServer(answer=lambda messages, body: f"echo {body['model']}") as server:
        client = _client(server)
        reply = client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "echo m1"
        assert [m.id for m in client.models.list()] == ["local-test"]


def test_injected_failures_reach_the_client_as_the_right_errors() -> None:
    with LocalOpenAIServer(retry_after_s=2.5) as server:
        client = _client(server)
        messages = [{"role": "user", "content": "1. a\n2. b"}]
        server.fail_next("429", "500", "401", "reset")
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model="m", messages=messages)
        assert limited.value.response.headers["retry-after"] == "2.5"
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=messages)
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="m", messages=messages)
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="m", messages=messages)
        server.fail_next("empty")
        assert client.chat.completions.create(model="m", messages=messages).choices == []
        assert server.stats().failures == {"429": 1, "500": 1, "401": 1, "reset": 1, "empty": 1}


def test_random_failures_follow_the_seed() -> None:
    def run(seed: int) -> dict[str, int]:
        with LocalOpenAIServer(failure_rate=0.5, failures=("500", "429"), seed=seed) as server:
            client = _client(server)
            for _ in range(20):
                with contextlib.suppress(openai.APIStatusError):
                    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
            return dict(server.stats().failures)

    assert run(1) == run(1)
    assert 3 <= sum(run(1).values()) <= 17


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown failure kinds"):
        LocalOpenAIServer(failures=("boom",))
    with pytest.raises(ValueError, match="failure_rate"):
        LocalOpenAIServer(failure_rate=1.5)
    server = LocalOpenAIServer()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url
    with pytest.raises(ValueError, match="unknown failure kinds"):
        server.fail_next("nope")


def test_standalone_server_prints_its_url_and_serves() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptopt.testing", "--latency", "0"],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        client = openai.OpenAI(api_key="x", base_url=url, max_retries=0, timeout=5)
        messages = [{"role": "user", "content": "1. a\n2. b"}]
        reply = client.chat.completions.create(model="m", messages=messages)
        assert sorted(reply.choices[0].message.content.split()) == ["1", "2"]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
