"""PromptRecEnv: Gymnasium and SB3 env checkers, seeded determinism, masks, info, registration."""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import pytest

from promptopt import envs
from promptopt.config import RewardConfig, SplitConfig
from promptopt.envs.prompt_rec import PromptRecEnv
from promptopt.errors import ConfigError
from promptopt.llm.types import RankRequest, RankResponse, TokenUsage
from promptopt.problem import RecProblem
from promptopt.templates import TemplateCatalog

SLOT_CATALOG = {
    "name": "env-test",
    "slots": {
        "role": {"none": "", "expert": "You are a movie expert."},
        "history": {"recent5": "I watched: {recent_titles:5}.", "long": "I watched: {recent_titles:40}."},
        "reasoning": {"none": "", "steps": "Think step by step."},
        "output": {"index": {"text": "Answer with the candidates' numbers.", "output_format": "index"}},
    },
}


class PromptHashRanker:
    """Orders candidates by a hash of (prompt, candidate): deterministic and sensitive to the prompt."""

    def __init__(self) -> None:
        self.identity = {"backend": "prompt-hash"}
        self.calls = 0

    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        self.calls += 1
        out = []
        for r in requests:
            key = r.prompt.encode()
            order = sorted(r.candidate_ids, key=lambda c: zlib.crc32(key + str(c).encode()))
            out.append(RankResponse(ranking=tuple(order), usage=TokenUsage(len(r.prompt) // 4, 5)))
        return out


@pytest.fixture(scope="module")
def catalog():
    return TemplateCatalog.from_dict(SLOT_CATALOG)


@pytest.fixture(scope="module")
def problem(synthetic_data, synthetic_split, catalog):
    reward = RewardConfig(robust_weight=0.3, views=("temporal", "dropout"))
    return RecProblem.build(synthetic_data, synthetic_split, catalog, reward, SplitConfig(), seed=0,
                            fit_hints=False)


def _masked_action(env: gym.Env, rng: np.random.Generator) -> int:
    return int(rng.choice(np.flatnonzero(env.unwrapped.action_masks())))


def test_gymnasium_check_env(problem) -> None:
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        check_env(PromptRecEnv(problem, PromptHashRanker()), skip_render_check=True)
        # Through gymnasium.make (a spec), so the render check can try every render mode.
        made = gym.make(envs.ENV_ID, problem=problem, ranker=PromptHashRanker(), render_mode="ansi")
        check_env(made.unwrapped)
        made.reset(seed=0)
        made.step(0)
        assert made.render().startswith("user ")


def test_sb3_check_env(problem) -> None:
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(PromptRecEnv(problem, PromptHashRanker()), warn=True)
        check_env(PromptRecEnv(problem, PromptHashRanker(), action_space="multidiscrete"), warn=True)


def _rollout(problem, seed: int, steps: int = 40) -> list[tuple]:
    env = PromptRecEnv(problem, PromptHashRanker())
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = []
    for _ in range(steps):
        action = int(env.action_space.sample(mask=env.action_masks().astype(np.int8)))
        _, reward, terminated, truncated, info = env.step(action)
        assert terminated and not truncated
        out.append((obs.tobytes(), action, reward, info["template_id"]))
        obs, _ = env.reset()
    return out


def test_two_seeded_rollouts_are_identical(problem) -> None:
    first, second = _rollout(problem, 5), _rollout(problem, 5)
    assert first == second
    other = _rollout(problem, 6)
    assert other != first
    assert len({o for o, *_ in first}) > 10  # different users are drawn
    assert len({r for *_, r, _ in first}) > 1


def test_observation_and_users_come_from_the_problem(problem, synthetic_split) -> None:
    env = PromptRecEnv(problem, PromptHashRanker(), users="test")
    seen = set()
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        user = int(obs[0])
        seen.add(user)
        assert user == info["user"] and user in set(synthetic_split.test.tolist())
        np.testing.assert_array_equal(obs, problem.observation(user))
        assert env.observation_space.contains(obs)
        np.testing.assert_array_equal(info["action_mask"], problem.action_mask(user))
    assert len(seen) > 10
    obs, _ = env.reset(options={"user": int(synthetic_split.test[3])})
    assert obs[0] == synthetic_split.test[3]


def test_a_reset_builds_no_task_and_a_step_builds_only_its_own(
    synthetic_data, synthetic_split, catalog, monkeypatch
) -> None:
    reward = RewardConfig(robust_weight=0.3, views=("temporal", "dropout"), bootstrap=2)
    problem = RecProblem.build(synthetic_data, synthetic_split, catalog, reward, SplitConfig(), seed=0,
                               fit_hints=False)
    built: list[str] = []
    for name in ("task", "context"):
        original = getattr(problem.builder, name)
        monkeypatch.setattr(problem.builder, name,
                            lambda *a, _o=original, _n=name, **kw: built.append(_n) or _o(*a, **kw))
    original_views = problem.drift.views
    monkeypatch.setattr(problem.drift, "views",
                        lambda *a, **kw: built.append("views") or original_views(*a, **kw))
    env = PromptRecEnv(problem, PromptHashRanker())
    for seed in range(20):
        obs, info = env.reset(seed=seed)
    assert len(problem.task_set) == 0  # no base task, drift view or shuffled copy: contexts only
    assert set(built) == {"context"}
    user = int(obs[0])
    built.clear()
    env.step(int(np.flatnonzero(info["action_mask"])[0]))
    assert problem.task_set.built(problem.key(user)) and len(problem.task_set) == 1
    # The base task (on the reset's context), then its views: temporal is a task on the next row.
    assert built == ["task", "views", "task", "context"]
    assert len(problem.tasks(user)) == problem.calls_per_episode == 6


def test_step_reward_and_info_match_the_problem(problem) -> None:
    ranker = PromptHashRanker()
    env = PromptRecEnv(problem, ranker)
    obs, _ = env.reset(seed=1)
    user = int(obs[0])
    action = _masked_action(env, np.random.default_rng(0))
    _, reward, terminated, truncated, info = env.step(action)
    assert terminated and not truncated
    expected = problem.run([user], [action], PromptHashRanker())[0]
    assert reward == expected.reward.total
    assert info["reward"] == expected.reward.to_dict()
    assert set(info["reward"]["per_view"]) == {"base", "temporal", "dropout"}
    assert info["metrics"] == expected.metrics
    assert info["template"] == action and info["template_id"] == problem.catalog[action].id
    assert info["template_name"] == problem.catalog[action].name
    assert info["calls"] == 3 and ranker.calls == 1
    assert info["usage"]["prompt_tokens"] > 0 and info["usage"]["completion_tokens"] == 15
    assert "cache_hit" not in info and info["invalid_action"] is False
    assert set(info["parse"]) == {"found", "duplicates", "hallucinated", "missing", "grounded"}
    assert info["period"] in ("source", "target")


def test_masks_and_invalid_actions(problem, synthetic_data) -> None:
    catalog = problem.catalog
    long_ids = [i for i in range(len(catalog)) if ".long." in catalog.ids[i]]
    short_user = next(u for u in problem.pool("train") if len(problem.context(int(u))) < 40)
    env = PromptRecEnv(problem, PromptHashRanker())
    _, info = env.reset(options={"user": int(short_user)})
    mask = env.action_masks()
    assert mask.dtype == bool and mask.shape == (len(catalog),)
    assert not mask[long_ids].any() and mask.sum() == len(catalog) - len(long_ids)
    np.testing.assert_array_equal(info["action_mask"], mask)
    ranker = env.ranker
    _, reward, terminated, _, info = env.step(long_ids[0])
    assert reward == 0.0 and terminated and info["invalid_action"] and ranker.calls == 0
    with pytest.raises(ValueError, match=r"action must be in 0\.\.7"):
        env.step(8)


def test_multidiscrete_actions_and_masks(problem) -> None:
    env = PromptRecEnv(problem, PromptHashRanker(), action_space="multidiscrete")
    assert isinstance(env.action_space, gym.spaces.MultiDiscrete)
    assert env.action_space.nvec.tolist() == [2, 2, 2, 1]
    short_user = next(u for u in problem.pool("train") if len(problem.context(int(u))) < 40)
    env.reset(options={"user": int(short_user)})
    mask = env.action_masks()
    # role (2) + history (2: recent5 allowed, long not) + reasoning (2) + output (1)
    assert mask.tolist() == [True, True, True, False, True, True, True]
    vector = (1, 0, 1, 0)
    index = problem.catalog.from_slot_vector(vector)
    _, reward, _, _, info = env.step(np.array(vector))
    assert info["template"] == index and info["template_id"] == problem.catalog.ids[index]
    assert reward == problem.run([short_user], [index], PromptHashRanker())[0].reward.total


def test_multidiscrete_needs_a_slot_catalog(synthetic_data, synthetic_split) -> None:
    listed = TemplateCatalog.from_dict({"name": "x", "templates": [{"id": "a", "text": "{candidates}"}]})
    problem = RecProblem.build(synthetic_data, synthetic_split, listed, RewardConfig(), SplitConfig(),
                               seed=0, fit_hints=False)
    with pytest.raises(ConfigError, match="needs a slot catalog"):
        PromptRecEnv(problem, PromptHashRanker(), action_space="multidiscrete")


def test_step_before_reset_and_bad_arguments(problem) -> None:
    env = PromptRecEnv(problem, PromptHashRanker())
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)
    with pytest.raises(ValueError, match="render_mode must be None, 'ansi' or 'rgb_array'"):
        PromptRecEnv(problem, PromptHashRanker(), render_mode="human")
    with pytest.raises(ValueError, match="user pool"):
        PromptRecEnv(problem, PromptHashRanker(), users=[])
    with pytest.raises(ValueError, match="user index 5000 is outside"):
        PromptRecEnv(problem, PromptHashRanker(), users=[1, 5000])
    with pytest.raises(ValueError, match=r"options\['user'\] must be in"):
        PromptRecEnv(problem, PromptHashRanker()).reset(options={"user": -1})


def test_registered_and_made_through_gymnasium(problem) -> None:
    assert envs.ENV_ID == "promptopt/PromptRec-v0" and envs.ENV_ID in gym.registry
    env = gym.make(envs.ENV_ID, problem=problem, ranker=PromptHashRanker())
    _, info = env.reset(seed=3)
    _, reward, terminated, truncated, _ = env.step(int(np.flatnonzero(info["action_mask"])[0]))
    assert terminated and not truncated and isinstance(reward, float)
    assert env.get_wrapper_attr("action_masks")().shape == (len(problem.catalog),)
    env.close()


def test_importing_envs_is_light() -> None:
    import subprocess
    import sys

    script = ("import sys, envs; print(','.join(m for m in ('torch', 'stable_baselines3', "
              "'sentence_transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_env_exposes_the_simulators_hidden_best_template(synthetic_data, synthetic_split) -> None:
    from promptopt.llm.simulated import SimulatedRanker

    catalog = TemplateCatalog.load("movies")
    problem = RecProblem.build(synthetic_data, synthetic_split, catalog, RewardConfig(), SplitConfig(),
                               seed=0)
    simulator = SimulatedRanker(synthetic_data, catalog, noise=0.0, seed=0)
    env = PromptRecEnv(problem, simulator, users="test")
    agree = 0
    users = synthetic_split.test[:8]
    for user in users:
        env.reset(options={"user": int(user)})
        expected = env.expected_rewards(samples=128)
        mask = env.action_masks()
        np.testing.assert_array_equal(np.isfinite(expected), mask)
        hidden = int(np.where(mask, simulator.quality[int(user)], -np.inf).argmax())
        found = int(np.nanargmax(expected))
        agree += hidden == found
        assert simulator.quality[int(user), hidden] - simulator.quality[int(user), found] < 0.03
    assert agree >= len(users) - 1
