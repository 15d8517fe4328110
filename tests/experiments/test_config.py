"""Configs: dotted overrides as the CLI and wandb pass them, unknown keys, wrong types, shipped YAMLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptopt.config import ExperimentConfig, config_from_dict, flatten, load_config
from promptopt.errors import ConfigError
from promptopt.experiments.cli import split_overrides

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "experiments" / "configs").glob("*.yaml"))
SWEEPS = sorted((ROOT / "experiments" / "sweeps").glob("*.yaml"))
QUICKSTART = ROOT / "experiments" / "configs" / "quickstart.yaml"


def test_the_five_configs_of_the_issue_ship() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"quickstart", "ml100k_embedding", "ml1m_openai", "ml1m_hf_local", "lastfm_embedding"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_loads(path: Path) -> None:
    import yaml

    raw = yaml.safe_load(path.read_text())
    if "study" in raw or "tiny_llm" in raw:  # a protocol file (study, tiny_llm) embeds one experiment config
        config = config_from_dict(raw["experiment"], source=str(path))
        assert config.name == path.stem
    else:
        config = load_config(path)
    assert isinstance(config, ExperimentConfig)
    assert config.name == path.stem
    # Every key written in the file is a real field (unknown keys would have failed above), and
    # the config never carries a credential, only the name of the variable that holds it.
    assert "api_key" not in {k.rsplit(".", 1)[-1] for k in flatten(config)}


def test_quickstart_is_the_offline_embedded_default() -> None:
    config = load_config(QUICKSTART)
    assert config.data.format == "synthetic"
    assert config.ranker.backend == "embedding" and "MiniLM" in config.ranker.model
    assert config.policy.kind == "lightgcn_mlp"
    assert set(config.eval.selectors) == {"random", "best_fixed", "epsilon_greedy", "linucb", "mlp_ppo",
                                          "policy_raw", "policy", "oracle"}
    assert config.tracking.mode == "offline"


def test_dotted_overrides_as_the_cli_passes_them() -> None:
    argv = ["--ppo.learning_rate=3e-4", "--reward.robust_weight=0.6", "--policy.hidden=[32, 32]",
            "--tracking.wandb=false", "--seed", "7", "--templates.include=[expert.recent5.none.index]"]
    overrides, rest = split_overrides(argv)
    assert rest == []
    config = load_config(QUICKSTART, overrides)
    assert config.ppo.learning_rate == pytest.approx(3e-4)
    assert isinstance(config.ppo.learning_rate, float)
    assert config.reward.robust_weight == pytest.approx(0.6)
    assert config.policy.hidden == (32, 32)
    assert config.tracking.wandb is False
    assert config.seed == 7
    assert config.templates.include == ("expert.recent5.none.index",)
    # Everything not overridden keeps the file's value.
    assert config.ppo.total_timesteps == load_config(QUICKSTART).ppo.total_timesteps


def test_split_overrides_leaves_other_arguments_alone() -> None:
    overrides, rest = split_overrides(["--ppo.n_steps=8", "--output-dir", "x", "--bogus", "--a.b"])
    assert overrides == ["--ppo.n_steps=8", "--a.b=true"]
    assert rest == ["--output-dir", "x", "--bogus"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("--ppo.learning_rat=1e-3", "unknown key 'ppo.learning_rat' (did you mean 'ppo.learning_rate'?)"),
        ("--pp.learning_rate=1e-3", "unknown key 'pp'"),
        ("--ppo.n_steps=abc", "ppo.n_steps"),
        ("--reward.robust_weight=[1, 2]", "reward.robust_weight"),
        ("--env.action_space=continuous", "env.action_space"),
        ("--export.users=some", "export.users"),
        ("--eval.bandit_steps=many", "eval.bandit_steps"),
    ],
)
def test_bad_overrides_name_the_key(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(QUICKSTART, [override])
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_override_without_value_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"--section\.key=value"):
        load_config(QUICKSTART, ["--ppo.learning_rate"])


def test_unknown_key_in_a_file_names_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("ppo:\n  total_timestep: 10\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(bad) in str(info.value) and "ppo.total_timestep" in str(info.value)


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_parameters_are_config_fields(path: Path) -> None:
    import yaml

    raw = yaml.safe_load(path.read_text())
    fields = set(flatten(ExperimentConfig()))
    assert set(raw["parameters"]) <= fields
    assert raw["program"] == "experiments/train.py"
    assert "${args}" in raw["command"]


def test_docs_config_reference_is_generated_from_the_current_config() -> None:
    from promptopt.experiments.config_reference import DOC, END, START, reference

    block = DOC.read_text().split(START, 1)[1].split(END, 1)[0]
    assert block.strip() == reference().strip(), (
        "run: python -m promptopt.experiments.config_reference --write")
    for key in flatten(ExperimentConfig()):
        assert f"`{key}`" in block


def test_a_key_given_twice_is_an_error_naming_the_line(tmp_path) -> None:
    from promptopt.config import load_config
    from promptopt.errors import ConfigError

    path = tmp_path / "twice.yaml"
    path.write_text("ppo:\n  learning_rate: 0.1\n  learning_rate: 0.2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 3: key 'learning_rate' appears twice"):
        load_config(path)
