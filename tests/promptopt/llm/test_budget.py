"""Budgets: calls, tokens and money capped across rankers; the last batch is saved before stopping."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from promptopt.config import BudgetConfig
from promptopt.errors import BudgetExceeded, ConfigError, PromptoptError
from promptopt.llm.budget import Budget, RankerStats
from promptopt.llm.cache import CachedRanker, CacheStore
from promptopt.llm.types import TokenUsage

from .test_cache import CountingRanker, _requests


class PricedRanker(CountingRanker):
    """Costs 1 money per prompt token (the cache reads ``cost_of`` from the backend)."""

    def cost_of(self, usage: TokenUsage) -> float:
        return float(usage.prompt_tokens)


def test_call_cap_trims_the_batch_saves_it_then_stops(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    backend = CountingRanker()
    ranker = CachedRanker(backend, path, budget=Budget(max_calls=5))
    with pytest.raises(BudgetExceeded) as info:
        ranker.rank(_requests(8))
    message = str(info.value)
    assert "max_calls=5" in message and "--resume" in message and "3 request(s) were not sent" in message
    assert backend.sent == 5
    assert len(CacheStore(path)) == 5  # paid answers are kept
    # The same cap again: nothing more is sent, the error comes before any call.
    with pytest.raises(BudgetExceeded):
        ranker.rank(_requests(8))
    assert backend.sent == 5
    # Hits are free even when the budget is spent.
    assert all(r.cached for r in ranker.rank(_requests(5)))
    # A raised cap (as after editing the config and re-running with --resume) sends only the rest.
    resumed = CachedRanker(backend, path, budget=Budget(max_calls=3))
    out = resumed.rank(_requests(8))
    assert len(out) == 8 and backend.sent == 8
    assert [r.cached for r in out] == [True] * 5 + [False] * 3


def test_token_cap_sends_only_the_calls_the_tokens_left_pay_for(tmp_path: Path) -> None:
    backend = CountingRanker()
    budget = Budget(max_tokens=40)
    ranker = CachedRanker(backend, tmp_path / "c.sqlite", budget=budget)
    per_request = 9 + 3  # nine prompt words, three candidates
    # Nothing measured yet: one call is sent alone to learn what a call costs, then the 28 tokens
    # left pay for the other two calls of 12.
    assert len(ranker.rank(_requests(3))) == 3
    assert [len(b) for b in backend.batches] == [1, 2] and budget.spent.tokens == 3 * per_request
    with pytest.raises(BudgetExceeded, match=r"max_tokens=40.*5 request\(s\) were not sent"):
        ranker.rank(_requests(5, tag="more"))  # 4 tokens left: not one more call
    assert backend.sent == 3
    assert budget.spent.tokens == 3 * per_request <= 40  # never above the cap when calls cost the same
    with pytest.raises(BudgetExceeded):
        ranker.rank(_requests(1, tag="new"))
    assert backend.sent == 3  # refused before calling


def test_cost_cap_uses_the_backend_price_table(tmp_path: Path) -> None:
    backend = PricedRanker()
    budget = Budget(max_cost=30.0)
    ranker = CachedRanker(backend, tmp_path / "c.sqlite", budget=budget)
    ranker.rank(_requests(1))
    assert ranker.stats.cost == pytest.approx(9.0)  # prompt "q 0: rank\n1. a\n2. b\n3. c" has 9 words
    with pytest.raises(BudgetExceeded, match="max_cost=30"):
        ranker.rank(_requests(4, tag="x"))  # 21 money left: two more calls of 9
    assert budget.spent.cost == pytest.approx(27.0)
    assert sum(row["cost"] for row in CacheStore(tmp_path / "c.sqlite").rows()) == pytest.approx(27.0)


def test_one_budget_caps_several_rankers_together(tmp_path: Path) -> None:
    budget = Budget(max_calls=6)
    a, b = CountingRanker(), CountingRanker({"backend": "other"})
    CachedRanker(a, tmp_path / "a.sqlite", budget=budget).rank(_requests(4))
    with pytest.raises(BudgetExceeded):
        CachedRanker(b, tmp_path / "b.sqlite", budget=budget).rank(_requests(4))
    assert (a.sent, b.sent) == (4, 2)
    assert budget.calls_left == 0 and budget.exhausted()


def test_reservations_are_exact_under_threads() -> None:
    budget = Budget(max_calls=1000)
    granted: list[int] = []
    lock = threading.Lock()

    def grab() -> None:
        for _ in range(200):
            n = budget.reserve(3)
            with lock:
                granted.append(n)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 1000
    assert budget.reserve(1) == 0
    budget.release(10)
    assert budget.calls_left == 10


def test_unlimited_budget_never_stops(tmp_path: Path) -> None:
    budget = Budget()
    assert budget.reserve(10**6) == 10**6 and not budget.exhausted() and budget.overspent() is None
    backend = CountingRanker()
    CachedRanker(backend, tmp_path / "c.sqlite", budget=Budget()).rank(_requests(50))
    assert backend.sent == 50


@pytest.mark.parametrize("kwargs", [{"max_calls": -1}, {"max_tokens": -5}, {"max_cost": -0.1}])
def test_negative_caps_are_config_errors(kwargs) -> None:
    with pytest.raises(ConfigError, match="must be >= 0"):
        Budget(**kwargs)


def test_budget_from_config_and_errors_are_user_errors() -> None:
    budget = Budget.from_config(BudgetConfig(max_calls=3, max_tokens=None, max_cost=2.5))
    assert (budget.max_calls, budget.max_tokens, budget.max_cost) == (3, None, 2.5)
    assert issubclass(BudgetExceeded, PromptoptError)


def test_ranker_stats_arithmetic() -> None:
    a = RankerStats(hits=1, misses=3, calls=3).with_usage(TokenUsage(10, 5), 0.5)
    b = RankerStats(hits=3, misses=1, calls=1, failures=1).with_usage(TokenUsage(2, 1), 0.25)
    total = a + b
    assert (total.hits, total.misses, total.calls, total.failures) == (4, 4, 4, 1)
    assert total.tokens == 18 and total.cost == pytest.approx(0.75)
    assert total.hit_rate == 0.5
    assert total.to_json()["tokens"] == 18
