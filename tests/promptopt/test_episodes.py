"""Episode targets and the leak-free training mask: no episode's target is ever learned from."""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.config import RewardConfig, SplitConfig
from promptopt.episodes import NO_TARGET, EpisodeTargets, leak_free_mask
from promptopt.problem import RecProblem
from promptopt.splits import split_users, time_cut_at_quantile

KINDS = ({}, {"final": True}, {"period": "source"}, {"period": "target"})


@pytest.fixture(scope="module")
def time_cut(synthetic_data) -> int:
    return time_cut_at_quantile(synthetic_data, SplitConfig().drift_quantile)


@pytest.fixture(scope="module")
def targets(synthetic_data, synthetic_split, time_cut) -> EpisodeTargets:
    return EpisodeTargets(synthetic_data, synthetic_split.train, time_cut)


def test_mask_holds_no_target_and_nothing_after_the_cut(synthetic_data, targets, time_cut) -> None:
    data = synthetic_data
    mask = leak_free_mask(data, n_targets=SplitConfig().n_targets, time_cut=time_cut)
    assert mask.shape == (data.n_interactions,) and mask.dtype == bool
    assert not mask[data.timestamps >= time_cut].any()
    for user in range(data.n_users):
        rows = data.user_rows(user)
        for kwargs in KINDS:
            row = targets.target_row(user, **kwargs)
            if row is not None:
                assert not mask[rows.start + row], (user, kwargs)
        # Temporal views target the row after the episode's: hidden as well.
        assert not mask[rows.start + targets.target_row(user):rows.stop].any()
    assert mask.sum() > 0.4 * data.n_interactions


def test_episode_targets(synthetic_data, synthetic_split, targets, time_cut) -> None:
    data = synthetic_data
    train, test = int(synthetic_split.train[0]), int(synthetic_split.test[0])
    assert targets.target_row(train) == data.history_length(train) - 2
    assert targets.target_row(train, final=True) == data.history_length(train) - 1
    assert targets.target_row(test) == data.history_length(test) - 1
    seen_none = False
    for user in synthetic_split.test:
        rows = data.user_rows(int(user))
        src = targets.target_row(int(user), period="source")
        tgt = targets.target_row(int(user), period="target")
        if src is not None:
            assert data.timestamps[rows.start + src] < time_cut
            assert (data.timestamps[rows.start + src + 1:rows.stop] >= time_cut).all()
        if tgt is not None:
            assert data.timestamps[rows.start + tgt] >= time_cut
            assert tgt == data.history_length(int(user)) - 1
        seen_none |= tgt is None
    assert seen_none  # some test user has no target-period interaction: the None case is exercised
    with pytest.raises(ValueError, match="period must be 'source', 'target', 'last' or None, got 'later'"):
        targets.target_row(test, period="later")  # type: ignore[arg-type]


def test_key_is_memoised_and_an_explicit_row_wins(synthetic_split, targets) -> None:
    user = int(synthetic_split.train[0])
    key = targets.key(user)
    assert key == (user, targets.target_row(user))
    assert targets.key(user) is key  # memoised
    assert targets.key(user, "target", True, row=3) == (user, 3)
    missing = next(int(u) for u in synthetic_split.test
                   if targets.target_row(int(u), period="target") is None)
    assert targets.key(missing, "target") == (missing, NO_TARGET)


def test_a_user_needs_two_interactions_and_short_training_users_target_their_last() -> None:
    from promptopt.data import InteractionData

    items = [(str(i), f"Item {i}", ("Drama",), 2000) for i in range(4)]
    rows = [("solo", "0", 4.0, 10), ("pair", "1", 4.0, 20), ("pair", "2", 4.0, 30)]
    data = InteractionData.from_raw("tiny", items=items, interactions=rows)
    solo, pair = data.user_ids.index("solo"), data.user_ids.index("pair")
    targets = EpisodeTargets(data, [solo, pair], time_cut=25)
    with pytest.raises(ValueError, match="user 'solo' has 1 interaction\\(s\\); a task needs >= 2"):
        targets.target_row(solo)
    assert targets.target_row(pair) == 1  # a training user with 2 interactions: the last one
    assert targets.target_row(pair, period="source") is None  # row 0 is never a target
    assert targets.target_row(pair, period="target") == 1


