"""The evaluation protocol of a run: every selector on the same held-out users, tasks and shown orders.

Selectors (``eval.selectors``), all scored through one :class:`~promptopt.problem.RecProblem`:

* ``random`` — a seeded random valid template per user;
* ``best_fixed`` — the template with the best mean reward on training users (``eval.fixed_users``);
* ``epsilon_greedy``, ``linucb`` — contextual bandits on LightGCN embedding ++ profile statistics,
  trained online for ``eval.bandit_steps`` episodes (default: the PPO budget, so equal cost);
* ``mlp_ppo`` — PPO with the profile-statistics-only extractor (the graph ablation);
* ``policy_raw`` — the run's LightGCN+MLP PPO policy, its argmax (an ablation);
* ``policy`` — the safe policy: the best fixed template, and the LightGCN+MLP policy's choice only
  for users where the gate validated on validation users says it pays (``promptopt.safe_policy``);
* ``oracle`` — the best template in hindsight per user (an optimistic bound, ``n_templates`` calls).

For each: NDCG@1/5/10, HR@1/5/10, MRR with bootstrap intervals (``eval.interval``: percentile or
BCa, :func:`scipy.stats.bootstrap`) on each user's last
interaction, and (``eval.periods``) on each user's source- and target-period target (which ones:
``split.protocol``), with the drop between the periods' means (``drop``: source - target, what
sweeps minimise) and the change ``target - source`` paired over the users with both (``change``,
with its interval). Under ``split.protocol: deploy`` the headline is each test user's first
interaction from the cut on (so is ``target``), and ``periods.last`` adds each one's last
interaction. The policy (and the raw policy) is
compared with the best fixed template per user (paired): mean difference, bootstrap interval, and a
two-sided sign-flip randomisation test (:func:`scipy.stats.permutation_test`, one sample, ``samples``
permutations: the signs of the per-user differences are flipped), exact when :math:`2^n` is at most
the number of resamples, else Monte-Carlo:

.. math::

    p = \\frac{1 + \\#\\{b : |\\bar d^{(b)}| \\ge |\\bar d|\\}}{1 + B}, \\qquad
    \\bar d^{(b)} = \\frac{1}{n} \\sum_i s_{b,i} d_i,\\; s_{b,i} \\in \\{-1, +1\\} \\text{ uniform}.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from promptopt.config import ExperimentConfig
from promptopt.errors import ConfigError
from promptopt.evaluation import SelectorEvaluation, evaluate_selector, paired_difference
from promptopt.metrics import METRIC_NAMES
from promptopt.selector_names import SELECTOR_NAMES
from promptopt.selectors import OracleSelector, Selector

if TYPE_CHECKING:
    from promptopt.llm.types import Ranker
    from promptopt.problem import Period, RecProblem

logger = logging.getLogger(__name__)

HEADLINE = "ndcg@10"


def sign_flip_p_value(diff: np.ndarray, *, n_resamples: int = 10000, seed: int = 0) -> float:
    """Two-sided sign-flip randomisation test of mean ``diff = 0`` (see the module docstring)."""
    diff = np.asarray(diff, dtype=np.float64)
    if diff.size == 0 or not np.any(diff):
        return 1.0
    from scipy.stats import permutation_test

    def mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(x, axis=axis)

    result = permutation_test((diff,), mean, permutation_type="samples", vectorized=True,
                              n_resamples=n_resamples, alternative="two-sided", batch=500,
                              rng=np.random.default_rng(seed))
    return float(result.pvalue)


def _interval_json(interval: Any) -> dict[str, float]:
    return {"mean": interval.mean, "low": interval.low, "high": interval.high, "n": interval.n}


def _spend_json(spend: Any) -> dict[str, int]:
    if spend is None:
        return {"calls": 0, "cached": 0, "tokens": 0}
    return {"calls": int(spend.calls), "cached": int(spend.cached), "tokens": int(spend.tokens)}


def run_protocol(
    config: ExperimentConfig,
    problem: RecProblem,
    ranker: Ranker,
    selector_factory: Callable[[str, Period | None], Selector],
    *,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], dict[str, SelectorEvaluation]]:
    """Evaluate every selector of ``config.eval.selectors`` and summarise for metrics.json.

    Args:
        config: The run's config.
        problem: The problem (identical tasks for every selector).
        ranker: The cached ranker.
        selector_factory: ``(name, period)`` -> selector; builds (and trains, for the bandits) a
            selector by name. The oracle is built here so it scores exactly the evaluated tasks.
        progress: Called with each selector's name before it runs.

    Returns:
        The ``evaluation`` section of metrics.json and the per-selector evaluations.
    """
    cfg = config.eval
    users = problem.pool(cfg.split)
    if len(users) == 0:
        raise ConfigError(f"no {cfg.split} users to evaluate: raise split.test_fraction or the data size")
    kw = {"n_bootstrap": cfg.n_bootstrap, "confidence": cfg.confidence, "seed": config.seed,
          "method": cfg.interval}
    names = [n for n in SELECTOR_NAMES if n in cfg.selectors]
    results: dict[str, SelectorEvaluation] = {}
    by_period: dict[str, dict[str, SelectorEvaluation]] = {"source": {}, "target": {}, "last": {}}
    # deploy: the headline is each test user's first target from the cut on; "last" adds its last.
    periods: tuple[Period | None, ...] = (None, "source", "target") if cfg.periods else (None,)
    if cfg.periods and problem.protocol == "deploy":
        periods += ("last",)
    timings: dict[str, float] = {}
    for name in names:
        if progress is not None:
            progress(name)
        started = time.perf_counter()
        for period in periods:
            if name == "oracle":
                selector = OracleSelector(problem, ranker, metric="reward", period=period)
            else:
                selector = selector_factory(name, period)
            try:
                ev = evaluate_selector(selector, problem, ranker, users, period=period, **kw)
            except ValueError as exc:  # no user has a target in this period
                if period is None:
                    raise
                logger.info("period %s not evaluated for %s: %s", period, name, exc)
                continue
            if period is None:
                results[name] = ev
            else:
                by_period[period][name] = ev
        timings[name] = time.perf_counter() - started
    return summarise(config, problem, results, by_period, timings), results


def summarise(
    config: ExperimentConfig,
    problem: RecProblem,
    results: Mapping[str, SelectorEvaluation],
    by_period: Mapping[str, Mapping[str, SelectorEvaluation]],
    timings: Mapping[str, float],
) -> dict[str, Any]:
    """The ``evaluation`` section of metrics.json (plain JSON, read by report, plots and export)."""
    cfg = config.eval
    ids = problem.catalog.ids
    methods: dict[str, Any] = {}
    calls = tokens = cached = 0
    for name, ev in results.items():
        spend = ev.spend + ev.selection_spend if ev.selection_spend is not None else ev.spend
        calls += spend.calls
        cached += spend.cached
        tokens += spend.tokens
        methods[name] = {
            "metrics": {k: _interval_json(v) for k, v in ev.summary.items()},
            "n_users": int(ev.users.size),
            "calls": int(spend.calls),
            "uncached_calls": int(spend.calls - spend.cached),
            "tokens": int(spend.tokens),
            "invalid": int(ev.invalid),
            "seconds": round(float(timings.get(name, 0.0)), 3),
            "template_usage": {ids[int(t)]: int(n) for t, n in ev.template_usage().items()},
        }
    # deploy: users no history from the cut on lets fill a template have no target (left out).
    unservable = problem.targets.unservable(problem.pool(cfg.split))
    if unservable:
        logger.warning("%d %s user(s) have no target from the time cut on whose history fills a template "
                       "(e.g. user %r): they are left out of every score", len(unservable), cfg.split,
                       problem.data.user_ids[unservable[0]])
    evaluation: dict[str, Any] = {
        "split": cfg.split,
        "n_users": int(max((ev.users.size for ev in results.values()), default=0)),
        "unservable": len(unservable),
        "confidence": cfg.confidence,
        "n_bootstrap": cfg.n_bootstrap,
        "reward_metric": config.reward.metric,
        "methods": methods,
        "llm": {"calls": calls, "uncached_calls": calls - cached, "tokens": tokens,
                "cache_hit_rate": cached / calls if calls else 0.0},
    }
    if by_period.get("source") and by_period.get("target"):
        periods: dict[str, Any] = {"metric": HEADLINE}
        for period in ("source", "target"):
            evs = by_period[period]
            periods[period] = {
                "n_users": int(max((ev.users.size for ev in evs.values()), default=0)),
                "methods": {n: _interval_json(ev.summary[HEADLINE]) for n, ev in evs.items()},
                "all_metrics": {n: {k: ev.summary[k].mean for k in METRIC_NAMES} for n, ev in evs.items()},
            }
        if by_period.get("last"):  # deploy: each test user's last interaction, beside its first
            evs = by_period["last"]
            periods["last"] = {
                "n_users": int(max((ev.users.size for ev in evs.values()), default=0)),
                "methods": {n: _interval_json(ev.summary[HEADLINE]) for n, ev in evs.items()},
            }
        # The same users in both periods: target - source per user (negative: the score falls).
        periods["change"] = {}
        for n, source in by_period["source"].items():
            if n not in by_period["target"]:
                continue
            try:
                change = paired_difference(by_period["target"][n], source, HEADLINE,
                                           n_bootstrap=cfg.n_bootstrap, confidence=cfg.confidence,
                                           seed=config.seed, method=cfg.interval).interval
            except ValueError:  # no user has a target in both periods
                continue
            periods["change"][n] = {"mean": change.mean, "low": change.low, "high": change.high,
                                    "n_users": change.n}
        periods["protocol"] = getattr(config.split, "protocol", "leave_last")
        evaluation["periods"] = periods
        evaluation["drop"] = {
            n: by_period["source"][n].summary[HEADLINE].mean - by_period["target"][n].summary[HEADLINE].mean
            for n in results if n in by_period["source"] and n in by_period["target"]
        }
    if "policy" in results and "best_fixed" in results:
        evaluation["paired"] = paired(results["policy"], results["best_fixed"], config)
    if "policy_raw" in results and "best_fixed" in results:
        evaluation["paired_raw"] = paired(results["policy_raw"], results["best_fixed"], config)
    if "policy" in results:
        evaluation["usage_by_group"] = usage_by_group(problem, results["policy"])
    return evaluation


def paired(a: SelectorEvaluation, b: SelectorEvaluation, config: ExperimentConfig) -> dict[str, Any]:
    """Per-user ``a - b`` on NDCG@10: bootstrap interval, sign-flip p-value, wins / losses / ties."""
    result = paired_difference(a, b, HEADLINE, n_bootstrap=config.eval.n_bootstrap,
                               confidence=config.eval.confidence, seed=config.seed,
                               method=config.eval.interval)
    position = {int(u): i for i, u in enumerate(b.users)}
    ia = [i for i, u in enumerate(a.users) if int(u) in position]
    ib = [position[int(a.users[i])] for i in ia]
    diff = a.per_user[HEADLINE][ia] - b.per_user[HEADLINE][ib]
    return {
        "a": a.name, "b": b.name, "metric": HEADLINE, "n_users": int(diff.size),
        "confidence": config.eval.confidence,
        "mean_diff": result.interval.mean, "low": result.interval.low, "high": result.interval.high,
        "share_positive": result.share_positive,
        "p_value": sign_flip_p_value(diff, seed=config.seed),
        "wins": int((diff > 1e-12).sum()), "losses": int((diff < -1e-12).sum()),
        "ties": int((np.abs(diff) <= 1e-12).sum()),
    }


def usage_by_group(problem: RecProblem, ev: SelectorEvaluation) -> dict[str, dict[str, int]]:
    """Templates chosen per user group: history-length tertiles and the target's period."""
    ids = problem.catalog.ids
    lengths = np.array([problem.data.history_length(int(u)) for u in ev.users])
    groups: dict[str, dict[str, int]] = {}
    if lengths.size:
        cuts = np.quantile(lengths, [1 / 3, 2 / 3])
        labels = np.where(lengths <= cuts[0], 0, np.where(lengths <= cuts[1], 1, 2))
        names = (f"history <= {int(cuts[0])}", f"history {int(cuts[0]) + 1}-{int(cuts[1])}",
                 f"history > {int(cuts[1])}")
        for k, name in enumerate(names):
            chosen = ev.templates[labels == k]
            if chosen.size:
                values, counts = np.unique(chosen, return_counts=True)
                groups[name] = {ids[int(v)]: int(c) for v, c in zip(values, counts)}
    for period in ("source", "target"):
        chosen = ev.templates[ev.periods == period]
        if chosen.size:
            values, counts = np.unique(chosen, return_counts=True)
            groups[f"{period}-period target"] = {ids[int(v)]: int(c) for v, c in zip(values, counts)}
    return groups


