"""The transport of the openai backend: one server's client, event loop, retries and counters.

:class:`Transport` owns what every request to an OpenAI-compatible server shares, whatever it asks
(a chat ranking, label scores): the official ``AsyncOpenAI`` client on an event loop of its own in a
background thread, the semaphore bounding requests in flight, tenacity's retries (exponential backoff
with equal jitter, the server's ``retry-after`` honoured, a wall-clock limit per attempt) and the
attempt counters. :mod:`promptopt.llm.openai_backend` and :mod:`promptopt.llm.openai_scoring` build
requests on it; nothing here knows about rankings.

The API key is read from its environment variable when the client is made and lives only inside it:
never an attribute, never pickled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from promptopt.errors import RankerError
from promptopt.llm.openai_http import (
    Failure,
    LoopThread,
    WallClockTimeout,
    describe_failure,
    failure_kind,
    is_transient,
    retry_after_s,
)
from promptopt.llm.urls import public_url

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from tenacity import RetryCallState

logger = logging.getLogger(__name__)

__all__ = ["Transport"]

_T = TypeVar("_T")


class Transport:
    """Requests to one server with retries, at most ``concurrency`` in flight, counted.

    Args:
        base_url: Server URL ending in ``/v1`` (may carry credentials; only :attr:`base_url`, without
            them, is ever shown).
        api_key_env: Environment variable holding the key.
        concurrency: Requests in flight at once.
        timeout_s: Wall-clock seconds one attempt may take, from connecting to the answer's last byte.
        max_retries: Retries per request after the first attempt.
        backoff_s: First backoff; doubles on each retry, with jitter, up to ``max_backoff_s``.
        max_backoff_s: Longest wait between attempts (also caps a server's ``retry-after``).
    """

    def __init__(
        self, base_url: str, api_key_env: str, *, concurrency: int, timeout_s: float, max_retries: int,
        backoff_s: float, max_backoff_s: float,
    ) -> None:
        self._base_url = base_url
        self.base_url = public_url(base_url)
        self.api_key_env = api_key_env
        self.concurrency = int(concurrency)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self._rng = random.Random()
        self._counts: Counter[str] = Counter()
        self._runtime: LoopThread | None = None
        self._client: AsyncOpenAI | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._lock = threading.Lock()

    @property
    def counters(self) -> dict[str, int]:
        """``calls`` (HTTP attempts), ``retries``, ``failures`` and ``error:<kind>`` per failed attempt,
        plus whatever the ranker counts through :meth:`count`."""
        with self._lock:
            return dict(self._counts)

    def count(self, *names: str) -> None:
        """Add one to each counter named."""
        with self._lock:
            for name in names:
                self._counts[name] += 1

    def count_first(self, name: str) -> bool:
        """Add one to ``name``; True when it was zero before (for once-per-run warnings)."""
        with self._lock:
            first = not self._counts[name]
            self._counts[name] += 1
        return first

    async def call(self, path: str, body: dict[str, Any], read: Callable[[bytes], _T]) -> tuple[_T, float]:
        """POST ``body`` to ``path`` with retries on transient errors; ``read`` turns the raw answer into
        a value (raising to retry a malformed one). Returns the value and the last attempt's latency."""
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        client, semaphore = self._async_client()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self.wait,
            retry=retry_if_exception(is_transient),
            before_sleep=self.before_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                async with semaphore:
                    self.count("calls")
                    start = time.perf_counter()
                    # httpx's timeout applies per read: the whole request needs its own clock.
                    try:
                        raw = await asyncio.wait_for(
                            client.post(path, cast_to=bytes, body=body), self.timeout_s
                        )
                    except asyncio.TimeoutError:
                        raise WallClockTimeout() from None
                    latency = time.perf_counter() - start
                value = read(raw)
        return value, latency

    def failure(self, exc: BaseException) -> Failure:
        """Count a request given up on and say why, in one line."""
        reason = describe_failure(exc, self.timeout_s)
        self.count("failures", f"error:{failure_kind(exc)}")
        logger.debug("request to %s failed for good: %s", self.base_url, reason)
        return Failure(reason)

    def wait(self, state: RetryCallState) -> float:
        """Exponential backoff with equal jitter, or the server's ``retry-after`` when it sent one."""
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = retry_after_s(exc)
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s) * (1.0 + 0.1 * self._rng.random())
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (state.attempt_number - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def before_retry(self, state: RetryCallState) -> None:
        """Count a retry and its kind (tenacity's ``before_sleep``)."""
        exc = state.outcome.exception() if state.outcome is not None else None
        self.count("retries", f"error:{failure_kind(exc)}")
        logger.debug(
            "retrying a request to %s after %s", self.base_url, describe_failure(exc, self.timeout_s)
        )

    # -- event loop and client ---------------------------------------------------------------------

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on this transport's event loop (started on first use, and in a forked child)."""
        with self._lock:
            if self._runtime is None or not self._runtime.alive():
                self._runtime = LoopThread()
                self._client = None
                self._semaphore = None
            runtime = self._runtime
        return runtime.run(coroutine)

    def _async_client(self) -> tuple[AsyncOpenAI, asyncio.Semaphore]:
        """The client and semaphore of this event loop (made on first use, inside the loop)."""
        if self._client is None or self._semaphore is None:
            from openai import AsyncOpenAI

            for name in ("httpx", "httpx2"):  # one INFO line per HTTP request drowns a run's own log
                if logging.getLogger(name).level == logging.NOTSET:
                    logging.getLogger(name).setLevel(logging.WARNING)
            key = os.environ.get(self.api_key_env)
            if not key:
                raise RankerError(f"environment variable {self.api_key_env} is not set or empty")
            self._client = AsyncOpenAI(
                api_key=key, base_url=self._base_url, timeout=self.timeout_s, max_retries=0
            )
            self._semaphore = asyncio.Semaphore(self.concurrency)
        return self._client, self._semaphore

    def close(self) -> None:
        """Close the HTTP client and stop the event loop thread (a later call starts new ones)."""
        with self._lock:
            runtime, client = self._runtime, self._client
            self._runtime = self._client = self._semaphore = None
        if runtime is not None and runtime.alive():
            if client is not None:
                try:
                    runtime.run(client.close())
                except Exception:  # closing is best effort
                    logger.debug("closing the OpenAI client failed", exc_info=True)
            runtime.stop()

    def __getstate__(self) -> dict[str, Any]:  # for SubprocVecEnv: the child makes its own loop/client
        state = self.__dict__.copy()
        for name in ("_runtime", "_client", "_semaphore", "_lock"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._runtime = self._client = self._semaphore = None
        self._lock = threading.Lock()
