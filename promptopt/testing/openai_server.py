"""A real OpenAI-compatible HTTP server on 127.0.0.1 for offline tests, benchmarks and demos.

:class:`LocalOpenAIServer` is a test double you can also use for your own offline tests: it speaks
the wire format of ``POST /v1/chat/completions`` and ``POST /v1/embeddings`` (and ``GET
/v1/models``), so the official ``openai`` client, :class:`promptopt.llm.openai_backend.OpenAIRanker`
or any other OpenAI-compatible client talks to it exactly as to vLLM, Ollama or OpenAI. It adds
configurable latency, injectable failures and request counters::

    with LocalOpenAIServer(latency_s=0.05, failure_rate=0.2, seed=0) as server:
        ranker = OpenAIRanker("local-test", base_url=server.base_url, api_key_env="LOCAL_KEY")
        ...
        assert server.stats().max_in_flight <= 16

What it answers (the default chat answer, embeddings, token usage) is in
:mod:`promptopt.testing.openai_wire`; pass ``answer=`` to script any other chat answer.

Failure kinds (``failures=`` and :meth:`LocalOpenAIServer.fail_next`):
``"429"`` (rate limit with a ``retry-after`` header), ``"500"``, ``"reset"`` (connection dropped
without an answer), ``"hang"`` (no answer for ``hang_s`` seconds: past the client's timeout),
``"malformed"`` (status 200, body that is not JSON), ``"empty"`` (status 200, no choices),
``"truncated"`` (status 200, body cut off before its declared length); and two that must not be
retried: ``"400"`` (bad request) and ``"401"`` (key rejected).
"""

from __future__ import annotations

