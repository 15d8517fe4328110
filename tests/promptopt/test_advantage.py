"""AdvantageSelector: a default, and deviations only where a cross-fitted gain is validated."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pytest

from promptopt.advantage import AdvantageSelector
from promptopt.bandits import bandit_features
from promptopt.config import RewardConfig, SplitConfig
from promptopt.data import make_synthetic
from promptopt.llm.simulated import SimulatedRanker
from promptopt.llm.types import RankRequest, RankResponse
from promptopt.problem import RecProblem
from promptopt.splits import split_users
from promptopt.templates import TemplateCatalog


@pytest.fixture(scope="module")
def problem():
    data = make_synthetic(n_users=400, n_items=150, n_genres=8, mean_history=20, seed=3)
    split = split_users(data, val_fraction=0.1, test_fraction=0.3, seed=0)
    catalog = TemplateCatalog.load("movies")
    return RecProblem.build(data, split, catalog, RewardConfig(), SplitConfig(n_negatives=19), seed=0)


def _expected(ranker, users, choices) -> float:
    return float(np.mean([ranker.expected_quality(int(u), int(t)) for u, t in zip(users, choices)]))


def test_deviates_where_users_differ_and_beats_the_default(problem) -> None:
    ranker = SimulatedRanker(problem.data, problem.catalog, noise=0.05, seed=0)
    everyone = np.arange(problem.data.n_users)
    features = bandit_features(problem, everyone, None)
    selector = AdvantageSelector(problem.n_templates).fit(
        problem, ranker, problem.pool("train"), features, seed=0)
    rule = selector.rule
    assert rule["margin"] is not None and rule["lower_bound"] > 0
    test = problem.pool("test")
    choices = selector.select(test)
    masks = np.stack([problem.action_mask(int(u)) for u in test])
    assert masks[np.arange(test.size), choices].all()  # never a template the user cannot fill
    default = next(t for t in range(problem.n_templates) if problem.catalog.ids[t] == rule["default"])
    defaults = np.array([next(t for t in selector.order if m[t]) for m in masks])
    assert np.any(choices != defaults)
    assert _expected(ranker, test, choices) > _expected(ranker, test, defaults) + 0.02
    assert selector.order[0] == default


class SameAnswer:
    """Every template gets the same answer for a task: no user gains from deviating."""

    def __init__(self) -> None:
        self.identity = {"backend": "same-answer"}

    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        out = []
        for r in requests:
            task = (r.ids.task if r.ids else "").encode()
            ids = sorted(r.candidate_ids, key=lambda c: zlib.crc32(task + str(c).encode()))
            out.append(RankResponse(ranking=tuple(ids)))
        return out


def test_never_deviates_without_a_validated_gain(problem) -> None:
    features = bandit_features(problem, np.arange(problem.data.n_users), None)
    selector = AdvantageSelector(problem.n_templates).fit(
        problem, SameAnswer(), problem.pool("train"), features, seed=0)
    assert selector.rule["margin"] is None
    test = problem.pool("test")
    masks = np.stack([problem.action_mask(int(u)) for u in test])
    defaults = [next(t for t in selector.order if m[t]) for m in masks]
    np.testing.assert_array_equal(selector.select(test), defaults)


def test_bad_settings_are_refused(problem) -> None:
    for kwargs, match in (({"ridge": 0}, "ridge"), ({"folds": 1}, "folds"), ({"margins": ()}, "margins"),
                          ({"level": 1.0}, "level")):
        with pytest.raises(ValueError, match=match):
            AdvantageSelector(3, **kwargs)
    features = bandit_features(problem, np.arange(problem.data.n_users), None)
    with pytest.raises(ValueError, match="at least one pool user"):
        AdvantageSelector(problem.n_templates).fit(problem, SameAnswer(), problem.pool("train")[:0], features)


def test_too_few_users_to_cross_fit_means_the_default(problem) -> None:
    """With fewer than 2 x folds pool users nothing can be validated: it is the default, and says why."""
    ranker = SimulatedRanker(problem.data, problem.catalog, noise=0.05, seed=0)
    features = bandit_features(problem, np.arange(problem.data.n_users), None)
    pool = problem.pool("train")[:6]
    selector = AdvantageSelector(problem.n_templates).fit(problem, ranker, pool, features)
    assert selector.rule["margin"] is None and "6 pool users, 10 needed" in selector.rule["validated_on"]
    test = problem.pool("test")
    masks = np.stack([problem.action_mask(int(u)) for u in test])
    defaults = [next(t for t in selector.order if m[t]) for m in masks]
    np.testing.assert_array_equal(selector.select(test), defaults)
