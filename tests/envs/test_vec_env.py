"""BatchedPromptRecVecEnv: same results as N separate envs, one ranker call per step, MaskablePPO masks."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from promptopt.config import RewardConfig, SplitConfig
from promptopt.envs.prompt_rec import PromptRecEnv
from promptopt.envs.vec_env import BatchedPromptRecVecEnv
from promptopt.llm.types import RankRequest, RankResponse, TokenUsage
from promptopt.problem import RecProblem
from promptopt.templates import TemplateCatalog

CATALOG = {
    "name": "vec-test",
    "templates": [
        {"id": "recent5", "text": "I watched {recent_titles:5}.\nRank:\n{candidates}"},
        {"id": "genres", "text": "My taste: {genre_profile}.\nRank:\n{candidates}"},
        {"id": "long", "text": "I watched {recent_titles:40}.\nRank:\n{candidates}"},
    ],
}


class CountingHashRanker:
    """Orders candidates by a hash of (prompt, candidate); counts ``rank`` calls and their sizes."""

    def __init__(self) -> None:
        self.identity = {"backend": "prompt-hash"}
        self.batch_sizes: list[int] = []

    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        self.batch_sizes.append(len(requests))
        out = []
        for r in requests:
            key = r.prompt.encode()
            order = sorted(r.candidate_ids, key=lambda c: zlib.crc32(key + str(c).encode()))
            out.append(RankResponse(ranking=tuple(order), usage=TokenUsage(3, 1)))
        return out


@pytest.fixture(scope="module")
def problem(synthetic_data, synthetic_split):
    catalog = TemplateCatalog.from_dict(CATALOG)
    reward = RewardConfig(robust_weight=0.4, views=("temporal", "popular_negatives"), bootstrap=2)
    return RecProblem.build(synthetic_data, synthetic_split, catalog, reward, SplitConfig(), seed=0,
                            fit_hints=False)


def _actions(step: int, n: int, masks: np.ndarray) -> np.ndarray:
    """Deterministic actions that include invalid ones (the first valid, or an invalid one)."""
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        valid = np.flatnonzero(masks[i])
        invalid = np.flatnonzero(~masks[i])
        out[i] = invalid[0] if (step + i) % 5 == 0 and invalid.size else valid[(step + i) % valid.size]
    return out


def _run(vec: VecEnv, steps: int) -> list:
    vec.seed(7)
    obs = vec.reset()
    record = [obs.copy()]
    for step in range(steps):
        masks = np.stack(vec.env_method("action_masks"))
        obs, rewards, dones, infos = vec.step(_actions(step, vec.num_envs, masks))
        record.append((obs.copy(), rewards.copy(), dones.copy(),
                       [(i["template"], i["reward"], i["metrics"], i["invalid_action"],
                         i["terminal_observation"].tobytes()) for i in infos]))
    return record


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("n_envs", [1, 4])
def test_batched_equals_separate_envs(problem, n_envs: int) -> None:
    separate_ranker, batched_ranker = CountingHashRanker(), CountingHashRanker()
    separate = DummyVecEnv([lambda: PromptRecEnv(problem, separate_ranker) for _ in range(n_envs)])
    batched = BatchedPromptRecVecEnv(problem, batched_ranker, n_envs)
    steps = 12
    a, b = _run(separate, steps), _run(batched, steps)
    assert _equal(a, b)
    assert len({r[0].tobytes() for r in a[1:]}) > 1  # users change between steps
    # One rank call per step for all sub-envs that act validly (separate envs: one call each).
    acting = [sum(not info[3] for info in record[3]) for record in b[1:]]
    assert len(batched_ranker.batch_sizes) == sum(n > 0 for n in acting)
    assert len(separate_ranker.batch_sizes) == sum(acting)
    assert batched_ranker.batch_sizes == [n * problem.calls_per_episode for n in acting if n > 0]
    assert sum(acting) > len(acting) or n_envs == 1


def test_seed_argument_and_masks_for_maskable_ppo(problem) -> None:
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported

    vec = BatchedPromptRecVecEnv(problem, CountingHashRanker(), 3, seed=5)
    obs = vec.reset()
    assert obs.shape == (3, problem.obs_dim) and obs.dtype == np.float32
    assert is_masking_supported(vec)
    masks = get_action_masks(vec)
    assert masks.shape == (3, len(problem.catalog)) and masks.dtype == bool
    np.testing.assert_array_equal(masks, vec.action_masks())
    np.testing.assert_array_equal(masks, np.stack([problem.action_mask(int(u)) for u in obs[:, 0]]))
    again = BatchedPromptRecVecEnv(problem, CountingHashRanker(), 3)
    again.seed(5)
    np.testing.assert_array_equal(again.reset(), obs)


def test_all_invalid_step_calls_nothing(problem) -> None:
    ranker = CountingHashRanker()
    vec = BatchedPromptRecVecEnv(problem, ranker, 2, seed=0)
    vec.reset()
    short = [int(u) for u in problem.pool("train") if not problem.action_mask(int(u))[2]][:2]
    for env, user in zip(vec.envs, short):
        env.unwrapped.reset(options={"user": user})
    _, rewards, dones, infos = vec.step(np.array([2, 2]))
    assert ranker.batch_sizes == [] and rewards.tolist() == [0.0, 0.0] and dones.all()
    assert all(i["invalid_action"] for i in infos)


def test_maskable_ppo_learns_on_the_batched_env(problem) -> None:
    from sb3_contrib import MaskablePPO

    vec = BatchedPromptRecVecEnv(problem, CountingHashRanker(), 4, seed=0)
    model = MaskablePPO("MlpPolicy", vec, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    assert model.num_timesteps == 64
    obs = vec.reset()
    actions, _ = model.predict(obs, action_masks=vec.action_masks(), deterministic=True)
    assert all(vec.action_masks()[i, a] for i, a in enumerate(actions))
    with pytest.raises(ValueError, match="n_envs must be >= 1"):
        BatchedPromptRecVecEnv(problem, CountingHashRanker(), 0)
