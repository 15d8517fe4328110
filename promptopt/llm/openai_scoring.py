"""Score mode through an API: label log-likelihoods from ``/v1/completions`` with ``echo`` and ``logprobs``.

For each candidate the ranker sends the prompt text followed by the candidate's label
(:func:`promptopt.llm.score_labels.label_text`) with ``echo: true, logprobs: 1, max_tokens: 1,
temperature: 0``; the server returns every prompt token with its log-probability, and the label's
score is the sum (or mean, see ``length_normalize``) over the echoed tokens that spell the label,
found from the end of the echo (:func:`read_label_logprobs`)::

    prompt tokens ..........................| label tokens |  generated token (ignored)

OpenAI's own chat models have no such endpoint, vLLM and llama.cpp's server do. A completions
endpoint scores exactly the text it is sent, so the chat template (if any) is rendered on the client
(:class:`promptopt.llm.chat_template.ChatTemplate`, ``ranker.tokenizer``).

Before trusting a server, :class:`~promptopt.llm.openai_backend.OpenAIRanker` checks the alignment
of its echoed log-probabilities once (:func:`alignment_problem`): the log-probability the server
reports for a token it *generated* after a prompt must equal the one it reports for the same token
*echoed* at the end of that prompt. llama-cpp-python 0.3.x fails this for prompts that do not start
with the model's BOS token (it reads each echoed token's log-probability from the distribution that
*follows* the token, one position late); prompts rendered with a chat template that opens with BOS
(SmolLM2's ``<|im_start|>``) pass.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import time
from typing import TYPE_CHECKING, Any, Protocol

from promptopt.errors import RankerError
from promptopt.llm.openai_http import Failure, describe_failure
from promptopt.llm.score_labels import label_text, normalizes
from promptopt.llm.types import ParseStats, RankRequest, RankResponse, TokenUsage

if TYPE_CHECKING:
    from promptopt.llm.openai_transport import Transport

ALIGNMENT_TOLERANCE = 0.05
"""Largest |echoed - generated| log-probability of the probe token for a server to count as aligned."""

PROBE_MESSAGES: tuple[tuple[str, str], ...] = (
    ("user", "Count from one to ten in words: one, two, three,"),
)
"""The probe's conversation: short, and its next token is predictable for any language model."""


class ScoringHost(Protocol):
    """What score mode needs of :class:`~promptopt.llm.openai_backend.OpenAIRanker` (transport, labels)."""

    model: str
    base_url: str
    timeout_s: float
    length_normalize: str

    def score_prompt(self, request: RankRequest) -> str: ...

    @property
    def transport(self) -> Transport: ...


class ScoringUnsupported(Exception):
    """The server answered, but not with usable prompt log-probabilities (not worth a retry)."""


def completion_body(model: str, text: str, *, echo: bool) -> dict[str, Any]:
    """The ``/v1/completions`` body that returns log-probabilities (greedy, one token generated).

    ``max_tokens`` is 1, not 0: llama-cpp-python reads 0 as "until the context is full".
    """
    body: dict[str, Any] = {
        "model": model, "prompt": text, "max_tokens": 1, "temperature": 0.0, "logprobs": 1,
    }
    if echo:
        body["echo"] = True
    return body


