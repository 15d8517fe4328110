"""What :class:`~promptopt.testing.LocalOpenAIServer` answers: OpenAI wire-format bodies, no HTTP.

The default chat answer ranks the prompt's numbered candidates in an order that is deterministic
per prompt; embeddings are deterministic hashed bags of words; token usage counts whitespace-
separated words. The failure kinds the server can inject are named here too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

FAILURE_KINDS: tuple[str, ...] = ("429", "500", "reset", "hang", "malformed", "empty", "truncated")
"""Transient failures: a client should retry them (the default kinds of random failures)."""
PERMANENT_FAILURES: tuple[str, ...] = ("400", "401")
"""Failures a client must not retry (bad request, rejected key); for ``fail_next`` / ``fail_matching``."""

AnswerFn = Callable[[Sequence[Mapping[str, Any]], Mapping[str, Any]], str]
"""``answer(messages, body) -> content``: scripts the chat answer (messages as sent by the client)."""

_CANDIDATE_LINE = re.compile(r"^\s*[\[(]?(\d{1,4})\s*[.)\]:]\s+\S")


def check_failure_kinds(kinds: Sequence[str]) -> None:
    """Raises ``ValueError`` naming the kinds that are neither transient nor permanent failures."""
    known = FAILURE_KINDS + PERMANENT_FAILURES
    unknown = sorted(set(kinds) - set(known))
    if unknown:
        raise ValueError(f"unknown failure kinds {unknown}; choose from {list(known)}")


def default_answer(messages: Sequence[Mapping[str, Any]], body: Mapping[str, Any]) -> str:
    """The numbers of the numbered candidate lines of the prompt, deterministically shuffled per prompt.

    Answers a JSON array when the prompt mentions JSON, else one number per line.
    """
    prompt = str(messages[-1].get("content", "")) if messages else ""
    numbers: list[int] = []
    for line in prompt.splitlines():
        match = _CANDIDATE_LINE.match(line)
        if match and int(match.group(1)) not in numbers:
            numbers.append(int(match.group(1)))
    numbers.sort(key=lambda n: hashlib.sha256(f"{n}:{prompt}".encode()).digest())
    if "json" in prompt.lower():
        return json.dumps(numbers)
    return "\n".join(str(n) for n in numbers)


def hashed_embedding(text: str, dim: int = 64) -> list[float]:
    """A deterministic bag-of-words vector: each lower-cased word adds +-1 to a hashed coordinate."""
    vector = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()) or [""]:
        digest = hashlib.sha256(word.encode()).digest()
        index = int.from_bytes(digest[:4], "little") % dim
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [v / norm for v in vector]


def chat_completion(body: Mapping[str, Any], content: str, model: str) -> dict[str, Any]:
    """The ``POST /v1/chat/completions`` answer carrying ``content`` (usage counts words)."""
    messages = body.get("messages") or []
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
    completion_tokens = len(content.split())
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
    return {
        "id": f"chatcmpl-{digest}",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", model),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def embeddings_response(body: Mapping[str, Any], dim: int, model: str) -> dict[str, Any]:
    """The ``POST /v1/embeddings`` answer: one :func:`hashed_embedding` per input text.

    ``dim`` is the server's default length; the request's ``dimensions`` overrides it.
    """
    texts = body.get("input", "")
    if isinstance(texts, str):
        texts = [texts]
    dim = int(body.get("dimensions") or dim)
    data = [
        {"object": "embedding", "index": i, "embedding": hashed_embedding(str(t), dim)}
        for i, t in enumerate(texts)
    ]
    tokens = sum(len(str(t).split()) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": body.get("model", model),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def empty_completion(model: str) -> dict[str, Any]:
    """A status-200 chat answer without choices (the ``"empty"`` failure)."""
    return {
        "id": "chatcmpl-empty", "object": "chat.completion", "created": 0,
        "model": model, "choices": [],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def error_body(message: str, code: str) -> dict[str, Any]:
    """An OpenAI error body (what 4xx / 5xx answers hold)."""
    return {"error": {"message": message, "type": code, "code": code}}
