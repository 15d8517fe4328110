"""``tracking.tensorboard_dir``: SB3's tensorboard_log, for users who do not use wandb."""

from __future__ import annotations

import pytest

from promptopt.config import load_config
from promptopt.experiments import pipeline


@pytest.mark.slow
def test_ppo_writes_tensorboard_events_per_agent(tiny_config, tmp_path) -> None:
    pytest.importorskip("tensorboard")  # the tracking extra (make install has it)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = tmp_path / "tb"
    config = load_config(tiny_config(tmp_path, eval={"selectors": ["random", "mlp_ppo", "policy"]},
                                     ppo={"total_timesteps": 128},
                                     tracking={"wandb": False, "tensorboard_dir": str(board)}))
    pipeline.train(config, tmp_path / "run")
    # One TensorBoard run per agent, named after the run directory and the agent.
    assert sorted(p.name for p in board.iterdir()) == ["run-mlp_1", "run-policy_1"]
    for name in ("run-mlp_1", "run-policy_1"):
        events = EventAccumulator(str(board / name))
        events.Reload()
        scalars = set(events.Tags()["scalars"])
        assert {"train/value_loss", "train/entropy_loss"} <= scalars, scalars
        assert 0 < max(e.step for e in events.Scalars("train/value_loss")) <= 128
