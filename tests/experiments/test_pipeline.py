"""The pipeline end to end on tiny data: train -> evaluate -> export -> PromptBook.load -> prompt_for.

Also: resume after an interruption (no request sent twice, the same total steps), a budget stop
that resumes, a refused overwrite, and a fake API key that must appear in no file of the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from promptopt.config import load_config
from promptopt.errors import BudgetExceeded, ConfigError
from promptopt.experiments import assembly, pipeline
from promptopt.experiments.rundir import RunDir
from promptopt.export import PromptBook
from promptopt.metrics import METRIC_NAMES
from tests.experiments.conftest import tiny_config_dict

SELECTORS = ["random", "best_fixed", "epsilon_greedy", "linucb", "mlp_ppo", "policy_raw", "policy", "oracle"]


def tiny_config(tmp_path: Path, **sections: Any) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, **sections)))
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("e2e")
    config = load_config(tiny_config(tmp))
    run_dir = pipeline.train(config, tmp / "run")
    metrics = pipeline.evaluate(run_dir)
    pipeline.export(run_dir)
    return run_dir, metrics


@pytest.mark.slow
def test_run_directory_holds_every_artifact(finished_run) -> None:
    run_dir, _ = finished_run
    run = RunDir(run_dir)
    for path in (run.config, run.lightgcn, run.agent("policy"), run.agent("mlp"), run.metrics,
                 run.prompts, run.report, run.log):
        assert path.is_file() and path.stat().st_size > 0, path
    assert {p.name for p in run.plots.glob("*.png")} == {
        "learning_curve.png", "template_usage.png", "methods.png", "drift.png"}
    assert {p.stem for p in run.plots.glob("*.pdf")} == {p.stem for p in run.plots.glob("*.png")}
    tex = (run_dir / "results.tex").read_text(encoding="utf-8")
    assert "\\begin{tabular}" in tex and "oracle$^\\dagger$" in tex and "held-out test users" in tex
    curves = run.read_metrics()["evaluation"]["bandit_curves"]
    assert set(curves) == {"epsilon_greedy", "linucb"} and all(len(c) >= 1 for c in curves.values())
    # The resolved config re-loads to the same values.
    assert load_config(run.config).ppo.total_timesteps == 256


@pytest.mark.slow
def test_training_metrics_and_learning_curve(finished_run) -> None:
    _, metrics = finished_run
    train = metrics["train"]
    assert train["steps"] == 256
    assert set(train["agents"]) == {"policy", "mlp"}
    steps = [row["step"] for row in train["curve"]]
    assert steps == sorted(steps) and steps[-1] == 256
    assert all(0.0 <= row["reward"] <= 1.0 for row in train["curve"])
    assert any(k.startswith("train/") for k in train["curve"][-1])  # SB3's losses attached
    assert sum(r["n"] for r in train["template_ranking"]) == 256
    assert train["llm"]["calls"] > 0 and 0.0 <= train["llm"]["cache_hit_rate"] <= 1.0
    assert train["lightgcn"]["epochs"] >= 1


@pytest.mark.slow
def test_evaluation_compares_every_selector_on_the_same_users(finished_run) -> None:
    run_dir, metrics = finished_run
    evaluation = metrics["evaluation"]
    methods = evaluation["methods"]
    assert list(methods) == SELECTORS
    n_users = {m["n_users"] for m in methods.values()}
    assert n_users == {evaluation["n_users"]}
    for result in methods.values():
        for name in METRIC_NAMES:
            cell = result["metrics"][name]
            assert cell["low"] - 1e-12 <= cell["mean"] <= cell["high"] + 1e-12
    # With an accuracy-only reward the oracle in hindsight maximises NDCG@10 per user.
    oracle = methods["oracle"]["metrics"]["ndcg@10"]["mean"]
    assert all(oracle >= m["metrics"]["ndcg@10"]["mean"] - 1e-12 for m in methods.values())
    # The oracle scores every template per user; a learned selector one.
    assert methods["oracle"]["calls"] >= 4 * methods["policy"]["calls"]
    paired = evaluation["paired"]
    assert paired["a"] == "policy" and paired["b"] == "best_fixed"
    assert paired["wins"] + paired["losses"] + paired["ties"] == paired["n_users"]
    assert 0.0 < paired["p_value"] <= 1.0
    periods = evaluation["periods"]
    assert periods["source"]["n_users"] + periods["target"]["n_users"] >= evaluation["n_users"] // 2
    assert set(evaluation["drop"]) == set(SELECTORS)
    # The change target - source is paired over the users with both periods: its users are at most
    # either period's, and a selector that ignores the period (random is seeded per user) has one.
    assert periods["protocol"] == "leave_last"
    for name, change in periods["change"].items():
        assert 0 < change["n_users"] <= min(periods["source"]["n_users"], periods["target"]["n_users"])
        assert change["low"] - 1e-12 <= change["mean"] <= change["high"] + 1e-12, name
    _, split, _, problem = assembly.build_problem(load_config(run_dir / "config.yaml"))
    both = [u for u in split.test if problem.target_row(int(u), period="source") is not None
            and problem.target_row(int(u), period="target") is not None]
    assert set(periods["change"]) == (set(SELECTORS) if both else set())
    for change in periods["change"].values():
        assert change["n_users"] == len(both)
    summary = metrics["summary"]
    assert summary["test/ndcg@10"] == methods["policy"]["metrics"]["ndcg@10"]["mean"]  # keyed by its split
    assert not any(k.startswith(("eval/", "val/")) for k in summary)
    assert summary["train/steps"] == 256
    scan = evaluation["template_scan"]
    best = max((r for r in scan if r["mean_reward"] is not None), key=lambda r: r["mean_reward"])
    assert best["n"] > 0


@pytest.mark.slow
def test_report_states_the_table_and_the_paired_test(finished_run) -> None:
    run_dir, _ = finished_run
    report = (run_dir / "report.md").read_text()
    for name in SELECTORS:
        assert f"`{name}`" in report
    assert "paired over" in report
    assert "Source vs drifted target period (test users (held out), protocol leave_last)" in report
    assert "change (paired)" in report
    assert "plots/methods.png" in report


@pytest.mark.slow
def test_prompt_book_loads_and_serves(finished_run) -> None:
    from promptopt.tasks import UserContext

    run_dir, metrics = finished_run
    book = PromptBook.load(run_dir / "prompts.json")
    config = load_config(run_dir / "config.yaml")
    data, split, catalog, problem = assembly.build_problem(config)
    assert len(book) == len(split.train) + len(split.val) + len(split.test)
    assert book.template_ids == catalog.ids
    assert book.ranker["backend"] == "simulated"
    assert book.evaluation["methods"]["policy"]["metrics"]["ndcg@10"]["mean"] == pytest.approx(
        metrics["evaluation"]["methods"]["policy"]["metrics"]["ndcg@10"]["mean"])
    payload = json.loads((run_dir / "prompts.json").read_text())
    # The safe policy: the rule validated in training, on validation users only, is in the book.
    rule = metrics["safe_policy"]
    assert book.gate is not None and book.gate["order"] == rule["order"] and book.gate["split"] == "val"
    assert sorted(rule["users"]) == sorted(data.user_ids[int(u)] for u in split.val)
    assert book.default_template == rule["order"][0]
    index = {raw: u for u, raw in enumerate(data.user_ids)}
    for row in payload["users"]:
        assert abs(sum(row["action_probabilities"]) - 1.0) < 1e-6
        if row["deviates"]:  # the policy's own choice, only where the validated gate says so
            assert rule["threshold"] is not None
            assert row["template_id"] == catalog.ids[int(np.argmax(row["action_probabilities"]))]
            assert "deviates" in row["reason"]
        else:  # the default: the first template of the ranked list this user can fill
            mask = problem.action_mask(index[row["user_id"]], final=True)
            first = next(t for t in rule["order"] if mask[catalog.index_of(t)])
            assert row["template_id"] == first and row["reason"].startswith("default")
    # The stored prompt is the chosen template filled for the user's last task.
    user = next(int(u) for u in split.test if data.history_length(int(u)) >= 15)  # fills any template
    row = next(r for r in payload["users"] if r["user_id"] == data.user_ids[user])
    task = problem.tasks(user, final=True)[0]
    assert row["prompt"] == problem.requests([task], catalog.index_of(row["template_id"]))[0].prompt
    # Serving: a known user's new context gets their template; an unknown user the default.
    ctx = UserContext.at(data, user, data.history_length(user))
    served = book.prompt_for(ctx, list(task.candidates), data)
    assert served.template_id == row["template_id"] and not served.fallback
    assert served.deviates == row["deviates"] and served.decision == row["reason"]
    stranger = UserContext(user=0, raw_user_id="not-a-user", items=ctx.items, ratings=ctx.ratings,
                           timestamps=ctx.timestamps)
    served = book.prompt_for(stranger, list(task.candidates), data)
    assert served.fallback and served.template_id == book.default_template
    assert book.default_template == book.global_ranking[0].template_id


# ---------------------------------------------------------------------- resume and budget
class CountingRanker:
    """A backend that records the cache key of every request it answers (and can be stopped)."""

    def __init__(self, backend: Any, *, stop_after: int | None = None) -> None:
        self.backend = backend
        self.stop_after = stop_after
        self.keys: list[str] = []
        self.calls = 0

    @property
    def identity(self) -> Any:
        return self.backend.identity

    def rank(self, requests):
        from promptopt.llm.cache import cache_key

        self.calls += 1
        if self.stop_after is not None and self.calls > self.stop_after:
            raise KeyboardInterrupt
        self.keys += [cache_key(self.identity, r) for r in requests]
        return self.backend.rank(requests)


def _patch_ranker(monkeypatch, sessions: list[CountingRanker], stop_after: int | None) -> None:
    def make(config, problem, *, run=None, phase="run"):
        from promptopt.llm.budget import Budget
        from promptopt.llm.cache import CachedRanker

        backend = assembly.make_simulator(config, problem)
        counting = CountingRanker(backend, stop_after=stop_after if not sessions else None)
        sessions.append(counting)
        ledger = run.budget if run is not None else None
        return CachedRanker(counting, config.cache.path,
                            budget=Budget.from_config(config.budget, ledger=ledger, phase=phase))

    monkeypatch.setattr(pipeline, "make_run_ranker", make)


def _train_only(tmp_path: Path, **sections: Any):
    sections.setdefault("policy", {"kind": "mlp"})
    sections.setdefault("eval", {"selectors": ["random", "policy"]})
    return load_config(tiny_config(tmp_path, **sections))


def test_resume_after_an_interrupted_run(tmp_path, monkeypatch) -> None:
    # 160 users x 4 templates: enough (user, template) pairs that both sessions meet new ones.
    synthetic = {"n_users": 160, "n_items": 120, "n_genres": 8, "mean_history": 20, "seed": 3}
    config = _train_only(tmp_path, data={"synthetic": synthetic})
    sessions: list[CountingRanker] = []
    _patch_ranker(monkeypatch, sessions, stop_after=24)  # 4 envs x 16 steps = 16 calls per rollout
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        pipeline.train(config, run_dir)
    run = RunDir(run_dir)
    assert not run.agent("policy").exists()
    saved = sorted(p.name for p in run.checkpoints.glob("policy_*.json"))
    assert saved, "an interrupted run leaves a checkpoint"
    with pytest.raises(ConfigError, match="--resume"):
        pipeline.train(config, run_dir)  # never silently overwrite a run
    pipeline.train_from_cli(None, resume=str(run_dir))
    assert run.agent("policy").is_file()
    metrics = run.read_metrics()
    state = metrics["train"]["agents"]["policy"]
    assert state["steps"] == config.ppo.total_timesteps
    steps = [row["step"] for row in state["curve"]]
    assert steps == sorted(set(steps)) and steps[-1] == config.ppo.total_timesteps
    first, second = sessions
    assert first.keys and second.keys
    assert not set(first.keys) & set(second.keys), "a request answered before the stop was sent again"
    # Every request sent is the agent's training or the safe policy's scan and validation.
    spend = metrics["safe_policy"]["spend"]
    assert state["llm"]["calls"] + spend["scan_uncached"] + spend["validation_uncached"] == len(
        first.keys) + len(second.keys)


def test_budget_stop_saves_a_checkpoint_and_resumes(tmp_path, monkeypatch) -> None:
    config = _train_only(tmp_path, budget={"max_calls": 100})
    run_dir = tmp_path / "run"
    with pytest.raises(BudgetExceeded) as info:
        pipeline.train(config, run_dir)
    message = str(info.value)
    assert "--resume" in message and str(run_dir) in message and "\n" not in message
    assert list(RunDir(run_dir).checkpoints.glob("policy_*.json"))
    pipeline.train_from_cli(None, resume=str(run_dir), overrides=["--budget.max_calls=100000"])
    assert RunDir(run_dir).read_metrics()["train"]["steps"] == config.ppo.total_timesteps
    assert load_config(run_dir / "config.yaml").budget.max_calls == 100000


def test_train_rejects_bad_cli_combinations(tmp_path) -> None:
    path = tiny_config(tmp_path)
    with pytest.raises(ConfigError, match="not both"):
        pipeline.train_from_cli(str(path), resume=str(tmp_path))
    with pytest.raises(ConfigError, match="give a config file"):
        pipeline.train_from_cli(None)
    with pytest.raises(ConfigError, match=r"no config\.yaml"):
        pipeline.evaluate(tmp_path)


# ---------------------------------------------------------------------- secrets
FAKE_KEY = "sk-promptopt-FAKE-7f3a9c1e5b2d4086"


@pytest.mark.slow
def test_api_key_never_reaches_an_output_file(tmp_path, monkeypatch) -> None:
    from promptopt.testing import LocalOpenAIServer

    monkeypatch.setenv("PROMPTOPT_TEST_KEY", FAKE_KEY)
    with LocalOpenAIServer() as server:
        path = tiny_config(
            tmp_path,
            ranker={"backend": "openai", "model": "local-test", "base_url": server.base_url,
                    "api_key_env": "PROMPTOPT_TEST_KEY", "concurrency": 4},
            policy={"kind": "mlp"},
            ppo={"total_timesteps": 64, "n_steps": 8, "checkpoint_every": 32},
            eval={"selectors": ["random", "best_fixed", "policy", "oracle"], "n_bootstrap": 50},
            tracking={"wandb": True, "mode": "offline"},
        )
        run_dir = tmp_path / "run"
        summary = pipeline.run_all(load_config(path), run_dir)
        assert "test/ndcg@10" in summary
        assert server.last_authorization == f"Bearer {FAKE_KEY}", "the key was really used"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and (run_dir / "prompts.json").is_file()
    needle = FAKE_KEY.encode()
    leaked = [str(p) for p in files if needle in p.read_bytes()]
    assert leaked == []
