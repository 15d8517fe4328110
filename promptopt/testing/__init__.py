"""Test doubles that ship with promptopt, for its own tests and yours: never used by a run.

* :class:`LocalOpenAIServer` — a real OpenAI-compatible HTTP server on 127.0.0.1 (chat
  completions, embeddings, models) with latency, injectable failures and counters
  (:mod:`promptopt.testing.openai_server`); what it answers is in
  :mod:`promptopt.testing.openai_wire`. ``python -m promptopt.testing`` serves one until
  interrupted.

The simulated ranker is not here: it is a backend a run can choose (``ranker.backend: simulated``),
in :mod:`promptopt.llm.simulated`.
"""

from promptopt.testing.openai_server import LocalOpenAIServer, ServerStats
from promptopt.testing.openai_wire import (
    FAILURE_KINDS,
    PERMANENT_FAILURES,
    AnswerFn,
    default_answer,
    hashed_embedding,
)

__all__ = [
    "FAILURE_KINDS",
    "PERMANENT_FAILURES",
    "AnswerFn",
    "LocalOpenAIServer",
    "ServerStats",
    "default_answer",
    "hashed_embedding",
]
