"""The study YAML: unknown keys, the dataset folder and the policy kind fail at load time, in one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from promptopt.errors import ConfigError
from promptopt.experiments.study.config import load_study


def test_unknown_study_key_fails_with_its_name(tmp_path: Path, study_yaml: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError, match=r"study\.sedes"):
        load_study(study_yaml(tmp_path), ["--study.sedes=[1]"])
    with pytest.raises(ConfigError, match=r"ppo\.total_timestep"):
        load_study(study_yaml(tmp_path), ["--ppo.total_timestep=3"])


def test_overrides_reach_their_section_and_the_note_stays_text(
    tmp_path: Path, study_yaml: Callable[..., Path]
) -> None:
    config, study = load_study(
        study_yaml(tmp_path), ["--study.seeds=[4,5]", "--ppo.n_epochs=3", "--study.note=a: b, [c]"]
    )
    assert study.seeds == (4, 5) and config.ppo.n_epochs == 3 and study.note == "a: b, [c]"


def test_missing_dataset_folder_names_the_key_and_the_fix(
    tmp_path: Path, study_yaml: Callable[..., Path]
) -> None:
    missing = tmp_path / "no-such-ml-100k"
    path = study_yaml(tmp_path, experiment={"data": {"format": "movielens-100k", "path": str(missing)}})
    with pytest.raises(ConfigError) as info:
        load_study(path)
    message = str(info.value)
    assert "\n" not in message
    assert "experiment.data.path" in message and str(missing) in message and "--data.path=" in message
    path = study_yaml(tmp_path, experiment={"data": {"format": "movielens-100k", "path": None}})
    with pytest.raises(ConfigError, match=r"experiment\.data\.path is not set"):
        load_study(path)


def test_the_policy_must_be_the_graph_policy(tmp_path: Path, study_yaml: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError, match=r"policy\.kind must be lightgcn_mlp, got 'mlp'"):
        load_study(study_yaml(tmp_path), ["--policy.kind=mlp"])


def test_a_key_given_twice_is_an_error(tmp_path: Path, study_yaml: Callable[..., Path]) -> None:
    path = study_yaml(tmp_path)
    path.write_text(path.read_text(encoding="utf-8") + "study:\n  seeds: [1]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"'study' appears twice"):
        load_study(path)


def test_the_committed_config_loads_with_its_dataset_elsewhere(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[3]
    config, study = load_study(
        repo / "experiments" / "configs" / "study_ml100k.yaml", [f"--data.path={tmp_path}"]
    )
    assert config.data.format == "movielens-100k" and config.data.path == str(tmp_path)
    assert study.seeds == (0, 1, 2) and config.ranker.backend == "embedding"


def test_python_m_study_reports_bad_input_in_one_line(
    tmp_path: Path, study_yaml: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from promptopt.experiments.study.__main__ import main

    path = study_yaml(
        tmp_path, experiment={"data": {"format": "movielens-100k", "path": str(tmp_path / "x")}}
    )
    assert main([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m promptopt.experiments.study: error:") and "\n" not in err
    assert main([str(study_yaml(tmp_path)), "--report-from", str(tmp_path / "none.json")]) == 2
    assert "--report-from" in capsys.readouterr().err
