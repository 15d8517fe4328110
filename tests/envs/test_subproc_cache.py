"""Concurrency: four SB3 ``SubprocVecEnv`` workers share one answer cache file and lose nothing.

Each worker process gets its own copy of the :class:`~promptopt.llm.cache.CachedRanker` (pickled for
``forkserver``, inherited for ``fork``) and opens its own SQLite connection; the four step at the same
time, so their writes race. Afterwards the cache must hold exactly the requests of the episodes the
workers reported (none lost, none extra), every stored answer must be the backend's answer to that
request, and SQLite's integrity check must pass. (Raw concurrent writers and kills of a writer are
tested in ``tests/promptopt/llm/test_cache.py``.)
"""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.vec_env import SubprocVecEnv

from promptopt.config import CacheConfig, RankerConfig, RewardConfig, SplitConfig
from promptopt.envs.prompt_rec import PromptRecEnv
from promptopt.llm.cache import CacheStore, cache_key
from promptopt.llm.factory import make_ranker
from promptopt.llm.simulated import SimulatedRanker
from promptopt.problem import RecProblem
from promptopt.splits import split_users
from promptopt.templates import TemplateCatalog

TEMPLATES = ("expert.recent5.none.index", "expert.recent10.none.index", "expert.genres10.none.index",
             "expert.profile.none.index")
N_WORKERS = 4
STEPS = 30


class _EnvFactory:
    """Builds worker ``i``'s env (a picklable callable, as SubprocVecEnv needs for forkserver)."""

    def __init__(self, problem: RecProblem, ranker: object) -> None:
        self.problem = problem
        self.ranker = ranker

    def __call__(self) -> PromptRecEnv:
        return PromptRecEnv(self.problem, self.ranker, users="train")


@pytest.mark.parametrize("start_method", [
    "fork",
    pytest.param("forkserver", marks=pytest.mark.slow),  # SB3's default on Linux; each worker re-imports
])
def test_subprocess_workers_share_one_cache_without_losing_answers(synthetic_data, tmp_path,
                                                                  start_method: str) -> None:
    data = synthetic_data
    split = split_users(data, seed=0)
    catalog = TemplateCatalog.load("movies", include=TEMPLATES)
    # Two views x two shuffled copies: four requests per episode, so each step writes several rows.
    reward = RewardConfig(robust_weight=0.3, views=("temporal",), bootstrap=2)
    problem = RecProblem.build(data, split, catalog, reward, SplitConfig(n_negatives=9), seed=0)
    path = tmp_path / "shared.sqlite"
    simulator = SimulatedRanker(data, catalog, profile=problem.profile)
    ranker = make_ranker(RankerConfig(backend="simulated"), cache=CacheConfig(path=str(path)),
                         backend=simulator)
    assert len(CacheStore(path)) == 0

    vec = SubprocVecEnv([_EnvFactory(problem, ranker) for _ in range(N_WORKERS)], start_method=start_method)
    episodes: set[tuple[int, int]] = set()
    try:
        vec.seed(7)
        vec.reset()
        rng = np.random.default_rng(0)
        for _ in range(STEPS):
            masks = np.stack(vec.env_method("action_masks"))
            actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
            _, rewards, _, infos = vec.step(actions)
            for action, info in zip(actions, infos):
                assert info["template"] == action and not info["invalid_action"]
                assert info["calls"] == problem.calls_per_episode
                episodes.add((int(info["user"]), int(info["template"])))
            assert np.all((rewards >= -1.0) & (rewards <= 1.0))
    finally:
        vec.close()

    identity = dict(ranker.identity)
    expected = {
        cache_key(identity, request): request
        for user, template in episodes for request in problem.requests(problem.tasks(user), template)
    }
    store = CacheStore(path, create=False)
    assert store.integrity_check() == "ok"
    rows = {row["key"]: row for row in store.rows()}
    assert set(rows) == set(expected)  # nothing lost, nothing extra
    assert len(rows) >= N_WORKERS * problem.calls_per_episode  # the workers really wrote in parallel
    # Every stored answer is intact: exactly the backend's answer to that request.
    keys = list(expected)
    fresh = ranker.backend.rank([expected[k] for k in keys])
    for key, answer in zip(keys, fresh):
        stored = rows[key]
        assert stored["request"] == expected[key].to_json()
        assert stored["response"]["ranking"] == list(answer.ranking)
        assert sorted(stored["response"]["ranking"]) == sorted(expected[key].candidate_ids)
