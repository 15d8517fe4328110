"""The tasks of every episode: user -> context -> tasks, each built once, when first needed.

An episode's context (the history its prompt is filled from) is cheap: a slice of the user's
interactions. Its tasks are not: candidates are drawn for the base task and for every drift view,
and every view is re-shuffled ``bootstrap - 1`` times. Observations and action masks need only
the context, so an episode's start (``reset``) builds the context alone; the tasks are built when a
step first sends them to the ranker.

Tasks are deterministic: negatives and shown orders are seeded per task (see
:class:`~promptopt.splits.TaskBuilder`), so they do not depend on which selector asks first.
"""

from __future__ import annotations

from promptopt.drift import DriftViews, shuffled_copy
from promptopt.episodes import EpisodeKey
from promptopt.splits import TaskBuilder
from promptopt.tasks import RankingTask, UserContext

TaskLabels = tuple[tuple[str, ...], tuple[int, ...], str]
"""``(views, targets, base period)`` of an episode's tasks: all that scoring reads."""


class TaskSet:
    """Contexts and tasks of episodes, cached per :data:`~promptopt.episodes.EpisodeKey`.

    Args:
        builder: Builds base tasks (and their default contexts).
        drift: Builds the drift views of a base task.
        views: Drift views scored besides the base view (empty: accuracy only).
        bootstrap: Shuffled candidate orders per view (``>= 1``).
        seed: Seed of the shuffled copies.
    """

    def __init__(
        self, builder: TaskBuilder, drift: DriftViews, *, views: tuple[str, ...], bootstrap: int, seed: int
    ) -> None:
        if bootstrap < 1:
            raise ValueError(f"bootstrap must be >= 1, got {bootstrap}")
        self.builder = builder
        self.drift = drift
        self.views = views
        self.bootstrap = bootstrap
        self.seed = seed
        self._contexts: dict[EpisodeKey, UserContext | None] = {}
        self._tasks: dict[EpisodeKey, list[RankingTask]] = {}
        self._labels: dict[EpisodeKey, TaskLabels] = {}
        self._periods: dict[EpisodeKey, str] = {}

    @property
    def calls_per_episode(self) -> int:
        """Tasks (ranker requests) of one episode: ``(1 + n_views) * bootstrap``."""
        return (1 + len(self.views)) * self.bootstrap

    def __len__(self) -> int:
        """Episodes whose tasks are built (contexts alone do not count)."""
        return len(self._tasks)

    def built(self, key: EpisodeKey) -> bool:
        """Whether the tasks of ``key`` are built."""
        return key in self._tasks

    def context(self, key: EpisodeKey) -> UserContext | None:
        """The history the episode's base task shows (``None``: no target), without its tasks."""
        if key in self._contexts:
            return self._contexts[key]
        tasks = self._tasks.get(key)
        if tasks is not None:
            ctx = tasks[0].context if tasks else None
        else:
            ctx = None if key[1] < 0 else self.builder.context(*key)
        self._contexts[key] = ctx
        return ctx

    def period(self, key: EpisodeKey) -> str | None:
        """``"source"`` / ``"target"``: the period of the episode's base target (``None``: no target).

        Cached; builds no task (an invalid action's outcome needs it on every such step).
        """
        found = self._periods.get(key)
        if found is None and key[1] >= 0:
            found = self._periods[key] = self.builder.period(*key)
        return found

    def tasks(self, key: EpisodeKey) -> list[RankingTask]:
        """The base task, then the drift views, then the shuffled copies (``[]``: no target).

        With ``bootstrap = B``, copies ``1..B-1`` of every view follow, grouped by copy index.
        """
        found = self._tasks.get(key)
        if found is not None:
            return found
        if key[1] < 0:
            self._tasks[key] = []
            return []
        user, row = key
        base = self.builder.task(user, row, context=self.context(key))
        views = [base, *self.drift.views(self.views, base, row)]
        copies = [shuffled_copy(t, b, self.seed) for b in range(1, self.bootstrap) for t in views]
        tasks = self._tasks[key] = views + copies
        return tasks

    def labels(self, key: EpisodeKey) -> TaskLabels:
        """Views, targets and base period of the episode's tasks (built when needed)."""
        labels = self._labels.get(key)
        if labels is None:
            tasks = self.tasks(key)
            labels = self._labels[key] = (tuple(t.view for t in tasks), tuple(t.target for t in tasks),
                                          tasks[0].period)
        return labels
