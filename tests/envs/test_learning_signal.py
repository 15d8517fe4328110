"""The learning-signal options: the paired baseline reward, earlier targets as episodes, warm start."""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.config import RewardConfig, SplitConfig, config_from_dict
from promptopt.envs.prompt_rec import PromptRecEnv
from promptopt.envs.vec_env import BatchedPromptRecVecEnv
from promptopt.errors import ConfigError
from promptopt.llm.simulated import SimulatedRanker
from promptopt.problem import RecProblem
from promptopt.runner import Episode
from promptopt.templates import TemplateCatalog

IDS = ("expert.recent5.none.index", "expert.genres10.none.index", "expert.profile.none.index")


class Counting:
    """The simulator, counting ``rank`` calls and the requests in each."""

    def __init__(self, ranker) -> None:
        self.ranker, self.sizes = ranker, []
        self.identity = ranker.identity

    def rank(self, requests):
        self.sizes.append(len(requests))
        return self.ranker.rank(requests)


@pytest.fixture(scope="module")
def problem(synthetic_data, synthetic_split):
    catalog = TemplateCatalog.load("movies", include=IDS)
    return RecProblem.build(synthetic_data, synthetic_split, catalog, RewardConfig(),
                            SplitConfig(n_negatives=9, n_targets=3), seed=0)


@pytest.fixture(scope="module")
def ranker(problem):
    return SimulatedRanker(problem.data, problem.catalog, noise=0.2, seed=0)


def _total(problem, ranker, user, template, row=None):
    outcome = problem.run_episodes([Episode(user, template, row=row)], ranker)[0]
    return outcome.reward.total


def test_paired_reward_is_the_gain_over_the_default_on_the_same_tasks(problem, ranker) -> None:
    counting = Counting(ranker)
    vec = BatchedPromptRecVecEnv(problem, counting, 4, seed=3, baseline=[1, 0, 2])
    vec.reset()
    for step in range(6):
        masks = vec.action_masks()
        actions = np.array([np.flatnonzero(m)[(step + i) % m.sum()] for i, m in enumerate(masks)])
        _, rewards, _, infos = vec.step(actions)
        assert len(counting.sizes) == step + 1  # chosen and default answers in ONE call
        for action, reward, info in zip(actions, rewards, infos):
            default = info["baseline"]["template"]
            assert default == next(t for t in (1, 0, 2) if info["action_mask"][t])
            own = _total(problem, ranker, info["user"], int(action))
            base = _total(problem, ranker, info["user"], default)
            assert info["reward"]["total"] == pytest.approx(own)  # the raw breakdown is kept
            assert info["baseline"]["total"] == pytest.approx(base)
            assert reward == pytest.approx(own - base, abs=1e-6)
            if action == default:
                assert reward == 0.0


def test_plain_reward_is_unchanged_without_a_baseline(problem, ranker) -> None:
    env = PromptRecEnv(problem, ranker)
    env.reset(seed=1)
    _, reward, _, _, info = env.step(0)
    assert "baseline" not in info and reward == pytest.approx(info["reward"]["total"])
    paired = PromptRecEnv(problem, ranker, baseline=[0])
    paired.reset(seed=1)
    _, reward, _, _, info = paired.step(0)
    assert reward == 0.0 and info["baseline"]["template"] == 0
    with pytest.raises(ValueError, match="baseline must list template indices"):
        PromptRecEnv(problem, ranker, baseline=[7])


def test_earlier_targets_are_further_episodes_of_training_users(problem, ranker) -> None:
    train = set(problem.pool("train").tolist())
    env = PromptRecEnv(problem, ranker, users="train", train_targets=3)
    env.reset(seed=0)
    seen: dict[int, set[int]] = {}
    for _ in range(400):
        _, info = env.reset()
        user = info["user"]
        _, _, _, _, step = env.step(int(np.flatnonzero(info["action_mask"])[0]))
        seen.setdefault(user, set()).add(step["row"])
        assert step["row"] in problem.training_rows(user, 3)
    length = problem.data.history_length
    many = [u for u in seen if length(u) >= 5 and len(seen[u]) == 3]
    assert many, "no training user was seen with all three targets"
    for user in many:
        assert seen[user] == {length(user) - 3, length(user) - 2, length(user) - 1}
    # Every episode row is hidden from what graphs and hints learn from.
    offsets = problem.data.user_offsets
    for user in seen:
        for row in seen[user]:
            assert not problem.train_mask[offsets[user] + row]
    assert train >= set(seen)
    # Validation and test users keep their one episode target; with the temporal view the last
    # interaction stays the next item of the training target, not a target.
    test_user = int(problem.pool("test")[0])
    assert problem.training_rows(test_user, 3) == [length(test_user) - 1]


