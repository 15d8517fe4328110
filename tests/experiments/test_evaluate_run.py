"""The paired sign-flip test of the evaluation protocol (scipy.stats.permutation_test)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from promptopt.experiments.evaluate_run import sign_flip_p_value


def _exact(diff: np.ndarray) -> float:
    """Share of all 2^n sign patterns whose |mean| reaches the observed one."""
    observed = abs(diff.mean())
    means = [abs((np.array(s) * diff).mean()) for s in itertools.product((-1.0, 1.0), repeat=diff.size)]
    return float(np.mean(np.array(means) >= observed - 1e-12))


def _reference(diff: np.ndarray, n_resamples: int, seed: int) -> float:
    """The hand-written Monte-Carlo sign-flip test scipy replaced."""
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(n_resamples, diff.size))
    hits = int((np.abs((signs * diff).mean(axis=1)) >= abs(diff.mean()) - 1e-15).sum())
    return (1 + hits) / (1 + n_resamples)


def test_small_samples_get_the_exact_p_value() -> None:
    diff = np.array([0.1, -0.2, 0.3, 0.05, 0.4, 0.0, 0.2, 0.15])  # 2^8 = 256 patterns <= resamples
    assert sign_flip_p_value(diff) == pytest.approx(_exact(diff), abs=1e-12)
    assert sign_flip_p_value(diff, seed=5) == sign_flip_p_value(diff, seed=9)  # exact: no randomness


def test_large_samples_agree_with_the_hand_written_test_within_monte_carlo_error() -> None:
    rng = np.random.default_rng(1)
    for shift in (0.0, 0.05, 0.1):
        diff = rng.normal(shift, 0.3, 40)
        ours = sign_flip_p_value(diff, n_resamples=20000, seed=0)
        ref = np.mean([_reference(diff, 20000, seed) for seed in range(3)])
        assert abs(ours - ref) < 4 * np.sqrt(ref * (1 - ref) / 20000) * 2 + 1e-3, (shift, ours, ref)


def test_degenerate_inputs() -> None:
    assert sign_flip_p_value(np.zeros(12)) == 1.0
    assert sign_flip_p_value(np.array([])) == 1.0
    assert sign_flip_p_value(np.full(30, 0.2)) < 1e-3  # every user better: as small as the test allows
