"""The HTTP side of the openai backend: answers, failure kinds, retry rules and the event-loop thread.

Nothing here knows about rankings; :mod:`promptopt.llm.openai_backend` builds on it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import threading
import time
from collections.abc import Awaitable
from typing import TypeVar

from promptopt.llm.types import TokenUsage

_T = TypeVar("_T")


class BadAnswer(Exception):
    """A 200 answer without a usable message (malformed JSON, no choices, empty content)."""


class WallClockTimeout(Exception):
    """An attempt (connect, send and the whole answer) took longer than ``timeout_s``."""


class Failure(str):
    """The reason a request failed for good (a string, so ``rank`` can tell it from an answer)."""


class LoopThread:
    """An asyncio event loop running forever in a daemon thread of the current process."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="OpenAIRanker-loop", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._pid == os.getpid() and self._thread.is_alive()

    def run(self, coroutine: Awaitable[_T]) -> _T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("OpenAIRanker.rank was called from inside its own event loop")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)  # type: ignore[arg-type]
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


def read_answer(raw: bytes) -> tuple[str, TokenUsage | None]:
    """The answer's text and usage (None when the usage is missing, negative or not a number)."""
    try:
        payload = json.loads(raw)
    except ValueError:
        raise BadAnswer(f"malformed JSON answer ({len(raw)} bytes)") from None
    if not isinstance(payload, dict):
        raise BadAnswer("answer is not a JSON object")
    choices = payload.get("choices")
    if not choices or not isinstance(choices, list):
        raise BadAnswer("answer has no choices")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str) or not content.strip():
        raise BadAnswer("answer has empty content")
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return content, None
    counts = [usage.get("prompt_tokens"), usage.get("completion_tokens", 0)]
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
        return content, None
    return content, TokenUsage(prompt_tokens=counts[0], completion_tokens=counts[1])


def is_transient(exc: BaseException) -> bool:
    """429, 408, 409, 5xx, timeouts, connection errors and unusable answers are worth another try."""
    import openai

    if isinstance(exc, BadAnswer | WallClockTimeout | openai.APIConnectionError | json.JSONDecodeError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def failure_kind(exc: BaseException | None) -> str:
    import openai

    if isinstance(exc, openai.APITimeoutError | WallClockTimeout):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.APIStatusError):
        return str(exc.status_code)
    if isinstance(exc, BadAnswer | ValueError):
        return "bad_answer"
    return type(exc).__name__ if exc is not None else "unknown"


def describe_failure(exc: BaseException | None, timeout_s: float) -> str:
    """One line naming the failure (status, timeout, connection) without request bodies or keys."""
    import openai

    if isinstance(exc, openai.APITimeoutError | WallClockTimeout):
        return f"timed out after {timeout_s:g} s"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        return f"connection error ({type(cause).__name__ if cause else 'no answer'})"
    if isinstance(exc, openai.APIStatusError):
        hint = " (check the key in the environment variable)" if exc.status_code in (401, 403) else ""
        return f"HTTP {exc.status_code} {type(exc).__name__}{hint}"
    if isinstance(exc, BadAnswer):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def retry_after_s(exc: BaseException | None) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date) of an error answer."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        if headers.get("retry-after-ms") is not None:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None
