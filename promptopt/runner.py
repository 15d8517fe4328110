"""The one batching loop: (user, template) episodes -> requests -> ONE ``ranker.rank`` call -> outcomes.

Every path that asks the ranker about episodes goes through :meth:`EpisodeRunner.run`: the env
step, the vector env step, the baselines, the evaluation, Monte-Carlo expected rewards and
exhaustive score tables. For each :class:`Episode` it resolves the target
(:class:`~promptopt.episodes.EpisodeTargets`), skips a template the context cannot fill (an
invalid action: nothing sent, reward 0), builds the tasks when first needed
(:class:`~promptopt.task_set.TaskSet`), takes their requests from the
:class:`~promptopt.request_cache.RequestCache`, sends every episode's requests in one call, checks
that one response came back per request and scores each episode (:class:`~promptopt.reward.Scorer`).
With the fairness-aware reward, each episode's counterfactual copies of its base request
(:class:`~promptopt.fairness.penalty.CounterfactualPenalty`) go in the same call, after its tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from promptopt.episodes import EpisodeKey, EpisodeTargets, Period
from promptopt.llm.types import ParseStats, Ranker, RankRequest, TokenUsage
from promptopt.observations import EpisodeObservations
from promptopt.request_cache import RequestCache
from promptopt.reward import RewardBreakdown, Scorer
from promptopt.task_set import TaskSet

if TYPE_CHECKING:
    from promptopt.fairness.penalty import CounterfactualPenalty


class Episode(NamedTuple):
    """One (user, template) to score, and which of the user's targets and samples.

    A named tuple: built once per pair on every env step, where a frozen dataclass costs 3x more.

    Attributes:
        user: User index.
        template: Template index (``0..n_templates - 1``).
        sample_id: Sample of a stochastic ranker (part of each request and of its cache key).
        period: The user's latest target in this drift period (see :mod:`promptopt.episodes`).
        final: The user's last interaction.
        row: An explicit target row (wins over ``period`` and ``final``).
    """

    user: int
    template: int
    sample_id: int = 0
    period: Period | None = None
    final: bool = False
    row: int | None = None


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
        calls: Requests sent to the ranker (counterfactual copies of the fairness-aware reward included).
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


class EpisodeRunner:
    """Scores batches of episodes with one ranker call each.

    Args:
        targets: Which row each episode targets.
        tasks: Contexts and tasks per episode.
        requests: Rendered requests per (episode, template).
        observations: Action masks (which templates a context can fill).
        scorer: The reward.
        penalty: The fairness-aware reward's counterfactual copies and penalty (``None``: off).
    """

    def __init__(
        self,
        targets: EpisodeTargets,
        tasks: TaskSet,
        requests: RequestCache,
        observations: EpisodeObservations,
        scorer: Scorer,
        penalty: CounterfactualPenalty | None = None,
    ) -> None:
        self.targets = targets
        self.tasks = tasks
        self.requests = requests
        self.observations = observations
        self.scorer = scorer
        self.penalty = penalty
        self.n_templates = observations.n_templates

    def run(self, episodes: Sequence[Episode], ranker: Ranker) -> list[Outcome | None]:
        """Score every episode with ONE ``ranker.rank`` call (none when nothing is to be sent).

        Returns one :class:`Outcome` per episode, in order: ``None`` for a user without a target
        in the asked period, an invalid outcome (nothing sent, reward 0) for a template the
        context cannot fill.

        Raises:
            ValueError: A template index outside the catalog, or the ranker returned another
                number of responses than it was sent requests.
        """
        batch: list[RankRequest] = []
        plan: list[tuple[Episode, EpisodeKey, int, int, int] | Outcome | None] = []
        n_templates, penalty = self.n_templates, self.penalty
        key_of, mask_of = self.targets.key, self.observations.action_mask
        for episode in episodes:
            template = episode.template
            if not 0 <= template < n_templates:
                raise ValueError(f"template index must be in 0..{n_templates - 1}, got {template}")
            key = key_of(episode.user, episode.period, episode.final, episode.row)
            if key[1] < 0:
                plan.append(None)
                continue
            if not mask_of(key)[template]:
                plan.append(self.invalid_outcome(key[0], template, period=self.tasks.period(key)))
                continue
            start = len(batch)
            requests = self.requests.get(key, self.tasks.tasks(key), template, episode.sample_id)
            batch += requests
            stop = len(batch)
            if penalty is not None:
                batch += penalty.copies(key, template, requests[0])
            plan.append((episode, key, start, stop, len(batch)))
        responses = ranker.rank(batch) if batch else []
        if len(responses) != len(batch):
            raise ValueError(f"ranker returned {len(responses)} responses for {len(batch)} requests")
        labels, score = self.tasks.labels, self.scorer.score
        outcomes: list[Outcome | None] = []
        for item in plan:  # one plain loop: this is every env step's hot path
            if item is None or isinstance(item, Outcome):
                outcomes.append(item)
                continue
            episode, key, start, stop, end = item
            part = responses[start:stop]  # never empty: every episode has a base task
            views, targets, period = labels(key)
            reward, metrics = score(views, targets, part)
            if end > stop:
                assert penalty is not None
                reward = penalty.apply(reward, part[0].ranking, [r.ranking for r in responses[stop:end]])
                part = responses[start:end]
            usage, parse = part[0].usage, part[0].parse
            for response in part[1:]:  # mostly one response: no new object then
                usage, parse = usage + response.usage, parse + response.parse
            outcomes.append(Outcome(
                user=key[0], template=episode.template, reward=reward, metrics=metrics, period=period,
                calls=len(part), cached=sum(1 for r in part if r.cached), usage=usage, parse=parse,
            ))
        return outcomes

    def invalid_outcome(self, user: int, template: int, *, period: str | None) -> Outcome:
        """The outcome of a template ``user`` cannot fill: nothing sent, reward and metrics 0."""
        reward, metrics = self.scorer.nothing()
        return Outcome(
            user=user, template=template, reward=reward, metrics=metrics, period=period or "source",
            calls=0, cached=0, usage=TokenUsage(), parse=ParseStats(), valid=False,
        )
