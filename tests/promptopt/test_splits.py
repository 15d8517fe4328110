"""User splits, chronological tasks, the drift time cut, and the leakage guarantee."""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.candidates import CandidateSampler
from promptopt.data import InteractionData, make_synthetic
from promptopt.splits import (
    TaskBuilder,
    UserSplit,
    split_users,
    target_rows,
    time_cut_at_quantile,
    training_mask,
)

N_TARGETS = 3


def _parts(split: UserSplit) -> list[set[int]]:
    return [set(split.train.tolist()), set(split.val.tolist()), set(split.test.tolist())]


def test_users_are_disjoint_cover_the_eligible_users_and_follow_the_fractions(synthetic_data) -> None:
    split = split_users(synthetic_data, val_fraction=0.1, test_fraction=0.2, min_history=12, seed=0)
    train, val, test = _parts(split)
    assert not (train & val or train & test or val & test)
    eligible = set(np.flatnonzero(synthetic_data.history_lengths >= 12).tolist())
    assert train | val | test == eligible
    n = len(eligible)
    assert abs(len(test) - 0.2 * n) <= 2 and abs(len(val) - 0.1 * n) <= 2


def test_split_is_seeded(synthetic_data) -> None:
    a, b = split_users(synthetic_data, seed=4), split_users(synthetic_data, seed=4)
    assert _parts(a) == _parts(b)
    assert _parts(a) != _parts(split_users(synthetic_data, seed=5))


def test_split_is_stratified_by_history_length() -> None:
    data = make_synthetic(n_users=400, n_items=300, mean_history=30, seed=1)
    split = split_users(data, val_fraction=0.1, test_fraction=0.25, min_history=5, seed=0)
    lengths = data.history_lengths
    users = np.concatenate([split.train, split.val, split.test])
    edges = np.quantile(lengths[users], [0.25, 0.5, 0.75])
    test = set(split.test.tolist())
    for bucket in range(4):
        in_bucket = [u for u in users if np.searchsorted(edges, lengths[u], side="right") == bucket]
        share = np.mean([u in test for u in in_bucket])
        assert 0.18 <= share <= 0.32, (bucket, share)


def test_max_users_and_bad_fractions(synthetic_data) -> None:
    split = split_users(synthetic_data, max_users=40, seed=0)
    assert sum(len(p) for p in _parts(split)) == 40
    with pytest.raises(ValueError, match="val_fraction must be in"):
        split_users(synthetic_data, val_fraction=1.0)
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction must be < 1"):
        split_users(synthetic_data, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="no user has >= 10000 interactions"):
        split_users(synthetic_data, min_history=10_000)


def test_target_rows_are_the_last_interactions(synthetic_data) -> None:
    length = synthetic_data.history_length(0)
    assert target_rows(synthetic_data, 0) == [length - 1]
    assert target_rows(synthetic_data, 0, 3) == [length - 3, length - 2, length - 1]
    with pytest.raises(ValueError, match="n_targets must be >= 1"):
        target_rows(synthetic_data, 0, 0)


def _builder(data: InteractionData, time_cut: int | None = None) -> TaskBuilder:
    return TaskBuilder(data, CandidateSampler(data.n_items, n_negatives=19), seed=0, time_cut=time_cut)


def test_history_is_strictly_before_the_target(synthetic_data, synthetic_split) -> None:
    users = np.concatenate([synthetic_split.train, synthetic_split.val, synthetic_split.test])
    tasks = _builder(synthetic_data).tasks(users, n_targets=N_TARGETS)
    assert len(tasks) >= len(users)
    for task in tasks:
        rows = synthetic_data.user_rows(task.user)
        target_row = int(task.task_id.split("/")[1])
        before = slice(rows.start, rows.start + target_row)
        assert task.target not in task.context.items, task.task_id
        assert task.context.items == tuple(synthetic_data.items[before].tolist())
        assert max(task.context.timestamps, default=0) <= task.target_time
        seen = set(synthetic_data.items[rows].tolist())
        assert (set(task.candidates) - {task.target}).isdisjoint(seen)


def test_no_target_is_in_the_training_graph(synthetic_data, synthetic_split) -> None:
    cut = time_cut_at_quantile(synthetic_data, 0.8)
    mask = training_mask(synthetic_data, synthetic_split.train, n_targets=N_TARGETS, time_cut=cut)
    graph = set(zip(synthetic_data.users[mask].tolist(), synthetic_data.items[mask].tolist()))
    assert graph, "the training graph must not be empty"
    every_user = np.arange(synthetic_data.n_users)
    builder = _builder(synthetic_data, cut)
    for user in every_user[synthetic_data.history_lengths >= 2]:
        for row in target_rows(synthetic_data, int(user), N_TARGETS):
            task = builder.task(int(user), row)
            assert (task.user, task.target) not in graph, task.task_id
    # Only training users, only before the cut.
    assert set(synthetic_data.users[mask].tolist()) <= set(synthetic_split.train.tolist())
    assert (synthetic_data.timestamps[mask] < cut).all()


def test_repeated_pairs_never_leak_the_target() -> None:
    items = [(str(i), f"Item {i}", (), None) for i in range(30)]
    # u1 meets item 0 at t=10 and again at t=30 (a target when n_targets >= 2).
    rows = [("u1", "0", 4.0, 10), ("u1", "1", 3.0, 20), ("u1", "0", 5.0, 30), ("u1", "2", 2.0, 40)]
    data = InteractionData.from_raw("repeats", items=items, interactions=rows)
    task = _builder(data).task(0, 2)
    assert task.target == 0 and task.context.items == (1,)
    mask = training_mask(data, n_targets=2)
    assert 0 not in data.items[mask].tolist()
    assert data.items[mask].tolist() == [1]


def test_time_cut_splits_tasks_into_periods(synthetic_data, synthetic_split) -> None:
    cut = time_cut_at_quantile(synthetic_data, 0.7)
    assert np.mean(synthetic_data.timestamps < cut) == pytest.approx(0.7, abs=0.01)
    tasks = _builder(synthetic_data, cut).tasks(synthetic_split.test, n_targets=N_TARGETS)
    periods = {task.period for task in tasks}
    assert periods == {"source", "target"}
    for task in tasks:
        assert task.period == ("source" if task.target_time < cut else "target")
    assert {t.period for t in _builder(synthetic_data).tasks(synthetic_split.test)} == {"source"}
    with pytest.raises(ValueError, match="drift quantile must be in"):
        time_cut_at_quantile(synthetic_data, 1.0)


def test_tasks_do_not_depend_on_build_order(synthetic_data, synthetic_split) -> None:
    users = synthetic_split.test
    forward = {t.task_id: t.candidates for t in _builder(synthetic_data).tasks(users, N_TARGETS)}
    backward = {t.task_id: t.candidates for t in _builder(synthetic_data).tasks(users[::-1], N_TARGETS)}
    assert forward == backward
    builder = _builder(synthetic_data)
    user = int(users[0])
    row = synthetic_data.history_length(user) - 1
    assert builder.task(user, row).candidates != builder.task(user, row, repeat=1).candidates
    with pytest.raises(ValueError, match="target_row must be in 1\\.\\."):
        builder.task(user, 0)