import json
import logging
import random
import socket
import struct
import threading
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from promptopt.testing.openai_wire import (
    FAILURE_KINDS,
    AnswerFn,
    chat_completion,
    check_failure_kinds,
    default_answer,
    embeddings_response,
    empty_completion,
    error_body,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerStats:
    """Counters of a :class:`LocalOpenAIServer` since it started (or the last reset).

    Attributes:
        requests: Requests received per path (``"/v1/chat/completions"`` ...).
        succeeded: Requests answered normally.
        failures: Injected failures per kind (counted when drawn, before a hang ends).
        max_in_flight: Most requests being handled at the same time.
        prompts: Prompts (last message content) of chat requests answered normally, in order.
    """

    requests: Mapping[str, int] = field(default_factory=dict)
    succeeded: int = 0
    failures: Mapping[str, int] = field(default_factory=dict)
    max_in_flight: int = 0
    prompts: tuple[str, ...] = ()

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def total_failures(self) -> int:
        return sum(self.failures.values())


class LocalOpenAIServer:
    """An OpenAI-compatible HTTP server in a background thread (127.0.0.1, random free port).

    Use as a context manager; :attr:`base_url` ends with ``/v1``. Any API key is accepted.

    Args:
        latency_s: Seconds every request waits before it is answered (simulates the model).
        failure_rate: Probability that a request fails with one of ``failures`` (seeded).
        failures: Kinds drawn (uniformly) when a random failure is injected; see the module doc.
        seed: Seed of the failure draws.
        answer: Scripts the chat answer; the default ranks the prompt's numbered candidates.
        hang_s: How long a ``"hang"`` failure holds the request (choose more than the client timeout).
        retry_after_s: Value of the ``retry-after`` header of ``"429"`` failures.
        model: Model name reported in answers and by ``GET /v1/models``.
        embedding_dim: Length of the vectors of ``/v1/embeddings`` (overridden by ``dimensions``).
        port: Port on 127.0.0.1 (0 = a free one).

    Raises:
        ValueError: A failure kind is unknown or ``failure_rate`` is outside [0, 1].
    """

    def __init__(
        self,
        latency_s: float = 0.0,
        *,
        failure_rate: float = 0.0,
        failures: Sequence[str] = FAILURE_KINDS,
        seed: int = 0,
        answer: AnswerFn | None = None,
        hang_s: float = 30.0,
        retry_after_s: float = 0.01,
        model: str = "local-test",
        embedding_dim: int = 64,
        port: int = 0,
    ) -> None:
        check_failure_kinds(failures)
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be in [0, 1], got {failure_rate}")
        if failure_rate > 0 and not failures:
            raise ValueError("failure_rate > 0 needs at least one failure kind")
        self.latency_s = float(latency_s)
        self.failure_rate = float(failure_rate)
        self.failures = tuple(failures)
        self.answer: AnswerFn = answer or default_answer
        self.hang_s = float(hang_s)
        self.retry_after_s = float(retry_after_s)
        self.model = model
        self.embedding_dim = int(embedding_dim)
        self._port = int(port)
        self.last_authorization: str | None = None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._scripted: deque[str] = deque()
        self._matching: list[tuple[str, str]] = []
        self._reset_counters()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> LocalOpenAIServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"server_double": self})
        httpd = _HTTPServer(("127.0.0.1", self._port), handler)
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="LocalOpenAIServer", daemon=True
        )
        self._thread.start()
        logger.debug("local OpenAI-compatible server listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving; requests still hanging or waiting are released."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> LocalOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running; use it as a context manager or call start()")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- failures and counters -------------------------------------------------------------------

    def fail_next(self, *kinds: str) -> None:
        """Make the next ``len(kinds)`` requests fail with these kinds, in order (before random ones)."""
        check_failure_kinds(kinds)
        with self._lock:
            self._scripted.extend(kinds)

    def fail_matching(self, text: str, kind: str) -> None:
        """Make every chat request whose prompt contains ``text`` fail with ``kind`` (a persistent fault)."""
        check_failure_kinds((kind,))
        with self._lock:
            self._matching.append((text, kind))

    def clear_failures(self) -> None:
        """Forget scripted and persistent failures (random ones stay as configured)."""
        with self._lock:
            self._scripted.clear()
            self._matching.clear()

    def stats(self) -> ServerStats:
        """A snapshot of the counters."""
        with self._lock:
            return ServerStats(
                requests=dict(self._requests),
                succeeded=self._succeeded,
                failures=dict(self._failures),
                max_in_flight=self._max_in_flight,
                prompts=tuple(self._prompts),
            )

    def reset_counters(self) -> None:
        with self._lock:
            self._reset_counters()

    def _reset_counters(self) -> None:
        self._requests: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()
        self._succeeded = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._prompts: list[str] = []

    def _enter(self, path: str) -> None:
        with self._lock:
            self._requests[path] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _leave(self, *, failed: bool, prompt: str | None = None) -> None:
        with self._lock:
            self._in_flight -= 1
            if not failed:
                self._succeeded += 1
                if prompt is not None:
                    self._prompts.append(prompt)

    def _draw_failure(self, prompt: str | None) -> str | None:
        """The failure this request gets (counted now, before a hang even starts), or None."""
        with self._lock:
            kind = None
            if prompt is not None:
                kind = next((k for text, k in self._matching if text in prompt), None)
            if kind is None and self._scripted:
                kind = self._scripted.popleft()
            if kind is None and self.failure_rate > 0 and self._rng.random() < self.failure_rate:
                kind = self._rng.choice(self.failures)
            if kind is not None:
                self._failures[kind] += 1
            return kind


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the listen backlog: a burst of connections must not be refused

    def handleerror_body(self, request: Any, client_address: Any) -> None:
        # Clients dropping connections (timeouts, pools closing) are normal here; the stdlib prints them.
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stall
    server_double: LocalOpenAIServer

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib prints to stderr by default
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            body = {"object": "list", "data": [{"id": self.server_double.model, "object": "model"}]}
            self._send_json(200, body)
        else:
            self._send_json(404, error_body(f"no route GET {self.path}", "not_found"))

    def do_POST(self) -> None:
        double = self.server_double
        path = self.path.split("?", 1)[0].rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        double.last_authorization = self.headers.get("Authorization")
        double._enter(path)
        failed = True
        prompt: str | None = None
        try:
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                self._send_json(400, error_body("request body is not JSON", "invalid_request_error"))
                return
            if path == "/v1/chat/completions":
                messages = body.get("messages") or []
                prompt = str(messages[-1].get("content", "")) if messages else ""
            elif path != "/v1/embeddings":
                self._send_json(404, error_body(f"no route POST {path}", "not_found"))
                return
            failure = double._draw_failure(prompt)
            if double.latency_s > 0 and double._stopping.wait(double.latency_s):
                self._drop_connection()  # shutting down
                return
            if failure is not None:
                self._fail(failure)
                return
            if path == "/v1/chat/completions":
                self._send_json(200, self._chat(body))
            else:
                self._send_json(200, self._embeddings(body))
            failed = False
        finally:
            double._leave(failed=failed, prompt=prompt)

    # -- answers ---------------------------------------------------------------------------------

    def _chat(self, body: Mapping[str, Any]) -> dict[str, Any]:
        double = self.server_double
        return chat_completion(body, double.answer(body.get("messages") or [], body), double.model)

    def _embeddings(self, body: Mapping[str, Any]) -> dict[str, Any]:
        double = self.server_double
        return embeddings_response(body, double.embedding_dim, double.model)

    # -- failures --------------------------------------------------------------------------------

    def _fail(self, kind: str) -> None:
        double = self.server_double
        if kind == "429":
            self._send_json(
                429, error_body("rate limit reached (injected)", "rate_limit_exceeded"),
                headers={"retry-after": f"{double.retry_after_s:g}"},
            )
        elif kind == "500":
            self._send_json(500, error_body("internal error (injected)", "server_error"))
        elif kind == "400":
            self._send_json(400, error_body("bad request (injected)", "invalid_request_error"))
        elif kind == "401":
            self._send_json(401, error_body("incorrect API key provided (injected)", "invalid_api_key"))
        elif kind == "reset":
            self._drop_connection()
        elif kind == "hang":
            double._stopping.wait(double.hang_s)
            self._drop_connection()
        elif kind == "malformed":
            self._send_bytes(200, b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "mess')
        elif kind == "empty":
            self._send_json(200, empty_completion(double.model))
        elif kind == "truncated":
            payload = b'{"id": "chatcmpl-cut", "object": "chat.completion", "choices": ['
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload) + 200))
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
            self._drop_connection()

    def _drop_connection(self) -> None:
        """Close the socket with a TCP reset and no answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _send_json(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        self._send_bytes(status, json.dumps(body).encode(), headers)

    def _send_bytes(self, status: int, payload: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
