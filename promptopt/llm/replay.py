"""Answers logged earlier, replayed from an answer cache: a ranker that never calls a model.

Every answer :class:`~promptopt.llm.cache.CachedRanker` receives is stored in its SQLite file under
the sha256 of the backend's identity and the request. :class:`ReplayRanker` computes the same key
for the **logged** identity and reads the answer back, so once a run (or a study's answer tables)
has paid for the answers, PPO settings, seeds, ablations, gates and sweeps run again for free::

    ranker: {backend: replay, replay_identity: {backend: embedding, model: ..., ...}}
    cache: {path: runs/cache.sqlite}        # the file that holds the logged answers

A request that was never logged (another user, template or task) is not guessed: ``rank`` fails with
one line naming the user, the template and the task, and what to run to log it. ``stats`` counts the
replayed answers as cache hits and 0 calls, tokens and money.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from promptopt.errors import RankerError
from promptopt.llm.budget import RankerStats
from promptopt.llm.cache import cache_key, check_identity
from promptopt.llm.cache_store import CacheStore
from promptopt.llm.stored_answers import StoredAnswers
from promptopt.llm.types import RankRequest, RankResponse


class ReplayRanker(StoredAnswers):
    """Answer every request from the answers an earlier run logged in an answer cache.

    Args:
        path: The SQLite answer cache holding the logged answers (never written to).
        identity: The identity of the backend whose answers are replayed (a mapping, or its JSON as
            ``promptopt cache stats FILE`` lists it). ``None``: the file's only identity.
        memory_entries: Answers kept in this process's memory (repeated requests skip SQLite).

    Raises:
        CacheError: No cache file at ``path``, or not a promptopt cache.
        RankerError: ``identity`` has no answers in the file, or ``None`` while the file holds
            answers of several backends (or none).
    """

    def __init__(
        self,
        path: str | Path,
        identity: Mapping[str, Any] | str | None = None,
        *,
        memory_entries: int = 65_536,
    ) -> None:
        super().__init__(lambda: CacheStore(path, create=False), memory_entries)
        logged = self.store.identities()
        if identity is None:
            if len(logged) != 1:
                raise RankerError(
                    f"replay: the cache {str(self.store.path)!r} holds answers of "
                    f"{len(logged)} backend identities{_listing(logged)}; name the one to replay "
                    "with ranker.replay_identity"
                )
            self._logged_json = next(iter(logged))
        else:
            if isinstance(identity, str):
                import json

                try:
                    identity = json.loads(identity)
                except ValueError:
                    raise RankerError(
                        "replay: ranker.replay_identity must be the JSON of a backend identity, "
                        f"got {identity!r}"
                    ) from None
                if not isinstance(identity, Mapping):
                    raise RankerError("replay: ranker.replay_identity must be a JSON object")
            self._logged_json = check_identity(identity)
            if self._logged_json not in logged:
                raise RankerError(
                    f"replay: the cache {str(self.store.path)!r} holds no answer of the identity "
                    f"{self._logged_json}{_listing(logged)}; set ranker.replay_identity to one of them"
                )
        import json

        self.logged_identity: dict[str, Any] = json.loads(self._logged_json)
        self.logged_answers = logged[self._logged_json]

    @property
    def identity(self) -> Mapping[str, Any]:
        """``{"backend": "replay", "replays": <the logged backend's identity>}``."""
        return {"backend": "replay", "replays": self.logged_identity}

    @property
    def stats(self) -> RankerStats:
        """Replayed answers as hits; calls, tokens and cost stay 0."""
        return super().stats

    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        """The logged answer of every request (marked ``cached``).

        Raises:
            RankerError: A request has no logged answer; names its user, template and task.
        """
        if not requests:
            return []
        keys = [cache_key(self._logged_json, r) for r in requests]
        unique = list(dict.fromkeys(keys))
        found = dict(zip(unique, self._recall(unique)))
        for key, request in zip(keys, requests):
            if found[key] is None:
                raise RankerError(self._never_logged(request))
        self._add(RankerStats(hits=len(requests)))
        return [found[k] for k in keys]  # type: ignore[misc]

    def _never_logged(self, request: RankRequest) -> str:
        ids = request.ids
        user, template, task = (None, None, None) if ids is None else (ids.user, ids.template, ids.task)
        backend = self.logged_identity.get("backend", "?")
        return (
            f"replay: no logged answer for user {user!r}, template {template!r}, task {task!r} in "
            f"{str(self.path)!r} ({self.logged_answers} answers of {backend!r}); run it once with "
            f"ranker.backend: {backend} to log it, or keep the run to the users and templates logged"
        )


def _listing(logged: Mapping[str, int]) -> str:
    if not logged:
        return ""
    shown = "; ".join(f"{ident} ({n} answers)" for ident, n in list(logged.items())[:3])
    more = f"; and {len(logged) - 3} more" if len(logged) > 3 else ""
    return f" ({shown}{more})"


__all__ = ["ReplayRanker"]