def _logprobs(raw: bytes) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The first choice's ``logprobs``, the usage and the choice's text (or :class:`ScoringUnsupported`)."""
    try:
        payload = json.loads(raw)
    except ValueError:
        raise ScoringUnsupported(f"malformed JSON answer ({len(raw)} bytes)") from None
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise ScoringUnsupported("the completions answer has no choices")
    logprobs = choices[0].get("logprobs")
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("token_logprobs"), list):
        raise ScoringUnsupported("the completions answer has no token log-probabilities")
    tokens = logprobs.get("tokens")
    if not isinstance(tokens, list) or len(tokens) != len(logprobs["token_logprobs"]):
        raise ScoringUnsupported("the completions answer's logprobs.tokens is missing or misaligned")
    text = choices[0].get("text")
    return logprobs, payload.get("usage") or {}, text if isinstance(text, str) else ""


def read_label_logprobs(raw: bytes, prompt: str, label: str) -> tuple[list[float], TokenUsage]:
    """Log-probabilities of the echoed tokens spelling ``label``, the end of the text sent (prompt + label).

    The label's tokens are found from the end of the echoed token list (after the generated token),
    by their text, not by ``text_offset``: llama-cpp-python counts offsets in the text without
    special tokens (``<|im_start|>``), so its offsets do not index the prompt that was sent. A token
    straddling the prompt/label boundary ("\n1") counts as part of the label.

    Raises:
        ScoringUnsupported: No log-probabilities, an answer that does not echo the prompt, tokens that
            do not spell the label, or a null log-probability among them.
    """
    logprobs, usage, text = _logprobs(raw)
    sent = prompt + label
    if not text.startswith(sent):
        raise ScoringUnsupported("the answer does not echo the prompt (is echo supported?)")
    tokens = [t if isinstance(t, str) else "" for t in logprobs["tokens"]]
    end = len(tokens)
    while end > 0 and tokens[end - 1] == "":  # an end-of-text token generated after the label
        end -= 1
    generated, spelled, last = text[len(sent):], "", end
    while end > 0 and len(spelled) < len(generated):
        end -= 1
        spelled = tokens[end] + spelled
    if spelled != generated:
        # llama-cpp-python leaves the generated token out of the echo when the prompt does not start
        # with BOS (and reads every value one position late: the alignment probe catches that).
        end = last
    start, spelled = end, ""
    while start > 0 and len(spelled) < len(label):
        start -= 1
        spelled = tokens[start] + spelled
    if not label or not spelled.endswith(label):
        raise ScoringUnsupported(f"the echoed tokens do not end with the label {label!r}")
    values: list[float] = []
    for value in logprobs["token_logprobs"][start:end]:
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise ScoringUnsupported("the server returned no log-probability for an echoed prompt token")
        values.append(float(value))
    return values, TokenUsage(prompt_tokens=int(usage.get("prompt_tokens") or 0))


def read_generated(raw: bytes) -> tuple[str, float]:
    """The text and log-probability of the one token generated (a non-echo answer)."""
    logprobs, _, _ = _logprobs(raw)
    if not logprobs["tokens"] or not isinstance(logprobs["token_logprobs"][0], int | float):
        raise ScoringUnsupported("the completions answer has no generated token with a log-probability")
    return str(logprobs["tokens"][0]), float(logprobs["token_logprobs"][0])


def alignment_problem(generated: tuple[str, float], echoed: list[float]) -> str | None:
    """Why the server's echoed log-probabilities cannot be trusted, or None when they agree.

    Args:
        generated: The probe's generated token and its log-probability.
        echoed: The log-probabilities echoed for that token appended to the probe prompt.
    """
    token, logprob = generated
    if not token:
        return "the probe generated an empty token, so alignment could not be checked"
    total = sum(echoed)
    if abs(total - logprob) > ALIGNMENT_TOLERANCE:
        return (
            f"its echoed prompt log-probabilities are misaligned: the token {token!r} scored {logprob:.3f} "
            f"when generated but {total:.3f} when echoed (llama-cpp-python reads an echoed token's "
            "log-probability one position late unless the prompt starts with the BOS token)"
        )
    return None


async def score_request(ranker: ScoringHost, request: RankRequest) -> RankResponse | Failure:
    """One ``/completions`` call per candidate; the ranking sorts the label scores (ties: shown order).

    A candidate whose call fails for good fails the request (the cache keeps the batch's other answers).
    """
    text = ranker.score_prompt(request)
    labels = [label_text(request, j) for j in range(len(request.candidate_ids))]
    start = time.perf_counter()
    outcomes = await asyncio.gather(*(
        ranker.transport.call(
            "/completions", completion_body(ranker.model, text + label, echo=True),
            functools.partial(read_label_logprobs, prompt=text, label=label),
        )
        for label in labels
    ), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            return ranker.transport.failure(outcome)
    latency = time.perf_counter() - start
    average = normalizes(ranker.length_normalize, request)
    scores: list[float] = []
    prompt_tokens = 0
    for (values, usage), _ in outcomes:  # type: ignore[misc]
        scores.append(sum(values) / len(values) if average else sum(values))
        prompt_tokens += usage.prompt_tokens
    ranker.transport.count("succeeded")
    order = sorted(range(len(scores)), key=lambda j: -scores[j])
    return RankResponse(
        ranking=tuple(request.candidate_ids[j] for j in order),
        usage=TokenUsage(prompt_tokens=prompt_tokens),
        latency_s=latency,
        parse=ParseStats(found=len(scores)),
        scores=tuple(scores),
    )


async def probe_scoring(ranker: ScoringHost) -> str | None:
    """Why ``ranker``'s server cannot score labels, or None: one token generated, then the same token echoed.

    Raises:
        RankerError: The server cannot be reached (or keeps failing) to check it.
    """
    import openai

    text = ranker.score_prompt(RankRequest(messages=PROBE_MESSAGES, candidate_ids=(), candidate_texts=()))
    try:
        generated, _ = await ranker.transport.call(
            "/completions", completion_body(ranker.model, text, echo=False), read_generated
        )
        (echoed, _), _ = await ranker.transport.call(
            "/completions", completion_body(ranker.model, text + generated[0], echo=True),
            functools.partial(read_label_logprobs, prompt=text, label=generated[0]),
        )
    except ScoringUnsupported as exc:
        return str(exc)
    except openai.APIStatusError as exc:
        return f"/completions with echo and logprobs answered {describe_failure(exc, ranker.timeout_s)}"
    except Exception as exc:
        raise RankerError(
            f"openai ranker: cannot check whether {ranker.base_url} scores labels (api_mode: score): "
            f"{describe_failure(exc, ranker.timeout_s)}"
        ) from None
    return alignment_problem(generated, echoed)
