"""Pooling over seeds and the report's intervals."""

from __future__ import annotations

from typing import Any

import numpy as np

from promptopt.experiments.study.pooled import PooledResults, difference_of_means_bounds, mean_interval


def _seed(per_user: dict[str, dict[int, float]]) -> dict[str, Any]:
    last = {
        name: {
            "users": list(values),
            "templates": [0] * len(values),
            "per_user": {"ndcg@10": list(values.values())},
        }
        for name, values in per_user.items()
    }
    return {"rewards": {"accuracy": {"results": {"last": last}}}}


def test_a_users_pooled_value_is_its_mean_over_seeds_and_pairs_use_common_users() -> None:
    run = {
        "seeds": [
            _seed({"policy": {1: 0.2, 2: 0.4}, "best_fixed": {1: 0.1, 2: 0.1, 3: 0.9}}),
            _seed({"policy": {1: 0.6, 2: 0.8}, "best_fixed": {1: 0.3, 2: 0.1, 3: 0.7}}),
        ]
    }
    pooled = PooledResults(run)
    values = pooled.values("accuracy", "last", "policy")
    assert values.keys() == {1, 2} and np.allclose([values[1], values[2]], [0.4, 0.6])
    assert pooled.values("accuracy", "last", "policy", seeds=[1]) == {1: 0.6, 2: 0.8}
    mean, low, high = pooled.paired("accuracy", "last", "policy", "best_fixed")
    assert np.isclose(mean, np.mean([0.4 - 0.2, 0.6 - 0.1]))  # user 3 has no policy value
    assert low <= mean <= high
    assert pooled.values("accuracy", "source", "policy") == {}
    assert all(np.isnan(pooled.mean("accuracy", "source", "policy")))


def test_difference_of_means_resamples_each_sample_independently() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 1.0, 30), rng.normal(0.0, 1.0, 20)
    draws = np.random.default_rng(0)
    i, j = draws.integers(0, a.size, (2000, a.size)), draws.integers(0, b.size, (2000, b.size))
    resampled = a[i].mean(axis=1) - b[j].mean(axis=1)
    low, high = difference_of_means_bounds(a, b)
    assert np.isclose(low, np.quantile(resampled, 0.025), atol=1e-12)
    assert np.isclose(high, np.quantile(resampled, 0.975), atol=1e-12)
    low, high = difference_of_means_bounds(a, b[:1])
    assert low < a.mean() - b[0] < high
    assert all(np.isnan(mean_interval([])))  # an empty selector has no interval


def test_a_study_json_of_the_old_names_reads_as_the_cli_names() -> None:
    """Before the names were aligned, ``policy`` was the raw argmax and ``policy_safe`` the gate."""
    from promptopt.experiments.study.pooled import current_attempt, current_names

    old = {"seeds": [_seed({"policy": {1: 0.2}, "policy_safe": {1: 0.5}, "best_fixed": {1: 0.4}})]}
    pooled = PooledResults(old)
    assert pooled.values("accuracy", "last", "policy") == {1: 0.5}
    assert pooled.values("accuracy", "last", "policy_raw") == {1: 0.2}
    assert pooled.values("accuracy", "last", "policy_safe") == {}
    assert "policy_safe" in old["seeds"][0]["rewards"]["accuracy"]["results"]["last"]  # not modified
    new = {"seeds": [_seed({"policy_raw": {1: 0.2}, "policy": {1: 0.5}})]}
    assert current_names(new) == new
    line = {"t1": {"accuracy/policy_safe": [1, 0, 2], "accuracy/policy": [3, 2, 4]},
            "t4": {"policy_safe": [5]}}
    assert current_attempt(line) == {"t1": {"accuracy/policy": [1, 0, 2], "accuracy/policy_raw": [3, 2, 4]},
                                     "t4": {"policy": [5]}}
    current = {"t1": {"accuracy/policy": [1, 0, 2]}, "t4": {}}
    assert current_attempt(current) == current
