"""The study's own choice rules: the bootstrap, per-user and ridge choices.

The safe policy's gate is library code: ``tests/promptopt/test_safe_policy.py``.
"""

from __future__ import annotations

import numpy as np

from promptopt.experiments.study.choice_rules import (
    PerUserChoiceSelector,
    bootstrap_bounds,
    realistic_choices,
    ridge_choices,
)


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
