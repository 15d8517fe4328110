"""EpisodeRunner: the one batching loop — one rank call, the exact request count, scored per episode."""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.llm.types import TokenUsage
from promptopt.runner import Episode
from tests.promptopt.conftest import ShownOrderRanker, ndcg10


def test_run_sends_one_batch_and_scores_by_shown_position(robust_problem, synthetic_split) -> None:
    problem = robust_problem
    ranker = ShownOrderRanker()
    users = np.array(synthetic_split.test[:6])
    outcomes = problem.run(users, [0] * len(users), ranker)
    assert ranker.calls == [6 * problem.calls_per_episode]
    for user, outcome in zip(users, outcomes):
        tasks = problem.tasks(int(user))
        assert outcome is not None and outcome.valid and outcome.user == user and outcome.template == 0
        assert outcome.reward.accuracy == pytest.approx(
            np.mean([ndcg10(t.target_position) for t in tasks if t.view == "base"]))
        assert outcome.calls == 8 and outcome.cached == 4
        assert outcome.usage == TokenUsage(80, 16)
        assert outcome.parse.found == sum(len(t.candidates) for t in tasks)
        assert outcome.period == tasks[0].period


def test_mixed_episodes_go_out_in_one_call_of_exactly_their_requests(
    robust_problem, synthetic_data, synthetic_split
) -> None:
    problem = robust_problem
    a, b = (int(u) for u in synthetic_split.train[:2])
    test = int(synthetic_split.test[0])
    no_target = next(int(u) for u in synthetic_split.test
                     if problem.target_row(int(u), period="target") is None)
    short = next(u for u in range(synthetic_data.n_users) if not problem.action_mask(u)[4])
    row = synthetic_data.history_length(b) - 4
    episodes = [
        Episode(a, 0),
        Episode(b, 1, sample_id=2, row=row),
        Episode(no_target, 0, period="target"),  # no target in the period: nothing sent
        Episode(short, 4),  # a template the user cannot fill: nothing sent
        Episode(test, 2, final=True),
        Episode(a, 0, sample_id=1),
    ]
    ranker = ShownOrderRanker()
    outcomes = problem.run_episodes(episodes, ranker)
    per = problem.calls_per_episode
    assert ranker.calls == [4 * per]  # ONE call holding exactly the four sendable episodes' requests
    expected = (problem.requests(problem.tasks(a), 0)
                + problem.requests(problem.tasks(b, row=row), 1, sample_id=2)
                + problem.requests(problem.tasks(test, final=True), 2)
                + problem.requests(problem.tasks(a), 0, sample_id=1))
    assert ranker.sent == expected
    assert outcomes[2] is None
    assert outcomes[3] is not None and not outcomes[3].valid and outcomes[3].calls == 0
    for i in (0, 1, 4, 5):
        assert outcomes[i].valid and outcomes[i].calls == per
    assert outcomes[1].metrics["base"]["ndcg@10"] == pytest.approx(
        np.mean([ndcg10(t.target_position) for t in problem.tasks(b, row=row) if t.view == "base"]))
    assert outcomes[0].reward == outcomes[5].reward  # the answer ignores the sample id


def test_a_wrong_response_count_is_an_error(robust_problem, synthetic_split) -> None:
    users = synthetic_split.test[:2]
    n = 2 * robust_problem.calls_per_episode
    with pytest.raises(ValueError, match=f"ranker returned {n - 1} responses for {n} requests"):
        robust_problem.run(users, [0, 0], ShownOrderRanker(drop=1))
    user = int(users[0])
    n = int(robust_problem.action_mask(user).sum()) * 2 * robust_problem.calls_per_episode
    with pytest.raises(ValueError, match=f"ranker returned {n - 1} responses for {n} requests"):
        robust_problem.expected_rewards([user], ShownOrderRanker(drop=1), samples=2)


def test_invalid_template_costs_nothing_and_earns_zero(robust_problem, synthetic_data) -> None:
    problem = robust_problem
    user = next(u for u in range(synthetic_data.n_users) if not problem.action_mask(u)[4])
    ranker = ShownOrderRanker()
    outcome = problem.run([user], [4], ranker)[0]
    assert ranker.calls == []
    assert outcome is not None and not outcome.valid and outcome.calls == 0
    assert outcome.reward.total == 0.0 and outcome.metrics["base"]["ndcg@10"] == 0.0
    assert outcome.period == problem.builder.period(user, problem.target_row(user))
    with pytest.raises(ValueError, match=r"template index must be in 0\.\.4, got 5"):
        problem.run([user], [5], ranker)


def test_period_without_target_gives_no_outcome(robust_problem, synthetic_data) -> None:
    problem = robust_problem
    user = next(u for u in range(synthetic_data.n_users) if problem.target_row(u, period="target") is None)
    ranker = ShownOrderRanker()
    assert problem.run([user], [0], ranker, period="target") == [None]
    assert ranker.calls == []


def test_expected_rewards_use_the_one_loop(robust_problem, synthetic_split) -> None:
    problem = robust_problem
    users = np.array(synthetic_split.val[:3])
    ranker = ShownOrderRanker()
    expected = problem.expected_rewards(users, ranker, samples=3)
    valid = sum(int(problem.action_mask(int(u)).sum()) for u in users)
    assert ranker.calls == [valid * 3 * problem.calls_per_episode]
    assert sorted({r.sample_id for r in ranker.sent}) == [0, 1, 2]
    for i, user in enumerate(users):
        mask = problem.action_mask(int(user))
        assert np.isnan(expected[i][~mask]).all()
        # The shown-order answer ignores the sample: the mean is one sample's reward.
        once = problem.run([int(user)] * int(mask.sum()), np.flatnonzero(mask), ShownOrderRanker())
        np.testing.assert_allclose(expected[i][mask], [o.reward.total for o in once])
    with pytest.raises(ValueError, match="samples must be >= 1, got 0"):
        problem.expected_rewards(users, ranker, samples=0)
