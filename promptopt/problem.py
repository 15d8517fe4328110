"""The recommendation problem: one facade over the parts that turn (user, template) into a reward.

The env, the vector env, every baseline selector, the evaluation and the export all go through a
:class:`RecProblem`, so they see identical tasks, shown orders, prompts and rewards. Each job lives
in its own module; the facade assembles them and keeps the calls short:

=================================================  ================================================
part                                               job
=================================================  ================================================
:class:`~promptopt.episodes.EpisodeTargets`         which target row an episode uses (train users
                                                   the second-to-last, others the last, ``final``,
                                                   ``period``, an explicit ``row``)
:func:`~promptopt.episodes.leak_free_mask`          what graphs, hints and popularity may learn from
:class:`~promptopt.task_set.TaskSet`                episode -> context (cheap) -> tasks (on demand)
:class:`~promptopt.request_cache.RequestCache`      rendered requests per (episode, template)
:class:`~promptopt.observations.EpisodeObservations` observation and action mask of a context
:class:`~promptopt.reward.Scorer`                   responses -> reward breakdown and metrics
:class:`~promptopt.runner.EpisodeRunner`            the one batching loop (one ``rank`` call)
:class:`~promptopt.config.RewardConfig`             range checks of the reward settings (at load)
=================================================  ================================================

The fairness-aware reward (:class:`~promptopt.fairness.penalty.CounterfactualPenalty`, optional)
adds counterfactual copies of each episode's base request to the runner's call.

Following one episode: ``observation`` / ``action_mask`` (the env's reset) read the context only;
the tasks (base task, drift views, shuffled copies) are built when ``run`` first sends them.
Tasks are deterministic: negatives and shown orders are seeded per task (see
:class:`~promptopt.splits.TaskBuilder`), so they do not depend on which selector asks or in what
order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from promptopt.candidates import CandidateSampler
from promptopt.config import RewardConfig, SplitConfig
from promptopt.data.interactions import InteractionData
from promptopt.drift import DriftViews
from promptopt.episodes import EpisodeKey, EpisodeTargets, Period, leak_free_mask
from promptopt.llm.types import Ranker, RankRequest, RankResponse
from promptopt.observations import EpisodeObservations
from promptopt.profile import ProfileEncoder
from promptopt.request_cache import RequestCache
from promptopt.reward import RewardBreakdown, Scorer
from promptopt.runner import Episode, EpisodeRunner, Outcome
from promptopt.splits import TaskBuilder, UserSplit, check_deploy_split, pseudo_cut, time_cut_at_quantile
from promptopt.task_set import TaskSet
from promptopt.tasks import RankingTask, UserContext

if TYPE_CHECKING:
    from promptopt.fairness.penalty import CounterfactualPenalty
    from promptopt.templates import CollaborativeHints, TemplateCatalog

__all__ = ["Episode", "Outcome", "Period", "RecProblem"]

logger = logging.getLogger(__name__)


class RecProblem:
    """Users, tasks, templates and the reward of one experiment. Build it with :meth:`build`.

    Attributes:
        data: The dataset.
        split: Train / validation / test users.
        catalog: The template catalog (the action set).
        profile: Encoder of the profile statistics in observations.
        hints: Collaborative hints fitted on :attr:`train_mask` (``None`` = templates get none).
        train_mask: ``(n_interactions,)`` bool: interactions graphs and hints may learn from.
        popularity: ``(n_items,)`` interaction counts under :attr:`train_mask`.
        drift_popularity: What ``popular_negatives`` draws by: :attr:`popularity`, or under ``deploy``
            the counts of :attr:`train_mask`'s rows from :attr:`pseudo_cut` on.
        pseudo_cut: ``deploy``: the ``split.drift_quantile`` of the timestamps before the time cut
            (a cut inside the source period); ``None`` otherwise.
        time_cut: The drift protocol's global time cut (Unix seconds).
        protocol: ``split.protocol`` (``leave_last`` or ``deploy``; :mod:`promptopt.episodes`).
        reward_config: Reward settings (range-checked by :class:`~promptopt.config.RewardConfig`).
        seed: Seed of candidate sampling and shuffling.
        builder: Base-task builder. drift: Drift-view builder.
        targets, task_set, request_cache, observations, scorer, runner: The parts (module doc).
        penalty: The fairness-aware reward's counterfactual copies (``None``: off).
        n_templates: Number of actions. obs_dim: ``1 + len(PROFILE_FEATURES)``.
    """

    def __init__(
        self,
        *,
        data: InteractionData,
        split: UserSplit,
        catalog: TemplateCatalog,
        reward_config: RewardConfig,
        split_config: SplitConfig,
        seed: int,
        hints: CollaborativeHints | None,
        train_mask: np.ndarray,
        time_cut: int,
        request_cache_size: int = 16384,
        penalty: CounterfactualPenalty | None = None,
    ) -> None:
        self.data = data
        self.split = split
        self.catalog = catalog
        self.reward_config = reward_config
        self.split_config = split_config
        self.seed = seed
        self.hints = hints
        self.train_mask = train_mask
        self.time_cut = time_cut
        self.popularity = np.bincount(data.items[train_mask], minlength=data.n_items)
        self.profile = ProfileEncoder(data, self.popularity)
        sampler = CandidateSampler(
            data.n_items, split_config.n_negatives, split_config.negatives, self.popularity
        )
        self.protocol = split_config.protocol
        # A deploy target-period target leaves a history some template can fill (the action mask
        # of that row; the observations are built below, before any target is asked for).
        self.targets = EpisodeTargets(data, split.train, time_cut, protocol=self.protocol,
                                      val_users=split.val, min_history=split_config.min_history,
                                      servable=lambda user, row: bool(
                                          self.observations.action_mask((user, row)).any()))
        self.builder = TaskBuilder(data, sampler, seed=seed, time_cut=time_cut,
                                   source_only=self.protocol == "deploy")
        # deploy: popular_negatives follow what became popular lately inside the source period (the
        # training rows from the pseudo cut on), a shift like the target period's, seen from the past.
        self.pseudo_cut: int | None = None
        drift_popularity = self.popularity
        if self.protocol == "deploy":
            self.pseudo_cut = pseudo_cut(data, time_cut, split_config.drift_quantile)
            recent = train_mask & (data.timestamps >= self.pseudo_cut)
            drift_popularity = np.bincount(data.items[recent], minlength=data.n_items)
        self.drift_popularity = drift_popularity
        self.drift = DriftViews(data, self.builder, popularity=drift_popularity,
                                dropout=reward_config.dropout, next_row=self.targets.next_row)
        self.n_templates = len(catalog)
        self.views: tuple[str, ...] = reward_config.views if reward_config.robust_weight > 0 else ()
        self.task_set = TaskSet(self.builder, self.drift, views=self.views,
                                bootstrap=reward_config.bootstrap, seed=seed)
        self.request_cache = RequestCache(catalog, data, hints, size=request_cache_size)
        self.observations = EpisodeObservations(self.profile, catalog, hints, self.task_set.context)
        self.obs_dim = self.observations.obs_dim
        self.scorer = Scorer.from_config(reward_config)
        self.penalty = penalty
        self.runner = EpisodeRunner(self.targets, self.task_set, self.request_cache, self.observations,
                                    self.scorer, penalty)

    def __deepcopy__(self, memo: dict[int, Any]) -> RecProblem:
        """The problem itself: it is shared read-only state (data, tasks and their caches).

        gymnasium deep-copies an env spec's kwargs (``gym.make(env.spec)``); a copy of the whole
        dataset per env would be waste, and identical tasks across envs are the point.
        """
        return self

    @classmethod
    def build(
        cls,
        data: InteractionData,
        split: UserSplit,
        catalog: TemplateCatalog,
        reward_config: RewardConfig,
        split_config: SplitConfig,
        *,
        seed: int,
        hints: CollaborativeHints | None = None,
        fit_hints: bool = True,
        penalty: CounterfactualPenalty | None = None,
    ) -> RecProblem:
        """Compute the time cut, the training mask and the hints, and assemble the problem.

        Args:
            data: The dataset.
            split: Users of each part.
            catalog: The action set.
            reward_config: Metric, drift views, aggregate, weights (checked when it was built).
            split_config: Negatives and the drift quantile.
            seed: Seed of candidates and shown orders.
            hints: Pre-fitted collaborative hints; fitted on the training mask when ``None`` and
                ``fit_hints`` is true.
            fit_hints: Fit hints when none are given (``False``: templates get no hints).
            penalty: The fairness-aware reward (:mod:`promptopt.fairness.penalty`); ``None``: off.
        """
        time_cut = time_cut_at_quantile(data, split_config.drift_quantile)
        if split_config.protocol == "deploy":
            check_deploy_split(data, split, time_cut, min_history=split_config.min_history)
        mask = leak_free_mask(data, n_targets=split_config.n_targets, time_cut=time_cut,
                              protocol=split_config.protocol)
        if hints is None and fit_hints:
            from promptopt.templates import CollaborativeHints

            hints = CollaborativeHints.fit(data, mask)
        return cls(data=data, split=split, catalog=catalog, reward_config=reward_config,
                   split_config=split_config, seed=seed, hints=hints, train_mask=mask,
                   time_cut=time_cut, penalty=penalty)

    # ------------------------------------------------------------------ users and targets
    def pool(self, name: str) -> np.ndarray:
        """Users of split ``name`` (``"train"``, ``"val"``, ``"test"``)."""
        return self.split.pool(name)

    def target_row(
        self, user: int, *, period: Period | None = None, final: bool = False
    ) -> int | None:
        """Row of the user's episode target; see :mod:`promptopt.episodes`.

        Returns ``None`` when ``period`` is given and the user has no interaction in it.
        """
        return self.targets.target_row(user, period=period, final=final)

    def key(
        self, user: int, *, period: Period | None = None, final: bool = False, row: int | None = None
    ) -> EpisodeKey:
        """``(user, target row)`` of the episode (row ``-1``: no target in ``period``)."""
        return self.targets.key(user, period, final, row)

    def training_rows(self, user: int, count: int) -> list[int]:
        """Target rows of ``user``'s training episodes (``env.train_targets``); see
        :meth:`~promptopt.episodes.EpisodeTargets.training_rows` (``split.n_targets`` targets; the
        last one is kept out when the reward has the temporal drift view)."""
        return self.targets.training_rows(user, count, n_targets=self.split_config.n_targets,
                                          temporal="temporal" in self.views)

    def context(
        self, user: int, *, period: Period | None = None, final: bool = False, row: int | None = None
    ) -> UserContext | None:
        """The history the episode's base task shows (``None`` when there is no such target).

        Builds no task: the context is a slice of the user's history.
        """
        return self.task_set.context(self.targets.key(user, period, final, row))

    def observation(
        self, user: int, *, period: Period | None = None, final: bool = False, row: int | None = None
    ) -> np.ndarray:
        """``[user index, *profile statistics]`` of the episode's context (cached, read-only).

        Shapes:
            Returns ``(obs_dim,)`` float32.
        """
        return self.observations.observation(self.targets.key(user, period, final, row))

    def action_mask(
        self, user: int, *, period: Period | None = None, final: bool = False, row: int | None = None
    ) -> np.ndarray:
        """``(n_templates,)`` bool: templates this user's episode context can fill (cached)."""
        return self.observations.action_mask(self.targets.key(user, period, final, row))

    # ------------------------------------------------------------------ tasks and requests
    def tasks(
        self, user: int, *, period: Period | None = None, final: bool = False, row: int | None = None
    ) -> list[RankingTask]:
        """The base task, then the drift views (when ``robust_weight > 0``), then shuffled copies.

        With ``bootstrap = B``, copies ``1..B-1`` of every view follow, grouped by copy index.
        Returns ``[]`` when ``period`` is given and the user has no target in it. Cached.
        """
        return self.task_set.tasks(self.targets.key(int(user), period, final, row))

    def requests(
        self, tasks: Sequence[RankingTask], template_index: int, *, sample_id: int = 0
    ) -> list[RankRequest]:
        """The requests of ``tasks`` filled by template ``template_index`` (with the hints)."""
        return self.request_cache.render(tasks, template_index, sample_id=sample_id)

    def warm(
        self, users: Sequence[int] | np.ndarray, *, period: Period | None = None, final: bool = False
    ) -> int:
        """Precompute tasks, observations, masks and every valid template's requests of ``users``.

        Rendering is the costly part of a step; after this, a step renders nothing (as long as
        ``users x templates`` fits the request cache, ``request_cache_size`` entries). Returns the
        number of (user, template) request lists now cached.
        """
        done = 0
        for user in np.asarray(users, dtype=np.int64):
            key = self.targets.key(int(user), period, final)
            tasks = self.task_set.tasks(key)
            if not tasks:
                continue
            self.observations.observation(key)
            for template in np.flatnonzero(self.observations.action_mask(key)):
                self.request_cache.get(key, tasks, int(template))
                done += 1
        if done > self.request_cache.size:
            logger.warning("warm: %d request lists exceed the cache of %d; the oldest were dropped",
                           done, self.request_cache.size)
        return done

    # ------------------------------------------------------------------ scoring and running
    def score(
        self, tasks: Sequence[RankingTask], responses: Sequence[RankResponse]
    ) -> tuple[RewardBreakdown, dict[str, dict[str, float]]]:
        """Reward breakdown and per-view metrics of ``responses`` to ``tasks`` (aligned lists).

        See :class:`promptopt.reward.Scorer`.
        """
        return self.scorer.score([t.view for t in tasks], [t.target for t in tasks], responses)

    def run_episodes(self, episodes: Sequence[Episode], ranker: Ranker) -> list[Outcome | None]:
        """Score each :class:`~promptopt.runner.Episode` with ONE ``ranker.rank`` call.

        See :meth:`promptopt.runner.EpisodeRunner.run`: ``None`` for a user without a target in
        the asked period, an invalid outcome (nothing sent, reward 0) for a template the user
        cannot fill.
        """
        return self.runner.run(episodes, ranker)

    def run(
        self,
        users: Sequence[int] | np.ndarray,
        templates: Sequence[int] | np.ndarray,
        ranker: Ranker,
        *,
        period: Period | None = None,
        final: bool = False,
        sample_id: int = 0,
    ) -> list[Outcome | None]:
        """Score template ``templates[i]`` for user ``users[i]`` with ONE ``ranker.rank`` call.

        Returns one :class:`Outcome` per pair (``None`` for a user without a task in ``period``).
        A template the user cannot fill (see :meth:`action_mask`) is not sent: its outcome has
        ``valid=False`` and a reward of 0.
        """
        if len(users) != len(templates):
            raise ValueError(f"{len(users)} users but {len(templates)} templates")
        return self.runner.run([Episode(int(u), int(t), sample_id, period, final)
                                for u, t in zip(users, templates)], ranker)

    def expected_rewards(
        self,
        users: Sequence[int] | np.ndarray,
        ranker: Ranker,
        *,
        samples: int = 16,
        period: Period | None = None,
        final: bool = False,
    ) -> np.ndarray:
        """Monte-Carlo expected reward of every template for every user, in ONE ``rank`` call.

        The mean of the total reward over sample ids ``0..samples-1`` (the sample id is part of
        each request and of its cache key, so a stochastic ranker — temperature > 0, the
        simulator — answers each sample independently). Costs
        ``len(users) x valid templates x samples x calls_per_episode`` requests.

        Shapes:
            Returns ``(len(users), n_templates)`` float64; ``nan`` where the user cannot fill the
            template or has no task.
        """
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        users = np.asarray(users, dtype=np.int64)
        out = np.full((users.size, self.n_templates), np.nan)
        episodes: list[Episode] = []
        cells: list[tuple[int, int]] = []
        for i, user in enumerate(users):
            key = self.targets.key(int(user), period, final)
            if key[1] < 0:
                continue
            for template in np.flatnonzero(self.observations.action_mask(key)):
                for sample in range(samples):
                    episodes.append(Episode(int(user), int(template), sample, period, final))
                    cells.append((i, int(template)))
        totals = np.zeros_like(out)
        for (i, template), outcome in zip(cells, self.runner.run(episodes, ranker)):
            assert outcome is not None and outcome.valid  # only valid episodes with a target were planned
            totals[i, template] += outcome.reward.total
        for i, template in cells:
            out[i, template] = totals[i, template] / samples
        return out

    def invalid_outcome(self, user: int, template: int, *, period: str | None = None) -> Outcome:
        """The outcome of a template ``user`` cannot fill (``-1``: an action outside the catalog).

        Nothing is sent; the reward and every metric are 0. ``period`` defaults to the period of
        the user's episode target (``"source"`` without one); finding it builds no task.
        """
        if period is None:
            period = self.task_set.period(self.targets.key(user))
        return self.runner.invalid_outcome(user, template, period=period)

    @property
    def calls_per_episode(self) -> int:
        """Ranker requests one (user, template) costs: ``(1 + n_views) * bootstrap``, plus the
        fairness-aware reward's counterfactual copies."""
        extra = self.penalty.calls_per_episode if self.penalty is not None else 0
        return self.task_set.calls_per_episode + extra

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for run metadata and reports."""
        return {
            "users": {"train": len(self.split.train), "val": len(self.split.val),
                      "test": len(self.split.test)},
            "n_templates": self.n_templates,
            "views": list(self.views),
            "time_cut": self.time_cut,
            "protocol": self.protocol,
            **({"pseudo_cut": self.pseudo_cut} if self.pseudo_cut is not None else {}),
            "train_interactions": int(self.train_mask.sum()),
            "calls_per_episode": self.calls_per_episode,
            **({"fairness_reward": self.penalty.describe()} if self.penalty is not None else {}),
        }
