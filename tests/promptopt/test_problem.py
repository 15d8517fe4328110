"""RecProblem, the facade: assembles the parts once, so every caller sees the same tasks and rewards.

The parts have their own tests (test_episodes, test_task_set, test_request_cache, test_observations,
test_runner, test_reward's Scorer, test_config's reward checks); these check the assembly.
"""

from __future__ import annotations

import copy

import numpy as np

from promptopt.episodes import leak_free_mask
from tests.promptopt.conftest import ShownOrderRanker


def test_build_assembles_the_parts_on_the_leak_free_mask(robust_problem, synthetic_data) -> None:
    problem = robust_problem
    data = synthetic_data
    np.testing.assert_array_equal(
        problem.train_mask, leak_free_mask(data, n_targets=problem.split_config.n_targets,
                                           time_cut=problem.time_cut))
    expected = np.bincount(data.items[problem.train_mask], minlength=data.n_items)
    np.testing.assert_array_equal(problem.popularity, expected)
    assert problem.hints is not None and problem.request_cache.hints is problem.hints
    assert problem.describe() == {
        "users": {"train": len(problem.split.train), "val": len(problem.split.val),
                  "test": len(problem.split.test)},
        "n_templates": 5, "views": ["temporal", "dropout", "popular_negatives"], "time_cut": problem.time_cut,
        "protocol": "leave_last",
        "train_interactions": int(problem.train_mask.sum()), "calls_per_episode": 8,
    }
    assert copy.deepcopy(problem) is problem  # shared read-only state, never copied per env


def test_the_facade_reads_the_parts(robust_problem, synthetic_split) -> None:
    problem = robust_problem
    for user in (int(synthetic_split.train[0]), int(synthetic_split.test[0])):
        for kwargs in ({}, {"final": True}, {"period": "source"}):
            key = problem.key(user, **kwargs)
            assert key == (user, problem.target_row(user, **kwargs))
            assert problem.context(user, **kwargs) is problem.task_set.context(key)
            assert problem.observation(user, **kwargs) is problem.observations.observation(key)
            assert problem.action_mask(user, **kwargs) is problem.observations.action_mask(key)
            assert problem.tasks(user, **kwargs) is problem.task_set.tasks(key)


def test_warm_renders_every_valid_template_once(fresh_problem, synthetic_split, monkeypatch) -> None:
    problem = fresh_problem
    users = synthetic_split.train[:5]
    done = problem.warm(users)
    assert done == sum(int(problem.action_mask(int(u)).sum()) for u in users) == len(problem.request_cache)
    assert len(problem.task_set) == len(users)
    rendered: list[int] = []
    monkeypatch.setattr(problem.request_cache, "render", lambda *a, **kw: rendered.append(1))
    templates = [int(np.flatnonzero(problem.action_mask(int(u)))[-1]) for u in users]
    outcomes = problem.run(users, templates, ShownOrderRanker())
    assert rendered == [] and all(o is not None and o.valid for o in outcomes)


def test_an_invalid_outcome_finds_its_period_without_building_tasks(fresh_problem, synthetic_split) -> None:
    problem = fresh_problem
    user = int(synthetic_split.test[0])
    outcome = problem.invalid_outcome(user, -1)
    assert not outcome.valid and outcome.template == -1 and outcome.reward.total == 0.0
    assert outcome.period == problem.builder.period(user, problem.target_row(user))
    assert len(problem.task_set) == 0
