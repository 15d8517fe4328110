"""Spending caps shared by a run's rankers, and the counters every cached ranker keeps.

A :class:`Budget` caps uncached calls, tokens and money. :class:`promptopt.llm.cache.CachedRanker`
asks it before sending a batch and charges it after: a batch is trimmed to what is left, the
answers it got are saved to the cache, and only then :class:`~promptopt.errors.BudgetExceeded` is
raised, so nothing paid for is lost and a re-run with ``--resume`` reuses every cached answer.

With a ``ledger`` file (``RUN_DIR/budget.json``) the spend is the run's, not the process's: every
phase (pretraining scans, training, baselines, evaluation, export) and every resume charges the same
file, so a cap holds for the whole run. The file is updated under an exclusive lock on every
reservation and charge, so the processes of one run (SubprocVecEnv workers) share it exactly.

Tokens and money are known only after a call. A batch is trimmed to the calls the remaining tokens
and money pay for at the most expensive call seen so far (the first call of a run is sent alone to
measure it), so a cap is overshot only by a call dearer than every call before it.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


LEDGER_VERSION = 1


def _empty_ledger() -> dict[str, Any]:
    return {"version": LEDGER_VERSION, "calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0,
            "priced_calls": 0, "max_call_tokens": 0, "max_call_cost": 0.0, "phases": {}}


class Budget:
    """Caps on the uncached calls, tokens and money of a run; share one instance between its rankers.

    Thread-safe, and process-safe with a ``ledger``. ``None`` means no cap.

    Args:
        max_calls: Requests that may be sent to backends.
        max_tokens: Prompt + completion tokens of received answers.
        max_cost: Money of received answers (from the backends' price tables).
        ledger: JSON file holding what the run spent so far (created when missing); None keeps the
            spend in memory (this process only).
        phase: Name the spend is recorded under in the ledger (``train``, ``evaluate``, ``export``).

    Raises:
        ConfigError: A cap is negative or not a number, or the ledger file is damaged.
    """

    def __init__(
        self,
        max_calls: int | None = None,
        max_tokens: int | None = None,
        max_cost: float | None = None,
        *,
        ledger: str | Path | None = None,
        phase: str = "run",
    ) -> None:
        for name, value in (("max_calls", max_calls), ("max_tokens", max_tokens), ("max_cost", max_cost)):
            if value is not None and not (isinstance(value, int | float) and _finite_non_negative(value)):
                raise ConfigError(f"budget.{name} must be >= 0 or null (no cap), got {value}")
        self.max_calls = max_calls
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        self.ledger = Path(ledger) if ledger is not None else None
        self.phase = phase
        self._lock = threading.Lock()
        self._state = _empty_ledger()
        if self.ledger is not None:
            with self._update():  # fail early on a damaged file; create it so the run shows its spend
                pass

    @classmethod
    def from_config(
        cls, config: BudgetConfig, *, ledger: str | Path | None = None, phase: str = "run"
    ) -> Budget:
        return cls(max_calls=config.max_calls, max_tokens=config.max_tokens, max_cost=config.max_cost,
                   ledger=ledger, phase=phase)

    @property
    def capped(self) -> bool:
        """Whether any cap is set."""
        return any(cap is not None for cap in (self.max_calls, self.max_tokens, self.max_cost))

    def __repr__(self) -> str:
        spent = self.spent
        return (
            f"Budget(max_calls={self.max_calls}, max_tokens={self.max_tokens}, max_cost={self.max_cost}; "
            f"spent {spent.calls} calls, {spent.tokens} tokens, {spent.cost:.4f} money)"
        )

    def __getstate__(self) -> dict[str, object]:  # picklable for subprocess workers (they share the ledger)
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- the ledger ----------------------------------------------------------------------------------

    @contextmanager
    def _update(self, write: bool = True) -> Iterator[dict[str, Any]]:
        """The current spend, locked (threads, and processes through the ledger's lock file)."""
        with self._lock:
            if self.ledger is None:
                yield self._state
                return
            import fcntl

            self.ledger.parent.mkdir(parents=True, exist_ok=True)
            with open(self.ledger.with_name(f".{self.ledger.name}.lock"), "a+b") as lock:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
                state = self._read()
                before = json.dumps(state, sort_keys=True)
                yield state
                if write and (json.dumps(state, sort_keys=True) != before or not self.ledger.is_file()):
                    tmp = self.ledger.with_name(self.ledger.name + ".tmp")
                    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
                    os.replace(tmp, self.ledger)
                self._state = state

    def _read(self) -> dict[str, Any]:
        assert self.ledger is not None
        if not self.ledger.is_file():
            return _empty_ledger()
        try:
            state = json.loads(self.ledger.read_text(encoding="utf-8"))
            if not isinstance(state, dict) or state.get("version") != LEDGER_VERSION:
                raise ValueError("not a promptopt budget ledger")
            for key in ("calls", "prompt_tokens", "completion_tokens", "cost"):
                if not (isinstance(state[key], int | float) and _finite_non_negative(state[key])):
                    raise ValueError(f"{key} is {state[key]!r}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"the budget ledger {self.ledger} is damaged ({exc}): it records what this run has spent; "
                "restore it, or delete it to start counting from zero (the cached answers stay free)"
            ) from None
        return {**_empty_ledger(), **state}

    def _phase(self, state: dict[str, Any]) -> dict[str, Any]:
        return state["phases"].setdefault(self.phase, {"calls": 0, "tokens": 0, "cost": 0.0})

    # -- spending ------------------------------------------------------------------------------------

    @property
    def spent(self) -> RankerStats:
        """Calls, tokens and money charged so far (by the whole run, with a ledger)."""
        with self._update(write=False) as s:
            return RankerStats(calls=s["calls"], prompt_tokens=s["prompt_tokens"],
                               completion_tokens=s["completion_tokens"], cost=s["cost"])

    def by_phase(self) -> dict[str, dict[str, float]]:
        """Calls, tokens and money per phase (``train``, ``evaluate``, ``export`` ...)."""
        with self._update(write=False) as s:
            return {k: dict(v) for k, v in s["phases"].items()}

    @property
    def calls_left(self) -> int | None:
        with self._update(write=False) as s:
            return None if self.max_calls is None else max(0, self.max_calls - s["calls"])

    def reserve(self, n: int) -> int:
        """Reserve up to ``n`` calls and return how many may be sent (all of them without a cap).

        Returns 0 when the calls, tokens or money left do not pay for another call.
        """
        with self._update() as s:
            allowed = min(n, self._affordable(s))
            s["calls"] += allowed
            self._phase(s)["calls"] += allowed
            return allowed

    def release(self, n: int) -> None:
        """Give back ``n`` reserved calls that were not sent."""
        with self._update() as s:
            back = min(n, s["calls"])
            s["calls"] -= back
            phase = self._phase(s)
            phase["calls"] = max(0, phase["calls"] - back)

    def charge(self, usage: TokenUsage, cost: float = 0.0) -> None:
        """Add the tokens and money of one received answer (or of a batch, as one)."""
        self.charge_answers([(usage, cost)])

    def charge_answers(self, answers: Iterable[tuple[TokenUsage, float]]) -> None:
        """Add the tokens and money of received answers, one ``(usage, cost)`` each.

        A negative or non-finite count (a misbehaving server) is charged as 0: spend never goes down.
        """
        items = [(_count(u.prompt_tokens), _count(u.completion_tokens), _money(c)) for u, c in answers]
        if not items:
            return
        with self._update() as s:
            phase = self._phase(s)
            for prompt, completion, cost in items:
                s["prompt_tokens"] += prompt
                s["completion_tokens"] += completion
                s["cost"] += cost
                s["priced_calls"] += 1
                s["max_call_tokens"] = max(s["max_call_tokens"], prompt + completion)
                s["max_call_cost"] = max(s["max_call_cost"], cost)
                phase["tokens"] += prompt + completion
                phase["cost"] += cost

    def exhausted(self) -> bool:
        """Whether no further uncached call may be made."""
        with self._update(write=False) as s:
            return self._affordable(s) == 0

    def overspent(self) -> str | None:
        """The cap already passed (tokens or money beyond their cap), else None."""
        with self._update(write=False) as s:
            if self.max_tokens is not None and s["prompt_tokens"] + s["completion_tokens"] > self.max_tokens:
                return f"max_tokens={self.max_tokens}"
            if self.max_cost is not None and s["cost"] > self.max_cost:
                return f"max_cost={self.max_cost}"
            return None

    def exceeded_error(self, *, pending: int, saved: int) -> BudgetExceeded:
        """The error to raise when ``pending`` requests could not be sent; ``saved`` were just cached."""
        with self._update(write=False) as s:
            tokens = s["prompt_tokens"] + s["completion_tokens"]
            caps = []
            if self.max_calls is not None and s["calls"] >= self.max_calls:
                caps.append(f"max_calls={self.max_calls}")
            if self.max_tokens is not None and _left(self.max_tokens, tokens, s["max_call_tokens"]) < 1:
                caps.append(f"max_tokens={self.max_tokens}")
            if self.max_cost is not None and _left(self.max_cost, s["cost"], s["max_call_cost"]) < 1:
                caps.append(f"max_cost={self.max_cost}")
            spent = f"{s['calls']} calls, {tokens} tokens, {s['cost']:.4f} money"
        which = " and ".join(caps) or "the budget"
        scope = f"by this run (ledger {self.ledger})" if self.ledger is not None else "so far"
        unsent = f"{pending} request(s) were not sent; " if pending else ""
        return BudgetExceeded(
            f"ranker budget reached ({which}; spent {spent} {scope}); {unsent}the {saved} answer(s) of the "
            "last batch are saved in the cache. To continue, raise budget.max_calls / max_tokens / max_cost "
            "and re-run with --resume: cached answers are reused without new calls"
        )

    def _affordable(self, s: dict[str, Any]) -> int:
        """Calls the caps still allow (a large number without caps)."""
        allowed = 2**62
        if self.max_calls is not None:
            allowed = min(allowed, max(0, self.max_calls - s["calls"]))
        for cap, spent, per_call in (
            (self.max_tokens, s["prompt_tokens"] + s["completion_tokens"], s["max_call_tokens"]),
            (self.max_cost, s["cost"], s["max_call_cost"]),
        ):
            if cap is None:
                continue
            if spent >= cap:
                return 0
            if s["priced_calls"] == 0:
                allowed = min(allowed, 1)  # nothing measured yet: one call tells what a call costs
            else:
                allowed = min(allowed, _left(cap, spent, per_call))
        return max(0, allowed)


def _left(cap: float, spent: float, per_call: float) -> int:
    """Calls of ``per_call`` that fit in ``cap - spent`` (unbounded when calls cost nothing)."""
    if spent >= cap:
        return 0
    if per_call <= 0:
        return 2**62
    return int((cap - spent) // per_call)


def _finite_non_negative(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def _count(value: Any) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0
    return int(number) if math.isfinite(number) and number > 0 else 0


def _money(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) and number > 0 else 0.0

