"""``python -m promptopt.testing``: serve a :class:`LocalOpenAIServer` until interrupted.

Prints the base URL (``http://127.0.0.1:PORT/v1``) on the first line, then serves; any API key works.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
from collections.abc import Sequence

from promptopt.testing.openai_server import LocalOpenAIServer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m promptopt.testing",
        description="An offline OpenAI-compatible server for tests and demos (any API key works).",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--failure-rate", type=float, default=0.0, help="share of requests that fail")
    parser.add_argument("--seed", type=int, default=0, help="seed of the failure draws")
    args = parser.parse_args(argv)
    server = LocalOpenAIServer(args.latency, failure_rate=args.failure_rate, seed=args.seed, port=args.port)
    with server:
        print(server.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
