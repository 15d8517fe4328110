"""RacingSelector: within its call budget, a raced default, and a stump only where it is validated."""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.bandits import bandit_features
from promptopt.config import RewardConfig, SplitConfig
from promptopt.data import make_synthetic
from promptopt.llm.simulated import SimulatedRanker
from promptopt.problem import RecProblem
from promptopt.racing import RacingSelector, _stump
from promptopt.splits import split_users
from promptopt.templates import TemplateCatalog
from tests.promptopt.test_advantage import SameAnswer


@pytest.fixture(scope="module")
def problem():
    data = make_synthetic(n_users=400, n_items=150, n_genres=8, mean_history=20, seed=3)
    split = split_users(data, val_fraction=0.1, test_fraction=0.3, seed=0)
    catalog = TemplateCatalog.load("movies")
    return RecProblem.build(
        data, split, catalog, RewardConfig(), SplitConfig(n_targets=3, n_negatives=19), seed=0
    )


class Distinct:
    """Counts the distinct requests a ranker is sent (what a cold cache pays)."""

    def __init__(self, ranker) -> None:
        self.ranker, self.seen, self.identity = ranker, set(), ranker.identity

    def rank(self, requests):
        self.seen.update(requests)
        return self.ranker.rank(requests)


def _features(problem) -> np.ndarray:
    return bandit_features(problem, np.arange(problem.data.n_users), None)


def test_stays_within_its_budget_and_deviates_only_where_it_pays(problem) -> None:
    ranker = SimulatedRanker(problem.data, problem.catalog, noise=0.05, seed=0)
    train = problem.pool("train")
    exhaustive = int(sum(problem.action_mask(int(u)).sum() for u in train))
    counter = Distinct(ranker)
    budget = int(0.3 * exhaustive)
    selector = RacingSelector(problem.n_templates).fit(
        problem, counter, train, _features(problem), budget, seed=0
    )
    rule = selector.rule
    assert len(counter.seen) <= budget and rule["calls"] == len(counter.seen)
    assert rule["race_tasks"] > 0 and rule["paired_tasks"] > rule["race_tasks"]  # the rest went to pairs
    assert rule["default"] == problem.catalog.ids[selector.order[0]] and len(rule["challengers"]) == 2
    test = problem.pool("test")
    choices = selector.select(test)
    masks = np.stack([problem.action_mask(int(u)) for u in test])
    rows = np.arange(test.size)
    assert masks[rows, choices].all()  # never a template the user cannot fill
    defaults = np.array([next(t for t in selector.order if m[t]) for m in masks])
    # The simulator's users differ: a validated stump sends some test users to one challenger ...
    assert rule["lower_bound"] > 0 and rule["feature"] is not None
    assert np.any(choices != defaults)
    sides = {problem.catalog.ids.index(rule["above"]), problem.catalog.ids.index(rule["below"])}
    assert set(choices[choices != defaults]) <= sides
    # ... and in expectation they gain.
    expected = np.array(
        [[ranker.expected_quality(int(u), t) for t in range(problem.n_templates)] for u in test]
    )
    assert expected[rows, choices].mean() > expected[rows, defaults].mean()


def test_never_deviates_when_every_template_answers_alike(problem) -> None:
    train = problem.pool("train")
    selector = RacingSelector(problem.n_templates).fit(problem, SameAnswer(), train, _features(problem), 2000)
    assert selector.rule["feature"] is None and selector.rule["validated_gain"] == 0.0
    test = problem.pool("test")
    masks = np.stack([problem.action_mask(int(u)) for u in test])
    np.testing.assert_array_equal(
        selector.select(test), [next(t for t in selector.order if m[t]) for m in masks]
    )


def test_a_stump_finds_a_threshold_on_the_right_feature() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    s = np.where(x[:, 1] >= 0.5, 1.0, 0.0) + rng.normal(scale=0.3, size=400)
    column, threshold, above = _stump(x, s, min_leaf=20)
    assert column == 1 and above and abs(threshold - 0.5) < 0.15
    column, threshold, above = _stump(x, -s, min_leaf=20)
    assert column == 1 and not above
    assert _stump(np.ones((10, 2)), rng.normal(size=10), min_leaf=2) is None  # no split of constants


def test_bad_settings_and_budgets_are_refused(problem) -> None:
    for kwargs, match in (
        ({"challengers": 0}, "challengers"),
        ({"race_share": 1.0}, "race_share"),
        ({"folds": 1}, "folds"),
        ({"level": 1.0}, "level"),
        ({"graded": "auc"}, "graded"),
        ({"min_leaf": 0.5}, "min_leaf"),
        ({"targets": 0}, "targets"),
    ):
        with pytest.raises(ValueError, match=match):
            RacingSelector(problem.n_templates, **kwargs)
    ranker = SimulatedRanker(problem.data, problem.catalog, noise=0.05, seed=0)
    with pytest.raises(ValueError, match="does not pay for the race's first task"):
        RacingSelector(problem.n_templates).fit(problem, ranker, problem.pool("train"), _features(problem), 0)
    with pytest.raises(ValueError, match="at least one training user"):
        RacingSelector(problem.n_templates).fit(problem, ranker, [], _features(problem), 500)
