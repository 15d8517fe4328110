"""The env under the standard tools: SB3's make_vec_env, check_env on a cold answer cache, specs.

Each test holds a contract a Gymnasium / SB3 user relies on without reading promptopt's code.
"""

from __future__ import annotations

import copy
import warnings

import gymnasium as gym
import numpy as np
import pytest

from promptopt import envs
from promptopt.config import RewardConfig, SplitConfig
from promptopt.envs.prompt_rec import PromptRecEnv
from promptopt.llm.cache import CachedRanker
from promptopt.problem import RecProblem
from promptopt.templates import TemplateCatalog

from .test_prompt_rec import SLOT_CATALOG, PromptHashRanker


@pytest.fixture(scope="module")
def problem(synthetic_data, synthetic_split):
    include = ["expert.recent5.none.index", "expert.similar.none.index", "expert.genres10.none.index"]
    catalog = TemplateCatalog.load("movies", include=include)
    return RecProblem.build(synthetic_data, synthetic_split, catalog, RewardConfig(robust_weight=0.3),
                            SplitConfig(), seed=0)


@pytest.fixture()
def cold_cache(tmp_path) -> CachedRanker:
    return CachedRanker(PromptHashRanker(), tmp_path / "answers.sqlite")


def test_gymnasium_check_env_passes_on_a_cold_answer_cache(problem, cold_cache) -> None:
    from gymnasium.utils.env_checker import check_env

    assert cold_cache.stats.hits == cold_cache.stats.misses == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(PromptRecEnv(problem, cold_cache), skip_render_check=True)
    # The checker stepped the same (seed, action) twice: the second answers came from the cache.
    assert cold_cache.stats.misses > 0 and cold_cache.stats.hits > 0


def test_info_is_the_same_cold_and_warm_and_the_cache_count_is_an_attribute(problem, cold_cache) -> None:
    env = PromptRecEnv(problem, cold_cache)
    steps = []
    for _ in range(2):
        env.reset(seed=3)
        action = int(np.flatnonzero(env.action_masks())[0])
        steps.append((env.step(action), env.last_step_cached))
    (cold, cold_cached), (warm, warm_cached) = steps
    assert cold_cached == 0 and warm_cached == warm[4]["calls"] > 0
    assert cold[1] == warm[1]
    assert gym.utils.env_checker.data_equivalence(cold[4], warm[4])


def test_sb3_make_vec_env_with_its_default_render_mode(problem) -> None:
    from stable_baselines3.common.env_util import make_vec_env

    vec = make_vec_env(envs.ENV_ID, n_envs=2, seed=0,
                       env_kwargs={"problem": problem, "ranker": PromptHashRanker()})
    obs = vec.reset()
    assert obs.shape == (2, problem.obs_dim)
    vec.step(np.zeros(2, dtype=np.int64))
    inner = vec.envs[0].unwrapped
    assert inner.render_mode == "rgb_array"  # what make_vec_env passes unless told otherwise
    image = vec.envs[0].render()
    assert image.dtype == np.uint8 and image.shape == (16, 8 * problem.n_templates, 3)
    vec.close()


def test_rgb_array_marks_the_mask_and_the_last_reward(problem) -> None:
    env = PromptRecEnv(problem, PromptHashRanker(), render_mode="rgb_array")
    _, info = env.reset(seed=0)
    before = env.render()
    np.testing.assert_array_equal(before[0, ::8, 0] > 128, info["action_mask"])
    assert not before[8:].any()  # no step yet
    action = int(np.flatnonzero(info["action_mask"])[0])
    _, reward, *_ = env.step(action)
    after = env.render()
    red, green = int(after[8, 8 * action, 0]), int(after[8, 8 * action, 1])
    assert green == round(255 * min(max(reward, 0.0), 1.0)) and red == 255 - green  # rewards may be < 0
    assert not np.delete(after[8:], np.s_[8 * action:8 * action + 8], axis=1).any()


def test_render_check_of_every_mode_through_gym_make(problem) -> None:
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for mode in ("ansi", "rgb_array"):
            check_env(gym.make(envs.ENV_ID, problem=problem, ranker=PromptHashRanker(),
                               render_mode=mode).unwrapped)


def test_spec_of_gym_make_exists_shares_the_problem_and_remakes(problem, tmp_path) -> None:
    from promptopt.llm.simulated import SimulatedRanker

    # The run's own ranker: the simulator (its catalog's templates hold read-only mappings, which a
    # deep copy cannot pickle) behind the SQLite answer cache.
    ranker = CachedRanker(SimulatedRanker(problem.data, problem.catalog, profile=problem.profile),
                          tmp_path / "answers.sqlite")
    with pytest.raises(TypeError, match="mappingproxy"):
        copy.deepcopy(ranker)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "exception occurred while copying the environment spec"
        env = gym.make(envs.ENV_ID, problem=problem, ranker=ranker)
        env.reset(seed=0)
        env.step(0)
        spec = env.spec
    assert spec is not None and spec.id == envs.ENV_ID
    assert spec.kwargs["problem"] is problem and spec.kwargs["ranker"] is ranker
    assert copy.deepcopy(spec).kwargs["ranker"] is ranker
    again = gym.make(spec)
    assert again.unwrapped.problem is problem and again.unwrapped.ranker is ranker
    obs, _ = again.reset(seed=0)
    assert obs.shape == (problem.obs_dim,)


def test_slot_catalog_env_spec_through_make(synthetic_data, synthetic_split) -> None:
    catalog = TemplateCatalog.from_dict(SLOT_CATALOG)
    problem = RecProblem.build(synthetic_data, synthetic_split, catalog, RewardConfig(), SplitConfig(),
                               seed=0, fit_hints=False)
    env = gym.make(envs.ENV_ID, problem=problem, ranker=PromptHashRanker(), action_space="multidiscrete")
    assert env.spec is not None and env.spec.kwargs["action_space"] == "multidiscrete"
