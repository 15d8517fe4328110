"""Counterfactual copies of a request: the same prompt stating one sensitive attribute value.

A copy differs from its neutral request only by one sentence added to the last user message
(before it or after it, the attribute set's ``placement``). The candidates, their texts, their shown
order, the output format, the sample id and the request ids are the neutral request's, so the copy
is read back against the same list and only the attribute differs. The copy's messages differ, so
the answer cache keys it separately, and the budget counts it as one more call.
"""

from __future__ import annotations

import dataclasses

from promptopt.fairness.attributes import Placement
from promptopt.llm.types import RankRequest


def counterfactual_request(
    request: RankRequest, sentence: str, placement: Placement = "start"
) -> RankRequest:
    """``request`` with ``sentence`` added to its last user message (``start``: before it, ``end``: after).

    Raises:
        ValueError: ``placement`` is neither ``start`` nor ``end``, or the request has no user message.
    """
    if placement not in ("start", "end"):
        raise ValueError(f"placement must be start or end, got {placement!r}")
    messages = list(request.messages)
    for k in range(len(messages) - 1, -1, -1):
        role, content = messages[k]
        if role == "user":
            text = f"{sentence}\n{content}" if placement == "start" else f"{content}\n{sentence}"
            messages[k] = (role, text)
            return dataclasses.replace(request, messages=tuple(messages))
    raise ValueError("the request has no user message to state the attribute in")
