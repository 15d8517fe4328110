"""Dry run of a config: how many ranker requests and prompt tokens a run would spend, before any call.

Nothing is sent and no model is loaded (except an HF tokenizer, from local files, when the ranker
is ``hf``). For every phase of ``promptopt train`` (PPO training of each agent, the best-fixed
scan, the safe policy's gate validation, the bandit baselines, the evaluation on held-out users;
with ``env.reward_baseline: default`` or ``policy.warm_start`` also the default scan that ranks the
default template before training, and the paired reward's default answers) the
estimate gives

* ``requests``: requests the phase sends to the (cached) ranker (an upper bound for the paired
  baseline, which sends nothing when the default is the chosen template);
* ``distinct``: an upper bound on the requests that are new to the cache — a request is fixed by
  (user, template, task), so a phase never needs more than ``users x templates x tasks`` distinct
  answers, and phases drawing from the same users share them;
* ``prompt tokens``: ``distinct x`` the mean prompt length of a seeded sample of rendered requests.

With the fairness-aware reward (``reward.fairness_weight > 0``) every episode also sends
``reward.fairness_values`` counterfactual copies of its base request; they are counted in the
requests per (user, template) (:attr:`RecProblem.calls_per_episode`) and so in every phase.

Token counts use the ranker's own tokenizer when the backend is ``hf``; otherwise the common
approximation of one token per four characters of English text (``ceil(chars / 4)``), which is
within about 10% for OpenAI's tokenizers on this kind of prompt (tiktoken needs a download, so it
is not used). Completion tokens are bounded by ``ranker.max_tokens`` per uncached call for
generating backends and are zero for scoring ones (embedding, ``hf`` in ``score`` mode).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from promptopt.config import BudgetConfig, ExperimentConfig
from promptopt.errors import PromptoptError
from promptopt.experiments.assembly import agent_kinds, build_problem, needs_default
from promptopt.selector_names import BANDIT_SELECTORS

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4.0
"""Characters per token of the approximation used when the ranker's tokenizer is not at hand."""


@dataclass(frozen=True)
class PhaseEstimate:
    """One phase of a run."""

    phase: str
    users: int
    requests: int
    distinct: int
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Estimate:
    """The whole run: phases, the union of distinct requests, tokens and money."""

    phases: tuple[PhaseEstimate, ...]
    distinct_total: int
    prompt_tokens: int
    completion_tokens: int
    mean_prompt_tokens: float
    tokenizer: str
    cost: float | None
    calls_per_episode: int
    n_templates: int
    fairness_copies: int = 0