def test_repeated_pairs_never_leak_a_target(five_templates) -> None:
    from promptopt.data import InteractionData

    rng = np.random.default_rng(0)
    items = [(str(i), f"Item {i}", ("Drama",) if i % 2 else ("Comedy",), 2000) for i in range(120)]
    rows = []
    for user in range(40):
        favourites = rng.choice(120, size=6, replace=False)  # few items, consumed again and again
        for step in range(18):
            when = 1_000_000 + 3600 * (50 * step + user)
            rows.append((f"u{user}", str(int(rng.choice(favourites))), 4.0, when))
    data = InteractionData.from_raw("repeats", items=items, interactions=rows)
    split = split_users(data, seed=0)
    reward = RewardConfig(robust_weight=0.5, views=("temporal", "dropout", "truncate", "popular_negatives",
                                                    "new_items"))
    problem = RecProblem.build(data, split, five_templates, reward, SplitConfig(n_negatives=9), seed=0)
    assert problem.train_mask.sum() > 0
    for user in range(data.n_users):
        rows_ = data.user_rows(user)
        learned = set(data.items[rows_][problem.train_mask[rows_]].tolist())
        for kwargs in ({}, {"final": True}, {"period": "source"}):
            for task in problem.tasks(user, **kwargs):
                assert task.target not in task.context.items, task.task_id
                assert task.target not in learned, task.task_id


def test_deploy_targets_stay_on_their_side_of_the_cut() -> None:
    from promptopt.data import InteractionData

    items = [(str(i), f"Item {i}", ("Drama",), 2000) for i in range(20)]
    # "mixed": rows 0-4 before the cut (t < 100), rows 5-7 from it on; "late": all from the cut on.
    times = [10, 20, 30, 40, 50, 100, 110, 120]
    rows = [("mixed", str(k), 4.0, t) for k, t in enumerate(times)]
    rows += [("late", str(10 + k), 4.0, 200 + k) for k in range(6)]
    data = InteractionData.from_raw("cut", items=items, interactions=rows)
    mixed, late = data.user_ids.index("mixed"), data.user_ids.index("late")
    as_train = EpisodeTargets(data, [mixed], time_cut=100, protocol="deploy")
    assert as_train.source_length(mixed) == 5 and as_train.horizon(mixed) == 5
    assert as_train.target_row(mixed) == 3  # second-to-last before the cut
    assert as_train.next_row(mixed, 3) == 4
    assert as_train.next_row(mixed, 4) is None  # the next interaction is from the cut on
    assert as_train.next_row(mixed, 5) == 6  # a target-period row keeps its next one
    assert as_train.training_rows(mixed, 5, n_targets=3, temporal=True) == [3, 2]
    assert as_train.training_rows(mixed, 5, n_targets=3, temporal=False) == [3, 4, 2]
    as_val = EpisodeTargets(data, [], time_cut=100, protocol="deploy", val_users=[mixed])
    assert as_val.target_row(mixed) == 4  # the last before the cut
    as_test = EpisodeTargets(data, [], time_cut=100, protocol="deploy", min_history=5)
    assert as_test.target_row(mixed) == 5  # the first from the cut on
    assert as_test.target_row(mixed, period="target") == 5
    assert as_test.target_row(mixed, period="source") == 4
    assert as_test.target_row(mixed, period="last") == as_test.target_row(mixed, final=True) == 7
    assert as_test.target_row(late) == 4  # arrived after the cut: the first with 4 before it
    assert as_test.unservable([mixed, late]) == []  # no servable rule: every row serves
    # Only histories of 5+ items fill a template: the late user's target moves to row 5.
    picky = EpisodeTargets(data, [], time_cut=100, protocol="deploy", min_history=5,
                           servable=lambda user, row: row >= 5)
    assert picky.target_row(late) == picky.target_row(late, period="target") == 5
    assert picky.target_row(mixed) == 5 and picky.unservable([mixed, late]) == []
    never = EpisodeTargets(data, [], time_cut=100, protocol="deploy", min_history=5,
                           servable=lambda user, row: False)
    assert never.target_row(late) is None and never.unservable([mixed, late]) == [mixed, late]
    assert never.target_row(mixed, period="source") == 4  # the rule is the target period's only
    # leave_last on the same data: the training target is the second-to-last whatever its date.
    assert EpisodeTargets(data, [mixed], time_cut=100).target_row(mixed) == 6
    no_source = EpisodeTargets(data, [late], time_cut=100, protocol="deploy")
    assert no_source.target_row(late) is None
    with pytest.raises(ValueError, match="user 'late' has no deploy episode target"):
        no_source.training_rows(late, 3, n_targets=3, temporal=True)
    with pytest.raises(ValueError, match="protocol must be one of leave_last, deploy, got 'future'"):
        EpisodeTargets(data, [], time_cut=100, protocol="future")  # type: ignore[arg-type]
    mask = leak_free_mask(data, n_targets=2, time_cut=100, protocol="deploy")
    assert mask[data.user_rows(mixed)].tolist() == [True, True, True, False, False, False, False, False]
    assert not mask[data.user_rows(late)].any()
