"""The planted benchmark's gated learners: the library's safe policy over any learner's scores.

Split from :mod:`promptopt.experiments.bench.bench_learning` (which runs the benchmark) to keep each module
small: :func:`safe_variants` puts every fitted learner behind :mod:`promptopt.safe_policy`'s gate,
and the study's :class:`~promptopt.experiments.study.choice_rules.CountingRanker` counts what each
learner and gate pays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from promptopt.experiments.study.choice_rules import CountingRanker
from promptopt.selector_names import RAW_POLICY, SAFE_POLICY

logger = logging.getLogger("promptopt.bench.learning")

NOT_GATED = ("advantage", "racing")
"""Learners that gate themselves (no gated variant)."""
GATE_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
"""Margins the safe variants may deviate at (chosen on validation users)."""


# ---------------------------------------------------------------------- safe variants
class ScoredPolicy:
    """A learner's per-template scores as the library gate's ``action_probabilities``.

    PPO gives probabilities, the bandits predicted rewards; either way the gate compares the
    greedy template's score with the default's. Templates a user cannot fill score ``-inf``, so the
    greedy template is always one the user can fill (PPO's probabilities are already 0 there).
    """

    def __init__(self, scorer: Callable[[np.ndarray], np.ndarray], masks: Callable[[int], np.ndarray],
                 n_templates: int) -> None:
        self.scorer, self.masks, self.n_templates = scorer, masks, n_templates

    def action_probabilities(self, users: np.ndarray) -> np.ndarray:
        from promptopt.fallback import stack_masks

        users = np.asarray(users, dtype=np.int64)
        scores = np.asarray(self.scorer(users), dtype=np.float64)
        return np.where(stack_masks(self.masks, users, self.n_templates), scores, -np.inf)


def learner_scores(selector: Any) -> Callable[[np.ndarray], np.ndarray]:
    """What the gate reads of a fitted learner: PPO's probabilities, a bandit's predicted rewards."""
    if hasattr(selector, "action_probabilities"):
        return selector.action_probabilities
    return lambda users: selector.expected_rewards(selector._features[users])


def safe_variants(
    problem: Any, ranker: Any, fitted: dict[str, tuple[Any, int, set]], pool: np.ndarray, seed: int,
    gate: Any = None,
) -> dict[str, tuple[Any, int, set]]:
    """The gated form of every learner: the library's safe policy (:mod:`promptopt.safe_policy`).

    The default is the pool's templates ranked by mean reward with every template (the learners'
    own budget: pool x templates distinct calls), as a ranked fallback list. A learner may deviate
    for a user where its score margin over the default (PPO: probability; bandits: predicted reward)
    passes a threshold of :data:`GATE_GRID` chosen on validation users by
    :func:`promptopt.safe_policy.validate_gate` (NDCG@10; accepted only when the validated gain's
    bootstrap lower bound is > 0, family-wise at ``gate.confidence`` over the grid, as ``policy``
    does on the CLI); otherwise it never deviates. The served selector is
    :class:`promptopt.safe_policy.GatedSelector`. Validation answers are counted in its calls.
    Names: the gated LightGCN+MLP PPO is ``policy`` (``policy+VARIANT``), every other learner's
    gated form ``<learner>_safe``.
    """
    from promptopt.config import GateConfig
    from promptopt.experiments.safe_run import validation_scores
    from promptopt.fallback import FallbackOrder, stack_masks
    from promptopt.safe_policy import GatedSelector, needed_templates, validate_gate
    from promptopt.selectors import template_scores

    gate = gate or GateConfig()
    counter = CountingRanker(ranker)
    scores, _ = template_scores(problem, counter, pool)
    means = np.nanmean(np.where(np.isfinite(scores), scores, np.nan), axis=0)
    order = FallbackOrder(np.argsort(-np.nan_to_num(means, nan=-np.inf), kind="stable"), problem.n_templates)
    val = problem.pool("val")
    masks = stack_masks(problem.action_mask, val, problem.n_templates)
    ids = problem.catalog.ids
    out = {}
    for name, (selector, _, seen) in fitted.items():
        if name.split("+")[0] in NOT_GATED:
            continue
        policy = ScoredPolicy(learner_scores(selector), problem.action_mask, problem.n_templates)
        probs = policy.action_probabilities(val)
        val_counter = CountingRanker(ranker)
        need = needed_templates(probs, order, masks)
        val_scores, _ = validation_scores(problem, val_counter, val, need, "ndcg@10")
        rule = validate_gate(probs, order, masks, val_scores, ids=ids,
                             users=[problem.data.user_ids[int(u)] for u in val], thresholds=GATE_GRID,
                             metric="ndcg@10", n_bootstrap=2000, confidence=gate.confidence, seed=seed)
        gated_name = gated_name_of(name)
        gated = GatedSelector.from_rule(policy, rule, ids, problem.action_mask, name=gated_name)
        logger.info("%s: %s", gated_name, rule.summary())
        spent = counter.seen | val_counter.seen | seen
        out[gated_name] = (gated, len(spent), spent)
    return out


def gated_name_of(name: str) -> str:
    """``policy_raw[+V]`` -> ``policy[+V]`` (as the CLI names them); any other learner ``<name>_safe``."""
    base, plus, variant = name.partition("+")
    if base == RAW_POLICY:
        return f"{SAFE_POLICY}{plus}{variant}"
    return f"{name}_safe"
