"""Run llama.cpp's OpenAI-compatible server (llama-cpp-python) on a GGUF file, on this machine.

``python -m llama_cpp.server --model FILE --host 127.0.0.1 --port P`` serves ``/v1/chat/completions``
and ``/v1/completions`` (with ``echo`` and ``logprobs``: it keeps every position's logits by
default). :class:`LlamaCppServer` starts it as a child process, waits until it says it is serving,
and can kill and restart it (the integration tests do, mid-run). It binds to the loopback address
only. Needs ``pip install 'promptopt[llamacpp]'``.

Example::

    with LlamaCppServer(packaged_model_file("smollm2-135m-instruct")) as server:
        ranker = OpenAIRanker("smollm2", base_url=server.base_url, api_key_env="LOCAL_KEY")
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from promptopt.errors import RankerError

logger = logging.getLogger(__name__)

_READY = "Uvicorn running on"
"""The line the server logs once it accepts connections."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaCppServer:
    """llama-cpp-python's server as a child process bound to 127.0.0.1.

    Args:
        model_file: The GGUF file to serve.
        port: The port (None: a free one, kept across restarts).
        n_ctx: Context length in tokens.
        n_threads: CPU threads (None: llama.cpp's default).
        start_timeout_s: Longest wait for the server to say it is serving.
        extra_args: More ``llama_cpp.server`` options (``["--logits_all", "false"]``).
    """

    def __init__(
        self,
        model_file: str | Path,
        *,
        port: int | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        start_timeout_s: float = 300.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.model_file = Path(model_file)
        if not self.model_file.is_file():
            raise RankerError(f"llama.cpp server: model file {self.model_file} does not exist")
        self.port = port or free_port()
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.start_timeout_s = start_timeout_s
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen[str] | None = None
        self.log: list[str] = []
        self.starts = 0

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``http://127.0.0.1:PORT/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_file),
            "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx),
        ]
        if self.n_threads is not None:
            cmd += ["--n_threads", str(self.n_threads)]
        return cmd + list(self.extra_args)

    def start(self) -> LlamaCppServer:
        """Start the server and return once it serves (reads its log; no polling).

        Raises:
            RankerError: llama-cpp-python is not installed, or the server exited or did not start in time.
        """
        if self.process is not None and self.process.poll() is None:
            return self
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise RankerError(
                "llama.cpp server: llama-cpp-python is not installed: pip install 'promptopt[llamacpp]'"
            ) from None
        ready = threading.Event()
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self._pump, args=(self.process, ready), daemon=True).start()
        start = time.perf_counter()
        if not ready.wait(self.start_timeout_s) or self.process.poll() is not None:
            tail = " | ".join(self.log[-5:])
            self.kill()
            raise RankerError(
                f"llama.cpp server on port {self.port} did not start within {self.start_timeout_s:g} s: "
                f"{tail}"
            )
        self.starts += 1
        logger.info("llama.cpp server serving %s at %s (started in %.1f s)",
                    self.model_file.name, self.base_url, time.perf_counter() - start)
        return self

    def _pump(self, process: subprocess.Popen[str], ready: threading.Event) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.log.append(line.rstrip())
            del self.log[:-200]
            if _READY in line:
                ready.set()
        ready.set()  # the process ended: wake the waiter, which sees poll() is not None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL: no graceful shutdown) and wait for it to be gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> LlamaCppServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
