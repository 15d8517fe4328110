"""One "did you mean" for every unknown name (RapidFuzz)."""

from __future__ import annotations

import pytest

from promptopt.errors import ConfigError, TemplateError
from promptopt.suggest import closest


def test_closest_ranks_by_similarity_and_cuts_off() -> None:
    keys = ["learning_rate", "n_steps", "batch_size", "n_epochs", "ent_coef"]
    assert closest("learning_rat", keys) == ["learning_rate"]
    assert closest("n_step", keys, n=2, cutoff=50) == ["n_steps", "n_epochs"]  # best first
    assert closest("n_step", keys, n=2) == ["n_steps"]
    assert closest("zzzzzz", keys) == []
    assert closest("batch", keys, cutoff=90) == []


def test_every_error_path_suggests_through_it() -> None:
    from promptopt.config import config_from_dict
    from promptopt.templates import TemplateCatalog
    from promptopt.templates.template import PromptTemplate

    with pytest.raises(ConfigError, match=r"did you mean 'ppo\.learning_rate'"):
        config_from_dict({"ppo": {"learning_rat": 1e-3}})
    with pytest.raises(TemplateError, match=r"did you mean 'expert\.recent5\.none\.index'"):
        TemplateCatalog.load("movies", include=["expert.recent5.none.indx"])
    with pytest.raises(TemplateError, match="did you mean 'recent_titles'"):
        PromptTemplate(id="t", text="{recent_title:5} {candidates}")
