"""A run's safe policy: the training-budget scan, the gate validated on validation users, stored.

``promptopt train`` ends with :func:`fit_rule`: every template is scored on the scanned training
users (``eval.fixed_users``, through the run's cached and budgeted ranker, so the scan is paid from
the training budget and shared with the ``best_fixed`` baseline), which ranks the fallback list;
then the trained LightGCN+MLP agent's probabilities on the validation users, and each validation
user's score with its default and with the policy's greedy template, decide the gate
(:func:`promptopt.safe_policy.validate_gate`). The rule is stored in ``metrics.json`` under
``safe_policy``; evaluation builds ``policy`` from it, export writes it into ``prompts.json``.
No test user is read.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from promptopt.config import ExperimentConfig
from promptopt.errors import ConfigError
from promptopt.fallback import stack_masks
from promptopt.safe_policy import GateRule, needed_templates, validate_gate
from promptopt.selectors import FixedSelector, Spend, best_fixed

if TYPE_CHECKING:
    from promptopt.experiments.rundir import RunDir
    from promptopt.llm.types import Ranker
    from promptopt.problem import RecProblem
    from promptopt.safe_policy import ProbabilisticPolicy

SECTION = "safe_policy"
"""The key of ``metrics.json`` that holds the run's :class:`GateRule`."""

logger = logging.getLogger(__name__)


def sample_users(users: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """A seeded sample of at most ``limit`` of ``users`` (sorted; all when ``limit`` is None)."""
    if limit is not None and users.size > limit:
        users = np.sort(np.random.default_rng(seed).choice(users, size=limit, replace=False))
    return users


def scan_templates(
    config: ExperimentConfig, problem: RecProblem, ranker: Ranker
) -> tuple[FixedSelector, dict[str, Any]]:
    """The best fixed template on the scanned training users and the scan's record.

    Returns:
        The selector (its order is the ranked fallback list) and ``split``, ``n_users``, ``metric``,
        ``calls`` and ``templates`` (``template_id``, ``mean_reward``, ``n`` per template).
    """
    users = sample_users(problem.pool("train"), config.eval.fixed_users, config.seed)
    logger.info("training-budget scan: %d templates on %d training users", problem.n_templates, users.size)
    selector = best_fixed(problem, ranker, users, metric="reward")
    means = selector.template_means
    rows = []
    for t, template_id in enumerate(problem.catalog.ids):
        n = int(sum(bool(problem.action_mask(int(u))[t]) for u in users))
        mean = None if means is None or not np.isfinite(means[t]) else float(means[t])
        rows.append({"template_id": template_id, "mean_reward": mean, "n": n if mean is not None else 0})
    scan = {"split": "train", "n_users": int(users.size), "metric": "reward",
            "calls": int(selector.spend.calls), "uncached": int(selector.spend.uncached), "templates": rows}
    return selector, scan


def validation_scores(
    problem: RecProblem, ranker: Ranker, users: np.ndarray, need: np.ndarray, metric: str
) -> tuple[np.ndarray, Spend]:
    """``(n, T)`` each user's ``metric`` with the templates ``need`` marks (``nan`` elsewhere), and the spend.

    One ranker call per template; a template a user cannot fill stays ``nan``.
    """
    scores = np.full(need.shape, np.nan)
    spend = Spend()
    for template in range(need.shape[1]):
        rows = np.flatnonzero(need[:, template])
        if rows.size == 0:
            continue
        outcomes = problem.run(users[rows], [template] * rows.size, ranker)
        spend = spend + Spend.of(outcomes)
        for i, outcome in zip(rows, outcomes):
            if outcome is not None and outcome.valid:
                scores[i, template] = (outcome.reward.total if metric == "reward"
                                       else outcome.metrics["base"][metric])
    return scores, spend


def fit_rule(
    config: ExperimentConfig,
    problem: RecProblem,
    ranker: Ranker,
    policy: ProbabilisticPolicy,
    *,
    scan: tuple[FixedSelector, dict[str, Any]] | None = None,
) -> GateRule:
    """The run's validated rule (see the module docstring).

    Args:
        config: The run's config (``gate``, ``eval.fixed_users``, ``eval.n_bootstrap``, seed).
        problem: The problem.
        ranker: The run's cached ranker.
        policy: The trained LightGCN+MLP agent as a selector with ``action_probabilities``.
        scan: An already made :func:`scan_templates` result.
    """
    fixed, record = scan if scan is not None else scan_templates(config, problem, ranker)
    order = fixed.fallback
    ids = problem.catalog.ids
    val = sample_users(problem.pool("val"), config.gate.val_users, config.seed)
    masks = stack_masks(problem.action_mask, val, problem.n_templates)
    probs = policy.action_probabilities(val) if val.size else np.zeros((0, problem.n_templates))
    need = needed_templates(probs, order, masks)
    scores, spend = validation_scores(problem, ranker, val, need, config.gate.metric)
    rule = validate_gate(
        probs, order, masks, scores,
        ids=ids, users=[problem.data.user_ids[int(u)] for u in val],
        thresholds=config.gate.thresholds, metric=config.gate.metric, split="val",
        n_bootstrap=config.eval.n_bootstrap, confidence=config.gate.confidence, seed=config.seed,
        scan=record,
    )
    rule = dataclasses.replace(rule, spend={
        "scan_calls": int(record["calls"]), "scan_uncached": int(record["uncached"]),
        "validation_calls": int(spend.calls), "validation_uncached": int(spend.uncached)})
    logger.info("safe policy: %s", rule.summary())
    return rule


def stored_rule(metrics: Mapping[str, Any], source: str) -> GateRule | None:
    """The rule ``metrics.json`` holds, ``None`` when the run was trained before the safe policy.

    Raises:
        ConfigError: The stored rule is damaged (one line naming the file).
    """
    payload = metrics.get(SECTION)
    if payload is None:
        return None
    try:
        return GateRule.from_json(payload, source=f"{source}: {SECTION}")
    except ValueError as exc:
        raise ConfigError(f"{exc}; re-validate it with `promptopt evaluate RUN_DIR`") from None


def fit_and_store(run: RunDir, config: ExperimentConfig, problem: RecProblem, ranker: Ranker) -> GateRule:
    """:func:`fit_rule` with the run's trained agent, written to ``metrics.json``."""
    from promptopt.experiments.assembly import load_agent
    from promptopt.policies.selectors import PPOSelector  # torch

    policy = PPOSelector(load_agent(run, config, problem, "policy"), problem)
    rule = fit_rule(config, problem, ranker, policy)
    run.update_metrics(SECTION, rule.to_json())
    return rule


def require_rule(run: RunDir) -> GateRule:
    """The stored rule, or one line saying how to make it (export builds no ranker).

    Raises:
        ConfigError: The run has no rule (trained before the safe policy) or a damaged one.
    """
    rule = stored_rule(run.read_metrics(), str(run.metrics))
    if rule is None:
        raise ConfigError(f"{run.metrics} has no validated gate (`{SECTION}`; the run was trained before "
                          f"the safe policy): run `promptopt evaluate {run.root}` to validate it, "
                          "then export")
    return rule
