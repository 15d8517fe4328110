"""Request and response types: usage and parse statistics add up field by field."""

from __future__ import annotations

from promptopt.llm.types import ParseStats, TokenUsage


def test_usage_and_parse_stats_sum() -> None:
    usages = [TokenUsage(10, 2), TokenUsage(7, 0), TokenUsage(0, 5)]
    assert sum(usages, TokenUsage()) == TokenUsage(17, 7)
    stats = [ParseStats(found=3, duplicates=1), ParseStats(found=2, hallucinated=2, missing=1)]
    total = sum(stats, ParseStats())
    assert total == ParseStats(found=5, duplicates=1, hallucinated=2, missing=1)
    assert not total.complete and (ParseStats(found=4) + ParseStats(found=1)).complete
