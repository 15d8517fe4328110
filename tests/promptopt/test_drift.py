"""Drift views are real, different ranking tasks, and none shows its target in its history."""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.candidates import CandidateSampler
from promptopt.drift import DRIFT_VIEWS, DriftViews, shuffled_copy
from promptopt.splits import TaskBuilder, training_mask


@pytest.fixture(scope="module")
def views(synthetic_data):
    data = synthetic_data
    popularity = np.bincount(data.items[training_mask(data, n_targets=2)], minlength=data.n_items)
    builder = TaskBuilder(data, CandidateSampler(data.n_items, 19), seed=3,
                          time_cut=int(np.quantile(data.timestamps, 0.8)))
    return DriftViews(data, builder, popularity=popularity, dropout=0.3)


def _history_rows_ok(data, task, view_target_row: int) -> None:
    """The view's history is a subset of the user's interactions before its target row."""
    rows = data.user_rows(task.user)
    before = data.items[rows.start:rows.start + view_target_row]
    assert set(task.context.items) <= set(int(x) for x in before)
    assert task.target == int(data.items[rows.start + view_target_row])
    assert task.target not in task.context.items
    assert max(task.context.timestamps) <= task.target_time


@pytest.mark.parametrize("user", [0, 5, 17, 42])
def test_every_view_is_a_different_leak_free_task(synthetic_data, views, user: int) -> None:
    data = synthetic_data
    row = data.history_length(user) - 2
    base = views.builder.task(user, row)
    built = views.views(DRIFT_VIEWS, base, row)
    assert [t.view for t in built] == list(DRIFT_VIEWS)
    for task in built:
        assert task.task_id != base.task_id and task.task_id.endswith(task.view)
        differs = (task.target != base.target or task.context.items != base.context.items
                   or set(task.candidates) != set(base.candidates))
        assert differs, f"view {task.view} equals the base task"
        assert len(task.candidates) == len(base.candidates)
        seen = set(int(x) for x in views.builder.seen_items(user))
        assert not (set(task.candidates) - {task.target}) & seen
        target_row = row + 1 if task.view == "temporal" else row
        _history_rows_ok(data, task, target_row)


def test_temporal_view_is_the_next_interaction_with_extended_history(synthetic_data, views) -> None:
    data = synthetic_data
    user, row = 3, 10
    base = views.builder.task(user, row)
    temporal = views.view("temporal", base, row)
    rows = data.user_rows(user)
    assert temporal.target == int(data.items[rows.start + row + 1])
    assert temporal.context.items == (*base.context.items, base.target)


def test_temporal_fallback_for_the_last_item_is_a_stale_history(synthetic_data, views) -> None:
    data = synthetic_data
    user = 9
    last = data.history_length(user) - 1
    base = views.builder.task(user, last)
    stale = views.view("temporal", base, last)
    hidden = max(1, round(0.2 * last))
    assert stale.target == base.target
    assert stale.context.items == base.context.items[: last - hidden]
    _history_rows_ok(data, stale, last)


def test_history_perturbations_keep_target_and_shown_order(synthetic_data, views) -> None:
    user, row = 11, synthetic_data.history_length(11) - 1
    base = views.builder.task(user, row)
    dropout = views.view("dropout", base, row)
    truncate = views.view("truncate", base, row)
    n = len(base.context)
    for task in (dropout, truncate):
        assert task.candidates == base.candidates and task.target == base.target
    assert len(dropout.context) == n - round(0.3 * n)
    # Dropout keeps chronological order; truncation keeps the oldest half.
    assert list(dropout.context.timestamps) == sorted(dropout.context.timestamps)
    assert truncate.context.items == base.context.items[: -(-n // 2)]
    # Seeded: rebuilding gives the same view.
    assert views.view("dropout", base, row).context.items == dropout.context.items


def test_candidate_shift_views(synthetic_data, views) -> None:
    data = synthetic_data
    rng = np.random.default_rng(0)
    popularity = np.bincount(data.items[training_mask(data, n_targets=2)], minlength=data.n_items)
    first_seen = np.full(data.n_items, np.iinfo(np.int64).max)
    np.minimum.at(first_seen, data.items, data.timestamps)
    latest_first = np.argsort(first_seen, kind="stable")
    users = rng.choice(data.n_users, size=40, replace=False)
    base_pop, shifted_pop, base_age, fresh_age = [], [], [], []
    for user in users:
        user = int(user)
        row = data.history_length(user) - 1
        base = views.builder.task(user, row)
        popular = views.view("popular_negatives", base, row)
        assert popular.context is base.context and popular.target == base.target
        base_pop += [popularity[c] for c in base.candidates if c != base.target]
        shifted_pop += [popularity[c] for c in popular.candidates if c != popular.target]
        fresh = views.view("new_items", base, row)
        assert fresh.context is base.context and fresh.target == base.target
        end = base.context.timestamps[-1]
        # Newer than the history, or (when too few are) among the latest-appearing items.
        tail = set(latest_first[-(19 + len(views.builder.seen_items(user)) + 1):].tolist())
        for item in fresh.candidates:
            if item != fresh.target:
                assert first_seen[item] > end or item in tail
                fresh_age.append(first_seen[item])
        base_age += [first_seen[c] for c in base.candidates if c != base.target]
    assert views.popular_sampler.strategy == "popularity"
    assert np.mean(shifted_pop) > 1.25 * np.mean(base_pop)
    assert np.mean(fresh_age) > np.mean(base_age)


def test_unknown_view_and_bad_shares_fail_clearly(synthetic_data, views) -> None:
    base = views.builder.task(0, 3)
    with pytest.raises(ValueError, match="unknown drift view 'seasonal'"):
        views.view("seasonal", base, 3)
    with pytest.raises(ValueError, match="dropout must be in"):
        DriftViews(synthetic_data, views.builder, popularity=np.zeros(synthetic_data.n_items), dropout=1.0)


def test_shuffled_copy_keeps_the_task_but_not_the_order(synthetic_data, views) -> None:
    base = views.builder.task(2, 6)
    copies = [shuffled_copy(base, b, seed=3) for b in (1, 2, 3)]
    for copy in copies:
        assert sorted(copy.candidates) == sorted(base.candidates)
        assert copy.context is base.context and copy.target == base.target and copy.view == "base"
    assert len({c.candidates for c in [base, *copies]}) == 4
    assert shuffled_copy(base, 1, seed=3).candidates == copies[0].candidates
    with pytest.raises(ValueError, match="repeat must be >= 1"):
        shuffled_copy(base, 0, seed=3)
