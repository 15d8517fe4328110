"""The dry-run estimate: counts match the protocol, bound what a real run sends, and call nothing."""

from __future__ import annotations

import sqlite3

import pytest

from promptopt.config import load_config
from promptopt.experiments.estimate_cost import approx_tokens, estimate, expected_distinct, format_estimate


def test_expected_distinct_draws() -> None:
    assert expected_distinct(100, 0) == 0
    assert expected_distinct(100, 1) == 1
    assert expected_distinct(1, 50) == 1
    assert 60 <= expected_distinct(100, 100) <= 64  # 100 (1 - 1/e) = 63.2
    assert expected_distinct(10, 10_000) == 10
    assert approx_tokens("x" * 9) == 3


@pytest.mark.slow
def test_estimate_counts_phases_and_bounds_a_real_run(tmp_path, tiny_config) -> None:
    from promptopt.experiments import assembly, pipeline

    path = tiny_config(tmp_path, policy={"kind": "mlp"}, reward={"robust_weight": 0.3, "views": ["temporal"]},
                       eval={"selectors": ["random", "best_fixed", "policy", "oracle"]})
    config = load_config(path)
    est = estimate(config, sample=40)
    assert not (tmp_path / "cache.sqlite").exists(), "the estimate must not call the ranker"
    _, split, catalog, _ = assembly.build_problem(config)
    n_t, cpe = len(catalog), 2
    assert (est.n_templates, est.calls_per_episode) == (n_t, cpe)
    phases = {p.phase: p for p in est.phases}
    assert phases["PPO training (policy)"].requests == config.ppo.total_timesteps * cpe
    assert phases["training-budget scan"].distinct == len(split.train) * n_t * cpe
    assert phases["gate validation"].distinct == len(split.val) * 2 * cpe
    assert phases["evaluation (oracle)"].distinct == len(split.test) * n_t * cpe * 3
    assert est.prompt_tokens > 0 and est.completion_tokens == 0  # the simulated ranker only scores
    assert "total (shared answers counted once)" in format_estimate(est)
    pipeline.run_all(config, tmp_path / "run")
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        sent = db.execute("select count(*) from answers").fetchone()[0]
    assert 0 < sent <= est.distinct_total


def test_estimate_warns_when_it_exceeds_the_budget(tmp_path, tiny_config, capsys) -> None:
    """`promptopt estimate` says which cap the run may reach, and says nothing when all fit."""
    from promptopt.experiments.cli import main

    path = tiny_config(tmp_path, policy={"kind": "mlp"})
    assert main(["estimate", str(path), "--sample", "20", "--budget.max_calls=70"]) == 0
    out = capsys.readouterr().out
    est = estimate(load_config(path), sample=20)
    assert est.distinct_total > 70
    assert (f"warning: the run may need up to {est.distinct_total:,} uncached calls, more than "
            "budget.max_calls=70") in out
    big = est.distinct_total + est.prompt_tokens + 10
    assert main(["estimate", str(path), "--sample", "20", f"--budget.max_calls={big}",
                 f"--budget.max_tokens={big}"]) == 0
    out = capsys.readouterr().out
    assert "warning" not in out and f"budget: within every cap (max_calls={big}, max_tokens={big})" in out


@pytest.mark.slow
def test_the_default_scan_and_the_paired_baseline_are_counted(tmp_path, tiny_config) -> None:
    """env.reward_baseline=default and policy.warm_start rank a default before training: counted."""
    from promptopt.experiments import assembly, pipeline

    path = tiny_config(tmp_path, policy={"kind": "mlp", "warm_start": 0.5},
                       env={"reward_baseline": "default", "default_scan_users": 8},
                       eval={"selectors": ["best_fixed", "policy"], "fixed_users": 4})
    config = load_config(path)
    (tmp_path / "plain").mkdir()
    plain = estimate(load_config(tiny_config(tmp_path / "plain", policy={"kind": "mlp"},
                                             eval={"selectors": ["best_fixed", "policy"], "fixed_users": 4})),
                     sample=20)
    est = estimate(config, sample=20)
    _, split, catalog, problem = assembly.build_problem(config)
    phases = {p.phase: p for p in est.phases}
    scan = phases["default scan (paired reward / warm start)"]
    assert (scan.users, scan.distinct) == (8, 8 * len(catalog) * problem.calls_per_episode)
    paired = phases["paired baseline (policy)"]
    assert paired.requests == config.ppo.total_timesteps * problem.calls_per_episode
    assert 0 < paired.distinct <= len(split.train) * problem.calls_per_episode
    assert "default scan" not in {p.phase for p in plain.phases}
    assert est.distinct_total > plain.distinct_total
    pipeline.run_all(config, tmp_path / "run")
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        sent = db.execute("select count(*) from answers").fetchone()[0]
    assert 0 < sent <= est.distinct_total
