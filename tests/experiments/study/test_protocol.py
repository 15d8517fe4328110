"""The study end to end at CI size: synthetic data, the simulated ranker, one seed."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from promptopt.errors import ConfigError


def test_study_writes_a_complete_report(
    tmp_path: Path, study_yaml: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from promptopt.experiments.cli import main

    config = study_yaml(tmp_path)
    assert main(["study", str(config)]) == 0
    report = (tmp_path / "docs" / "RESULTS.md").read_text(encoding="utf-8")
    assert "## How to reproduce" in report and "promptopt study" in report
    assert re.search(r"Hardware: .+, \d+ cores", report)
    assert re.search(r"Wall time: \d+\.\d min", report)
    assert re.search(r"LLM calls \(uncached requests\) this run: [1-9]\d*", report)
    targets = report.split("## Targets", 1)[1].split("\n## ", 1)[0]
    for number in ("1.", "1'.", "2.", "3.", "4.", "5."):
        row = next(line for line in targets.splitlines() if line.startswith(f"| {number}"))
        assert re.search(r"\d+\.\d+", row), row
        assert re.search(r"met|found|policy_raw [<>~] mlp_ppo", row), row
    for section in (
        "## 1. Non-inferiority",
        "## 2. Budget",
        "## 3. What the graph adds",
        "## 4. Drift",
        "## 5. Search for signal",
        "## Per seed",
        "## Attempts",
    ):
        assert section in report
    for name in (
        "best fixed template",
        "LightGCN+MLP PPO + validated gate",
        "LinUCB",
        "MLP-only PPO",
        "oracle in hindsight",
        "realistic per-user bound",
    ):
        assert name in report
    for png in ("selectors.png", "paired.png", "drift.png", "learning_curves.png"):
        path = tmp_path / "docs" / "results" / png
        assert path.stat().st_size > 1000 and f"results/{png}" in report
        assert path.with_suffix(".pdf").stat().st_size > 1000  # vector copy for papers
    tex = (tmp_path / "docs" / "results" / "results.tex").read_text(encoding="utf-8")
    assert tex.count("\\begin{table}") == 2 and "accuracy reward" in tex and "robust reward" in tex
    assert "oracle$^\\dagger$" in tex and "\\textbf{" in tex
    assert "## Targets" in capsys.readouterr().out
    # Raw results: the oracle is an upper bound of every selector, per user.
    study_json = tmp_path / "work" / "study.json"
    run = json.loads(study_json.read_text(encoding="utf-8"))
    fill = run["test_fill"]  # what the test users' targets let a selector choose, in the setup
    assert fill["users"] == run["n_users"]["test"] and fill["fill_all"] + fill["fill_one"] <= fill["users"]
    assert (f"Of the {fill['users']} test users, {fill['fill_one']} can fill exactly one template"
            f" at their target (every selector is forced to it) and {fill['fill_all']} every") in report
    results = run["seeds"][0]["rewards"]["accuracy"]["results"]["last"]
    oracle = np.array(results["oracle"]["per_user"]["ndcg@10"])
    for name in ("best_fixed", "policy_raw", "policy", "linucb", "realistic"):
        assert np.all(np.array(results[name]["per_user"]["ndcg@10"]) <= oracle + 1e-9), name
    # Learned selectors never touch more than budget_share of the exhaustive sweep's calls.
    budget = run["seeds"][0]["rewards"]["accuracy"]
    assert 0 < budget["train"]["policy"]["distinct_calls"] <= 0.3 * budget["exhaustive_calls"]
    # Each (seed, reward) holds the pipeline's run layout: embeddings and both agents.
    for reward in ("accuracy", "robust"):
        folder = tmp_path / "work" / "seed0" / reward
        assert {p.name for p in folder.iterdir()} >= {"lightgcn.pt", "agent.zip", "agent_mlp.zip"}
    # The report is a function of study.json: re-rendering it gives the same file, and the
    # attempts log is not appended to.
    from promptopt.experiments.study.__main__ import main as study_main

    log = (tmp_path / "docs" / "results" / "attempts.jsonl").read_text(encoding="utf-8")
    assert study_main([str(config), "--report-from", str(study_json)]) == 0
    assert (tmp_path / "docs" / "RESULTS.md").read_text(encoding="utf-8") == report
    assert (tmp_path / "docs" / "results" / "attempts.jsonl").read_text(encoding="utf-8") == log


def test_family_outside_the_catalog_fails_before_any_call(
    tmp_path: Path, study_yaml: Callable[..., Path]
) -> None:
    from promptopt.experiments.study.config import load_study
    from promptopt.experiments.study.protocol import run_study

    config, study = load_study(study_yaml(tmp_path, families={"x": ["expert.nope.none.index"]}))
    with pytest.raises(ConfigError, match=r"expert\.nope\.none\.index"):
        run_study(config, study)
    assert not (tmp_path / "cache.sqlite").exists()


def test_training_levels_of_the_exhaustive_sweep() -> None:
    from promptopt.experiments.study.answers import AnswerTable
    from promptopt.experiments.study.plots import training_levels

    nan = np.nan
    reward = np.array([[0.2, 0.6, nan], [0.4, 0.1, nan], [nan, nan, nan]])
    levels = training_levels(AnswerTable(np.arange(3), reward.copy(), reward))
    assert levels == pytest.approx({"oracle": (0.6 + 0.4) / 2, "best fixed": 0.35, "random": 1.3 / 4})


def test_fill_sentence_counts_users_left_out_and_forced() -> None:
    from promptopt.experiments.study.report import fill_sentence

    text = fill_sentence({"users": 46, "no_target": 3, "unservable": 3, "fill_none": 2, "fill_one": 39,
                          "fill_all": 6})
    assert "3 have no target (3 of them because from the cut on no history" in text
    assert "2 can fill no template at their target" in text
    assert "39 can fill exactly one template" in text and "6 every template" in text
    assert fill_sentence(None) == ""  # a study.json from before the count was recorded
