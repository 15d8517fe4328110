"""Rank with any OpenAI-compatible chat-completions server: OpenAI, vLLM, Ollama, llama.cpp server.

:class:`OpenAIRanker` sends a batch of requests in parallel through its
:class:`~promptopt.llm.openai_transport.Transport` (the official ``AsyncOpenAI`` client, bounded by
an ``asyncio.Semaphore``, on an event loop of its own in a background thread, so ``rank`` works the
same from scripts, threads, notebooks and SubprocVecEnv workers). Each request is retried (tenacity:
exponential backoff with jitter, ``retry-after`` honoured) on 429, 5xx, timeouts, dropped connections
and malformed or empty answers; the client's own retries are off so every attempt is counted.
With ``api_mode="score"`` the candidates' labels are scored through
``/v1/completions`` (echo + logprobs, see :mod:`promptopt.llm.openai_scoring`) instead of asking for
a ranking; a server that cannot do it is detected once, at construction, and the ranker falls back
to chat completions with one warning line. A request that still fails makes the batch raise
:class:`~promptopt.llm.cache.PartialBatchError` carrying every answer that did arrive, which
:class:`~promptopt.llm.cache.CachedRanker` saves before reporting the error.

The API key is read from the environment variable named by ``api_key_env`` when the ranker is made
(a missing key is an error before any call) and lives only inside the HTTP client: it is not an
attribute, not part of ``identity``, not logged and not pickled.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from promptopt.errors import ConfigError, RankerError
from promptopt.llm.cache import PartialBatchError
from promptopt.llm.grounding import Grounder, make_grounder
from promptopt.llm.openai_http import Failure, read_answer
from promptopt.llm.openai_transport import Transport
from promptopt.llm.parsing import parse_ranking
from promptopt.llm.score_labels import LENGTH_NORMALIZE, plain_prompt
from promptopt.llm.types import RankRequest, RankResponse, TokenUsage
from promptopt.llm.urls import public_url

if TYPE_CHECKING:
    from promptopt.config import RankerConfig
    from promptopt.llm.chat_template import ChatTemplate

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_BASE_URL", "OpenAIRanker", "public_url"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIRanker:
    """A frozen chat model behind an OpenAI-compatible API, asked to rank each request's candidates.

    Args:
        model: Model id on the server (``"gpt-4o-mini"``, ``"Qwen/Qwen2.5-7B-Instruct"`` on vLLM,
            ``"llama3.1"`` on Ollama).
        base_url: Server URL ending in ``/v1`` (None = ``$OPENAI_BASE_URL`` or the official API).
            Never put credentials in it; they are stripped from ``identity`` and messages anyway.
        api_key_env: Environment variable holding the key. Local servers accept any non-empty value.
        temperature: Sampling temperature (0 = greedy).
        seed: Decoding seed sent to the server (``seed + request.sample_id``, so repeated samples
            differ); None sends none.
        max_tokens: Completion token limit.
        concurrency: Requests in flight at once.
        timeout_s: Wall-clock seconds one attempt may take, from connecting to the last byte of the
            answer (a server trickling bytes cannot stretch it); then it is abandoned and retried.
        max_retries: Retries per request after the first attempt.
        price_prompt_per_1m: Money per million prompt tokens (for budgets and reports).
        price_completion_per_1m: Money per million completion tokens.
        backoff_s: First backoff; doubles on each retry, with jitter, up to ``max_backoff_s``.
        max_backoff_s: Longest wait between attempts (also caps a server's ``retry-after``).
        api_mode: ``"chat"`` (ask for a ranking, parse it) or ``"score"`` (label log-likelihoods
            from ``/v1/completions``; checked against the server at construction, see above).
        tokenizer: ``score`` mode: render prompts with this model's chat template (a packaged model,
            ``.gguf`` file, tokenizer folder or cached hub id); None sends the plain prompt.
        length_normalize: ``score`` mode: whose label scores are averaged over their tokens
            (``"titles"``, ``"all"``, ``"none"``), as in the hf backend.
        grounder: ``chat`` mode: grounds answer items that match no candidate
            (:mod:`promptopt.llm.grounding`); None counts them as hallucinated.

    Raises:
        RankerError: The key's environment variable is unset or empty, or (score mode) the server
            cannot be reached to check it.
        ConfigError: A numeric setting is out of range.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.0,
        seed: int | None = 0,
        max_tokens: int = 256,
        concurrency: int = 16,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        price_prompt_per_1m: float = 0.0,
        price_completion_per_1m: float = 0.0,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        api_mode: Literal["chat", "score"] = "chat",
        tokenizer: str | None = None,
        length_normalize: str = "titles",
        grounder: Grounder | None = None,
    ) -> None:
        checks = (
            ("concurrency", concurrency, concurrency >= 1, ">= 1"),
            ("max_retries", max_retries, max_retries >= 0, ">= 0"),
            ("timeout_s", timeout_s, timeout_s > 0, "> 0"),
            ("max_tokens", max_tokens, max_tokens >= 1, ">= 1"),
            ("temperature", temperature, temperature >= 0, ">= 0"),
            ("backoff_s", backoff_s, backoff_s >= 0, ">= 0"),
            ("price_prompt_per_1m", price_prompt_per_1m, price_prompt_per_1m >= 0, ">= 0"),
            ("price_completion_per_1m", price_completion_per_1m, price_completion_per_1m >= 0, ">= 0"),
        )
        for name, value, ok, rule in checks:
            if not ok:
                raise ConfigError(f"ranker.{name} must be {rule}, got {value}")
        if not model:
            raise ConfigError("ranker.model must name the model to call, got an empty string")
        if api_mode not in ("chat", "score"):
            raise ConfigError(f"ranker.api_mode must be 'chat' or 'score', got {api_mode!r}")
        if length_normalize not in LENGTH_NORMALIZE:
            raise ConfigError(
                f"ranker.length_normalize must be one of {', '.join(LENGTH_NORMALIZE)}, "
                f"got {length_normalize!r}"
            )
        if not os.environ.get(api_key_env):
            raise RankerError(
                f"environment variable {api_key_env} is not set or empty: export your API key in it "
                "(a local server such as vLLM or Ollama accepts any non-empty value), or set "
                "ranker.api_key_env to the variable that holds it"
            )
        self.model = model
        self.temperature = float(temperature)
        self.seed = seed
        self.max_tokens = int(max_tokens)
        self.price_prompt_per_1m = float(price_prompt_per_1m)
        self.price_completion_per_1m = float(price_completion_per_1m)
        self.transport = Transport(
            base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL, api_key_env,
            concurrency=concurrency, timeout_s=timeout_s, max_retries=max_retries, backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
        )
        self.api_mode = api_mode
        self.grounder = grounder
        self.length_normalize = length_normalize
        self.chat_template: ChatTemplate | None = None
        if api_mode == "score":
            if tokenizer is not None:
                from promptopt.llm.chat_template import ChatTemplate
                from promptopt.llm.hf_loading import hub_offline

                self.chat_template = ChatTemplate.from_model(tokenizer, offline=hub_offline())
            problem = self.transport.run(self._probe_scoring())
            if problem is not None:
                logger.warning(
                    "openai ranker: %s cannot score labels: %s; ranking by chat completions instead "
                    "(set ranker.api_mode: chat to silence this)", self.base_url, problem,
                )
                self.api_mode = "chat"

    @classmethod
    def from_config(cls, config: RankerConfig) -> OpenAIRanker:
        """The ranker a config's ``ranker`` section describes."""
        return cls(
            config.model, base_url=config.base_url, api_key_env=config.api_key_env,
            temperature=config.temperature, seed=config.seed, max_tokens=config.max_tokens,
            concurrency=config.concurrency, timeout_s=config.timeout_s, max_retries=config.max_retries,
            price_prompt_per_1m=config.price_prompt_per_1m,
            price_completion_per_1m=config.price_completion_per_1m,
            api_mode=config.api_mode, tokenizer=config.tokenizer, length_normalize=config.length_normalize,
            grounder=make_grounder(config.grounding, config.grounding_model),
        )

    # The transport's settings, readable (and, for the retry count, adjustable) on the ranker.
    base_url = property(lambda self: self.transport.base_url, doc="The server URL without credentials.")
    api_key_env = property(lambda self: self.transport.api_key_env, doc="The key's environment variable.")
    concurrency = property(lambda self: self.transport.concurrency, doc="Requests in flight at once.")
    timeout_s = property(lambda self: self.transport.timeout_s, doc="Wall-clock seconds per attempt.")

    @property
    def max_retries(self) -> int:
        """Retries per request after the first attempt."""
        return self.transport.max_retries

    @max_retries.setter
    def max_retries(self, value: int) -> None:
        self.transport.max_retries = int(value)

    def __repr__(self) -> str:
        return (
            f"OpenAIRanker(model={self.model!r}, base_url={self.base_url!r}, "
            f"concurrency={self.concurrency})"
        )

    @property
    def identity(self) -> Mapping[str, Any]:
        """Backend, model, decoding parameters and the server URL without credentials; never the key.

        In score mode: the mode, the normalisation and the chat template's hash instead of decoding
        parameters (scores are deterministic).
        """
        if self.api_mode == "score":
            return {
                "backend": "openai",
                "model": self.model,
                "api_mode": "score",
                "length_normalize": self.length_normalize,
                "chat_template": self.chat_template.sha256 if self.chat_template else None,
                "base_url": self.base_url,
            }
        ident: dict[str, Any] = {
            "backend": "openai",
            "model": self.model,
            "temperature": self.temperature,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            "base_url": self.base_url,
        }
        if self.grounder is not None:
            ident["grounding"] = getattr(self.grounder, "identity", type(self.grounder).__name__)
        return ident

    @property
    def counters(self) -> dict[str, int]:
        """``calls`` (HTTP attempts), ``retries``, ``succeeded``, ``failures`` (requests given up), and
        ``error:<kind>`` per kind of failed attempt (``error:429``, ``error:timeout``, ...)."""
        return self.transport.counters

    def cost_of(self, usage: TokenUsage) -> float:
        """Money of one answer's usage from the price table."""
        return (
            usage.prompt_tokens * self.price_prompt_per_1m
            + usage.completion_tokens * self.price_completion_per_1m
        ) / 1_000_000

    # -- ranking ---------------------------------------------------------------------------------

    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        """Send every request (in parallel, at most ``concurrency`` at once) and parse the answers.

        Raises:
            PartialBatchError: Some requests failed after their retries; it carries the answers that
                arrived, by position in ``requests``.
        """
        if not requests:
            return []
        before = self.counters
        outcomes = self.transport.run(self._rank_all(list(requests)))
        completed = {i: o for i, o in enumerate(outcomes) if isinstance(o, RankResponse)}
        failed = {i: str(o) for i, o in enumerate(outcomes) if not isinstance(o, RankResponse)}
        self._log_batch(len(requests), before)
        if failed:
            reasons = Counter(failed.values()).most_common(3)
            raise PartialBatchError(
                f"OpenAI-compatible server {self.base_url} (model {self.model!r}) failed {len(failed)} of "
                f"{len(requests)} requests (transient errors retried {self.max_retries} times): "
                + "; ".join(f"{reason} (x{n})" for reason, n in reasons),
                completed,
                failed,
            )
        return [completed[i] for i in range(len(requests))]

    async def _rank_all(self, requests: list[RankRequest]) -> list[RankResponse | Failure | BaseException]:
        return await asyncio.gather(*(self._rank_one(r) for r in requests), return_exceptions=True)

    async def _rank_one(self, request: RankRequest) -> RankResponse | Failure:
        if self.api_mode == "score":
            from promptopt.llm.openai_scoring import score_request

            return await score_request(self, request)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": role, "content": content} for role, content in request.messages],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.seed is not None:
            body["seed"] = self.seed + request.sample_id
        try:
            (content, usage), latency = await self.transport.call(
                "/chat/completions", body, lambda raw: self._usage_checked(*read_answer(raw), request)
            )
        except Exception as exc:
            return self.transport.failure(exc)
        self.transport.count("succeeded")
        ranking, parse, unparsed = parse_ranking(content, request, self.grounder)
        return RankResponse(
            ranking=ranking, raw_text=content, usage=usage, latency_s=latency, parse=parse, unparsed=unparsed
        )

    # -- score mode ------------------------------------------------------------------------------

    def score_prompt(self, request: RankRequest) -> str:
        """The text the labels continue: the chat template's rendering (``tokenizer``) or the plain prompt."""
        if self.chat_template is not None:
            return self.chat_template.render(request.messages)
        return plain_prompt(request)

    async def _probe_scoring(self) -> str | None:
        from promptopt.llm.openai_scoring import probe_scoring

        return await probe_scoring(self)

    def _usage_checked(
        self, content: str, usage: TokenUsage | None, request: RankRequest
    ) -> tuple[str, TokenUsage]:
        """The answer's usage, or an estimate (4 characters a token) when the server reported none or
        nonsense (negative, not a number): token and money caps must never count a call as free."""
        if usage is not None:
            return content, usage
        if self.transport.count_first("usage_estimated"):
            logger.warning("server %s reported no valid token usage; counting about 4 characters per token "
                           "so token and money budgets still hold", self.base_url)
        prompt = sum(len(text) for _, text in request.messages)
        return content, TokenUsage(prompt_tokens=-(-prompt // 4), completion_tokens=-(-len(content) // 4))

    def _log_batch(self, n: int, before: Mapping[str, int]) -> None:
        after = self.counters
        delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
        level = logging.INFO if delta.get("retries") or delta.get("failures") else logging.DEBUG
        errors = ", ".join(f"{k[6:]}={v}" for k, v in sorted(delta.items()) if k.startswith("error:"))
        logger.log(
            level, "openai ranker %s: batch of %d: %d calls, %d retries, %d failures (%s); totals %s",
            self.base_url, n, delta.get("calls", 0), delta.get("retries", 0), delta.get("failures", 0),
            errors or "no errors", {k: v for k, v in after.items() if not k.startswith("error:")},
        )

    def close(self) -> None:
        """Close the HTTP client and stop the event loop thread (a later ``rank`` starts new ones)."""
        self.transport.close()

    def __enter__(self) -> OpenAIRanker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
