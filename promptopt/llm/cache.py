"""A persistent answer cache around any ranker: SQLite, JSON rows, safe for concurrent processes.

:class:`CachedRanker` wraps a :class:`~promptopt.llm.types.Ranker`. An answer is keyed by the
sha256 of the backend's ``identity`` (canonical JSON) and every field of ``request.to_json()`` (the
messages, the candidates in shown order, the output format, meta and the sample id, so samples at
temperature > 0 are not collapsed into one answer). Only the misses of a batch go to the backend, in
one call; each batch of answers is written in one transaction. Rows hold the request, the raw answer,
the parsed ranking, usage, cost and time as JSON text, never pickles. A bounded in-memory layer keeps
recent answers of this process, so a request asked again (as a training run does) skips SQLite.

Several processes (e.g. SubprocVecEnv workers) may share one file: SQLite in WAL mode with a busy
timeout serialises the writers; an answer two processes fetch at once is kept once. A connection is
never used across ``fork``: a child process opens its own.

Backends that fail part-way through a batch raise :class:`PartialBatchError` carrying the answers they
did get; the cache saves those before re-raising, so nothing paid for is lost.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from promptopt.errors import BudgetExceeded, RankerError
from promptopt.llm.budget import Budget, RankerStats
from promptopt.llm.cache_store import SCHEMA_VERSION, CacheError, CacheStore, CacheSummary, canonical_json
from promptopt.llm.stored_answers import StoredAnswers
from promptopt.llm.types import Ranker, RankRequest, RankResponse, TokenUsage

logger = logging.getLogger(__name__)

__all__ = [
    "SCHEMA_VERSION", "CacheError", "CacheStore", "CacheSummary", "CachedRanker", "PartialBatchError",
    "cache_key", "canonical_json", "check_identity",
]

_SECRET_FIELD = re.compile(
    r"(?:^|[_-])(?:api[_-]?key|key|secret|password|passwd|token|authori[sz]ation|credentials?|bearer)$",
    re.IGNORECASE,
)
"""Identity field names that would hold a secret ("max_tokens" is fine, "api_key" is not)."""
_SECRET_ENV = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL", re.IGNORECASE)
"""Environment variables whose values (8+ characters) must never appear in an identity."""
_URL_USERINFO = re.compile(r"://[^/\s@]+@")


class PartialBatchError(RankerError):
    """A backend answered only part of a batch; ``completed`` maps batch positions to their answers.

    Backends raise it after their retries so that :class:`CachedRanker` can save the completed answers
    before reporting the failure.

    Attributes:
        completed: Position in the batch passed to ``rank`` -> the answer received.
        failed: Position in the batch -> a one-line reason (no secrets).
    """

    def __init__(
        self, message: str, completed: Mapping[int, RankResponse], failed: Mapping[int, str] | None = None
    ) -> None:
        super().__init__(message)
        self.completed = dict(completed)
        self.failed = dict(failed or {})


def cache_key(identity: Mapping[str, Any] | str, request: RankRequest) -> str:
    """sha256 hex of the ranker identity (canonical JSON), every field of the request, and the schema.

    The request's fields (those of ``request.to_json()``: messages, candidate ids and texts in shown
    order, output format, index base, sample id, the ids' key) are framed with their lengths: an unambiguous
    encoding like JSON, at a fraction of the cost of ``json.dumps`` on every lookup.

    Args:
        identity: The ranker's identity, or its canonical JSON (see :func:`canonical_json`).
        request: The request.
    """
    identity_json = identity if isinstance(identity, str) else canonical_json(dict(identity))
    ids = request.ids.key if request.ids is not None else ()
    texts = (identity_json, request.output_format, *(x for m in request.messages for x in m),
             *request.candidate_texts)
    head = (
        f"promptopt-cache-v{SCHEMA_VERSION}|{len(request.messages)}|{request.index_base}|"
        f"{request.sample_id}|{list(map(len, texts))}|{request.candidate_ids!r}|{ids!r}"
    )
    payload = "\x00".join((head, *texts)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(payload).hexdigest()


def check_identity(identity: Mapping[str, Any]) -> str:
    """The canonical JSON of a ranker identity, after checking it is JSON and holds no secret.

    Raises:
        RankerError: The identity is not JSON-serialisable, has a secret-looking field (api_key,
            token, password ...), a URL with credentials, or the value of a secret environment variable.
    """
    try:
        text = canonical_json(dict(identity))
    except (TypeError, ValueError) as exc:
        raise RankerError(f"ranker identity must be JSON-serialisable, got {identity!r}: {exc}") from None

    def walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
        yield path, value
        if isinstance(value, Mapping):
            for k, v in value.items():
                yield from walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                yield from walk(v, f"{path}[{i}]")

    secrets = [
        v for name, v in os.environ.items()
        if _SECRET_ENV.search(name) and len(v) >= 8
    ]
    for path, value in walk(dict(identity), ""):
        leaf = path.rsplit(".", 1)[-1]
        if _SECRET_FIELD.search(leaf) and value not in (None, "", False):
            raise RankerError(
                f"ranker identity field {path!r} looks like a secret; identities must not hold keys"
            )
        if isinstance(value, str) and (_URL_USERINFO.search(value) or any(s in value for s in secrets)):
            raise RankerError(
                f"ranker identity field {path!r} holds credentials; strip them "
                "(keys come from the environment)"
            )
    return text


class CachedRanker(StoredAnswers):
    """Wrap ``backend`` in a persistent SQLite answer cache (and, optionally, a shared budget).

    Args:
        backend: Any :class:`~promptopt.llm.types.Ranker`. When it has ``cost_of(usage) -> float``
            (as :class:`~promptopt.llm.openai_backend.OpenAIRanker` has) the cache tracks money.
        path: The SQLite file (created with its folder when missing).
        budget: Caps on the uncached calls / tokens / money, shared with the run's other rankers.
        memory_entries: Answers also kept in this process's memory (least recently used dropped), so
            a request asked again skips SQLite and JSON decoding; 0 turns the memory layer off.

    Raises:
        RankerError: The backend's identity is not JSON or holds a secret.
        CacheError: The file cannot be opened as a cache.
        ValueError: ``memory_entries`` is negative.
    """

    def __init__(
        self,
        backend: Ranker,
        path: str | Path,
        *,
        budget: Budget | None = None,
        memory_entries: int = 16_384,
    ) -> None:
        self.backend = backend
        self.budget = budget
        self._identity_json = check_identity(backend.identity)
        super().__init__(lambda: CacheStore(path), memory_entries)

    @property
    def identity(self) -> Mapping[str, Any]:
        return self.backend.identity

    def close(self) -> None:
        """Close the SQLite connection (and the backend when it has ``close``)."""
        super().close()
        close = getattr(self.backend, "close", None)
        if callable(close):
            close()

    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        """Answers from the cache where present; the misses in one backend call, saved before returning.

        Raises:
            BudgetExceeded: The budget is used up; the answers of the batch that was sent are saved first.
            RankerError: The backend failed; every answer it completed is saved first.
        """
        if not requests:
            return []
        keys = [cache_key(self._identity_json, r) for r in requests]
        results = self._recall(keys)
        first_of: dict[str, int] = {}
        for i, key in enumerate(keys):
            if results[i] is None:
                first_of.setdefault(key, i)
        n_hits = sum(r is not None for r in results)
        self._add(RankerStats(hits=n_hits, misses=len(requests) - n_hits))
        if not first_of:
            return [r for r in results if r is not None]

        pending = list(first_of.values())
        fetched: dict[str, RankResponse] = {}
        error: BudgetExceeded | None = None
        try:
            while pending:
                # The budget may allow part of the batch: what the calls, tokens and money left pay for
                # (the first call of a run alone, to learn what a call costs); then ask again.
                allowed = len(pending) if self.budget is None else self.budget.reserve(len(pending))
                if allowed == 0:
                    assert self.budget is not None
                    error = self.budget.exceeded_error(pending=len(pending), saved=len(fetched))
                    break
                sent, pending = pending[:allowed], pending[allowed:]
                fetched.update(self._fetch(sent, requests, keys))
                if self.budget is not None and self.budget.overspent():
                    error = self.budget.exceeded_error(pending=len(pending), saved=len(fetched))
                    break
        finally:  # answers already fetched are kept even when a later part of the batch fails
            self._remember({k: replace(r, cached=True) for k, r in fetched.items()})
        if error is not None:
            raise error
        for i, key in enumerate(keys):
            if results[i] is None and key in fetched:
                results[i] = fetched[key]
        return [r for r in results if r is not None]

    def _fetch(
        self, sent: list[int], requests: Sequence[RankRequest], keys: list[str]
    ) -> dict[str, RankResponse]:
        """Send ``requests[sent]`` to the backend, save and charge every answer, return them by key."""
        batch = [requests[i] for i in sent]
        try:
            responses = list(self.backend.rank(batch))
        except PartialBatchError as exc:
            completed = {sent[j]: resp for j, resp in exc.completed.items() if 0 <= j < len(sent)}
            self._save(completed, requests, keys, failures=len(sent) - len(completed))
            raise RankerError(
                f"{exc} ({len(completed)} of {len(sent)} answers of this batch were saved to the cache "
                f"{str(self.path)!r}; a re-run reuses them)"
            ) from exc
        if len(responses) != len(batch):
            raise RankerError(
                f"backend {self.identity.get('backend', '?')!r} returned {len(responses)} answers "
                f"for {len(batch)} requests"
            )
        return self._save(dict(zip(sent, responses)), requests, keys, failures=0)

    def _save(
        self,
        answers: Mapping[int, RankResponse],
        requests: Sequence[RankRequest],
        keys: list[str],
        *,
        failures: int,
    ) -> dict[str, RankResponse]:
        cost_of = getattr(self.backend, "cost_of", None)
        rows = []
        charges: list[tuple[TokenUsage, float]] = []
        usage = TokenUsage()
        total_cost = 0.0
        for i, response in answers.items():
            response = replace(response, cached=False)
            cost = float(cost_of(response.usage)) if callable(cost_of) else 0.0
            rows.append((keys[i], self._identity_json, requests[i], response, cost))
            charges.append((response.usage, cost))
            usage = usage + response.usage
            total_cost += cost
        try:
            self.store.put_many(rows)
        finally:  # answers that arrived were paid for, even when the cache cannot keep them
            if self.budget is not None:
                self.budget.charge_answers(charges)
        self._add(
            RankerStats(calls=len(answers) + failures, failures=failures).with_usage(usage, total_cost)
        )
        return {keys[i]: replace(response, cached=False) for i, response in answers.items()}

