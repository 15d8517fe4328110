"""Preflight: a remote ranker answers one episode before LightGCN pretraining, or the run stops at once.

Against the real local OpenAI-compatible HTTP server (promptopt.testing).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from promptopt.config import load_config
from promptopt.errors import ConfigError, RankerError
from promptopt.experiments import pipeline
from promptopt.experiments.assembly import build_problem, make_run_ranker
from promptopt.experiments.cli import main
from promptopt.experiments.preflight import calls_a_server, check_ranker, check_tracking
from promptopt.testing import LocalOpenAIServer

KEY_ENV = "PROMPTOPT_PREFLIGHT_KEY"


def _openai(server: LocalOpenAIServer, **extra) -> dict:
    return {"backend": "openai", "model": "local-test", "base_url": server.base_url, "api_key_env": KEY_ENV,
            "concurrency": 2, **extra}


def test_a_healthy_server_answers_one_episode_that_the_cache_keeps(tiny_config, tmp_path, monkeypatch,
                                                                   caplog) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    caplog.set_level(logging.INFO)
    with LocalOpenAIServer() as server:
        config = load_config(tiny_config(tmp_path, ranker=_openai(server)))
        _, _, _, problem = build_problem(config)
        ranker = make_run_ranker(config, problem)
        check_ranker(config, problem, ranker)
        sent = server.stats().requests.get("/v1/chat/completions", 0)
        assert sent == problem.calls_per_episode  # one episode, nothing more
        check_ranker(config, problem, ranker)  # the same episode again: answered by the cache
        assert server.stats().requests["/v1/chat/completions"] == sent
        assert ranker.stats.hits == sent
    assert any("preflight: openai ranker 'local-test'" in r.getMessage() for r in caplog.records)


def test_a_down_server_stops_the_run_before_pretraining_with_one_line(tiny_config, tmp_path,
                                                                      monkeypatch, capsys) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    monkeypatch.chdir(tmp_path)
    with LocalOpenAIServer() as server:
        server.fail_matching("", "500")  # every chat request fails
        path = tiny_config(tmp_path, ranker=_openai(server, max_retries=1))
        code = main(["train", str(path), "--output-dir", str(tmp_path / "run")])
        failed = server.stats()
        url = server.base_url
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert "preflight" in lines[0] and "before LightGCN pretraining, nothing was trained" in lines[0]
    assert url in lines[0] and "500" in lines[0]
    assert failed.failures["500"] >= 2  # the episode's requests, each tried 1 + max_retries times
    # No pretraining, no config: the run directory holds only the spend ledger (the calls it sent).
    run = tmp_path / "run"
    assert not (run / "config.yaml").exists() and not (run / "lightgcn.pt").exists()
    assert {p.name for p in run.iterdir() if not p.name.startswith(".")} <= {"budget.json"}


def test_a_missing_key_stops_before_any_request(tiny_config, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with LocalOpenAIServer() as server:
        config = load_config(tiny_config(tmp_path, ranker=_openai(server)))
        with pytest.raises(RankerError, match=KEY_ENV):
            pipeline.train(config, tmp_path / "run")
        assert sum(server.stats().requests.values()) == 0
    assert not (tmp_path / "run").exists()


def test_local_rankers_send_nothing_and_the_tracking_check(tiny_config, tmp_path, monkeypatch) -> None:
    config = load_config(tiny_config(tmp_path))
    assert not calls_a_server(config.ranker)
    assert calls_a_server(load_config(tiny_config(tmp_path, ranker={"backend": "embedding",
                                                                    "embedding_api": True})).ranker)
    check_tracking(config)
    tensorboard = load_config(tiny_config(tmp_path, tracking={"wandb": False, "tensorboard_dir": "tb"}))
    import promptopt.experiments.preflight as preflight

    monkeypatch.setattr(preflight.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"tracking.tensorboard_dir='tb' needs the tensorboard package"):
        check_tracking(tensorboard)
    assert not Path("tb").exists()
