"""experiments/drift_views.py: the correlations it reports, and one run on tiny synthetic data."""

from __future__ import annotations

import re

import numpy as np

from promptopt.experiments.drift_views import correlations, main


def test_correlations_see_a_per_user_signal_and_its_absence() -> None:
    rng = np.random.default_rng(0)
    users, templates = 200, 7
    offsets = rng.normal(size=(users, 1)) * 5  # user effects: pooled r is high whatever templates do
    signal = rng.normal(size=(users, templates))
    source = offsets + signal
    predicted = correlations(source, offsets + signal + 0.3 * rng.normal(size=source.shape))
    unrelated = correlations(source, offsets + rng.normal(size=source.shape))
    assert predicted["within_low"] > 0.8 and predicted["pooled_r"] > 0.9
    assert unrelated["pooled_r"] > 0.9  # the user effect alone
    assert unrelated["within_low"] < 0 < unrelated["within_high"]  # no per-user template signal
    gaps = source.copy()
    gaps[0, :6] = np.nan  # a user with one cell cannot enter the within-user number
    assert correlations(gaps, source)["cells"] == users * templates - 6


def interleaved(folder) -> str:
    """Synthetic data whose users all span the whole time range (the generator's users follow each
    other in time, so few would have targets on both sides of the cut), in the generic layout."""
    from dataclasses import replace

    from promptopt.data import make_synthetic
    from promptopt.data.generic import save_generic

    data = make_synthetic(n_users=60, n_items=120, n_genres=8, mean_history=16, seed=3)
    position = np.arange(data.n_interactions) - data.user_offsets[data.users]
    save_generic(replace(data, timestamps=1_000_000 + position * 86_400 + data.users * 60), folder)
    return str(folder)


def test_the_script_prints_one_row_per_view(tmp_path, tiny_config, capsys) -> None:
    path = tiny_config(tmp_path, data={"format": "generic", "path": interleaved(tmp_path / "data")})
    assert main([str(path), "--users", "20", "--views", "temporal", "new_items",
                 "--templates", "expert.recent5.none.index", "expert.genres10.none.index",
                 "expert.profile.none.index"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1].strip() for line in out.splitlines()
            if line.startswith("| ") and "---" not in line]
    assert rows == ["view", "base", "temporal", "new_items", "reward"]
    assert "split.protocol=deploy" in out and "3 templates" in out
    measured = int(re.search(r"(\d+) training/validation users", out).group(1))
    assert 3 <= measured <= 20


def test_a_bad_override_is_one_line_and_exit_2(tmp_path, tiny_config, capsys) -> None:
    assert main([str(tiny_config(tmp_path)), "--split.protocl=deploy"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "split.protocl" in err and "did you mean 'split.protocol'" in err
