"""Fixtures of the problem's parts (episodes, task set, requests, observations, runner, facade).

A five-template catalog whose masks are easy to predict, a problem with three drift views and two
shuffled orders per view (8 requests an episode), and a ranker whose answer is the shown order, so
every metric is computable by hand from where the target was shown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from promptopt.config import RewardConfig, SplitConfig
from promptopt.llm.types import ParseStats, RankRequest, RankResponse, TokenUsage

FIVE_TEMPLATES = {
    "name": "test",
    "templates": [
        {"id": "recent5", "text": "I watched {recent_titles:5}.\nRank:\n{candidates}"},
        {"id": "genres", "text": "My taste: {genre_profile}.\nRank:\n{candidates}"},
        {"id": "liked", "text": "I liked {liked_titles:3}.\nRank:\n{candidates}", "output_format": "title"},
        {"id": "similar", "text": "Similar users watched {similar_users_items:5}.\nRank:\n{candidates}"},
        {"id": "long", "text": "I watched {recent_titles:40}.\nRank:\n{candidates}"},
    ],
}
"""Template 4 needs 40 history items (masked for short histories), template 3 needs hints."""

ROBUST = RewardConfig(robust_weight=0.5, views=("temporal", "dropout", "popular_negatives"), bootstrap=2)
"""Base + 3 drift views, 2 shown orders each: 8 requests per episode."""


class ShownOrderRanker:
    """Ranks candidates in the order they were shown (the answer of a model that ignores the prompt).

    With it, a task's metric depends only on its target's shown position: hand-computable. Every
    second answer claims to come from a cache; each costs 10 + 2 tokens. ``drop`` answers fewer.
    """

    def __init__(self, drop: int = 0) -> None:
        self.identity = {"backend": "shown-order"}
        self.calls: list[int] = []
        self.sent: list[RankRequest] = []
        self.drop = drop

    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        self.calls.append(len(requests))
        self.sent += requests
        out = [RankResponse(ranking=r.candidate_ids, usage=TokenUsage(10, 2), cached=i % 2 == 1,
                            parse=ParseStats(found=len(r.candidate_ids)))
               for i, r in enumerate(requests)]
        return out[:len(out) - self.drop]


def ndcg10(position: int) -> float:
    return 1.0 / math.log2(position + 2) if position < 10 else 0.0


@pytest.fixture(scope="session")
def five_templates():
    from promptopt.templates import TemplateCatalog

    return TemplateCatalog.from_dict(FIVE_TEMPLATES)


@pytest.fixture(scope="module")
def robust_problem(synthetic_data, synthetic_split, five_templates):
    """Shared by a module's tests: its caches fill as they run (what they check never depends on it)."""
    from promptopt.problem import RecProblem

    return RecProblem.build(synthetic_data, synthetic_split, five_templates, ROBUST, SplitConfig(), seed=1)


@pytest.fixture
def fresh_problem(synthetic_data, synthetic_split, five_templates):
    """A problem with empty caches (for tests of what is built when)."""
    from promptopt.problem import RecProblem

    return RecProblem.build(synthetic_data, synthetic_split, five_templates, ROBUST, SplitConfig(), seed=1)
