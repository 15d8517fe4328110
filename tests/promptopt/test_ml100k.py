"""Integration: the real MovieLens-100K files, when the shared copy exists next to the repository."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from promptopt.data import load_dataset
from promptopt.data.stats import dataset_stats
from promptopt.splits import time_cut_at_quantile

ML100K = Path(os.environ.get(
    "PROMPTOPT_ML100K", Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ml-100k"
))

pytestmark = pytest.mark.skipif(
    not (ML100K / "u.data").is_file(),
    reason=f"MovieLens-100K not found at {ML100K} (set PROMPTOPT_ML100K to its folder)",
)


@pytest.fixture(scope="module")
def ml100k():
    return load_dataset("movielens-100k", ML100K)


def test_dataset_counts_match_the_release(ml100k) -> None:
    assert ml100k.n_interactions == 100_000
    assert ml100k.n_users == 943
    assert ml100k.n_items == 1_682
    # The release README: each user has rated at least 20 movies.
    assert int(ml100k.history_lengths.min()) >= 20
    assert set(np.unique(ml100k.ratings).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_item_text_is_decoded_from_latin1(ml100k) -> None:
    item = ml100k.item_ids.index("543")
    assert ml100k.item_titles[item] == "Misérables, Les (1995)"
    assert ml100k.item_years[item] == 1995
    toy_story = ml100k.item_ids.index("1")
    assert ml100k.item_genres[toy_story] == ("Animation", "Children's", "Comedy")
    assert ml100k.user_attribute(ml100k.user_ids.index("1")) == {
        "age": "24", "gender": "M", "occupation": "technician",
    }


def test_drift_statistics_are_finite(ml100k) -> None:
    stats = dataset_stats(ml100k, time_cut=time_cut_at_quantile(ml100k, 0.8))
    assert stats["source_interactions"] + stats["target_interactions"] == 100_000
    assert 0.0 < stats["popularity_kl"] < 5.0
    assert stats["final_targets_source"] + stats["final_targets_target"] == 943
