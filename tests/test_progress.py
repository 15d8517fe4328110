"""Progress bars: every long phase draws one on a terminal (what it does, counts, ETA), none otherwise.

Phases across the packages: LightGCN pretraining (policies), the best-fixed scan and bandit fitting
(promptopt), a study answer table (experiments). ``PROMPTOPT_PROGRESS=1`` stands in for a terminal.
"""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.progress import progress_bar


@pytest.fixture(scope="module")
def problem_and_ranker(synthetic_data, synthetic_split):
    from promptopt.config import RewardConfig, SplitConfig
    from promptopt.llm.simulated import SimulatedRanker
    from promptopt.problem import RecProblem
    from promptopt.templates import TemplateCatalog

    include = ["expert.recent5.none.index", "expert.recent10.none.index", "expert.genres10.none.index"]
    catalog = TemplateCatalog.load("movies", include=include)
    problem = RecProblem.build(synthetic_data, synthetic_split, catalog, RewardConfig(), SplitConfig(),
                               seed=0)
    return problem, SimulatedRanker(synthetic_data, catalog, seed=0)


def test_quiet_when_stderr_is_not_a_terminal_and_switchable(monkeypatch, capsys) -> None:
    monkeypatch.delenv("PROMPTOPT_PROGRESS", raising=False)
    with progress_bar(total=3, desc="x") as bar:  # pytest's captured stderr is not a terminal
        assert bar.disable
    monkeypatch.setenv("PROMPTOPT_PROGRESS", "0")
    assert progress_bar(total=3, desc="x").disable
    monkeypatch.setenv("PROMPTOPT_PROGRESS", "1")
    with progress_bar(total=3, desc="counting", unit="thing") as bar:
        bar.update(3)
    err = capsys.readouterr().err
    assert "counting:" in err and "0/3" in err and "thing/s" in err  # what, how much, the rate


@pytest.fixture()
def shown(monkeypatch, capsys):
    monkeypatch.setenv("PROMPTOPT_PROGRESS", "1")
    capsys.readouterr()

    def stderr() -> str:
        return capsys.readouterr().err

    return stderr


def test_lightgcn_pretraining_shows_epochs_loss_and_recall(synthetic_data, shown) -> None:
    from promptopt.policies.graph import build_graph
    from promptopt.policies.lightgcn import pretrain_lightgcn
    from promptopt.splits import training_mask

    graph = build_graph(synthetic_data, training_mask(synthetic_data, n_targets=2))
    pretrain_lightgcn(graph, embedding_dim=8, n_layers=1, epochs=3, patience=5, batch_size=512, seed=0)
    err = shown()
    # The postfix redraws the bar after every epoch: the counts and the epoch's numbers show.
    assert "LightGCN BPR" in err and "3/3" in err and "epoch" in err and "val recall@20" in err


def test_best_fixed_scan_and_bandit_fitting_show_their_work(problem_and_ranker, shown) -> None:
    from promptopt.bandits import EpsilonGreedySelector, bandit_features
    from promptopt.selectors import best_fixed

    problem, ranker = problem_and_ranker
    users = problem.pool("train")
    best_fixed(problem, ranker, users)
    err = shown()
    # The total shows from the first draw on (how far the bar got depends on the redraw timing).
    assert f"best_fixed: every template on {len(users)} users" in err and f"/{problem.n_templates} " in err
    features = bandit_features(problem, users)
    EpsilonGreedySelector(problem.n_templates).fit(problem, ranker, users, features, steps=40)
    err = shown()
    assert "epsilon_greedy: fitting" in err and "/40" in err and "episode" in err


def test_study_answer_table_shows_requests(problem_and_ranker, shown) -> None:
    from promptopt.experiments.study.answers import score_table

    problem, ranker = problem_and_ranker
    users = problem.pool("val")
    table = score_table(problem, ranker, users, chunk=16, label="validation")
    err = shown()
    assert "answers validation" in err and "episode" in err
    assert np.isfinite(table.ndcg).any()


def test_a_sweep_shows_its_trials(tmp_path, shown) -> None:
    import yaml

    from promptopt.experiments.local_sweep import load_sweep, run_sweep

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"method": "random", "metric": {"name": "val/ndcg@10"},
                                    "parameters": {"ppo.n_epochs": {"values": [1, 2, 3]}}}))
    run_sweep(load_sweep(path), count=3, output_dir=tmp_path / "out",
              trial_fn=lambda overrides, run_dir: {"val/ndcg@10": 0.25})
    err = shown()
    assert "sweep sweep" in err and "/3 " in err and "trial" in err and "best val/ndcg@10 0.2500" in err

