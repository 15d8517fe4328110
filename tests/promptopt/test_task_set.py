"""TaskSet: the context first and cheaply, tasks on demand, laid out base / views / copies, seeded."""

from __future__ import annotations

import pytest

from promptopt.config import RewardConfig, SplitConfig
from promptopt.problem import RecProblem
from tests.promptopt.conftest import ROBUST

KINDS = ({}, {"final": True}, {"period": "source"}, {"period": "target"})


def test_tasks_layout_base_views_then_copies(robust_problem, synthetic_split) -> None:
    problem = robust_problem
    user = int(synthetic_split.train[3])
    tasks = problem.tasks(user)
    views = ["base", "temporal", "dropout", "popular_negatives"]
    assert [t.view for t in tasks] == views + views
    assert problem.calls_per_episode == len(tasks) == 8
    for original, copy in zip(tasks[:4], tasks[4:]):
        assert copy.task_id == original.task_id + "/1"
        assert sorted(copy.candidates) == sorted(original.candidates)
        assert copy.candidates != original.candidates and copy.target == original.target
    # Training episodes have a real "next" interaction for the temporal view.
    assert tasks[1].context.items == (*tasks[0].context.items, tasks[0].target)
    key = problem.key(user)
    assert problem.task_set.labels(key) == (tuple(t.view for t in tasks), tuple(t.target for t in tasks),
                                            tasks[0].period)


def test_tasks_are_identical_whatever_the_build_order(
    synthetic_data, synthetic_split, five_templates, robust_problem
) -> None:
    again = RecProblem.build(synthetic_data, synthetic_split, five_templates, ROBUST, SplitConfig(), seed=1)
    users = list(synthetic_split.test[:10]) + list(synthetic_split.train[:10])
    for user in users:  # the other problem builds them in the opposite order
        robust_problem.tasks(int(user))
    for user in reversed(users):
        mine, theirs = again.tasks(int(user)), robust_problem.tasks(int(user))
        assert [(t.task_id, t.candidates, t.context.items) for t in mine] == \
               [(t.task_id, t.candidates, t.context.items) for t in theirs]
    other_seed = RecProblem.build(synthetic_data, synthetic_split, five_templates, ROBUST, SplitConfig(),
                                  seed=2)
    user = int(users[0])
    assert other_seed.tasks(user)[0].candidates != robust_problem.tasks(user)[0].candidates


def test_accuracy_only_reward_builds_no_drift_views(synthetic_data, synthetic_split, five_templates) -> None:
    plain = RecProblem.build(synthetic_data, synthetic_split, five_templates, RewardConfig(robust_weight=0.0),
                             SplitConfig(), seed=1, fit_hints=False)
    assert [t.view for t in plain.tasks(int(synthetic_split.test[0]))] == ["base"]
    assert plain.calls_per_episode == 1
    assert plain.hints is None
    # Without hints, templates that use them are masked.
    assert not plain.action_mask(int(synthetic_split.test[0]))[3]


def test_the_context_comes_first_and_builds_no_task(fresh_problem, synthetic_data, monkeypatch) -> None:
    problem = fresh_problem
    drawn: list[str] = []
    original = problem.builder.task
    monkeypatch.setattr(problem.builder, "task", lambda *a, **kw: drawn.append("task") or original(*a, **kw))
    contexts = {}
    for user in range(synthetic_data.n_users):
        for kwargs in KINDS:
            key = problem.key(user, **kwargs)
            contexts[key] = problem.context(user, **kwargs)
            problem.observation(user, **kwargs)
            problem.action_mask(user, **kwargs)
            assert problem.task_set.period(key) == (None if key[1] < 0 else
                                                    problem.builder.period(user, key[1]))
    assert drawn == [] and len(problem.task_set) == 0
    # The cheap context is the history the base task shows, once the tasks are built.
    for key, ctx in contexts.items():
        tasks = problem.task_set.tasks(key)
        if ctx is None:
            assert tasks == []
            continue
        assert tasks[0].context is ctx
        assert tasks[0].period == problem.task_set.period(key)
        fresh = problem.builder.task(*key)  # built without the cached context: the same history
        assert (fresh.context.items, fresh.context.ratings, fresh.context.timestamps) == \
               (ctx.items, ctx.ratings, ctx.timestamps)
    assert len(problem.task_set) == len(contexts)


def test_a_bad_explicit_row_names_the_user(robust_problem, synthetic_data) -> None:
    length = synthetic_data.history_length(0)
    with pytest.raises(ValueError, match=rf"target_row must be in 1\.\.{length - 1} for user"):
        robust_problem.context(0, row=length)
