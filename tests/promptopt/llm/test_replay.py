"""ReplayRanker: logged answers back with zero model calls; a never-logged request fails in one line.

The done-when test of issue 13: a policy trained from a logged cache (``ranker.backend: replay``)
makes 0 model calls — the simulator's ``rank`` is counted — and equals the policy trained live.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from promptopt.config import RankerConfig
from promptopt.errors import RankerError
from promptopt.llm.cache import CachedRanker
from promptopt.llm.cache_store import CacheError, CacheStore
from promptopt.llm.factory import make_ranker
from promptopt.llm.replay import ReplayRanker
from promptopt.llm.simulated import SimulatedRanker
from promptopt.problem import RecProblem
from promptopt.selectors import template_scores
from promptopt.templates import TemplateCatalog


@pytest.fixture()
def logged(synthetic_data, synthetic_split, tmp_path):
    """A problem, and a cache file holding every (training user, template) answer of the simulator."""
    from promptopt.config import RewardConfig, SplitConfig

    ids = ("expert.recent5.none.index", "expert.genres10.none.index", "expert.profile.none.index")
    catalog = TemplateCatalog.load("movies", include=ids)
    problem = RecProblem.build(synthetic_data, synthetic_split, catalog, RewardConfig(),
                               SplitConfig(n_negatives=9), seed=0)
    live = SimulatedRanker(synthetic_data, catalog, noise=0.1, seed=0)
    path = tmp_path / "cache.sqlite"
    with CachedRanker(live, path) as cached:
        scores, _ = template_scores(problem, cached, problem.pool("train"))
    return problem, live, path, scores


def test_replay_returns_the_logged_answers_without_calls(logged) -> None:
    problem, live, path, scores = logged
    replay = ReplayRanker(path)
    assert replay.identity == {"backend": "replay", "replays": dict(live.identity)}
    replayed, _ = template_scores(problem, replay, problem.pool("train"))
    np.testing.assert_array_equal(replayed, scores)
    user = next(int(u) for u in problem.pool("train") if problem.action_mask(int(u))[1])
    requests = problem.requests(problem.tasks(user), 1)
    assert [r.ranking for r in replay.rank(requests)] == [r.ranking for r in live.rank(requests)]
    stats = replay.stats
    assert stats.calls == 0 and stats.tokens == 0 and stats.cost == 0.0
    assert stats.hits == np.isfinite(scores).sum() + len(requests)
    assert len(CacheStore(path, create=False)) == np.isfinite(scores).sum()  # nothing written


def test_a_request_never_logged_fails_naming_user_template_and_task(logged) -> None:
    problem, _, path, _ = logged
    user = next(int(u) for u in problem.pool("test") if problem.action_mask(int(u))[2])  # never logged
    requests = problem.requests(problem.tasks(user), 2)
    with pytest.raises(RankerError) as err:
        ReplayRanker(path).rank(requests)
    message = str(err.value)
    assert "\n" not in message
    raw = problem.data.user_ids[user]
    for part in (f"user {raw!r}", "template 'expert.profile.none.index'", requests[0].ids.task,
                 "ranker.backend: simulated"):
        assert str(part) in message


def test_identity_must_name_a_logged_backend(logged, tmp_path) -> None:
    problem, live, path, _ = logged
    with pytest.raises(RankerError, match="holds no answer of the identity"):
        ReplayRanker(path, {"backend": "simulated", "noise": 0.5})
    assert ReplayRanker(path, dict(live.identity)).logged_answers > 0
    # A second backend in the same file: the identity must be named.
    other = SimulatedRanker(problem.data, problem.catalog, noise=0.3, seed=1)
    with CachedRanker(other, path) as cached:
        template_scores(problem, cached, problem.pool("val"))
    with pytest.raises(RankerError, match="holds answers of 2 backend identities"):
        ReplayRanker(path)
    with pytest.raises(CacheError, match="no cache file"):
        ReplayRanker(tmp_path / "missing.sqlite")


def test_factory_builds_replay_from_the_cache_section(logged) -> None:
    from promptopt.config import CacheConfig

    _, live, path, _ = logged
    ranker = make_ranker(RankerConfig(backend="replay"), cache=CacheConfig(path=str(path)))
    assert isinstance(ranker, ReplayRanker)
    import json

    logged = json.dumps(dict(live.identity))
    named = RankerConfig(backend="replay", replay_cache=str(path), replay_identity=logged)
    other = make_ranker(named, cache=CacheConfig(path="elsewhere.sqlite"))
    assert other.path == path


@pytest.mark.slow
def test_policy_trained_from_a_logged_cache_makes_zero_model_calls(tmp_path, monkeypatch) -> None:
    from promptopt.config import load_config
    from promptopt.experiments import assembly, pipeline
    from promptopt.experiments.rundir import RunDir
    from tests.experiments.conftest import tiny_config_dict

    raw = tiny_config_dict(tmp_path)
    config_path = tmp_path / "live.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    config = load_config(config_path)
    # Log: every training user with every template (what a study's exhaustive sweep pays for once).
    _, _, _, problem = assembly.build_problem(config)
    with assembly.make_run_ranker(config, problem) as ranker:
        template_scores(problem, ranker, problem.pool("train"))
    live_run = pipeline.train(config, tmp_path / "live")

    calls = {"n": 0}
    original = SimulatedRanker.rank

    def counted(self, requests):
        calls["n"] += len(requests)
        return original(self, requests)

    monkeypatch.setattr(SimulatedRanker, "rank", counted)
    before = len(CacheStore(tmp_path / "cache.sqlite", create=False))
    replay_config = load_config(config_path, ["--ranker.backend=replay"])
    replay_run = pipeline.train(replay_config, tmp_path / "replay")
    assert calls["n"] == 0
    assert len(CacheStore(tmp_path / "cache.sqlite", create=False)) == before
    train = yaml.safe_load((RunDir(replay_run).metrics).read_text())["train"]
    assert train["steps"] == raw["ppo"]["total_timesteps"]
    assert train["llm"]["calls"] == 0 and train["llm"]["hits"] > 0
    # The same answers and seeds give the same policy as the live run.
    live_agent = _actions(live_run, config, problem)
    assert np.array_equal(live_agent, _actions(replay_run, replay_config, problem))


def _actions(run_dir: Path, config, problem) -> np.ndarray:
    from promptopt.experiments import assembly
    from promptopt.experiments.rundir import RunDir
    from promptopt.policies.selectors import PPOSelector

    agent = assembly.load_agent(RunDir(run_dir), config, problem, "policy")
    users = np.concatenate([problem.pool("train"), problem.pool("test")])
    return PPOSelector(agent, problem).action_probabilities(users)
