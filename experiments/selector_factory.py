"""Builds the evaluated selectors of a run by name (training the baselines that learn).

Every selector it returns goes through the one fallback rule (:class:`promptopt.fallback.FallbackSelector`
over the training-budget scan's ranked list, with the masks of the period it is evaluated on), so
none ever picks a template the user cannot fill. ``policy`` is the safe policy
(:class:`promptopt.safe_policy.GatedSelector` from the run's validated rule); ``policy_raw`` is the
same agent's argmax.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from promptopt.advantage import AdvantageSelector
from promptopt.bandits import EpsilonGreedySelector, LinUCBSelector, bandit_features
from promptopt.config import ExperimentConfig
from promptopt.experiments import safe_run
from promptopt.experiments.assembly import load_agent
from promptopt.fallback import FallbackOrder, FallbackSelector
from promptopt.policies.lightgcn import LightGCNEmbeddings
from promptopt.safe_policy import GatedSelector, GateRule
from promptopt.selector_names import PPO_SELECTORS, SAFE_POLICY, SELECTOR_NAMES
from promptopt.selectors import FixedSelector, RandomSelector, Selector

if TYPE_CHECKING:
    from promptopt.experiments.rundir import RunDir
    from promptopt.llm.types import Ranker
    from promptopt.problem import Period, RecProblem

BUILT_ELSEWHERE: frozenset[str] = frozenset({"oracle"})
"""Selectors of :data:`~promptopt.selector_names.SELECTOR_NAMES` the factory does not build: the
oracle is built by the evaluation itself, so that it scores exactly the evaluated tasks."""

logger = logging.getLogger(__name__)


class SelectorFactory:
    """``factory(name, period)`` -> a ready selector; trained selectors are built once and reused.

    Args:
        config: The run's config (``eval`` section, seed, budgets).
        problem: The problem.
        ranker: The cached ranker (the bandits, and the scan of a run without a stored rule, spend
            calls through it).
        run: The run directory (agents and LightGCN embeddings).
        rule: The run's validated rule; ``None``: the one ``metrics.json`` holds, or (a run trained
            before the safe policy) validated now through ``ranker`` and kept in :attr:`fitted_rule`.

    Attributes:
        scan: Every template's mean reward on the scanned training users (the prompt book's global
            ranking), once the rule is known.
        fitted_rule: The rule validated by this factory (``None`` when it was given or stored).
        curves: After a bandit is fitted: its learning curve on training users, ``[[episodes done,
            mean reward of the last rollout's worth of episodes], ...]`` (a rollout is
            ``ppo.n_steps x env.n_envs`` episodes, PPO's curve's granularity).
    """

    def __init__(self, config: ExperimentConfig, problem: RecProblem, ranker: Ranker, run: RunDir,
                 *, rule: GateRule | None = None) -> None:
        self.config = config
        self.problem = problem
        self.ranker = ranker
        self.run = run
        self.scan: list[dict[str, Any]] = []
        self.fitted_rule: GateRule | None = None
        self._rule = rule
        self._scan: tuple[FixedSelector, dict[str, Any]] | None = None
        self._order: FallbackOrder | None = None
        self.curves: dict[str, list[list[float]]] = {}
        self._built: dict[str, Selector] = {}
        self._ready: dict[tuple[str, Period | None], Selector] = {}
        self._agents: dict[str, Any] = {}

    def __call__(self, name: str, period: Period | None = None) -> Selector:
        if name not in SELECTOR_NAMES or name in BUILT_ELSEWHERE:
            raise ValueError(f"no selector {name!r} to build; the factory builds "
                              f"{', '.join(self.names())}")
        key = (name, period)
        if key not in self._ready:
            if name == SAFE_POLICY:
                self._ready[key] = self._safe_policy(period)
            else:
                if name in PPO_SELECTORS:
                    inner = self._ppo(name, period)
                else:
                    if name not in self._built:
                        self._built[name] = getattr(self, f"_{name}")()
                    inner = self._built[name]
                self._ready[key] = FallbackSelector(inner, self.fallback(), self._masks(period),
                                                    self.problem.n_templates)
        return self._ready[key]

    def _masks(self, period: Period | None) -> Any:
        problem = self.problem
        return lambda user: problem.action_mask(int(user), period=period)

    # ------------------------------------------------------------------ the rule
    def _known_rule(self) -> GateRule | None:
        if self._rule is None:
            self._rule = safe_run.stored_rule(self.run.read_metrics(), str(self.run.metrics))
        return self._rule

    def fallback(self) -> FallbackOrder:
        """The ranked fallback list of every selector: the rule's, else a training-budget scan now."""
        if self._order is None:
            rule = self._known_rule()
            if rule is not None:
                self._order = rule.fallback(self.problem.catalog.ids)
                self.scan = list(rule.scan.get("templates") or [])
            else:
                self._scan = safe_run.scan_templates(self.config, self.problem, self.ranker)
                self._order = self._scan[0].fallback
                self.scan = list(self._scan[1]["templates"])
        return self._order

    def rule(self) -> GateRule:
        """The run's validated rule (given, stored in ``metrics.json``, or validated now)."""
        rule = self._known_rule()
        if rule is None:
            from promptopt.policies.selectors import PPOSelector  # torch

            logger.info("%s has no validated gate (trained before the safe policy): validating it now",
                        self.run.metrics)
            self.fallback()
            policy = PPOSelector(self.agent("policy"), self.problem, name="policy_raw")
            rule = self._rule = self.fitted_rule = safe_run.fit_rule(
                self.config, self.problem, self.ranker, policy, scan=self._scan)
            self.scan = list(rule.scan.get("templates") or [])
        return rule

    @staticmethod
    def names() -> list[str]:
        """The selectors it builds: every registered name but :data:`BUILT_ELSEWHERE`."""
        return [n for n in SELECTOR_NAMES if n not in BUILT_ELSEWHERE]

    # ------------------------------------------------------------------ baselines
    def _random(self) -> Selector:
        return RandomSelector(self.problem.n_templates, seed=self.config.seed, masks=self.problem.action_mask)

    def _best_fixed(self) -> Selector:
        """The head of the training-budget scan's ranked list (the safe policy's default), falling
        back along it; the scan was paid for when the rule was validated."""
        order = self.fallback().order
        logger.info("best fixed template: %s", self.problem.catalog.ids[order[0]])
        return FixedSelector(order[0], fallback=order[1:], masks=self.problem.action_mask, name="best_fixed")

    def _features(self) -> np.ndarray:
        embeddings = None
        if self.run.lightgcn.is_file():
            embeddings = LightGCNEmbeddings.load(self.run.lightgcn).user_embeddings.numpy()
        p = self.problem
        users = np.concatenate([p.pool("train"), p.pool("val"), p.pool("test")])
        return bandit_features(p, users, embeddings)

    def _bandit(self, selector: Any) -> Selector:
        steps = self.config.eval.bandit_steps or self.config.ppo.total_timesteps
        logger.info("%s: %d training episodes", selector.name, steps)
        fitted = selector.fit(self.problem, self.ranker, self.problem.pool("train"), self._features(), steps,
                              seed=self.config.seed)
        rollout = max(1, self.config.ppo.n_steps * self.config.env.n_envs)
        rewards = np.asarray(fitted.rewards, dtype=np.float64)
        self.curves[selector.name] = [[float(min(start + rollout, rewards.size)),
                                       float(rewards[start:start + rollout].mean())]
                                      for start in range(0, rewards.size, rollout)]
        return fitted

    def _epsilon_greedy(self) -> Selector:
        return self._bandit(EpsilonGreedySelector(self.problem.n_templates, epsilon=self.config.eval.epsilon))

    def _linucb(self) -> Selector:
        return self._bandit(LinUCBSelector(self.problem.n_templates, alpha=self.config.eval.linucb_alpha))

    def _advantage(self) -> Selector:
        """The contextual advantage model on the training-budget scan's users and answers (cached:
        the scan already paid for them), on profile statistics; its rule is logged."""
        p = self.problem
        users = safe_run.sample_users(p.pool("train"), self.config.eval.fixed_users, self.config.seed)
        everyone = np.concatenate([p.pool("train"), p.pool("val"), p.pool("test")])
        features = bandit_features(p, everyone, None)
        fitted = AdvantageSelector(p.n_templates).fit(p, self.ranker, users, features, seed=self.config.seed)
        logger.info("advantage: %s", fitted.rule)
        return fitted

    # ------------------------------------------------------------------ PPO agents
    def agent(self, kind: str) -> Any:
        """The run's trained agent ``policy`` or ``mlp`` (loaded once)."""
        if kind not in self._agents:
            self._agents[kind] = load_agent(self.run, self.config, self.problem, kind)
        return self._agents[kind]

    def _ppo(self, name: str, period: Period | None) -> Any:
        from promptopt.policies.selectors import PPOSelector  # torch

        # The MLP-only baseline is the run's own policy when the policy has no graph.
        kind = "mlp" if name == "mlp_ppo" and self.config.policy.kind != "mlp" else "policy"
        return PPOSelector(self.agent(kind), self.problem, period=period, name=name)

    def _safe_policy(self, period: Period | None) -> GatedSelector:
        """The LightGCN+MLP agent behind the run's validated gate, on the ``period``'s contexts."""
        return GatedSelector.from_rule(self._ppo("policy_raw", period), self.rule(), self.problem.catalog.ids,
                                       self._masks(period), name=SAFE_POLICY)
