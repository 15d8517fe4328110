"""The whole tiny-LLM protocol end to end on synthetic data, with a tiny random Llama as the LLM.

The real run (SmolLM2 on MovieLens-100K) is the same code with another config; here the point is that
every row ranks the same tasks, the report says the split everywhere, and a re-run pays nothing.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.promptopt.llm.tiny_models import build_tiny_model

TEMPLATES = ["expert.recent5.none.index", "expert.recent5.none.title"]


def _config(tmp_path, model) -> object:
    raw = {
        "tiny_llm": {"users": 6, "generate_users": 4, "index_templates": TEMPLATES[:1],
                     "title_templates": TEMPLATES[1:], "generate_templates": TEMPLATES[1:],
                     "embedding_template": TEMPLATES[0], "max_new_tokens": 12, "chunk": 5,
                     "output": str(tmp_path / "RESULTS.md"), "work_dir": str(tmp_path / "work"),
                     "note": "Sized for a unit test."},
        "experiment": {
            "name": "tiny_llm_test", "seed": 0,
            "data": {"format": "synthetic", "synthetic": {"n_users": 40, "n_items": 60, "n_genres": 5,
                                                          "mean_history": 12, "seed": 1}},
            "split": {"val_fraction": 0.2, "test_fraction": 0.3, "n_targets": 1, "n_negatives": 7},
            "templates": {"catalog": "movies", "include": TEMPLATES},
            "ranker": {"backend": "hf", "model": str(model), "device": "cpu", "dtype": "float32",
                       "batch_size": 4},
            "cache": {"enabled": True, "path": str(tmp_path / "cache.sqlite")},
            "reward": {"robust_weight": 0.0, "bootstrap": 2},
            "policy": {"embedding_dim": 8, "n_layers": 1, "bpr_epochs": 2},
            "eval": {"n_bootstrap": 100},
            "tracking": {"wandb": False},
        },
    }
    path = tmp_path / "tiny_llm.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_every_row_ranks_the_same_tasks_and_a_rerun_is_answered_from_the_cache(tmp_path, capsys) -> None:
    from promptopt.experiments.tiny_llm.__main__ import main

    path = _config(tmp_path, build_tiny_model(tmp_path / "tiny-llama", "llama", chat=True))
    assert main([str(path)]) == 0
    result = json.loads((tmp_path / "work/results.json").read_text())
    names = [r["name"] for r in result["rows"]]
    assert names[:4] == ["shown order (position only)", "popularity (training interactions)",
                         "LightGCN (this run's, e_u . e_i)", "MiniLM embedding (all-MiniLM-L6-v2)"]
    assert [r["kind"] for r in result["rows"][4:]] == ["score", "score", "generate", "generate"]
    users, orders = result["users"], result["orders"]
    assert orders == 2 and 1 <= users <= 6 and result["generate_users"] == min(4, users)
    for row in result["rows"]:
        assert row["split"] == "test" and row["orders"] == 2
        assert row["n_users"] == (result["generate_users"] if row["kind"] == "generate" else users)
        assert sum(b["n"] for b in row["by_position"]) == row["n_users"] * orders
        assert 0.0 <= row["base"]["mean"] <= 1.0
    # The shown order ranks the target first exactly when it was shown first.
    shown = result["rows"][0]
    assert shown["by_position"][0]["ndcg"] >= shown["by_position"][-1]["ndcg"]
    assert shown["top1_position"]["first"] == 1.0
    plain, grounded = result["rows"][-2:]
    assert plain["parse"]["answers"] == grounded["parse"]["answers"] == result["generate_users"] * orders
    assert plain["parse"]["grounded"] == 0 and grounded["grounding"] == "embedding"
    # Grounding places what was hallucinated (the same answers, parsed again).
    assert grounded["parse"]["hallucinated"] <= plain["parse"]["hallucinated"]
    assert grounded["parse"]["found"] == plain["parse"]["found"]
    report = (tmp_path / "RESULTS.md").read_text()
    assert "measured on test users" in report and report.count("| test |") >= len(result["rows"])
    assert "## Position bias" in report and "## Grounding" in report
    assert "**How this run was sized.** Sized for a unit test." in report
    assert f"* Grounding ({TEMPLATES[1]}, test users): NDCG@10 {plain['base']['mean']:.3f} -> " in report
    first_misses = result["cache"]["misses"]
    assert first_misses > 0

    # The same command again: every answer from the cache, the same numbers.
    assert main([str(path)]) == 0
    again = json.loads((tmp_path / "work/results.json").read_text())
    assert again["cache"]["misses"] == 0 and again["cache"]["hits"] == result["cache"]["hits"] + first_misses
    assert [r["base"] for r in again["rows"]] == [r["base"] for r in result["rows"]]
    assert "report:" in capsys.readouterr().out

    # --report-from rewrites the report from results.json alone.
    written = (tmp_path / "RESULTS.md").read_text()
    (tmp_path / "RESULTS.md").unlink()
    assert main([str(path), "--report-from", str(tmp_path / "work/results.json")]) == 0
    assert (tmp_path / "RESULTS.md").read_text() == written


def test_report_from_a_missing_file_is_one_line(tmp_path, capsys) -> None:
    from promptopt.experiments.tiny_llm.__main__ import main

    path = _config(tmp_path, tmp_path / "no-model-needed")
    assert main([str(path), "--report-from", str(tmp_path / "missing.json")]) == 2
    assert "cannot read a results.json" in capsys.readouterr().err
