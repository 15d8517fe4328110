"""``promptopt audit fairness``: one command from config to report; reruns pay nothing; bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from promptopt.experiments.cli import main
from tests.experiments.conftest import tiny_config_dict

LOGS = ("INFO ", "DEBUG ", "WARNING ")


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(LOGS)]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("promptopt audit: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny run made and audited by one command; returns (run directory, report path)."""
    folder = tmp_path_factory.mktemp("audit")
    raw = tiny_config_dict(folder, policy={"kind": "mlp"},
                           eval={"selectors": ["random", "best_fixed", "policy"], "n_bootstrap": 50},
                           fairness={"users": 8, "k": 5, "max_values": 2, "n_permutations": 200,
                                     "min_group_users": 2})
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    report = folder / "docs" / "FAIRNESS.md"
    assert main(["audit", "fairness", str(config), "--output-dir", str(folder / "run"), "--report",
                 str(report), "--note", "a tiny run"]) == 0
    return folder / "run", report


def test_one_command_trains_evaluates_exports_and_audits(audited: tuple[Path, Path]) -> None:
    run, report = audited
    assert (run / "prompts.json").is_file() and (run / "report.md").is_file()
    result = json.loads((run / "fairness" / "fairness.json").read_text())
    assert result["counterfactual"]["all"]["n_pairs"] == 8  # fairness.users, one exported template each
    attributes = result["counterfactual"]["all"]["attributes"]
    assert len(attributes) == 8 and all(len(a["values"]) == 2 for a in attributes)  # max_values
    assert result["spend"]["requests"] == 8 * (1 + 16)
    # The simulator never reads the text: every copy ranks like its neutral prompt, nothing is flagged.
    assert result["flagged"] == []
    assert {g["attribute"] for g in result["group_gaps"]} == {"age", "gender", "occupation"}
    assert set(result["group_gaps"][0]["selectors"]) == {"random", "best_fixed", "policy"}
    text = (run / "fairness" / "fairness.md").read_text()
    assert "## Counterfactual sensitivity" in text and "## Accuracy gaps" in text and "a tiny run" in text
    assert "--note 'a tiny run'" in text  # the report names the whole command that made it
    assert (run / "fairness" / "plots" / "similarity_gender.png").is_file()
    copy = report.read_text()
    assert "fairness/similarity_gender.png" in copy
    assert (report.parent / "fairness" / "similarity_gender.png").is_file()
    assert json.loads((report.parent / "fairness" / "fairness.json").read_text()) == result
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["fairness"]["flagged"] == [] and "fairness/gender/serp_snsr" in metrics["summary"]
    assert "audit" in json.loads((run / "budget.json").read_text())["phases"]


def test_a_rerun_is_answered_by_the_cache(audited: tuple[Path, Path], capsys) -> None:
    run, _ = audited
    assert main(["audit", "fairness", str(run), "--fairness.templates=all"]) == 0
    result = json.loads((run / "fairness" / "fairness.json").read_text())
    assert result["counterfactual"]["all"]["n_pairs"] > 8
    assert main(["audit", "fairness", str(run), "--fairness.templates=all"]) == 0
    again = json.loads((run / "fairness" / "fairness.json").read_text())
    assert again["spend"]["uncached"] == 0 and again["spend"]["requests"] == result["spend"]["requests"]


def test_dry_run_counts_and_sends_nothing(audited: tuple[Path, Path], capsys) -> None:
    run, _ = audited
    before = (run / "budget.json").read_text()
    capsys.readouterr()
    assert main(["audit", "fairness", str(run), "--dry-run", "--fairness.users=3"]) == 0
    out = capsys.readouterr().out
    assert "3 audited (user, template) pairs x (1 neutral + 16 copies) = 51 requests" in out
    assert (run / "budget.json").read_text() == before