def summary_keys(evaluation: Mapping[str, Any]) -> dict[str, float]:
    """Flat keys for metrics.json's summary, wandb and sweeps, named by the split they come from.

    ``<split>/<metric>`` is the policy's value (the first of policy, mlp_ppo, best_fixed present),
    ``<split>/<selector>/<metric>`` every selector's and ``<split>/ref_<name>/<metric>`` the reference
    rows', where ``<split>`` is ``val`` (validation users, what sweeps tune on) or ``test`` (held-out
    users, scored once at the end).
    """
    split = evaluation.get("split", "test")
    out: dict[str, float] = {}
    methods = evaluation.get("methods", {})
    for name, result in methods.items():
        for metric, cell in result["metrics"].items():
            out[f"{split}/{name}/{metric}"] = cell["mean"]
    main = next((n for n in ("policy", "mlp_ppo", "best_fixed") if n in methods), None)
    if main is not None:
        for metric, cell in methods[main]["metrics"].items():
            out[f"{split}/{metric}"] = cell["mean"]
    if "paired" in evaluation:
        out[f"{split}/policy_minus_best_fixed"] = evaluation["paired"]["mean_diff"]
        out[f"{split}/policy_minus_best_fixed_low"] = evaluation["paired"]["low"]
    for name, drop in (evaluation.get("drop") or {}).items():
        out[f"{split}/{name}/drift_drop"] = drop
    for name, result in (evaluation.get("reference") or {}).items():
        for metric, cell in result["metrics"].items():
            out[f"{split}/ref_{name}/{metric}"] = cell["mean"]
    llm = evaluation.get("llm", {})
    out["llm/eval_calls"] = llm.get("calls", 0)
    out["llm/eval_tokens"] = llm.get("tokens", 0)
    return out
