"""Contextual bandits: ridge statistics, exploration rules, masks, and online fitting on the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.bandits import EpsilonGreedySelector, LinUCBSelector, _masked_argmax


def _feed(bandit, x: np.ndarray, arms: np.ndarray, rewards: np.ndarray) -> None:
    bandit._reset(x.shape[1] + 1)
    bandit._update(x, arms, rewards)


def test_sherman_morrison_updates_match_the_ridge_solution():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    arms = rng.integers(0, 3, size=60)
    rewards = rng.normal(size=60)
    bandit = LinUCBSelector(3, ridge=0.5)
    _feed(bandit, x, arms, rewards)
    xb = np.concatenate([x, np.ones((60, 1))], axis=1)
    for arm in range(3):
        rows = xb[arms == arm]
        a = 0.5 * np.eye(5) + rows.T @ rows
        np.testing.assert_allclose(bandit.A_inv[arm], np.linalg.inv(a), rtol=1e-8, atol=1e-10)
        expected = np.linalg.solve(a, rows.T @ rewards[arms == arm])
        np.testing.assert_allclose(bandit.theta()[arm], expected, rtol=1e-8, atol=1e-10)
    assert bandit.pulls.tolist() == np.bincount(arms, minlength=3).tolist()


def test_linucb_bonus_favours_the_less_explored_template():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3))
    bandit = LinUCBSelector(2, alpha=2.0)
    # Both templates earn 0.5 on average, but template 0 has been tried 39 times, template 1 once.
    _feed(bandit, x, np.array([0] * 39 + [1]), np.full(40, 0.5))
    probe = rng.normal(size=(5, 3))
    bounds = bandit.upper_bounds(probe)
    assert (bounds[:, 1] > bounds[:, 0]).all()
    assert (bandit._explore(probe, np.ones((5, 2), bool), rng) == 1).all()
    # Without the bonus the choice follows the estimates only.
    greedy = LinUCBSelector(2, alpha=0.0)
    _feed(greedy, x, np.array([0] * 39 + [1]), np.r_[np.full(39, 0.9), 0.1])
    assert (greedy._explore(probe, np.ones((5, 2), bool), rng) == 0).all()


def test_epsilon_greedy_explores_at_the_stated_rate_and_only_valid_templates():
    rng = np.random.default_rng(2)
    bandit = EpsilonGreedySelector(4, epsilon=0.3)
    x = rng.normal(size=(20, 2))
    _feed(bandit, x, np.zeros(20, dtype=int), np.ones(20))  # template 0 looks best
    masks = np.ones((4000, 4), bool)
    masks[:, 3] = False
    arms = bandit._explore(rng.normal(size=(4000, 2)), masks, rng)
    assert not (arms == 3).any()
    share_other = (arms != 0).mean()
    assert share_other == pytest.approx(0.3 * 2 / 3, abs=0.03)


def test_masked_argmax_never_picks_a_masked_template():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.1]])
    masks = np.array([[False, True, True], [False, False, False]])
    assert _masked_argmax(scores, masks).tolist() == [2, 1]  # a row with no valid entry uses all


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="epsilon"):
        EpsilonGreedySelector(3, epsilon=1.5)
    with pytest.raises(ValueError, match="alpha"):
        LinUCBSelector(3, alpha=-1)
    with pytest.raises(ValueError, match="ridge"):
        LinUCBSelector(3, ridge=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        LinUCBSelector(3).select(np.array([0]))


# ---------------------------------------------------------------------- online fitting on the simulator


@pytest.fixture(scope="module")
def problem_and_ranker(synthetic_data, synthetic_split, tmp_path_factory):
    from promptopt.config import RewardConfig, SplitConfig
    from promptopt.llm.cache import CachedRanker
    from promptopt.llm.simulated import SimulatedRanker
    from promptopt.problem import RecProblem
    from promptopt.templates import TemplateCatalog

    catalog = TemplateCatalog.load("movies")
    problem = RecProblem.build(synthetic_data, synthetic_split, catalog, RewardConfig(), SplitConfig(),
                               seed=0)
    simulator = SimulatedRanker(synthetic_data, catalog, seed=0)
    cached = CachedRanker(simulator, tmp_path_factory.mktemp("bandits") / "cache.sqlite")
    yield problem, simulator, cached
    cached.close()


def _all_users(problem) -> np.ndarray:
    split = problem.split
    return np.concatenate([split.train, split.val, split.test])


def test_bandit_features_are_standardised_embeddings_then_profile(problem_and_ranker):
    from promptopt.bandits import bandit_features

    problem, _, _ = problem_and_ranker
    users = _all_users(problem)
    emb = np.random.default_rng(0).normal(3.0, 2.0, size=(problem.data.n_users, 4))
    table = bandit_features(problem, users, emb)
    assert table.shape == (problem.data.n_users, 4 + problem.obs_dim - 1)
    np.testing.assert_allclose(table[users, :4].mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(table[users, :4].std(0), 1.0, atol=1e-6)
    np.testing.assert_array_equal(table[users[0], 4:], problem.observation(int(users[0]))[1:])
    assert bandit_features(problem, users).shape == (problem.data.n_users, problem.obs_dim - 1)
    with pytest.raises(ValueError, match="rows"):
        bandit_features(problem, users, emb[:5])


def test_linucb_learns_online_with_the_stated_number_of_episodes(problem_and_ranker):
    from promptopt.bandits import bandit_features

    problem, simulator, cached = problem_and_ranker
    features = bandit_features(problem, _all_users(problem))
    before = cached.stats
    bandit = LinUCBSelector(problem.n_templates, alpha=0.5, batch_size=10).fit(
        problem, cached, problem.split.train, features, steps=1500, seed=0)
    spent = cached.stats.hits + cached.stats.misses - before.hits - before.misses
    assert spent == 1500 * problem.calls_per_episode
    assert bandit.pulls.sum() == 1500 and len(bandit.rewards) == 1500
    users = problem.split.train
    chosen = bandit.select(users)
    masks = np.stack([problem.action_mask(int(u)) for u in users])
    assert masks[np.arange(users.size), chosen].all()
    learned = np.mean([simulator.expected_quality(int(u), int(t)) for u, t in zip(users, chosen)])
    rng = np.random.default_rng(0)
    random = np.mean([simulator.expected_quality(int(u), int(rng.choice(np.flatnonzero(m))))
                      for u, m in zip(users, masks)])
    assert learned > random + 0.05
    # The second half of training earns more than the first: it learned while it went.
    assert np.mean(bandit.rewards[750:]) > np.mean(bandit.rewards[:750])


def test_epsilon_greedy_fit_is_seeded(problem_and_ranker):
    from promptopt.bandits import bandit_features

    problem, simulator, _ = problem_and_ranker
    features = bandit_features(problem, _all_users(problem))
    thetas = [EpsilonGreedySelector(problem.n_templates, epsilon=0.2).fit(
        problem, simulator, problem.split.train, features, steps=200, seed=seed).theta()
        for seed in (1, 1, 2)]
    np.testing.assert_array_equal(thetas[0], thetas[1])
    assert not np.array_equal(thetas[0], thetas[2])


def test_fit_checks_its_inputs(problem_and_ranker):
    problem, simulator, _ = problem_and_ranker
    bandit = LinUCBSelector(problem.n_templates)
    good = np.zeros((problem.data.n_users, 3))
    with pytest.raises(ValueError, match="features must be"):
        bandit.fit(problem, simulator, problem.split.train, good[:4], steps=10)
    with pytest.raises(ValueError, match="steps"):
        bandit.fit(problem, simulator, problem.split.train, good, steps=0)
    with pytest.raises(ValueError, match="templates"):
        LinUCBSelector(3).fit(problem, simulator, problem.split.train, good, steps=10)