def test_training_rows_leave_the_last_interaction_to_the_temporal_view(synthetic_data, synthetic_split):
    catalog = TemplateCatalog.load("movies", include=IDS)
    reward = RewardConfig(robust_weight=0.5, views=("temporal",))
    problem = RecProblem.build(synthetic_data, synthetic_split, catalog, reward,
                               SplitConfig(n_negatives=9, n_targets=3), seed=0)
    user = next(int(u) for u in problem.pool("train") if synthetic_data.history_length(int(u)) >= 6)
    n = synthetic_data.history_length(user)
    assert problem.training_rows(user, 3) == [n - 2, n - 3]
    assert problem.training_rows(user, 1) == [n - 2]


def test_train_targets_cannot_exceed_the_split_targets() -> None:
    with pytest.raises(ConfigError, match=r"env.train_targets=4 .*split.n_targets=3"):
        config_from_dict({"split": {"n_targets": 3}, "env": {"train_targets": 4}}, source="t")
    for bad in ({"env": {"reward_baseline": "best"}}, {"policy": {"warm_start": 1.0}},
                {"policy": {"warm_start": -0.1}}, {"env": {"default_scan_users": 0}}):
        with pytest.raises(ConfigError):
            config_from_dict(bad, source="t")


def test_warm_start_makes_the_untrained_policy_prefer_the_default(problem, ranker) -> None:
    from promptopt.policies.agent import make_agent
    from promptopt.policies.selectors import PPOSelector

    config = config_from_dict({"policy": {"kind": "mlp", "warm_start": 0.9}, "ppo": {"n_steps": 8,
                                                                                     "batch_size": 16}},
                              source="t")
    users = problem.pool("train")
    full = np.array([u for u in users if problem.action_mask(int(u)).all()])
    env = BatchedPromptRecVecEnv(problem, ranker, 2, seed=0)
    probs = PPOSelector(make_agent(env, config, default=2), problem).action_probabilities(full)
    assert np.allclose(probs[:, 2], 0.9, atol=0.02)
    cold = PPOSelector(make_agent(env, config), problem).action_probabilities(full)
    assert np.allclose(cold, 1 / 3, atol=0.02)


def test_default_order_ranks_templates_by_their_scanned_mean(problem, ranker) -> None:
    from promptopt.experiments.assembly import default_order
    from promptopt.selectors import template_scores

    config = config_from_dict({"env": {"default_scan_users": 25}, "seed": 4}, source="t")
    order, record = default_order(config, problem, ranker)
    assert record["users"] == 25 and sorted(order) == [0, 1, 2]
    sample = np.sort(np.random.default_rng(4).choice(problem.pool("train"), 25, replace=False))
    scores, _ = template_scores(problem, ranker, sample)
    means = np.nanmean(scores, axis=0)
    assert order == [int(t) for t in np.argsort(-means, kind="stable")]
    assert record["order"][0] == problem.catalog.ids[order[0]]


@pytest.mark.slow
def test_train_uses_the_paired_reward_earlier_targets_and_warm_start(tmp_path) -> None:
    import json

    from promptopt.experiments import pipeline
    from tests.experiments.conftest import tiny_config_dict

    raw = tiny_config_dict(
        tmp_path,
        env={"n_envs": 4, "reward_baseline": "default", "train_targets": 2, "default_scan_users": 20},
        policy={"embedding_dim": 8, "n_layers": 1, "bpr_epochs": 2, "hidden": [16], "pi": [16],
                "vf": [16], "warm_start": 0.8},
        ppo={"total_timesteps": 64, "n_steps": 16, "batch_size": 32, "n_epochs": 2, "checkpoint_every": 64},
    )
    config = config_from_dict(raw, source="t")
    run = pipeline.train(config, tmp_path / "run")
    train = json.loads((run / "metrics.json").read_text())["train"]
    scan = train["default_scan"]
    assert scan["users"] == 20 and len(scan["order"]) == 4
    means = [m for m in scan["means"].values() if m is not None]
    assert means == sorted(means, reverse=True)
    # The curve keeps the metric itself (not the paired difference): NDCG is never negative.
    assert train["curve"] and all(row["reward"] >= 0 for row in train["curve"])
