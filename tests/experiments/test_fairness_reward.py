"""The fairness-aware reward steers a trained PPO policy away from attribute-sensitive templates.

Two templates; the simulator makes one of them the more accurate for most users, and a planted bias
makes exactly that template's ranking move whenever any sensitive attribute is stated (rotated by 7
of 20 places: SERP*@10 0.49, an instability of 0.51). Trained on accuracy alone the policy prefers
it; with ``reward.fairness_weight = 2`` its penalty (about 1.0) exceeds any user's accuracy gain
between the two templates, so the reward is highest with the other template for every user, and the
trained policy prefers that one.
"""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.config import config_from_dict

INCLUDE = ["expert.recent5.none.index", "expert.profile.none.index"]


def train_and_choose(weight: float) -> tuple[float, str, float]:
    from promptopt.experiments.assembly import build_problem, make_env, make_simulator
    from promptopt.fairness.attributes import load_attribute_set
    from promptopt.policies.agent import make_agent
    from promptopt.policies.selectors import PPOSelector
    from promptopt.testing.planted_bias import PlantedBiasRanker

    config = config_from_dict({
        "seed": 0,
        "data": {"synthetic": {"n_users": 160, "n_items": 240, "mean_history": 30, "seed": 2}},
        "templates": {"include": INCLUDE},
        "ranker": {"backend": "simulated", "noise": 0.05},
        "cache": {"enabled": False},
        "reward": {"fairness_weight": weight, "fairness_values": 2},
        "policy": {"kind": "mlp", "hidden": [32]},
        "env": {"n_envs": 8},
        "ppo": {"total_timesteps": 1024, "n_steps": 32, "batch_size": 64, "n_epochs": 5,
                "learning_rate": 0.003, "ent_coef": 0.0},
        "tracking": {"wandb": False},
    })
    *_, problem = build_problem(config)
    sim = make_simulator(config, problem)
    train = problem.pool("train")
    # The template the simulator makes more accurate on training users carries the planted bias.
    quality = sim.quality[train]
    biased = int(np.argmax(quality.mean(axis=0)))
    triggers = [sentence for _, _, sentence in load_attribute_set("fairllm").cells()]
    ranker = PlantedBiasRanker(sim, triggers=triggers, templates=[problem.catalog.ids[biased]], shift=7)
    agent = make_agent(make_env(config, problem, ranker), config)
    agent.learn(config.ppo.total_timesteps)
    users = problem.pool("test")
    chosen = PPOSelector(agent, problem).select(users)
    valid = np.array([problem.action_mask(int(u)).all() for u in users])
    share = float((chosen[valid] == biased).mean())
    gap = float(quality[:, biased].mean() - quality[:, 1 - biased].mean())
    return share, problem.catalog.ids[biased], gap


@pytest.mark.slow
def test_fairness_reward_makes_the_policy_prefer_the_unbiased_template() -> None:
    share_plain, biased, gap = train_and_choose(0.0)
    share_fair, biased_again, _ = train_and_choose(2.0)
    assert biased == biased_again and gap > 0
    assert share_plain > 0.6, f"accuracy alone should favour the more accurate {biased} ({share_plain:.2f})"
    assert share_fair < 0.25, f"the fairness-aware reward should avoid {biased} ({share_fair:.2f})"
