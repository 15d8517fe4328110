"""wandb tracking never fails a run, stays offline without a key, and redacts secrets."""

from __future__ import annotations

import logging
import sys
import types

import pytest

from promptopt.config import TrackingConfig
from promptopt.experiments.tracking import Tracker, redact, secret_values, start_tracking


class FakeRun:
    def __init__(self, fail_on: str = "") -> None:
        self.id = "abc123"
        self.fail_on = fail_on
        self.logged: list[dict] = []
        self.summary: dict = {}
        self.finished = False

    def log(self, values, step=None):
        if self.fail_on == "log":
            raise ConnectionError("wandb.ai unreachable")
        self.logged.append(values)

    def finish(self):
        self.finished = True


@pytest.fixture()
def fake_wandb(monkeypatch):
    module = types.ModuleType("wandb")
    module.calls = []

    def init(**kwargs):
        module.calls.append(kwargs)
        if kwargs.get("project") == "explode":
            raise RuntimeError("wandb is broken")
        return FakeRun(fail_on=kwargs.get("entity") or "")

    module.init = init
    module.Settings = lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def test_disabled_tracking_does_not_import_wandb(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # importing it would raise
    tracker = start_tracking(TrackingConfig(wandb=False), run_dir=tmp_path, run_name="r", run_config={})
    assert not tracker.active
    tracker.log({"train/x": 1.0})
    tracker.finish()


def test_online_without_key_falls_back_to_offline(tmp_path, fake_wandb, monkeypatch, caplog) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc from `wandb login`
    with caplog.at_level(logging.WARNING):
        tracker = start_tracking(TrackingConfig(mode="online"), run_dir=tmp_path, run_name="r",
                                 run_config={"a": 1})
    assert tracker.active
    call = fake_wandb.calls[-1]
    assert call["mode"] == "offline" and call["dir"] == str(tmp_path)
    assert (tmp_path / "wandb").is_dir()
    assert any("wandb has no key" in r.getMessage() for r in caplog.records)


def test_under_wandb_agent_an_offline_config_logs_online(tmp_path, fake_wandb, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep123")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    start_tracking(TrackingConfig(mode="offline"), run_dir=tmp_path, run_name="r", run_config={})
    assert fake_wandb.calls[-1]["mode"] == "online"


def test_a_broken_wandb_never_fails_the_run(tmp_path, fake_wandb, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        tracker = start_tracking(TrackingConfig(project="explode"), run_dir=tmp_path, run_name="r",
                                 run_config={})
    assert not tracker.active
    assert any("could not start" in r.getMessage() for r in caplog.records)
    tracker = start_tracking(TrackingConfig(entity="log"), run_dir=tmp_path, run_name="r", run_config={})
    assert tracker.active
    tracker.log({"train/reward": 0.5})  # the server is unreachable mid-run
    assert not tracker.active
    tracker.log({"train/reward": 0.6})
    tracker.summary({"eval/ndcg@10": 0.4})
    tracker.finish()


def test_secrets_are_redacted_from_what_is_logged(tmp_path, fake_wandb, monkeypatch) -> None:
    monkeypatch.setenv("MY_RANKER_KEY", "sk-redact-me-0123456789")
    monkeypatch.setenv("OTHER_API_KEY", "another-secret-value")
    assert "sk-redact-me-0123456789" in secret_values(["MY_RANKER_KEY"])
    assert "another-secret-value" in secret_values()
    tracker = start_tracking(TrackingConfig(), run_dir=tmp_path, run_name="r", api_key_env="MY_RANKER_KEY",
                             run_config={"ranker": {"api_key_env": "MY_RANKER_KEY",
                                                    "base_url": "http://x/?k=sk-redact-me-0123456789"}})
    assert fake_wandb.calls[-1]["config"]["ranker"] == {"api_key_env": "MY_RANKER_KEY",
                                                        "base_url": "http://x/?k=***"}
    tracker.summary({"note": "another-secret-value", "eval/ndcg@10": 0.5})
    assert tracker.run.summary == {"note": "***", "eval/ndcg@10": 0.5}
    assert redact(["a", {"b": "another-secret-value"}], ["another-secret-value"]) == ["a", {"b": "***"}]


def test_log_keeps_only_numbers() -> None:
    run = FakeRun()
    Tracker(run).log({"train/reward": 0.5, "flag": True, "name": "x", "llm/calls": 3})
    assert run.logged == [{"train/reward": 0.5, "llm/calls": 3}]
