"""What a score-mode ranker scores: each candidate's label, the text the template asks the model to answer.

Shared by the local scorer (:mod:`promptopt.llm.hf_backend`) and the API scorer
(:mod:`promptopt.llm.openai_scoring`), so both score the same continuation of the same prompt.
"""

from __future__ import annotations

from typing import Literal

from promptopt.llm.types import RankRequest

LengthNormalize = Literal["none", "titles", "all"]
"""Whose label log-probabilities are averaged over their tokens instead of summed."""
LENGTH_NORMALIZE: tuple[str, ...] = ("none", "titles", "all")


def label_text(request: RankRequest, position: int) -> str:
    """The text whose likelihood scores the candidate shown at ``position`` (0-based).

    ``index``: its number in the shown list (per ``index_base``); ``json``: ``[`` + that number;
    ``title``: its displayed text.
    """
    number = position + request.index_base
    if request.output_format == "title":
        return request.candidate_texts[position]
    if request.output_format == "json":
        return f"[{number}"
    return str(number)


def normalizes(length_normalize: str, request: RankRequest) -> bool:
    """Whether ``request``'s label scores are averaged over their tokens.

    ``"titles"`` averages title labels only: summed, a long title pays for every token, so short,
    generic titles win (measured on SmolLM2-135M: title-label NDCG@10 below chance).
    """
    return length_normalize == "all" or (length_normalize == "titles" and request.output_format == "title")


def plain_prompt(request: RankRequest) -> str:
    """The prompt as plain text (every message joined) plus the newline the label follows."""
    return request.prompt.rstrip() + "\n"
