"""Assembly of a run: the simulator is built from the run's problem; agents load without a ranker."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from promptopt.config import load_config
from promptopt.experiments import assembly
from promptopt.llm.cache import CachedRanker
from promptopt.llm.simulated import SimulatedRanker
from tests.experiments.conftest import tiny_config_dict


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("assembly")
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tmp, ranker={"backend": "simulated", "noise": 0.2,
                                                                  "seed": 7})))
    config = load_config(path)
    return config, assembly.build_problem(config)[3]


def test_the_simulator_takes_noise_and_seed_from_the_config_and_the_problems_profile(tiny) -> None:
    config, problem = tiny
    simulator = assembly.make_simulator(config, problem)
    assert (simulator.noise, simulator.seed) == (0.2, 7)
    assert simulator.data is problem.data and simulator.catalog is problem.catalog
    assert simulator.profile is problem.profile  # the hidden rule uses the statistics the policy sees
    unseeded = dataclasses.replace(config, ranker=dataclasses.replace(config.ranker, seed=None))
    assert assembly.make_simulator(unseeded, problem).seed == 0


def test_the_run_ranker_is_the_simulator_behind_the_cache(tiny) -> None:
    config, problem = tiny
    ranker = assembly.make_run_ranker(config, problem)
    try:
        assert isinstance(ranker, CachedRanker) and isinstance(ranker.backend, SimulatedRanker)
        assert ranker.backend.profile is problem.profile
        assert Path(config.cache.path).exists()
    finally:
        ranker.close()


def test_no_ranker_refuses_to_rank() -> None:
    with pytest.raises(RuntimeError, match="asked to rank"):
        assembly.NoRanker().rank([])
    assert dict(assembly.NoRanker().identity) == {"backend": "none"}
