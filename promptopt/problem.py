"""The recommendation problem: the one place that turns (user, template) into tasks, requests and reward.

The env, the vector env, every baseline selector, the evaluation and the export all go through a
:class:`RecProblem`, so they see identical tasks, shown orders, prompts and rewards.

Which target a user's episode uses (decided here, once):

* **training users** (``split.train``): their second-to-last interaction (the latest of the
  earlier targets), so the ``temporal`` drift view has a real "next" interaction — the last one;
* **validation and test users**: their last interaction (the held-out target of the protocol);
* ``final=True``: the last interaction for any user (export, per-user bounds);
* ``period="source"`` / ``"target"``: the user's latest interaction before / from the drift time
  cut (no task when the user has none);
* ``row=r``: an explicit target row (e.g. the earlier targets of a test user).

Tasks are deterministic: negatives and shown orders are seeded per task (see
:class:`~promptopt.splits.TaskBuilder`), so they do not depend on which selector asks or in what
order. :attr:`RecProblem.train_mask` (what graphs, hints and popularity may learn from) holds no
interaction any of these tasks targets and nothing from the drift time cut on.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from promptopt.candidates import CandidateSampler
from promptopt.config import RewardConfig, SplitConfig
from promptopt.data.interactions import InteractionData
from promptopt.drift import DRIFT_VIEWS, DriftViews, shuffled_copy
from promptopt.errors import ConfigError
from promptopt.llm.types import ParseStats, Ranker, RankRequest, RankResponse, TokenUsage
from promptopt.metrics import metric_fn
from promptopt.profile import PROFILE_FEATURES, ProfileEncoder
from promptopt.reward import BASE_VIEW, RewardBreakdown, metrics_of_rank, score_views
from promptopt.splits import TaskBuilder, UserSplit, time_cut_at_quantile, training_mask
from promptopt.tasks import RankingTask, UserContext

if TYPE_CHECKING:
    from promptopt.templates import CollaborativeHints, TemplateCatalog

logger = logging.getLogger(__name__)

Period = Literal["source", "target"]


@dataclass(slots=True)
class Outcome:
    """What one (user, template) cost and earned.

    Attributes:
        user: User index.
        template: Template index.
        reward: The reward breakdown.
        metrics: Per view (``"base"`` first), every metric of :data:`METRIC_NAMES` plus the reward
            metric, averaged over the view's shuffled copies.
        period: ``"source"`` or ``"target"``: the period of the base task's target.
        calls: Requests sent to the ranker.
        cached: Of those, answers that came from a cache.
        usage: Tokens of all the requests.
        parse: Parse statistics summed over the requests.
        valid: ``False`` when the user cannot fill the template: then nothing is sent and the
            reward and every metric are 0 (the price of an invalid action).
    """

    user: int
    template: int
    reward: RewardBreakdown
    metrics: dict[str, dict[str, float]]
    period: str
    calls: int
    cached: int
    usage: TokenUsage
    parse: ParseStats
    valid: bool = True


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
        time_cut: The drift protocol's global time cut (Unix seconds).
        reward_config: Reward settings.
        seed: Seed of candidate sampling and shuffling.
        builder: Base-task builder. drift: Drift-view builder.
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
    ) -> None:
        _check_reward_config(reward_config)
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
        self.builder = TaskBuilder(data, sampler, seed=seed, time_cut=time_cut)
        self.drift = DriftViews(data, self.builder, popularity=self.popularity,
                                dropout=reward_config.dropout)
        self.n_templates = len(catalog)
        self.obs_dim = 1 + len(PROFILE_FEATURES)
        self.views: tuple[str, ...] = reward_config.views if reward_config.robust_weight > 0 else ()
        self._train_users = frozenset(int(u) for u in split.train)
        self._rows: dict[tuple[int, str | None, bool], tuple[int, int]] = {}
        self._tasks: dict[tuple[int, int], list[RankingTask]] = {}
        self._labels: dict[tuple[int, int], tuple[tuple[str, ...], tuple[int, ...], str]] = {}
        self._obs: dict[tuple[int, int], np.ndarray] = {}
        self._masks: dict[tuple[int, int], np.ndarray] = {}
        self._requests: OrderedDict[tuple[int, int, int, int], list[RankRequest]] = OrderedDict()
        self._request_cache_size = request_cache_size

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
    ) -> RecProblem:
        """Compute the time cut, the training mask and the hints, and assemble the problem.

        Args:
            data: The dataset.
            split: Users of each part.
            catalog: The action set.
            reward_config: Metric, drift views, aggregate, weights.
            split_config: Negatives and the drift quantile.
            seed: Seed of candidates and shown orders.
            hints: Pre-fitted collaborative hints; fitted on the training mask when ``None`` and
                ``fit_hints`` is true.
            fit_hints: Fit hints when none are given (``False``: templates get no hints).

        Raises:
            ConfigError: A bad reward setting (unknown metric or view, weight out of range).
        """
        time_cut = time_cut_at_quantile(data, split_config.drift_quantile)
        mask = cls._leak_free_mask(data, split, split_config, time_cut)
        if hints is None and fit_hints:
            from promptopt.templates import CollaborativeHints

            hints = CollaborativeHints.fit(data, mask)
        return cls(data=data, split=split, catalog=catalog, reward_config=reward_config,
                   split_config=split_config, seed=seed, hints=hints, train_mask=mask,
                   time_cut=time_cut)

    @staticmethod
    def _leak_free_mask(
        data: InteractionData, split: UserSplit, split_config: SplitConfig, time_cut: int
    ) -> np.ndarray:
        """:func:`training_mask` that also hides every row a task of this problem may target.

        Per user, rows from the earliest possible target on are hidden (the earlier targets of
        :func:`~promptopt.splits.target_rows`, the second-to-last row of training episodes, the
        latest source-period row of ``period="source"`` tasks), and so is everything from the
        time cut on. With repeated (user, item) pairs, earlier interactions with a hidden row's
        item are hidden too, so a target can never be learned from.
        """
        n_targets = max(split_config.n_targets, 2)
        mask = training_mask(data, n_targets=n_targets, time_cut=time_cut)
        offsets = data.user_offsets
        for user in range(data.n_users):
            start, stop = int(offsets[user]), int(offsets[user + 1])
            length = stop - start
            if length < 2:
                continue
            first = max(1, length - n_targets)
            before = np.flatnonzero(data.timestamps[start + 1:stop] < time_cut)
            if before.size:
                first = min(first, int(before[-1]) + 1)
            mask[start + first:stop] = False
            items = data.items[start:stop]
            if np.unique(items).size < length:  # repeated pairs
                mask[start:start + first] &= ~np.isin(items[:first], items[first:])
        return mask

    # ------------------------------------------------------------------ users and targets
    def pool(self, name: str) -> np.ndarray:
        """Users of split ``name`` (``"train"``, ``"val"``, ``"test"``)."""
        return self.split.pool(name)

    def target_row(
        self, user: int, *, period: Period | None = None, final: bool = False
    ) -> int | None:
        """Row (position in the user's history) of the user's episode target; see the module doc.

        Returns ``None`` when ``period`` is given and the user has no interaction in it.
        """
        length = self.data.history_length(user)
        if length < 2:
            raise ValueError(
                f"user {self.data.user_ids[user]!r} has {length} interaction(s); a task needs >= 2"
            )
        if period is not None:
            if period not in ("source", "target"):
                raise ValueError(f"period must be 'source', 'target' or None, got {period!r}")
            rows = self.data.user_rows(user)
            times = self.data.timestamps[rows.start + 1:rows.stop]
            hits = np.flatnonzero(times < self.time_cut if period == "source" else times >= self.time_cut)
            return int(hits[-1]) + 1 if hits.size else None
        if final or int(user) not in self._train_users or length < 3:
            return length - 1
        return length - 2

    def context(
        self, user: int, *, period: Period | None = None, final: bool = False, row: int | None = None
    ) -> UserContext | None:
        """The history the episode's base task shows (``None`` when there is no such target)."""
        tasks = self.tasks(user, period=period, final=final, row=row)
        return tasks[0].context if tasks else None

    def observation(
        self, user: int, *, period: Period | None = None, final: bool = False, row: int | None = None
    ) -> np.ndarray:
        """``[user index, *profile statistics]`` of the episode's context (cached, read-only).

        Shapes:
            Returns ``(obs_dim,)`` float32.
        """
        key = self._key(user, period, final, row)
        obs = self._obs.get(key)
        if obs is None:
            ctx = self.context(user, period=period, final=final, row=row)
            obs = np.zeros(self.obs_dim, dtype=np.float32)
            obs[0] = user
            if ctx is not None:
                obs[1:] = self.profile.encode(ctx)
            obs.setflags(write=False)
            self._obs[key] = obs
        return obs

    def action_mask(
        self, user: int, *, period: Period | None = None, final: bool = False, row: int | None = None
    ) -> np.ndarray:
        """``(n_templates,)`` bool: templates this user's episode context can fill (cached)."""
        key = self._key(user, period, final, row)
        mask = self._masks.get(key)
        if mask is None:
            ctx = self.context(user, period=period, final=final, row=row)
            if ctx is None:
                mask = np.ones(self.n_templates, dtype=bool)
            else:
                hints = self.hints if self.hints is not None else False
                mask = np.asarray(self.catalog.valid_mask(ctx, hints=hints), dtype=bool)
            mask.setflags(write=False)
            self._masks[key] = mask
        return mask

    def _key(self, user: int, period: Period | None, final: bool, row: int | None) -> tuple[int, int]:
        if row is None:
            memo = (user, period, final)
            found = self._rows.get(memo)
            if found is None:
                target = self.target_row(user, period=period, final=final)
                found = self._rows[memo] = (int(user), -1 if target is None else int(target))
            return found
        return (int(user), int(row))

    # ------------------------------------------------------------------ tasks and requests
    def tasks(
        self, user: int, *, period: Period | None = None, final: bool = False, row: int | None = None
    ) -> list[RankingTask]:
        """The base task, then the drift views (when ``robust_weight > 0``), then shuffled copies.

        With ``bootstrap = B``, copies ``1..B-1`` of every view follow, grouped by copy index.
        Returns ``[]`` when ``period`` is given and the user has no target in it. Cached.
        """
        user = int(user)
        key = self._key(user, period, final, row)
        cached = self._tasks.get(key)
        if cached is not None:
            return cached
        if key[1] < 0:
            self._tasks[key] = []
            return []
        base = self.builder.task(user, key[1])
        views = [base, *self.drift.views(self.views, base, key[1])]
        copies = [shuffled_copy(t, b, self.seed)
                  for b in range(1, self.reward_config.bootstrap) for t in views]
        tasks = views + copies
        self._tasks[key] = tasks
        return tasks

    def requests(
        self, tasks: Sequence[RankingTask], template_index: int, *, sample_id: int = 0
    ) -> list[RankRequest]:
        """The requests of ``tasks`` filled by template ``template_index`` (with the hints)."""
        template = self.catalog[template_index]
        return [template.request(t, self.data, self.hints, sample_id=sample_id) for t in tasks]

    def _task_labels(self, key: tuple[int, int]) -> tuple[tuple[str, ...], tuple[int, ...], str]:
        """Views, targets and base period of the cached tasks of ``key`` (scoring needs only these)."""
        labels = self._labels.get(key)
        if labels is None:
            tasks = self._tasks[key]
            labels = self._labels[key] = (tuple(t.view for t in tasks), tuple(t.target for t in tasks),
                                          tasks[0].period)
        return labels

    def _cached_requests(
        self, user: int, key: tuple[int, int], template: int, sample_id: int
    ) -> list[RankRequest]:
        rkey = (key[0], key[1], template, sample_id)
        found = self._requests.get(rkey)
        if found is not None:
            self._requests.move_to_end(rkey)
            return found
        found = self.requests(self._tasks[key], template, sample_id=sample_id)
        self._requests[rkey] = found
        if len(self._requests) > self._request_cache_size:
            self._requests.popitem(last=False)
        return found

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
            user = int(user)
            key = self._key(user, period, final, None)
            if not self.tasks(user, row=key[1]):
                continue
            self.observation(user, period=period, final=final)
            for template in np.flatnonzero(self.action_mask(user, period=period, final=final)):
                self._cached_requests(user, key, int(template), 0)
                done += 1
        if done > self._request_cache_size:
            logger.warning("warm: %d request lists exceed the cache of %d; the oldest were dropped",
                           done, self._request_cache_size)
        return done

    # ------------------------------------------------------------------ scoring
    def score(
        self, tasks: Sequence[RankingTask], responses: Sequence[RankResponse]
    ) -> tuple[RewardBreakdown, dict[str, dict[str, float]]]:
        """Reward breakdown and per-view metrics of ``responses`` to ``tasks`` (aligned lists).

        See :func:`promptopt.reward.score_views` (each view's metrics averaged over its shuffled
        copies, the reward from the configured metric, weight and aggregate).
        """
        return self._score([t.view for t in tasks], [t.target for t in tasks], responses)

    def _score(
        self, views: Sequence[str], targets: Sequence[int], responses: Sequence[RankResponse]
    ) -> tuple[RewardBreakdown, dict[str, dict[str, float]]]:
        cfg = self.reward_config
        return score_views(
            views, targets, [r.ranking for r in responses],
            metric=cfg.metric, robust_weight=cfg.robust_weight, aggregate=cfg.aggregate,
            std_penalty=cfg.std_penalty, cvar_alpha=cfg.cvar_alpha,
        )

    # ------------------------------------------------------------------ running
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
        batch: list[RankRequest] = []
        plan: list[tuple[int, int, tuple[int, int], int, int] | Outcome | None] = []
        n_templates = self.n_templates
        for user, template in zip(users, templates):
            user, template = int(user), int(template)
            if not 0 <= template < n_templates:
                raise ValueError(f"template index must be in 0..{n_templates - 1}, got {template}")
            key = self._key(user, period, final, None)
            tasks = self._tasks.get(key)
            if tasks is None:
                tasks = self.tasks(user, row=key[1]) if key[1] >= 0 else []
            if not tasks:
                plan.append(None)
                continue
            mask = self._masks.get(key)
            if mask is None:
                mask = self.action_mask(user, row=key[1])
            if not mask[template]:
                plan.append(self.invalid_outcome(user, template, period=tasks[0].period))
                continue
            start = len(batch)
            batch += self._cached_requests(user, key, template, sample_id)
            plan.append((user, template, key, start, len(batch)))
        responses = ranker.rank(batch) if batch else []
        if len(responses) != len(batch):
            raise ValueError(f"ranker returned {len(responses)} responses for {len(batch)} requests")
        outcomes: list[Outcome | None] = []
        for item in plan:
            if item is None or isinstance(item, Outcome):
                outcomes.append(item)
                continue
            user, template, key, start, stop = item
            part = responses[start:stop]
            views, targets, period_of = self._task_labels(key)
            reward, metrics = self._score(views, targets, part)
            outcomes.append(Outcome(
                user=user, template=template, reward=reward, metrics=metrics, period=period_of,
                calls=len(part), cached=sum(1 for r in part if r.cached), usage=_total_usage(part),
                parse=_total_parse(part),
            ))
        return outcomes

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
        batch: list[RankRequest] = []
        plan: list[tuple[int, int, list[RankingTask], int]] = []
        for i, user in enumerate(users):
            tasks = self.tasks(int(user), period=period, final=final)
            if not tasks:
                continue
            mask = self.action_mask(int(user), period=period, final=final)
            for template in np.flatnonzero(mask):
                rendered = self.requests(tasks, int(template))  # render once, vary the sample id
                for sample in range(samples):
                    plan.append((i, int(template), tasks, len(batch)))
                    batch.extend(dataclasses.replace(r, sample_id=sample) for r in rendered)
        responses = ranker.rank(batch) if batch else []
        totals = np.zeros_like(out)
        for i, template, tasks, start in plan:
            reward, _ = self.score(tasks, responses[start:start + len(tasks)])
            totals[i, template] += reward.total
        for i, template, _, _ in plan:
            out[i, template] = totals[i, template] / samples
        return out

    def invalid_outcome(self, user: int, template: int, *, period: str | None = None) -> Outcome:
        """The outcome of a template ``user`` cannot fill (``-1``: an action outside the catalog).

        Nothing is sent; the reward and every metric are 0.
        """
        if period is None:
            tasks = self.tasks(user)
            period = tasks[0].period if tasks else "source"
        zeros = metrics_of_rank(None, self.reward_config.metric)
        return Outcome(
            user=user, template=template, reward=RewardBreakdown(0.0, 0.0, 0.0, {BASE_VIEW: 0.0}),
            metrics={BASE_VIEW: dict(zeros)}, period=period, calls=0, cached=0, usage=TokenUsage(),
            parse=ParseStats(), valid=False,
        )

    @cached_property
    def calls_per_episode(self) -> int:
        """Ranker requests one (user, template) costs: ``(1 + n_views) * bootstrap``."""
        return (1 + len(self.views)) * self.reward_config.bootstrap

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for run metadata and reports."""
        return {
            "users": {"train": len(self.split.train), "val": len(self.split.val),
                      "test": len(self.split.test)},
            "n_templates": self.n_templates,
            "views": list(self.views),
            "time_cut": self.time_cut,
            "train_interactions": int(self.train_mask.sum()),
            "calls_per_episode": self.calls_per_episode,
        }


def _total_usage(responses: Sequence[RankResponse]) -> TokenUsage:
    if len(responses) == 1:
        return responses[0].usage
    return TokenUsage(sum(r.usage.prompt_tokens for r in responses),
                      sum(r.usage.completion_tokens for r in responses))


def _total_parse(responses: Sequence[RankResponse]) -> ParseStats:
    if len(responses) == 1:
        return responses[0].parse
    return ParseStats(sum(r.parse.found for r in responses), sum(r.parse.duplicates for r in responses),
                      sum(r.parse.hallucinated for r in responses), sum(r.parse.missing for r in responses))


def _check_reward_config(cfg: RewardConfig) -> None:
    try:
        metric_fn(cfg.metric)
    except ValueError as exc:
        raise ConfigError(f"reward.metric: {exc}") from None
    unknown = [v for v in cfg.views if v not in DRIFT_VIEWS]
    if unknown:
        raise ConfigError(
            f"reward.views: unknown drift view {unknown[0]!r}; use any of {', '.join(DRIFT_VIEWS)}"
        )
    if len(set(cfg.views)) != len(cfg.views) or BASE_VIEW in cfg.views:
        raise ConfigError(f"reward.views must name distinct drift views, got {list(cfg.views)}")
    if not 0.0 <= cfg.robust_weight <= 1.0:
        raise ConfigError(f"reward.robust_weight must be in [0, 1], got {cfg.robust_weight}")
    if cfg.bootstrap < 1:
        raise ConfigError(f"reward.bootstrap must be >= 1, got {cfg.bootstrap}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"reward.dropout must be in [0, 1), got {cfg.dropout}")
    if cfg.std_penalty < 0:
        raise ConfigError(f"reward.std_penalty must be >= 0, got {cfg.std_penalty}")
    if not 0.0 < cfg.cvar_alpha <= 1.0:
        raise ConfigError(f"reward.cvar_alpha must be in (0, 1], got {cfg.cvar_alpha}")
    if cfg.aggregate not in ("mean_std", "worst", "cvar"):
        raise ConfigError(f"reward.aggregate must be mean_std, worst or cvar, got {cfg.aggregate!r}")
