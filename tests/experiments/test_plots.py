"""Plots and the LaTeX table: counts on bars, baselines on the learning curve, PDF beside PNG.

The figures are captured just before they are saved (the saver is wrapped), so the tests read what
matplotlib was asked to draw: bar labels, legend entries, axis labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from promptopt.experiments import plots
from promptopt.experiments.latex import escape, results_table
from promptopt.experiments.report import write_report


@pytest.fixture()
def captured(monkeypatch) -> list:
    figures: list = []
    save = plots.save_figure

    def keep(fig, path, **kwargs):
        figures.append(fig)
        return save(fig, path, **kwargs)

    monkeypatch.setattr(plots, "save_figure", keep)
    return figures


def _cell(mean: float, n: int) -> dict:
    return {"mean": mean, "low": mean - 0.05, "high": mean + 0.05, "n": n}


def _row(ndcg: float, hit: float, mrr: float, calls: int) -> dict:
    return {"metrics": {"ndcg@10": _cell(ndcg, 30), "hit@10": _cell(hit, 30), "mrr": _cell(mrr, 30)},
            "calls": calls}


def test_drift_bars_say_how_many_users_they_rest_on(tmp_path, captured) -> None:
    source = {"policy": _cell(0.5, 23), "best_fixed": _cell(0.45, 23)}
    target = {"policy": _cell(0.4, 7), "best_fixed": _cell(0.42, 7)}
    path = plots.period_comparison(source, target, tmp_path / "drift.png")
    assert path.stat().st_size > 1000 and path.with_suffix(".pdf").stat().st_size > 1000
    (ax,) = captured[0].axes
    labels = [t.get_text() for t in ax.texts]
    assert labels.count("n=23") == 2 and labels.count("n=7") == 2
    assert "test users" in ax.get_ylabel()


def test_learning_curve_draws_training_baselines_and_bandit_curves(tmp_path, captured) -> None:
    curve = [{"step": 64 * k, "reward": 0.3 + 0.02 * k, "accuracy": 0.3, "robustness": 0.2}
             for k in range(1, 5)]
    scan = [{"template_id": "a", "mean_reward": 0.5, "n": 40},
            {"template_id": "b", "mean_reward": 0.3, "n": 60},
            {"template_id": "c", "mean_reward": None, "n": 0}]
    levels = plots.training_baselines(scan)
    assert levels == pytest.approx({"best fixed (template scan)": 0.5,
                                    "random template (template scan)": (0.5 * 40 + 0.3 * 60) / 100})
    bandits = {"linucb": [[64.0, 0.31], [128.0, 0.36]]}
    plots.learning_curve(curve, tmp_path / "curve.png", baselines=levels, baseline_curves=bandits)
    (ax,) = captured[0].axes
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    expected = {"PPO reward", "linucb reward", "best fixed (template scan)",
                "random template (template scan)"}
    assert expected <= set(legend)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["best fixed (template scan)"].get_ydata()[0] == 0.5
    np.testing.assert_array_equal(lines["linucb reward"].get_xdata(), [64.0, 128.0])
    assert "training users" in ax.get_xlabel()
    assert (tmp_path / "curve.pdf").is_file()


def test_method_bars_name_their_user_counts(tmp_path, captured) -> None:
    methods = {"policy": {"ndcg@10": _cell(0.5, 30)}, "random": {"ndcg@10": _cell(0.3, 30)}}
    plots.method_metrics(methods, tmp_path / "m.png", users="validation users")
    (ax,) = captured[0].axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["policy (n=30)", "random (n=30)"]
    assert ax.get_ylabel() == "mean over validation users"


EVALUATION = {
    "split": "test", "n_users": 30, "confidence": 0.95,
    "methods": {
        "random": _row(0.30, 0.6, 0.2, 60),
        "best_fixed": _row(0.41, 0.8, 0.3, 1260),
        "policy": _row(0.44, 0.7, 0.33, 60),
        "oracle": _row(0.70, 0.95, 0.6, 1080),
    },
}


def test_latex_table_of_the_headline_results() -> None:
    tex = results_table(EVALUATION, title="quick_start")
    rows = {line.split(" & ")[0]: line for line in tex.splitlines() if " & " in line}
    assert set(rows) == {"Selector", "random", "best\\_fixed", "policy", "oracle$^\\dagger$"}
    assert rows["Selector"] == "Selector & NDCG@10 & HR@10 & MRR & Requests \\\\"
    # The best mean of each column among shippable selectors is bold; the oracle never is.
    assert "\\textbf{0.440} [0.390, 0.490]" in rows["policy"] and "\\textbf{0.800}" in rows["best\\_fixed"]
    assert "\\textbf" not in rows["oracle$^\\dagger$"] and "1{,}260" in rows["best\\_fixed"]
    assert "quick\\_start: selectors on 30 held-out test users" in tex and "95\\% bootstrap" in tex
    for env in ("table", "tabular"):
        assert tex.count(f"\\begin{{{env}}}") == tex.count(f"\\end{{{env}}}") == 1
    assert escape("a_b & 50% #1") == "a\\_b \\& 50\\% \\#1"


def test_report_names_the_scan_and_ppos_own_template_means_apart(tmp_path: Path) -> None:
    metrics = {
        "train": {"steps": 256, "template_ranking": [{"template_id": "t1", "mean_reward": 0.6, "n": 200}]},
        "evaluation": {**EVALUATION, "template_scan": [{"template_id": "t1", "mean_reward": 0.4, "n": 56},
                                                       {"template_id": "t2", "mean_reward": 0.45, "n": 50}]},
    }
    text = write_report(tmp_path / "report.md", config={"name": "x"}, metrics=metrics).read_text()
    assert "## best_fixed's scan: every template on the training users" in text
    assert "## Templates PPO chose in training: mean reward of its own episodes" in text
    assert "mean training reward" not in text
    scan = text.split("## best_fixed's scan")[1].split("##")[0]
    assert scan.index("`t2`") < scan.index("`t1`")  # best first
    assert "| `t1` | 0.6000 | 200 |" in text.split("## Templates PPO chose")[1]