def approx_tokens(text: str) -> int:
    """``ceil(len(text) / 4)``: the approximation documented in the module docstring."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _token_counter(config: ExperimentConfig) -> tuple[Callable[[str], int], str]:
    if config.ranker.backend == "hf":
        from promptopt.llm.model_files import locate_model

        try:
            location = locate_model(config.ranker.model, config.ranker.gguf_file)
        except PromptoptError:
            location = None
        if location is not None and location.gguf_file:
            # transformers rebuilds a GGUF file's tokenizer from the whole file (a minute or more).
            logger.info("not loading the GGUF tokenizer of %s (slow); using chars/4", location.name)
            return approx_tokens, "approx. chars/4"
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(config.ranker.model, local_files_only=True)
        except Exception as exc:  # no local tokenizer: fall back to the documented approximation
            logger.warning("cannot load the tokenizer of %s locally (%s); using chars/4",
                           config.ranker.model, type(exc).__name__)
        else:
            return (lambda text: len(tokenizer(text)["input_ids"])), f"{config.ranker.model} tokenizer"
    return approx_tokens, "approx. chars/4"


def expected_distinct(pairs: int, draws: int) -> int:
    """Expected distinct pairs among ``draws`` uniform draws from ``pairs``: ``N (1 - (1 - 1/N)^T)``."""
    if pairs <= 0 or draws <= 0:
        return 0
    if pairs == 1:
        return 1
    return min(draws, math.ceil(pairs * -math.expm1(draws * math.log1p(-1.0 / pairs))))


def estimate(config: ExperimentConfig, *, sample: int = 200) -> Estimate:
    """Count requests and tokens for ``config`` without calling the ranker.

    Args:
        config: The experiment.
        sample: (user, template) pairs rendered per user pool to measure the prompt length.
    """
    _data, _split, _catalog, problem = build_problem(config)
    n_t = problem.n_templates
    cpe = problem.calls_per_episode
    train_users = problem.pool("train")
    eval_users = problem.pool(config.eval.split)
    selectors = set(config.eval.selectors)
    count, tokenizer = _token_counter(config)
    rng = np.random.default_rng(config.seed)

    def mean_tokens(users: np.ndarray, **task_kw: object) -> float:
        if len(users) == 0:
            return 0.0
        lengths = []
        for _ in range(max(1, sample // max(cpe, 1))):
            user = int(rng.choice(users))
            tasks = problem.tasks(user, **task_kw)  # type: ignore[arg-type]
            if tasks:
                lengths += [count(r.prompt) for r in problem.requests(tasks, int(rng.integers(n_t)))]
        return float(np.mean(lengths)) if lengths else 0.0

    train_tokens = mean_tokens(train_users)
    eval_tokens = mean_tokens(eval_users, final=True)
    generating = config.ranker.backend == "openai" or (
        config.ranker.backend == "hf" and config.ranker.hf_mode == "generate")
    completion = config.ranker.max_tokens if generating else 0
    phases: list[PhaseEstimate] = []

    def add(phase: str, users: int, episodes: int, pool_pairs: int, tokens: float,
            exhaustive: bool = False) -> None:
        # Exhaustive phases score every pair once; sampled phases draw pairs with replacement.
        pairs = min(episodes, pool_pairs) if exhaustive else expected_distinct(pool_pairs, episodes)
        distinct = pairs * cpe
        phases.append(PhaseEstimate(phase, users, episodes * cpe, distinct,
                                    round(distinct * tokens), distinct * completion))

    # A training user's episodes draw among its env.train_targets targets (each a distinct task).
    train_pairs = len(train_users) * n_t * config.env.train_targets
    if needs_default(config):
        # env.reward_baseline=default and policy.warm_start rank a default first: every template on
        # a seeded sample of env.default_scan_users training users (shared by every agent).
        n_scan = min(config.env.default_scan_users, len(train_users))
        add("default scan (paired reward / warm start)", n_scan, n_scan * n_t, n_scan * n_t, train_tokens,
            exhaustive=True)
    for kind in agent_kinds(config):
        add(f"PPO training ({kind})", len(train_users), config.ppo.total_timesteps, train_pairs, train_tokens)
        if config.env.reward_baseline == "default":
            # Each step also sends the default template's answer on the same task (none when the
            # default is the chosen one): at most one more request per episode, one task per draw.
            add(f"paired baseline ({kind})", len(train_users), config.ppo.total_timesteps,
                len(train_users) * config.env.train_targets, train_tokens)
    # The safe policy (end of training): every template on the scanned training users (shared with
    # best_fixed), then each validation user's default and the policy's greedy template.
    n_fixed = min(len(train_users), config.eval.fixed_users or len(train_users))
    add("training-budget scan", n_fixed, n_fixed * n_t, n_fixed * n_t, train_tokens, exhaustive=True)
    val_users = problem.pool("val")
    n_val = min(len(val_users), config.gate.val_users or len(val_users))
    add("gate validation", n_val, 2 * n_val, n_val * min(2, n_t), mean_tokens(val_users), exhaustive=True)
    bandit_steps = config.eval.bandit_steps or config.ppo.total_timesteps
    for name in BANDIT_SELECTORS:
        if name in selectors:
            add(f"{name} fitting", len(train_users), bandit_steps, train_pairs, train_tokens)
    eval_pairs = len(eval_users) * n_t
    periods = 3 if config.eval.periods else 1
    learned = [s for s in selectors if s != "oracle"]
    if learned:
        add(f"evaluation ({len(learned)} selectors)", len(eval_users),
            len(eval_users) * len(learned) * periods, eval_pairs * periods, eval_tokens)
    if "oracle" in selectors:
        add("evaluation (oracle)", len(eval_users), eval_pairs * periods, eval_pairs * periods, eval_tokens,
            exhaustive=True)
    # Phases over the same users share answers: the union is bounded by the pools' sizes.
    train_side = sum(p.distinct for p in phases if not p.phase.startswith(("evaluation", "gate")))
    eval_side = sum(p.distinct for p in phases if p.phase.startswith("evaluation"))
    val_side = sum(p.distinct for p in phases if p.phase.startswith("gate"))
    total = (min(train_side, train_pairs * cpe) + min(eval_side, eval_pairs * periods * cpe) + val_side
             if config.eval.split == "test" else
             min(train_side, train_pairs * cpe) + min(eval_side + val_side, eval_pairs * periods * cpe))
    prompt_tokens = round(min(train_side, train_pairs * cpe) * train_tokens
                          + (total - min(train_side, train_pairs * cpe)) * eval_tokens)
    completion_tokens = total * completion
    prices = (config.ranker.price_prompt_per_1m, config.ranker.price_completion_per_1m)
    cost = ((prompt_tokens * prices[0] + completion_tokens * prices[1]) / 1e6) if any(prices) else None
    mean_all = (
        (train_tokens + eval_tokens) / 2 if eval_tokens and train_tokens
        else (train_tokens or eval_tokens)
    )
    copies = problem.penalty.calls_per_episode if problem.penalty is not None else 0
    return Estimate(tuple(phases), total, prompt_tokens, completion_tokens, mean_all, tokenizer, cost,
                    cpe, n_t, copies)


def budget_warnings(est: Estimate, budget: BudgetConfig) -> list[str]:
    """One line per budget cap the estimate exceeds (the run would stop there, with a checkpoint).

    The estimate is an upper bound on new calls; answers already in the cache cost nothing, so a
    warning means the cap *may* be reached, not that it will.
    """
    out = []
    tokens = est.prompt_tokens + est.completion_tokens
    for cap, need, what in ((budget.max_calls, est.distinct_total, "uncached calls"),
                            (budget.max_tokens, tokens, "tokens"),
                            (budget.max_cost, est.cost, "money")):
        if cap is None or need is None or need <= cap:
            continue
        name = {"uncached calls": "max_calls", "tokens": "max_tokens", "money": "max_cost"}[what]
        shown = f"{need:,.2f}" if what == "money" else f"{need:,}"
        out.append(f"warning: the run may need up to {shown} {what}, more than budget.{name}={cap}: it would "
                   "stop there with a checkpoint (resume with a raised cap); raise the cap or shrink the run")
    return out


def format_estimate(est: Estimate, budget: BudgetConfig | None = None) -> str:
    """The table ``promptopt estimate`` prints."""
    header = ("phase", "users", "requests", "distinct <=", "prompt tokens", "completion <=")
    rows: list[Sequence[str]] = [
        (p.phase, str(p.users), f"{p.requests:,}", f"{p.distinct:,}", f"{p.prompt_tokens:,}",
         f"{p.completion_tokens:,}")
        for p in est.phases
    ]
    rows.append(("total (shared answers counted once)", "", "", f"{est.distinct_total:,}",
                 f"{est.prompt_tokens:,}", f"{est.completion_tokens:,}"))
    widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) if k == 0 else c.rjust(w)  # noqa: E731
                                  for k, (c, w) in enumerate(zip(cells, widths)))
    lines = [
        f"{est.n_templates} templates, {est.calls_per_episode} request(s) per (user, template)"
        + (f" ({est.fairness_copies} of them counterfactual copies of the fairness-aware reward)"
           if est.fairness_copies else "")
        + f"; mean prompt {est.mean_prompt_tokens:.0f} tokens ({est.tokenizer})",
        fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows),
    ]
    lines.append("cost: " + (f"{est.cost:.2f} (ranker price table)" if est.cost is not None
                             else "unknown (set ranker.price_prompt_per_1m / price_completion_per_1m)"))
    lines.append("Distinct requests are upper bounds; answers already in the cache cost nothing.")
    if budget is not None:
        warnings = budget_warnings(est, budget)
        lines += warnings or [f"budget: within every cap ({_caps(budget)})"]
    return "\n".join(lines)


def _caps(budget: BudgetConfig) -> str:
    caps = [f"{name}={value}" for name, value in (("max_calls", budget.max_calls),
            ("max_tokens", budget.max_tokens), ("max_cost", budget.max_cost)) if value is not None]
    return ", ".join(caps) or "no cap set"
