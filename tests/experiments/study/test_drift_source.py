"""``study.drift_from``: RESULTS.md's drift section from another study (issue 17: the report states
which protocol produced each number; its drift section uses the deployment protocol)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

SPLIT = {"val_fraction": 0.2, "test_fraction": 0.3, "n_targets": 3, "n_negatives": 9, "drift_quantile": 0.7}


def section(report: str, heading: str) -> str:
    return heading + report.split(heading, 1)[1].split("\n## ", 1)[0]


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]


def test_report_takes_its_drift_section_from_the_deploy_run(
    tmp_path: Path, study_yaml: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from promptopt.experiments.cli import main

    deploy_dir = tmp_path / "deploy"
    deploy_dir.mkdir()
    deploy = study_yaml(deploy_dir, experiment={"split": {**SPLIT, "protocol": "deploy"}})
    assert main(["study", str(deploy)]) == 0
    drift_json = deploy_dir / "work" / "study.json"
    config = study_yaml(tmp_path, drift_from=str(drift_json), experiment={"split": SPLIT})
    assert main(["study", str(config)]) == 0
    report = (tmp_path / "docs" / "RESULTS.md").read_text(encoding="utf-8")
    own = (deploy_dir / "docs" / "RESULTS.md").read_text(encoding="utf-8")
    drift = section(report, "## 4. Drift")
    assert drift.startswith("## 4. Drift (test users, protocol deploy)")
    assert "These numbers come from another study" in drift and f"`{deploy_dir / 'work'}/study.json`" in drift
    # The drift numbers are the deploy run's, digit for digit; the selectors are this run's.
    assert table_rows(drift) == table_rows(section(own, "## 4. Drift"))
    assert "## Selectors on test users (last item; protocol leave_last)" in report
    targets = table_rows(section(report, "## Targets"))
    row4 = next(r for r in targets if r.startswith("| 4. drift (deploy)"))
    assert row4 == next(r for r in table_rows(section(own, "## Targets")) if r.startswith("| 4. drift"))
    assert "except the drift section and targets 4 / 4', which are from `split.protocol: deploy`" in report
    line = json.loads((tmp_path / "docs" / "results" / "attempts.jsonl").read_text().splitlines()[-1])
    assert line["protocol"] == "leave_last" and line["drift_protocol"] == "deploy"
    # A drift run on other data does not fit: one line naming the key, nothing rewritten.
    other = json.loads(drift_json.read_text(encoding="utf-8"))
    other["data"] = "another dataset"
    drift_json.write_text(json.dumps(other), encoding="utf-8")
    from promptopt.experiments.study.__main__ import main as study_main

    capsys.readouterr()
    assert study_main([str(config), "--report-from", str(tmp_path / "work" / "study.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "study.drift_from" in err and "its data ('another dataset')" in err
    assert (tmp_path / "docs" / "RESULTS.md").read_text(encoding="utf-8") == report


def test_missing_drift_run_fails_before_any_call(
    tmp_path: Path, study_yaml: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from promptopt.experiments.cli import main

    missing = tmp_path / "nowhere" / "study.json"
    config = study_yaml(tmp_path, drift_from=str(missing))
    assert main(["study", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"study.drift_from {missing} does not exist" in err
    assert "run the study that writes it first" in err
    assert not (tmp_path / "cache.sqlite").exists() and not (tmp_path / "work").exists()  # nothing paid


@pytest.mark.parametrize(("content", "expected"), [
    (None, "is a folder, not a study.json"),
    ("not json", "cannot read a study.json"),
    ('{"seeds": []}', "not a finished study's study.json (no 'config')"),
    ("[1, 2]", "not a finished study's study.json (no 'config')"),
])
def test_a_drift_run_that_is_no_study_fails_in_one_line(tmp_path: Path, content: str | None,
                                                        expected: str) -> None:
    from promptopt.errors import ConfigError
    from promptopt.experiments.study.drift_source import read_drift_run

    path = tmp_path / "drift"
    if content is None:
        path.mkdir()
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        read_drift_run(str(path), {"data": "d", "templates": []})
    assert expected in str(err.value) and "\n" not in str(err.value)

