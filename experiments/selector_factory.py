"""Builds the evaluated selectors of a run by name (training the baselines that learn)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from experiments.assembly import load_agent
from policies.lightgcn import LightGCNEmbeddings
from promptopt.bandits import EpsilonGreedySelector, LinUCBSelector, bandit_features
from promptopt.config import ExperimentConfig
from promptopt.selector_names import PPO_SELECTORS, SELECTOR_NAMES
from promptopt.selectors import RandomSelector, Selector, best_fixed

if TYPE_CHECKING:
    from experiments.rundir import RunDir
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
        ranker: The cached ranker (the best-fixed scan and the bandits spend calls through it).
        run: The run directory (agents and LightGCN embeddings).

    Attributes:
        scan: After ``best_fixed`` is built: every template's mean reward on the scanned training
            users (the prompt book's global ranking).
    """

    def __init__(self, config: ExperimentConfig, problem: RecProblem, ranker: Ranker, run: RunDir) -> None:
        self.config = config
        self.problem = problem
        self.ranker = ranker
        self.run = run
        self.scan: list[dict[str, Any]] = []
        self._built: dict[str, Selector] = {}
        self._agents: dict[str, Any] = {}

    def __call__(self, name: str, period: Period | None = None) -> Selector:
        if name not in SELECTOR_NAMES or name in BUILT_ELSEWHERE:
            raise ValueError(f"no selector {name!r} to build; the factory builds "
                              f"{', '.join(self.names())}")
        if name in PPO_SELECTORS:
            return self._ppo(name, period)
        if name not in self._built:
            self._built[name] = getattr(self, f"_{name}")()
        return self._built[name]

    @staticmethod
    def names() -> list[str]:
        """The selectors it builds: every registered name but :data:`BUILT_ELSEWHERE`."""
        return [n for n in SELECTOR_NAMES if n not in BUILT_ELSEWHERE]

    # ------------------------------------------------------------------ baselines
    def _random(self) -> Selector:
        return RandomSelector(self.problem.n_templates, seed=self.config.seed, masks=self.problem.action_mask)

    def _train_users(self, limit: int | None) -> np.ndarray:
        users = self.problem.pool("train")
        if limit is not None and users.size > limit:
            rng = np.random.default_rng(self.config.seed)
            users = np.sort(rng.choice(users, size=limit, replace=False))
        return users

    def _best_fixed(self) -> Selector:
        users = self._train_users(self.config.eval.fixed_users)
        logger.info("best fixed template: scoring %d templates on %d training users",
                    self.problem.n_templates, users.size)
        selector = best_fixed(self.problem, self.ranker, users, metric="reward")
        means = selector.template_means
        ids = self.problem.catalog.ids
        for t, template_id in enumerate(ids):
            n = int(sum(bool(self.problem.action_mask(int(u))[t]) for u in users))
            mean = None if means is None or not np.isfinite(means[t]) else float(means[t])
            self.scan.append({"template_id": template_id, "mean_reward": mean,
                              "n": n if mean is not None else 0})
        logger.info("best fixed template: %s", ids[selector.index])
        return selector

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
        return selector.fit(self.problem, self.ranker, self.problem.pool("train"), self._features(), steps,
                            seed=self.config.seed)

    def _epsilon_greedy(self) -> Selector:
        return self._bandit(EpsilonGreedySelector(self.problem.n_templates, epsilon=self.config.eval.epsilon))

    def _linucb(self) -> Selector:
        return self._bandit(LinUCBSelector(self.problem.n_templates, alpha=self.config.eval.linucb_alpha))

    # ------------------------------------------------------------------ PPO agents
    def agent(self, kind: str) -> Any:
        """The run's trained agent ``policy`` or ``mlp`` (loaded once)."""
        if kind not in self._agents:
            self._agents[kind] = load_agent(self.run, self.config, self.problem, kind)
        return self._agents[kind]

    def _ppo(self, name: str, period: Period | None) -> Selector:
        from policies.selectors import PPOSelector  # torch

        # The MLP-only baseline is the run's own policy when the policy has no graph.
        kind = "mlp" if name == "mlp_ppo" and self.config.policy.kind != "mlp" else "policy"
        return PPOSelector(self.agent(kind), self.problem, period=period, name=name)
