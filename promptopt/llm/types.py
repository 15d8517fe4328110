"""Typed requests and responses of the frozen black-box ranker, and the protocol every backend meets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

OutputFormat = Literal["index", "title", "json"]


@dataclass(frozen=True)
class TokenUsage:
    """Tokens of one call (0 when a backend has no tokens, e.g. a local embedding model)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True)
class ParseStats:
    """How an answer was grounded to the candidates.

    Attributes:
        found: Distinct candidates recognised in the answer.
        duplicates: Mentions of a candidate already recognised.
        hallucinated: Mentions that match no candidate (out-of-range index, unknown title).
        missing: Candidates not recognised, appended in shown order.
        grounded: List items that matched no candidate by number or title and were grounded to the
            nearest unplaced candidate by embedding similarity (BIGRec's second step; off by default).
            Counted in neither ``found`` nor ``hallucinated``.
    """

    found: int = 0
    duplicates: int = 0
    hallucinated: int = 0
    missing: int = 0
    grounded: int = 0

    @property
    def complete(self) -> bool:
        return self.missing == 0 and self.hallucinated == 0

    def __add__(self, other: ParseStats) -> ParseStats:
        return ParseStats(
            self.found + other.found,
            self.duplicates + other.duplicates,
            self.hallucinated + other.hallucinated,
            self.missing + other.missing,
            self.grounded + other.grounded,
        )


@dataclass(frozen=True)
class RequestIds:
    """Which user, template and task a request was built for: identifiers, never prompt text.

    A real ranker never reads them (it sees the messages and the candidates, as a served model
    would); the :class:`~promptopt.llm.simulated.SimulatedRanker` reads all four, and the answer
    cache and its audit export key and label answers by them.

    Attributes:
        user: The dataset's raw user id.
        template: The template id in the catalog.
        task: The task id, ``"<raw user>/<target row>/<view>[/<repeat>]"``.
        view: The task's view: ``"base"`` or a drift view (``"dropout"``, ``"temporal"`` ...).
    """

    user: str
    template: str
    task: str
    view: str = "base"

    @property
    def key(self) -> tuple[tuple[str, str], ...]:
        """The pairs the cache key and the stored request hold: user, template and task.

        ``view`` is left out: the task id already names it. These are the pairs requests carried
        before the identifiers were typed, so answers cached earlier keep their keys.
        """
        return (("user", self.user), ("template", self.template), ("task", self.task))


@dataclass(frozen=True)
class RankRequest:
    """One prompt and the candidates it shows, in the shown order.

    Attributes:
        messages: Chat messages ``(role, content)``; a plain prompt is one ``("user", text)``.
        candidate_ids: Item indices in the order they are listed in the prompt.
        candidate_texts: Display text of each candidate (title, genres), aligned with ids.
        output_format: How the answer refers to candidates: ``"index"`` (numbers of the shown
            list), ``"title"`` or ``"json"`` (a JSON array of numbers or titles).
        index_base: ``1`` when the list is numbered from 1 (the default), ``0`` from 0.
        sample_id: Distinguishes repeated samples of the same request at temperature > 0; part of
            the cache key so samples are not collapsed into one answer.
        ids: Which user, template and task the request is for (:class:`RequestIds`; ``None`` for a
            request built by hand). Part of the cache key; never sent to a model.
    """

    messages: tuple[tuple[str, str], ...]
    candidate_ids: tuple[int, ...]
    candidate_texts: tuple[str, ...]
    output_format: OutputFormat = "index"
    index_base: int = 1
    sample_id: int = 0
    ids: RequestIds | None = None

    def __post_init__(self) -> None:
        if len(self.candidate_ids) != len(self.candidate_texts):
            raise ValueError(
                f"candidate_ids ({len(self.candidate_ids)}) and candidate_texts "
                f"({len(self.candidate_texts)}) differ in length"
            )
        if not self.messages:
            raise ValueError("a RankRequest needs at least one message")
        if self.index_base not in (0, 1):
            raise ValueError(f"index_base must be 0 or 1, got {self.index_base}")

    @classmethod
    def from_prompt(
        cls,
        prompt: str,
        candidate_ids: Sequence[int],
        candidate_texts: Sequence[str],
        **kwargs: Any,
    ) -> RankRequest:
        """A request holding one user message."""
        return cls(
            messages=(("user", prompt),),
            candidate_ids=tuple(int(c) for c in candidate_ids),
            candidate_texts=tuple(candidate_texts),
            **kwargs,
        )

    @property
    def prompt(self) -> str:
        """All message contents joined by blank lines (what text-only backends read)."""
        return "\n\n".join(content for _, content in self.messages)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the cache key is the sha256 of this plus the backend identity)."""
        return {
            "messages": [list(m) for m in self.messages],
            "candidate_ids": list(self.candidate_ids),
            "candidate_texts": list(self.candidate_texts),
            "output_format": self.output_format,
            "index_base": self.index_base,
            "sample_id": self.sample_id,
            "meta": [list(m) for m in self.ids.key] if self.ids is not None else [],
        }


@dataclass(frozen=True)
class RankResponse:
    """A ranker's answer grounded to the candidates.

    Attributes:
        ranking: Every candidate id exactly once, best first: parsed items in the order the answer
            gave them, then unparsed ones in shown order.
        raw_text: The model's text (empty for scoring backends).
        usage: Token usage of the call.
        latency_s: Wall seconds of the call (the original call's when cached).
        cached: Whether the answer came from the cache.
        parse: Grounding statistics.
        unparsed: Candidates appended because the answer did not mention them.
        scores: Per-candidate scores in shown order for scoring backends (log-likelihood, cosine).
    """

    ranking: tuple[int, ...]
    raw_text: str = ""
    usage: TokenUsage = field(default_factory=TokenUsage)
    latency_s: float = 0.0
    cached: bool = False
    parse: ParseStats = field(default_factory=ParseStats)
    unparsed: tuple[int, ...] = ()
    scores: tuple[float, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ranking": list(self.ranking),
            "raw_text": self.raw_text,
            "usage": {"prompt_tokens": self.usage.prompt_tokens,
                      "completion_tokens": self.usage.completion_tokens},
            "latency_s": self.latency_s,
            "parse": {"found": self.parse.found, "duplicates": self.parse.duplicates,
                      "hallucinated": self.parse.hallucinated, "missing": self.parse.missing,
                      **({"grounded": self.parse.grounded} if self.parse.grounded else {})},
            "unparsed": list(self.unparsed),
            "scores": None if self.scores is None else list(self.scores),
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any], *, cached: bool = False) -> RankResponse:
        scores = payload.get("scores")
        return cls(
            ranking=tuple(payload["ranking"]),
            raw_text=payload.get("raw_text", ""),
            usage=TokenUsage(**payload.get("usage", {})),
            latency_s=float(payload.get("latency_s", 0.0)),
            cached=cached,
            parse=ParseStats(**payload.get("parse", {})),
            unparsed=tuple(payload.get("unparsed", ())),
            scores=None if scores is None else tuple(scores),
        )


@runtime_checkable
class Ranker(Protocol):
    """A frozen black box that orders each request's candidates.

    ``identity`` is a JSON-serialisable description (backend kind, model, decoding parameters)
    that is stable across runs and never holds secrets; the cache keys answers by it.
    """

    @property
    def identity(self) -> Mapping[str, Any]: ...

    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]: ...
