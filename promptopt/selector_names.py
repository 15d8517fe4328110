"""The selectors a run can compare: the one list of their names, in report order.

``eval.selectors`` is validated against it when a config loads, the evaluation runs the listed
ones in this order, ``promptopt.experiments.selector_factory.SelectorFactory`` builds each, and the selector
table of ``docs/experiments.md`` lists them (a test holds all four to this tuple). A run compares
:data:`DEFAULT_SELECTORS` unless ``eval.selectors`` names others.
"""

from __future__ import annotations

SELECTOR_NAMES: tuple[str, ...] = (
    "random", "best_fixed", "epsilon_greedy", "linucb", "advantage", "mlp_ppo", "policy_raw", "policy",
    "oracle",
)
"""``random``, ``best_fixed`` and ``oracle`` learn nothing per user (:mod:`promptopt.selectors`);
``epsilon_greedy`` and ``linucb`` are bandits (:mod:`promptopt.bandits`); ``advantage`` is the
contextual advantage model over the default (:mod:`promptopt.advantage`, fitted on the
training-budget scan's answers, gated by its own cross-fitted gain); ``mlp_ppo`` and
``policy_raw`` are the run's PPO agents' raw argmax (``promptopt.policies.selectors``); ``policy`` is the safe
policy (:mod:`promptopt.safe_policy`): the best fixed template, and the LightGCN+MLP agent's choice
only where a gate validated on validation users says it pays. Every one goes through the one
fallback rule of :mod:`promptopt.fallback`."""

OPTIONAL_SELECTORS: tuple[str, ...] = ("advantage",)
"""Selectors a run compares only when ``eval.selectors`` names them."""
DEFAULT_SELECTORS: tuple[str, ...] = tuple(n for n in SELECTOR_NAMES if n not in OPTIONAL_SELECTORS)
"""``eval.selectors``' default: every selector but :data:`OPTIONAL_SELECTORS`, in report order."""

BANDIT_SELECTORS: tuple[str, ...] = ("epsilon_greedy", "linucb")
"""Selectors trained online for ``eval.bandit_steps`` episodes on LightGCN embeddings + profile."""
PPO_SELECTORS: tuple[str, ...] = ("mlp_ppo", "policy_raw", "policy")
"""Selectors built on a run's trained PPO agent (``mlp_ppo``: the no-graph ablation; ``policy_raw``:
the LightGCN+MLP agent's argmax, an ablation; ``policy``: the same agent behind the validated gate)."""
RAW_POLICY = "policy_raw"
"""The ungated argmax of the run's LightGCN+MLP agent."""
SAFE_POLICY = "policy"
"""The default selector: the gated policy."""


def unknown_selectors(names: tuple[str, ...] | list[str]) -> list[str]:
    """The names in ``names`` that are not in :data:`SELECTOR_NAMES`, in the order given."""
    return [name for name in names if name not in SELECTOR_NAMES]
