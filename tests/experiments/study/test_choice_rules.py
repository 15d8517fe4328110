"""The study's choice rules: the gate and its threshold, the bootstrap, per-user and ridge choices."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from experiments.study.choice_rules import (
    CountingRanker,
    PerUserChoiceSelector,
    bootstrap_bounds,
    choose_gate_threshold,
    confirm_top2,
    gate_choices,
    realistic_choices,
    ridge_choices,
)


def test_gate_never_deviates_without_validated_gain() -> None:
    probs = np.array([[0.2, 0.8], [0.9, 0.1], [0.3, 0.7]])
    assert gate_choices(probs, 0, 0.5).tolist() == [1, 0, 0]
    assert gate_choices(probs, 0, float("inf")).tolist() == [0, 0, 0]
    worse = np.array([[0.5, 0.1], [0.5, 0.5], [0.5, 0.2]])
    assert choose_gate_threshold(probs, 0, worse, [0.1, 0.5], seed=0) == float("inf")
    better = np.tile(np.array([[0.1, 0.9]]), (3, 1))
    assert choose_gate_threshold(np.tile(probs[:1], (3, 1)), 0, better, [0.1, 0.9], seed=0) == 0.1


def test_gate_keeps_the_threshold_with_the_larger_validated_gain() -> None:
    # Users 0-99 gain 0.2 from deviating; users 100-199 lose 0.1. A low threshold lets everyone
    # deviate (mean gain +0.05), a high one only the confident first half (+0.1); both pass.
    probs = np.array([[0.05, 0.95]] * 100 + [[0.4, 0.6]] * 100)
    scores = np.array([[0.5, 0.7]] * 100 + [[0.5, 0.4]] * 100)
    assert choose_gate_threshold(probs, 0, scores, [0.1], seed=0) == 0.1
    assert choose_gate_threshold(probs, 0, scores, [0.1, 0.5], seed=0) == 0.5


def test_bootstrap_bounds_is_the_percentile_bootstrap_of_the_mean() -> None:
    x = np.random.default_rng(1).normal(0.3, 1.0, size=40)
    means = x[np.random.default_rng(7).integers(0, x.size, (500, x.size))].mean(axis=1)
    low, high = bootstrap_bounds(x, n_resamples=500, seed=7)
    assert np.isclose(low, np.quantile(means, 0.025), atol=1e-12)
    assert np.isclose(high, np.quantile(means, 0.975), atol=1e-12)
    assert low < x.mean() < high
    assert bootstrap_bounds([0.25]) == (0.25, 0.25)
    assert all(np.isnan(bootstrap_bounds([])))
    assert all(np.isnan(bootstrap_bounds([1.0, np.nan, 2.0])))


def test_realistic_choice_is_the_best_on_earlier_targets_ties_by_order() -> None:
    users = np.array([7, 8, 9])
    first = np.array([[0.1, 0.9, 0.2], [0.5, 0.5, np.nan], [np.nan, np.nan, np.nan]])
    second = np.array([[0.3, 0.7, np.nan], [0.5, 0.5, 0.1], [np.nan, np.nan, np.nan]])
    choices = realistic_choices([first, second], users, order=[2, 1, 0])
    # User 8 ties templates 0 and 1: the order prefers 1; user 9 has no earlier target: order[0].
    assert choices == {7: 1, 8: 1, 9: 2}
    selector = PerUserChoiceSelector("realistic", choices, default=0)
    assert selector.select(np.array([9, 7, 100])).tolist() == [2, 1, 0]


def test_ridge_deviates_only_where_the_predicted_gain_passes_the_margin() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    # Template 1 gains where feature 0 is positive; template 0 never gains; one column unknown.
    gains = np.stack([np.full(200, -0.1), 0.3 * (x[:, 0] > 0) - 0.05, np.full(200, np.nan)], axis=1)
    x_eval = np.array([[2.0, 0.0], [-2.0, 0.0]])
    assert ridge_choices(x, gains, x_eval, margin=0.05).tolist() == [1, -1]
    assert ridge_choices(x, gains, x_eval, margin=10.0).tolist() == [-1, -1]


def test_confirmation_spends_at_most_the_budget_and_picks_the_better_of_the_top_two(
    tmp_path: Path, study_yaml: Callable[..., Path]
) -> None:
    from experiments.assembly import build_problem, make_run_ranker
    from experiments.study.config import load_study

    config, _ = load_study(study_yaml(tmp_path))
    _, _, _, problem = build_problem(config)
    counter = CountingRanker(make_run_ranker(config, problem))
    train = problem.pool("train")
    pool = train[:5]
    per_user = 2 * problem.calls_per_episode
    cap = per_user * 12 + 1  # room for about 12 users with both templates
    winner, info = confirm_top2(problem, counter, np.array([0.1, 0.5, 0.1, 0.3]), pool, train, cap, seed=0)
    assert info["confirm_top2"] == [1, 3] and winner in (1, 3)
    assert per_user * 5 <= counter.calls <= cap and 5 <= info["confirm_users"] < train.size
    assert counter.requests >= counter.calls  # requests repeated across templates' views count once
    means = dict(zip(info["confirm_top2"], info["confirm_means"]))
    assert means[winner] == max(means.values())
