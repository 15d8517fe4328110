"""RecProblem: leak-free training mask, episode targets, deterministic tasks, requests and scoring."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from promptopt.config import RewardConfig, SplitConfig
from promptopt.errors import ConfigError
from promptopt.llm.types import ParseStats, RankRequest, RankResponse, RequestIds, TokenUsage
from promptopt.metrics import METRIC_NAMES
from promptopt.problem import RecProblem
from promptopt.reward import combine, view_score
from promptopt.splits import split_users
from promptopt.templates import TemplateCatalog

CATALOG = {
    "name": "test",
    "templates": [
        {"id": "recent5", "text": "I watched {recent_titles:5}.\nRank:\n{candidates}"},
        {"id": "genres", "text": "My taste: {genre_profile}.\nRank:\n{candidates}"},
        {"id": "liked", "text": "I liked {liked_titles:3}.\nRank:\n{candidates}", "output_format": "title"},
        {"id": "similar", "text": "Similar users watched {similar_users_items:5}.\nRank:\n{candidates}"},
        {"id": "long", "text": "I watched {recent_titles:40}.\nRank:\n{candidates}"},
    ],
}


class ShownOrderRanker:
    """Ranks candidates in the order they were shown (the answer of a model that ignores the prompt).

    With it, a task's metric depends only on its target's shown position: hand-computable.
    """

    def __init__(self) -> None:
        self.identity = {"backend": "shown-order"}
        self.calls: list[int] = []

    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        self.calls.append(len(requests))
        return [RankResponse(ranking=r.candidate_ids, usage=TokenUsage(10, 2), cached=i % 2 == 1,
                             parse=ParseStats(found=len(r.candidate_ids)))
                for i, r in enumerate(requests)]


def _ndcg10(position: int) -> float:
    return 1.0 / math.log2(position + 2) if position < 10 else 0.0


@pytest.fixture(scope="module")
def catalog():
    return TemplateCatalog.from_dict(CATALOG)


@pytest.fixture(scope="module")
def problem(synthetic_data, synthetic_split, catalog):
    reward = RewardConfig(robust_weight=0.5, views=("temporal", "dropout", "popular_negatives"), bootstrap=2)
    return RecProblem.build(synthetic_data, synthetic_split, catalog, reward, SplitConfig(), seed=1)


def test_train_mask_holds_no_target_and_nothing_after_the_cut(synthetic_data, problem) -> None:
    data = synthetic_data
    assert not problem.train_mask[data.timestamps >= problem.time_cut].any()
    for user in range(data.n_users):
        rows = data.user_rows(user)
        for kwargs in ({}, {"final": True}, {"period": "source"}, {"period": "target"}):
            row = problem.target_row(user, **kwargs)
            if row is not None:
                assert not problem.train_mask[rows.start + row], (user, kwargs)
        # Temporal views target the row after the episode's: hidden as well.
        assert not problem.train_mask[rows.start + problem.target_row(user):rows.stop].any()
    assert problem.train_mask.sum() > 0.4 * data.n_interactions
    expected = np.bincount(data.items[problem.train_mask], minlength=data.n_items)
    np.testing.assert_array_equal(problem.popularity, expected)


def test_episode_targets(synthetic_data, synthetic_split, problem) -> None:
    data = synthetic_data
    train, test = int(synthetic_split.train[0]), int(synthetic_split.test[0])
    assert problem.target_row(train) == data.history_length(train) - 2
    assert problem.target_row(train, final=True) == data.history_length(train) - 1
    assert problem.target_row(test) == data.history_length(test) - 1
    for user in synthetic_split.test[:20]:
        rows = data.user_rows(int(user))
        src = problem.target_row(int(user), period="source")
        tgt = problem.target_row(int(user), period="target")
        if src is not None:
            assert data.timestamps[rows.start + src] < problem.time_cut
            assert (data.timestamps[rows.start + src + 1:rows.stop] >= problem.time_cut).all()
            assert problem.tasks(int(user), period="source")[0].period == "source"
        if tgt is not None:
            assert data.timestamps[rows.start + tgt] >= problem.time_cut
            assert problem.tasks(int(user), period="target")[0].period == "target"
        else:
            assert problem.tasks(int(user), period="target") == []


def test_tasks_layout_base_views_then_copies(problem, synthetic_split) -> None:
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


def test_tasks_are_identical_whatever_the_build_order(
    synthetic_data, synthetic_split, catalog, problem
) -> None:
    again = RecProblem.build(synthetic_data, synthetic_split, catalog, problem.reward_config,
                             SplitConfig(), seed=1)
    users = list(synthetic_split.test[:10]) + list(synthetic_split.train[:10])
    for user in reversed(users):  # the other problem built them in forward order (fixture use)
        mine, theirs = again.tasks(int(user)), problem.tasks(int(user))
        assert [(t.task_id, t.candidates, t.context.items) for t in mine] == \
               [(t.task_id, t.candidates, t.context.items) for t in theirs]
    other_seed = RecProblem.build(synthetic_data, synthetic_split, catalog, problem.reward_config,
                                  SplitConfig(), seed=2)
    user = int(users[0])
    assert other_seed.tasks(user)[0].candidates != problem.tasks(user)[0].candidates


def test_accuracy_only_reward_builds_no_drift_views(synthetic_data, synthetic_split, catalog) -> None:
    plain = RecProblem.build(synthetic_data, synthetic_split, catalog, RewardConfig(robust_weight=0.0),
                             SplitConfig(), seed=1, fit_hints=False)
    assert [t.view for t in plain.tasks(int(synthetic_split.test[0]))] == ["base"]
    assert plain.hints is None
    # Without hints, templates that use them are masked.
    assert not plain.action_mask(int(synthetic_split.test[0]))[3]


def test_observation_is_user_index_and_profile_of_the_episode_context(problem, synthetic_split) -> None:
    for user in (int(synthetic_split.train[0]), int(synthetic_split.test[1])):
        obs = problem.observation(user)
        assert obs.shape == (problem.obs_dim,) and obs.dtype == np.float32
        assert obs[0] == user
        np.testing.assert_array_equal(obs[1:], problem.profile.encode(problem.tasks(user)[0].context))
        assert problem.observation(user) is obs  # cached
        assert not obs.flags.writeable
    user = int(synthetic_split.train[0])
    assert not np.array_equal(problem.observation(user), problem.observation(user, final=True))


def test_action_mask_follows_the_catalog(problem, catalog, synthetic_data) -> None:
    masks = np.stack([problem.action_mask(u) for u in range(synthetic_data.n_users)])
    assert masks.shape == (synthetic_data.n_users, len(catalog)) and masks.dtype == bool
    assert masks[:, 0].all()  # every user has 5 items
    long_ok = np.array([len(problem.tasks(u)[0].context) >= 40 for u in range(synthetic_data.n_users)])
    np.testing.assert_array_equal(masks[:, 4], long_ok)
    assert 0 < long_ok.sum() < synthetic_data.n_users


def test_requests_show_the_task_candidates(problem, synthetic_data, catalog, synthetic_split) -> None:
    user = int(synthetic_split.test[2])
    tasks = problem.tasks(user)
    requests = problem.requests(tasks, 2, sample_id=3)
    for task, request in zip(tasks, requests):
        assert request.candidate_ids == task.candidates
        assert request.candidate_texts == tuple(synthetic_data.item_text(c) for c in task.candidates)
        assert request.output_format == "title" and request.sample_id == 3
        assert request.ids == RequestIds(user=synthetic_data.user_ids[user], template="liked",
                                         task=task.task_id, view=task.view)
    recent = problem.requests(tasks, 0)
    assert recent[0].prompt != recent[2].prompt  # dropout view: another history
    assert recent[0].prompt.split("Rank:")[0] == recent[4].prompt.split("Rank:")[0]  # copy: same history
    assert recent[0].candidate_ids != recent[4].candidate_ids


def test_score_by_hand(problem, synthetic_split) -> None:
    user = int(synthetic_split.train[1])
    tasks = problem.tasks(user)
    positions = [0, 3, 12, 1, 2, 3, 0, 5]  # where each task's answer puts the target
    responses = []
    for task, pos in zip(tasks, positions):
        others = [c for c in task.candidates if c != task.target]
        responses.append(RankResponse(ranking=(*others[:pos], task.target, *others[pos:])))
    breakdown, metrics = problem.score(tasks, responses)
    views = ["base", "temporal", "dropout", "popular_negatives"]
    expected = {v: (_ndcg10(positions[i]) + _ndcg10(positions[i + 4])) / 2 for i, v in enumerate(views)}
    assert breakdown.per_view == pytest.approx(expected)
    reference = combine(expected, robust_weight=0.5)
    assert breakdown.total == pytest.approx(reference.total)
    assert breakdown.accuracy == pytest.approx(expected["base"])
    assert set(metrics) == set(views)
    assert set(metrics["base"]) == set(METRIC_NAMES)
    assert metrics["base"]["hit@1"] == pytest.approx(0.5)  # rank 0 then rank 2
    assert metrics["temporal"]["mrr"] == pytest.approx((1 / 4 + 1 / 4) / 2)
    assert metrics["dropout"]["hit@10"] == pytest.approx(0.5)
    assert expected["temporal"] == pytest.approx(view_score(
        [responses[1].ranking, responses[5].ranking], tasks[1].target))
    with pytest.raises(ValueError, match="8 tasks but 7 responses"):
        problem.score(tasks, responses[:7])


def test_run_sends_one_batch_and_scores_by_shown_position(problem, synthetic_split) -> None:
    ranker = ShownOrderRanker()
    users = np.array(synthetic_split.test[:6])
    outcomes = problem.run(users, [0] * len(users), ranker)
    assert ranker.calls == [6 * problem.calls_per_episode]
    for user, outcome in zip(users, outcomes):
        tasks = problem.tasks(int(user))
        assert outcome is not None and outcome.valid and outcome.user == user and outcome.template == 0
        assert outcome.reward.accuracy == pytest.approx(
            np.mean([_ndcg10(t.target_position) for t in tasks if t.view == "base"]))
        assert outcome.calls == 8 and outcome.cached == 4
        assert outcome.usage == TokenUsage(80, 16)
        assert outcome.parse.found == sum(len(t.candidates) for t in tasks)
        assert outcome.period == tasks[0].period


def test_invalid_template_costs_nothing_and_earns_zero(problem, synthetic_data) -> None:
    user = next(u for u in range(synthetic_data.n_users) if not problem.action_mask(u)[4])
    ranker = ShownOrderRanker()
    outcome = problem.run([user], [4], ranker)[0]
    assert ranker.calls == []
    assert outcome is not None and not outcome.valid and outcome.calls == 0
    assert outcome.reward.total == 0.0 and outcome.metrics["base"]["ndcg@10"] == 0.0
    with pytest.raises(ValueError, match=r"template index must be in 0\.\.4, got 5"):
        problem.run([user], [5], ranker)


def test_period_without_target_gives_no_outcome(problem, synthetic_data) -> None:
    user = next(u for u in range(synthetic_data.n_users) if problem.target_row(u, period="target") is None)
    ranker = ShownOrderRanker()
    assert problem.run([user], [0], ranker, period="target") == [None]
    assert ranker.calls == []


@pytest.mark.parametrize(
    ("reward", "message"),
    [
        (RewardConfig(views=("temporal", "weekly")), "reward.views: unknown drift view 'weekly'"),
        (RewardConfig(metric="precision@5"), "reward.metric: unknown metric 'precision@5'"),
        (RewardConfig(robust_weight=1.5), r"reward.robust_weight must be in \[0, 1\], got 1.5"),
        (RewardConfig(bootstrap=0), "reward.bootstrap must be >= 1, got 0"),
        (RewardConfig(views=("dropout", "dropout")), "distinct drift views"),
    ],
)
def test_bad_reward_settings_fail_with_the_key(synthetic_data, catalog, reward, message) -> None:
    split = split_users(synthetic_data, seed=0)
    with pytest.raises(ConfigError, match=message):
        RecProblem.build(synthetic_data, split, catalog, reward, SplitConfig(), seed=0, fit_hints=False)


def test_repeated_pairs_never_leak_a_target(catalog) -> None:
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
    problem = RecProblem.build(data, split, catalog, reward, SplitConfig(n_negatives=9), seed=0)
    assert problem.train_mask.sum() > 0
    for user in range(data.n_users):
        rows_ = data.user_rows(user)
        learned = set(data.items[rows_][problem.train_mask[rows_]].tolist())
        for kwargs in ({}, {"final": True}, {"period": "source"}):
            for task in problem.tasks(user, **kwargs):
                assert task.target not in task.context.items, task.task_id
                assert task.target not in learned, task.task_id