@pytest.mark.parametrize(("args", "expected"), [
    (["--fairness.users=0"], "fairness.users: Input should be greater than or equal to 1"),
    (["--seed=3"], "the audit cannot override seed: it defines the run"),
    (["--fairness.attributes=nowhere.yaml"], "unknown attribute set 'nowhere.yaml'"),
    (["--fairness.only=[zodiac]"], "no attribute 'zodiac'"),
    (["--fairness.group_selectors=[best]"], "fairness.group_selectors: unknown selector 'best'"),
    (["--output-dir", "x"], "--output-dir goes with a config file"),
])
def test_bad_input_is_one_line_and_exit_2(audited: tuple[Path, Path], capsys, args: list[str],
                                          expected: str) -> None:
    run, _ = audited
    assert expected in _error(["audit", "fairness", str(run), *args], capsys)


def test_a_missing_run_or_prompt_book_is_named(tmp_path: Path, audited: tuple[Path, Path], capsys) -> None:
    assert "is neither a run directory nor a config file" in _error(
        ["audit", "fairness", str(tmp_path / "nothing")], capsys)
    run, _ = audited
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("config.yaml", "metrics.json", "agent.zip"):
        (copy / name).write_bytes((run / name).read_bytes())
    line = _error(["audit", "fairness", str(copy)], capsys)
    assert "prompts.json does not exist: export the run's choices first" in line


def test_a_run_without_a_policy_is_refused_before_any_request(tmp_path: Path, audited: tuple[Path, Path],
                                                               capsys) -> None:
    run, _ = audited
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("config.yaml", "metrics.json", "prompts.json"):
        (copy / name).write_text((run / name).read_text())
    line = _error(["audit", "fairness", str(copy)], capsys)
    assert "agent.zip does not exist, so the group gaps cannot score 'policy'" in line
    assert not (copy / "budget.json").exists() and not (copy / "fairness").exists()


@pytest.mark.parametrize(("values", "expected"), [
    ("[]", "attribute 'age': values must be a list of at least two values"),
    ("[old]", "attribute 'age': values must be a list of at least two values"),
    ("[old, old]", "attribute 'age': value 'old' is listed twice"),
])
def test_an_empty_or_degenerate_value_list_is_refused(tmp_path: Path, audited: tuple[Path, Path], capsys,
                                                      values: str, expected: str) -> None:
    run, _ = audited
    path = tmp_path / "attrs.yaml"
    path.write_text(f"name: mine\nattributes:\n  age:\n    sentence: I am {{value}}.\n    values: {values}\n")
    assert expected in _error(["audit", "fairness", str(run), f"--fairness.attributes={path}"], capsys)


def test_with_tracking_on_the_numbers_and_plots_reach_wandb(audited: tuple[Path, Path], monkeypatch) -> None:
    from promptopt.experiments.tracking import Tracker

    sent: dict[str, list] = {"summary": [], "images": []}
    for name in sent:
        original = getattr(Tracker, name)

        def spy(self, values, *args, _original=original, _name=name, **kwargs):
            if self.active:  # recorded only when a real (offline) wandb run took it
                sent[_name].append(values)
            return _original(self, values, *args, **kwargs)

        monkeypatch.setattr(Tracker, name, spy)
    run, _ = audited
    assert main(["audit", "fairness", str(run), "--tracking.wandb=true", "--tracking.mode=offline"]) == 0
    assert list((run / "wandb").rglob("*.wandb")), "an offline wandb run was written"
    keys = {k for values in sent["summary"] for k in values}
    assert {"fairness/gender/serp_snsr", "fairness/gender/serp_snsv", "fairness/gap/gender/policy"} <= keys
    plots = {Path(p).name for paths in sent["images"] for p in paths}
    assert {"similarity_gender.png", "similarity_age.png", "group_gaps.png"} <= plots


def test_a_bad_attribute_file_names_the_attribute(tmp_path: Path, audited: tuple[Path, Path], capsys) -> None:
    run, _ = audited
    path = tmp_path / "attrs.yaml"
    path.write_text("name: mine\nattributes:\n  age:\n    sentence: I am old.\n    values: [a, b]\n")
    line = _error(["audit", "fairness", str(run), f"--fairness.attributes={path}"], capsys)
    assert "attribute 'age': sentence must hold {value} exactly once" in line
