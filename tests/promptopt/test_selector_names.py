"""The one list of selector names: the config checks against it and the docs list exactly it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from promptopt.config import EvalConfig, config_from_dict
from promptopt.errors import ConfigError
from promptopt.selector_names import (
    BANDIT_SELECTORS,
    DEFAULT_SELECTORS,
    OPTIONAL_SELECTORS,
    PPO_SELECTORS,
    SELECTOR_NAMES,
    unknown_selectors,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "experiments.md"


def test_the_config_compares_every_selector_but_the_optional_ones_by_default() -> None:
    assert EvalConfig().selectors == DEFAULT_SELECTORS
    assert set(DEFAULT_SELECTORS) | set(OPTIONAL_SELECTORS) == set(SELECTOR_NAMES)
    assert "advantage" in OPTIONAL_SELECTORS and "advantage" not in DEFAULT_SELECTORS
    assert config_from_dict({"eval": {"selectors": ["best_fixed", "advantage"]}}).eval.selectors == (
        "best_fixed", "advantage")
    assert len(set(SELECTOR_NAMES)) == len(SELECTOR_NAMES)
    assert set(BANDIT_SELECTORS) | set(PPO_SELECTORS) < set(SELECTOR_NAMES)


def test_an_unknown_selector_fails_when_the_config_loads() -> None:
    assert unknown_selectors(["random", "magic", "oracle", "best"]) == ["magic", "best"]
    with pytest.raises(ConfigError, match=r"eval\.selectors: unknown selector 'magic'; use any of random, "):
        EvalConfig(selectors=("random", "magic"))
    with pytest.raises(ConfigError, match=r"^run\.yaml: eval\.selectors: unknown selector 'polcy'"):
        config_from_dict({"eval": {"selectors": ["policy", "polcy"]}}, source="run.yaml")
    config = config_from_dict({"eval": {"selectors": ["oracle", "random"]}})
    assert config.eval.selectors == ("oracle", "random")


def test_the_docs_selector_table_lists_every_selector_in_order() -> None:
    text = DOCS.read_text(encoding="utf-8")
    table = text.split("| selector | what it is |", 1)[1].split("\n\n", 1)[0]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    listed = [name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)]
    assert listed == list(SELECTOR_NAMES)
