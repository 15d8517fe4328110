"""Spending caps shared by a run's rankers, and the counters every cached ranker keeps.

A :class:`Budget` caps uncached calls, tokens and money. :class:`promptopt.llm.cache.CachedRanker`
asks it before sending a batch and charges it after: a batch is trimmed to the calls left, the
answers it got are saved to the cache, and only then :class:`~promptopt.errors.BudgetExceeded` is
raised, so nothing paid for is lost and a re-run with ``--resume`` reuses every cached answer.
Tokens and money can only be known after a call, so those caps may be overshot by the last batch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from promptopt.errors import BudgetExceeded, ConfigError
from promptopt.llm.types import TokenUsage

if TYPE_CHECKING:
    from promptopt.config import BudgetConfig


@dataclass(frozen=True)
class RankerStats:
    """What a ranker (or a budget) has spent.

    Attributes:
        hits: Requests answered from the cache.
        misses: Requests not in the cache.
        calls: Requests sent to the backend (misses that were sent; a failed request counts too).
        prompt_tokens: Prompt tokens of the answers received.
        completion_tokens: Completion tokens of the answers received.
        cost: Money of the answers received, from the backend's price table (0 when unknown).
        failures: Requests that failed after the backend's retries.
    """

    hits: int = 0
    misses: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    failures: int = 0

    @property
    def tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def requests(self) -> int:
        """Requests asked for (hits + misses)."""
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    def __add__(self, other: RankerStats) -> RankerStats:
        return RankerStats(
            hits=self.hits + other.hits,
            misses=self.misses + other.misses,
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost=self.cost + other.cost,
            failures=self.failures + other.failures,
        )

    def with_usage(self, usage: TokenUsage, cost: float = 0.0) -> RankerStats:
        return replace(
            self,
            prompt_tokens=self.prompt_tokens + usage.prompt_tokens,
            completion_tokens=self.completion_tokens + usage.completion_tokens,
            cost=self.cost + cost,
        )

    def to_json(self) -> dict[str, int | float]:
        """Flat numbers for logs and trackers (``tokens`` and ``hit_rate`` included)."""
        return {
            "hits": self.hits, "misses": self.misses, "calls": self.calls,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "tokens": self.tokens, "cost": self.cost, "failures": self.failures,
            "hit_rate": self.hit_rate,
        }


class Budget:
    """Caps on the uncached calls, tokens and money of a run; share one instance between its rankers.

    Thread-safe. ``None`` means no cap.

    Args:
        max_calls: Requests that may be sent to backends.
        max_tokens: Prompt + completion tokens of received answers.
        max_cost: Money of received answers (from the backends' price tables).

    Raises:
        ConfigError: A cap is negative.
    """

    def __init__(
        self, max_calls: int | None = None, max_tokens: int | None = None, max_cost: float | None = None
    ) -> None:
        for name, value in (("max_calls", max_calls), ("max_tokens", max_tokens), ("max_cost", max_cost)):
            if value is not None and value < 0:
                raise ConfigError(f"budget.{name} must be >= 0 or null (no cap), got {value}")
        self.max_calls = max_calls
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        self._lock = threading.Lock()
        self._calls = 0
        self._tokens = 0
        self._cost = 0.0

    @classmethod
    def from_config(cls, config: BudgetConfig) -> Budget:
        return cls(max_calls=config.max_calls, max_tokens=config.max_tokens, max_cost=config.max_cost)

    def __repr__(self) -> str:
        return (
            f"Budget(max_calls={self.max_calls}, max_tokens={self.max_tokens}, max_cost={self.max_cost}; "
            f"spent {self._calls} calls, {self._tokens} tokens, {self._cost:.4f} money)"
        )

    def __getstate__(self) -> dict[str, object]:  # picklable for subprocess workers (each keeps its own)
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def spent(self) -> RankerStats:
        """Calls, tokens (as prompt tokens) and money charged so far."""
        with self._lock:
            return RankerStats(calls=self._calls, prompt_tokens=self._tokens, cost=self._cost)

    @property
    def calls_left(self) -> int | None:
        with self._lock:
            return None if self.max_calls is None else max(0, self.max_calls - self._calls)

    def reserve(self, n: int) -> int:
        """Reserve up to ``n`` calls and return how many may be sent (all of them without a call cap).

        Returns 0 when the calls, tokens or money are already used up.
        """
        with self._lock:
            if self._exhausted_locked():
                return 0
            allowed = n if self.max_calls is None else max(0, min(n, self.max_calls - self._calls))
            self._calls += allowed
            return allowed

    def release(self, n: int) -> None:
        """Give back ``n`` reserved calls that were not sent."""
        with self._lock:
            self._calls = max(0, self._calls - n)

    def charge(self, usage: TokenUsage, cost: float = 0.0) -> None:
        """Add the tokens and money of received answers."""
        with self._lock:
            self._tokens += usage.total_tokens
            self._cost += cost

    def exhausted(self) -> bool:
        """Whether no further uncached call may be made."""
        with self._lock:
            return self._exhausted_locked()

    def overspent(self) -> str | None:
        """The cap already passed (tokens or money beyond their cap), else None."""
        with self._lock:
            if self.max_tokens is not None and self._tokens > self.max_tokens:
                return f"max_tokens={self.max_tokens}"
            if self.max_cost is not None and self._cost > self.max_cost:
                return f"max_cost={self.max_cost}"
            return None

    def exceeded_error(self, *, pending: int, saved: int) -> BudgetExceeded:
        """The error to raise when ``pending`` requests could not be sent; ``saved`` were just cached."""
        with self._lock:
            caps = []
            if self.max_calls is not None and self._calls >= self.max_calls:
                caps.append(f"max_calls={self.max_calls}")
            if self.max_tokens is not None and self._tokens >= self.max_tokens:
                caps.append(f"max_tokens={self.max_tokens}")
            if self.max_cost is not None and self._cost >= self.max_cost:
                caps.append(f"max_cost={self.max_cost}")
            spent = f"{self._calls} calls, {self._tokens} tokens, {self._cost:.4f} money"
        which = " and ".join(caps) or "the budget"
        unsent = f"{pending} request(s) were not sent; " if pending else ""
        return BudgetExceeded(
            f"ranker budget reached ({which}; spent {spent}); {unsent}the {saved} answer(s) of the last "
            "batch are saved in the cache. To continue, raise budget.max_calls / max_tokens / max_cost "
            "and re-run with --resume: cached answers are reused without new calls"
        )

    def _exhausted_locked(self) -> bool:
        return (
            (self.max_calls is not None and self._calls >= self.max_calls)
            or (self.max_tokens is not None and self._tokens >= self.max_tokens)
            or (self.max_cost is not None and self._cost >= self.max_cost)
        )
