"""The tiny-LLM results YAML: protocol section, overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from promptopt.errors import ConfigError
from promptopt.experiments.tiny_llm.config import load_tiny_llm

REPO = Path(__file__).resolve().parents[3]


def _write(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load((REPO / "experiments/configs/tiny_llm_ml100k.yaml").read_text())
    raw["experiment"]["data"]["path"] = str(tmp_path)
    for key, value in changes.items():
        section, _, field = key.partition("__")
        raw[section][field] = value
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_shipped_config_loads_and_overrides_reach_both_sections(tmp_path) -> None:
    config, protocol = load_tiny_llm(_write(tmp_path), ["--tiny_llm.users=20", "--reward.bootstrap=2"])
    assert protocol.users == 20 and config.reward.bootstrap == 2
    assert config.ranker.backend == "hf" and config.ranker.model == "smollm2-135m-instruct"
    assert set(protocol.templates()) <= set(config.templates.include)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"tiny_llm__userz": 3}, "unknown key 'tiny_llm.userz'"),
        ({"tiny_llm__generate_users": 0}, "generate_users, chunk and max_new_tokens must be >= 1"),
        ({"tiny_llm__title_templates": ["expert.recent10.none.index"]}, "not a .title template"),
        ({"tiny_llm__index_templates": ["expert.genres10.none.index"]}, "not in experiment.templates"),
        ({"experiment__reward": {"robust_weight": 0.5, "views": ["temporal"]}}, "robust_weight must be 0"),
        ({"experiment__data": {"format": "movielens-100k", "path": "/no/such/folder"}}, "is not a folder"),
    ],
)
def test_bad_settings_fail_with_the_key_named(tmp_path, changes, match) -> None:
    with pytest.raises(ConfigError, match=match):
        load_tiny_llm(_write(tmp_path, **changes))


def test_the_command_says_bad_input_in_one_line(tmp_path, capsys) -> None:
    from promptopt.experiments.tiny_llm.__main__ import main

    assert main([str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
