"""The reward section checks its own ranges: when a config loads, before any work, one line naming the key."""

from __future__ import annotations

import dataclasses

import pytest

from promptopt.config import ExperimentConfig, RewardConfig, config_from_dict, config_to_dict, load_config
from promptopt.errors import ConfigError

BAD_REWARDS = [
    ({"views": ["temporal", "weekly"]}, "reward.views: unknown drift view 'weekly'; use any of temporal"),
    ({"views": ["base"]}, "reward.views: unknown drift view 'base'"),
    ({"views": ["dropout", "dropout"]},
     r"reward.views must name distinct drift views, got \['dropout', 'dropout'\]"),
    ({"metric": "precision@5"}, "reward.metric: unknown metric 'precision@5'"),
    ({"metric": "ndcg@0"}, "reward.metric: "),
    ({"robust_weight": 1.5}, r"reward.robust_weight must be in \[0, 1\], got 1.5"),
    ({"robust_weight": -0.1}, r"reward.robust_weight must be in \[0, 1\], got -0.1"),
    ({"robust_weight": float("nan")}, r"reward.robust_weight must be in \[0, 1\], got nan"),
    ({"bootstrap": 0}, "reward.bootstrap must be >= 1, got 0"),
    ({"dropout": 1.0}, r"reward.dropout must be in \[0, 1\), got 1.0"),
    ({"std_penalty": -1.0}, "reward.std_penalty must be >= 0, got -1.0"),
    ({"std_penalty": float("nan")}, "reward.std_penalty must be >= 0, got nan"),
    ({"cvar_alpha": 0.0}, r"reward.cvar_alpha must be in \(0, 1\], got 0.0"),
]


@pytest.mark.parametrize(("values", "message"), BAD_REWARDS, ids=[str(v) for v, _ in BAD_REWARDS])
def test_a_bad_reward_fails_at_load_naming_the_key(values, message) -> None:
    raw = config_to_dict(ExperimentConfig())
    raw["reward"].update(values)
    key = next(iter(values))
    # At load the field's declared range or choices may speak first (pydantic), naming the key.
    with pytest.raises(ConfigError, match=rf"^c\.yaml: reward\.{key}\b") as info:
        config_from_dict(raw, source="c.yaml")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=f"^{message}"):  # also built in code (study variants, tests)
        RewardConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def test_a_bad_override_fails_before_any_work(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("reward:\n  robust_weight: 0.5\n", encoding="utf-8")
    assert load_config(path).reward.robust_weight == 0.5
    expected = r"run.yaml: reward.robust_weight: Input should be less than or equal to 1 \(got 2\)"
    with pytest.raises(ConfigError, match=expected):
        load_config(path, ["--reward.robust_weight=2"])


def test_a_replaced_reward_is_checked_again() -> None:
    reward = RewardConfig(robust_weight=0.5, views=("temporal",), aggregate="cvar", cvar_alpha=0.5)
    assert dataclasses.replace(reward, robust_weight=0.0).robust_weight == 0.0
    with pytest.raises(ConfigError, match=r"reward\.bootstrap must be >= 1, got -2"):
        dataclasses.replace(reward, bootstrap=-2)
    with pytest.raises(ConfigError, match=r"reward\.aggregate must be mean_std, worst or cvar, got 'median'"):
        RewardConfig(aggregate="median")  # type: ignore[arg-type]


@pytest.mark.parametrize(("section", "key", "value"), [
    ("ranker", "drift_share", 1.5), ("ranker", "drift_share", -0.2), ("ranker", "drift_strength", -1.0),
    ("data.synthetic", "start_days", 0),
])
def test_planted_drift_knobs_are_range_checked_at_load(tmp_path, section, key, value) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("ranker:\n  backend: simulated\n  drift_share: 0.3\n", encoding="utf-8")
    assert load_config(path).ranker.drift_share == 0.3
    with pytest.raises(ConfigError, match=rf"run.yaml: {section}\.{key}: Input should be"):
        load_config(path, [f"--{section}.{key}={value}"])
