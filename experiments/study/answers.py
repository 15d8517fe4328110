"""Answer tables: every template's score for a set of users on one kind of target.

The study fills each table once (the ranker's answers come from the SQLite cache on a re-run) and
every selector, seed and analysis reads it: the exhaustive sweep over training users, the
validation users' targets, and the test users' last, earlier and drift-period targets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptopt.llm.types import Ranker
from promptopt.problem import Episode, Period, RecProblem
from promptopt.progress import progress_bar

logger = logging.getLogger("promptopt.study")


@dataclass
class AnswerTable:
    """Every template's score for some users on one kind of target (``nan``: invalid / no task).

    Shapes: ``users (n,)``; ``ndcg`` and ``reward`` ``(n, n_templates)``.
    """

    users: np.ndarray
    ndcg: np.ndarray
    reward: np.ndarray

    def rows(self, users: np.ndarray) -> np.ndarray:
        """Row index of each of ``users``."""
        position = {int(u): i for i, u in enumerate(self.users)}
        return np.array([position[int(u)] for u in users], dtype=np.int64)

    def to_json(self) -> dict[str, list]:
        """Plain lists, ``None`` for ``nan`` (the form ``study.json`` stores)."""
        return {
            "users": self.users.tolist(),
            "ndcg": _nan_to_none(self.ndcg),
            "reward": _nan_to_none(self.reward),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> AnswerTable:
        return cls(
            np.asarray(raw["users"], dtype=np.int64), _none_to_nan(raw["ndcg"]), _none_to_nan(raw["reward"])
        )


def _nan_to_none(a: np.ndarray) -> list:
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in a]


def _none_to_nan(rows: list) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64)


def score_table(
    problem: RecProblem,
    ranker: Ranker,
    users: np.ndarray,
    *,
    period: Period | None = None,
    back: int | None = None,
    chunk: int = 512,
    label: str = "",
) -> AnswerTable:
    """Score every valid template for ``users`` on their episode target.

    Every (user, valid template) pair is one :class:`~promptopt.runner.Episode`, scored by the
    library's batching loop (:meth:`RecProblem.run_episodes`), ``chunk // calls_per_episode``
    episodes per ranker call.

    Args:
        problem: The problem (tasks, masks, requests, scoring).
        ranker: The (cached) ranker.
        users: The users.
        period: The user's latest target in this drift period instead.
        back: The target ``back`` items before the user's episode target instead (the last item, or
            under ``split.protocol: deploy`` the first from the time cut on; users with too short a
            history get no row values).
        chunk: Requests per ranker call (at most; a whole number of episodes).
        label: Names the table in progress lines.
    """
    users = np.asarray(users, dtype=np.int64)
    n, n_t = users.size, problem.n_templates
    ndcg, reward = np.full((n, n_t), np.nan), np.full((n, n_t), np.nan)
    cells: list[tuple[int, int]] = []
    episodes: list[Episode] = []
    for i, user in enumerate(users):
        row = None
        if back is not None:
            episode = problem.target_row(int(user))
            if episode is None or episode - back < 1:
                continue  # no such target: the row stays nan
            row = episode - back
        if problem.key(int(user), period=period, row=row)[1] < 0:
            continue  # no such target: the row stays nan
        for template in np.flatnonzero(problem.action_mask(int(user), period=period, row=row)):
            cells.append((i, int(template)))
            episodes.append(Episode(int(user), int(template), period=period, row=row))
    # Every planned episode sends calls_per_episode requests, so a call holds at most `chunk`.
    per_call = max(1, chunk // problem.calls_per_episode)
    started, outcomes = time.perf_counter(), []
    with progress_bar(total=len(episodes), desc=f"answers {label}".strip(), unit="episode") as bar:
        for start in range(0, len(episodes), per_call):
            outcomes += problem.run_episodes(episodes[start : start + per_call], ranker)
            bar.update(min(per_call, len(episodes) - start))
            logger.info(
                "answers %s: %d/%d episodes (%.1f s)",
                label,
                len(outcomes),
                len(episodes),
                time.perf_counter() - started,
            )
    for (i, template), outcome in zip(cells, outcomes):
        assert outcome is not None  # only episodes with a target and a valid template were planned
        ndcg[i, template], reward[i, template] = outcome.metrics["base"]["ndcg@10"], outcome.reward.total
    return AnswerTable(users, ndcg, reward)
