"""The safe policy of a run: every selector falls back for short histories; ``policy`` is not inferior.

One tiny run (synthetic users with short histories, templates needing 5, 10 and 50 history items,
the simulated ranker): train validates the rule on validation users, then every selector the factory
builds is checked on every user and period, with the rule as trained and with the music failure
forced (a default that needs more history than most users have), and the evaluation's paired
difference of ``policy`` and ``best_fixed`` on test users must have a lower bound above -0.01.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from promptopt.config import load_config
from promptopt.experiments import assembly, pipeline, safe_run
from promptopt.experiments.rundir import RunDir
from promptopt.experiments.selector_factory import SelectorFactory
from promptopt.selector_names import SELECTOR_NAMES
from tests.experiments.conftest import tiny_config_dict

TEMPLATES = ["expert.recent5.none.index", "expert.recent10.none.index", "expert.recent50.none.index",
             "expert.genres10.none.index"]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> tuple[Any, Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("short")
    raw = tiny_config_dict(tmp, data={"synthetic": {"n_users": 100, "n_items": 120, "n_genres": 8,
                                                    "mean_history": 12, "seed": 5}},
                           templates={"catalog": "movies", "include": TEMPLATES},
                           split={"min_history": 3},
                           eval={"selectors": list(SELECTOR_NAMES)})  # the optional ones too
    path = tmp / "short.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    run_dir = pipeline.train(config, tmp / "run")
    metrics = pipeline.evaluate(run_dir)
    return config, run_dir, metrics


def _check_every_selector(factory: SelectorFactory, problem: Any, users: np.ndarray) -> None:
    for name in factory.names():
        for period in (None, "source", "target"):
            choices = factory(name, period).select(users)
            for user, choice in zip(users, choices):
                mask = problem.action_mask(int(user), period=period)
                if mask.any():
                    assert mask[choice], (name, period, int(user), problem.catalog.ids[int(choice)])


@pytest.mark.slow
def test_no_selector_picks_a_template_a_short_history_cannot_fill(short_run) -> None:
    config, run_dir, metrics = short_run
    _data, _split, _catalog, problem = assembly.build_problem(config)
    users = np.concatenate([problem.pool("val"), problem.pool("test")])
    long_only = problem.catalog.index_of("expert.recent50.none.index")
    short = [int(u) for u in users if not problem.action_mask(int(u))[problem.catalog.index_of(TEMPLATES[1])]]
    assert short, "the fixture must hold users who cannot fill a 10-item template"
    assert not all(problem.action_mask(int(u))[long_only] for u in users)
    ranker = assembly.make_run_ranker(config, problem)
    try:
        run = RunDir(run_dir)
        _check_every_selector(SelectorFactory(config, problem, ranker, run), problem, users)
        # The music failure forced: the ranked list's head needs 50 items, which most users lack.
        rule = safe_run.require_rule(run)
        order = ("expert.recent50.none.index", *(t for t in rule.order if t != "expert.recent50.none.index"))
        forced = SelectorFactory(config, problem, ranker, run, rule=dataclasses.replace(rule, order=order))
        _check_every_selector(forced, problem, users)
        fixed = forced("best_fixed").select(users)
        can = np.array([problem.action_mask(int(u))[long_only] for u in users])
        assert (fixed[can] == long_only).all() and (fixed[~can] != long_only).all()
        assert (forced("policy").select(users)[~can] != long_only).all()
    finally:
        ranker.close()
    methods = metrics["evaluation"]["methods"]
    assert list(methods) == list(SELECTOR_NAMES)
    assert {name: m["invalid"] for name, m in methods.items()} == dict.fromkeys(SELECTOR_NAMES, 0)


@pytest.mark.slow
def test_the_default_policy_is_not_inferior_to_the_best_fixed_template(short_run) -> None:
    config, _run_dir, metrics = short_run
    rule = metrics["safe_policy"]
    evaluation = metrics["evaluation"]
    paired = evaluation["paired"]
    assert (paired["a"], paired["b"], evaluation["split"]) == ("policy", "best_fixed", "test")
    assert paired["low"] > -0.01, paired
    # The gate was validated on validation users only and deviates only where it was accepted.
    assert rule["split"] == "val" and rule["n_users"] == len(rule["users"]) > 0
    usage = evaluation["methods"]["policy"]["template_usage"]
    if rule["threshold"] is None:
        assert paired["mean_diff"] == 0.0 and paired["losses"] == 0
        assert usage == evaluation["methods"]["best_fixed"]["template_usage"]
    else:
        assert rule["low"] > 0 and any(c["accepted"] for c in rule["checks"])
    assert config.gate.thresholds == tuple(c["threshold"] for c in rule["checks"])


@pytest.mark.slow
def test_the_summary_prints_the_policy_row_and_its_paired_interval_on_test_users(short_run, capsys) -> None:
    from promptopt.experiments.report import print_summary

    _config, run_dir, metrics = short_run
    print_summary(run_dir, metrics)
    out = capsys.readouterr().out
    assert any(line.split()[:1] == ["policy"] for line in out.splitlines())  # the table's row
    line = next(line for line in out.splitlines() if line.startswith("policy (the safe policy"))
    paired = metrics["evaluation"]["paired"]
    assert "test users (held out)" in line and "95% bootstrap interval" in line
    assert f"{paired['mean_diff']:+.4f} [{paired['low']:+.4f}, {paired['high']:+.4f}]" in line
    assert any(line.startswith("policy_raw (the ungated argmax") for line in out.splitlines())
    assert "safe policy rule (validated on" in out and metrics["safe_policy"]["summary"] in out


@pytest.mark.slow
def test_a_run_trained_before_the_safe_policy_is_validated_by_evaluate(short_run, tmp_path) -> None:
    import json
    import shutil

    from promptopt.errors import ConfigError

    _config, run_dir, metrics = short_run
    old = tmp_path / "old-run"
    shutil.copytree(run_dir, old)
    run = RunDir(old)
    stripped = run.read_metrics()
    del stripped[safe_run.SECTION]
    run.metrics.write_text(json.dumps(stripped), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"has no validated gate .* run `promptopt evaluate .*old-run` to "
                                          r"validate it, then export$"):
        pipeline.export(old)
    pipeline.evaluate(old)
    again = run.read_metrics()[safe_run.SECTION]
    assert {k: again[k] for k in ("order", "threshold", "users")} == {
        k: metrics[safe_run.SECTION][k] for k in ("order", "threshold", "users")}
    assert pipeline.export(old).is_file()
