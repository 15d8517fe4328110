"""Target 4: source- and target-period scores, their change and robust minus accuracy, paired over users."""

from __future__ import annotations

from typing import Any

import numpy as np

from promptopt.experiments.study.markdown import drift_section
from promptopt.experiments.study.pooled import PooledResults
from promptopt.experiments.study.targets import drift_reduction


def _cell(values: dict[int, float]) -> dict[str, Any]:
    return {"users": list(values), "templates": [0] * len(values),
            "per_user": {"ndcg@10": list(values.values())}}


def _run(rng: np.random.Generator) -> tuple[dict[str, Any], dict[tuple[str, str], dict[int, float]]]:
    """One seed: users 0..59 in both periods, user 60 only in the source period, 61 only in the target."""
    values: dict[tuple[str, str], dict[int, float]] = {}
    for reward, fall in (("accuracy", 0.3), ("robust", 0.1)):
        values[(reward, "source")] = {u: 0.7 + 0.05 * rng.standard_normal() for u in range(61)}
        values[(reward, "target")] = {u: 0.7 - fall + 0.05 * rng.standard_normal()
                                      for u in [*range(60), 61]}
    rewards = {r: {"results": {p: {"policy": _cell(values[(r, p)])} for p in ("source", "target")}}
               for r in ("accuracy", "robust")}
    return {"seeds": [{"rewards": rewards}]}, values


def test_changes_and_gains_are_paired_over_the_users_with_both_periods() -> None:
    run, values = _run(np.random.default_rng(0))
    drift = drift_reduction(PooledResults(run))
    assert list(drift) == ["policy"]  # selectors without results are left out
    cell = drift["policy"]
    assert cell["n_users"] == 60
    users = range(60)

    def mean(reward: str, period: str) -> float:
        return float(np.mean([values[(reward, period)][u] for u in users]))

    for reward in ("accuracy", "robust"):
        assert np.isclose(cell[reward]["source"][0], mean(reward, "source"))
        assert np.isclose(cell[reward]["change"][0], mean(reward, "target") - mean(reward, "source"))
        low, high = cell[reward]["change"][1:]
        assert low <= cell[reward]["change"][0] <= high
    # The planted falls: accuracy -0.3, robust -0.1: the robust reward falls less, and wins where deployed.
    assert cell["accuracy"]["change"][2] < -0.25 and cell["robust"]["change"][1] > -0.15
    assert np.isclose(cell["reduction"][0], cell["robust"]["change"][0] - cell["accuracy"]["change"][0])
    assert cell["reduction"][1] > 0.1 and cell["target_gain"][1] > 0.1
    assert np.isclose(cell["target_gain"][0], mean("robust", "target") - mean("accuracy", "target"))
    lines = "\n".join(drift_section(drift, "deploy"))
    assert "## 4. Drift (test users, protocol deploy)" in lines
    assert "first from the cut on" in lines and "| 60 |" in lines


def test_no_user_in_both_periods_reports_nothing() -> None:
    run, _ = _run(np.random.default_rng(1))
    for reward in ("accuracy", "robust"):
        run["seeds"][0]["rewards"][reward]["results"]["target"]["policy"] = _cell({61: 0.5})
    assert drift_reduction(PooledResults(run)) == {}
