"""The selector factory builds every registered selector by name (the oracle is the evaluation's)."""

from __future__ import annotations

import pytest
import yaml

from promptopt.config import load_config
from promptopt.experiments import assembly
from promptopt.experiments.rundir import RunDir
from promptopt.experiments.selector_factory import BUILT_ELSEWHERE, SelectorFactory
from promptopt.selector_names import SELECTOR_NAMES
from tests.experiments.conftest import tiny_config_dict


def test_the_factory_and_the_evaluation_together_cover_the_registry() -> None:
    assert SelectorFactory.names() + sorted(BUILT_ELSEWHERE) == list(SELECTOR_NAMES)


def test_the_baselines_are_built_by_name_and_an_unregistered_name_is_refused(tmp_path) -> None:
    path = tmp_path / "tiny.yaml"
    raw = tiny_config_dict(tmp_path, eval={"bandit_steps": 16, "fixed_users": 10}, policy={"kind": "mlp"})
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    _data, _split, _catalog, problem = assembly.build_problem(config)
    ranker = assembly.make_run_ranker(config, problem)
    try:
        factory = SelectorFactory(config, problem, ranker, RunDir(tmp_path / "run"))
        for name in ("random", "best_fixed", "epsilon_greedy", "linucb"):
            selector = factory(name)
            assert selector.name == name
            assert factory(name) is selector  # built once
            assert selector.select(problem.pool("test")[:5]).shape == (5,)
        # The advantage model reads the training-budget scan's answers: no request the scan did not send.
        misses = ranker.stats.misses
        advantage = factory("advantage")
        assert advantage.name == "advantage" and ranker.stats.misses == misses
        assert advantage.select(problem.pool("test")[:5]).shape == (5,)
        for name in ("oracle", "magic"):
            with pytest.raises(ValueError, match=f"no selector '{name}' to build"):
                factory(name)
    finally:
        ranker.close()
