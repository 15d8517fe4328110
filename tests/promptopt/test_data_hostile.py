"""Hostile dataset files (issue 12): values that used to load silently now fail with one line naming
the file, the line and the fix; a byte-order mark no longer creates a phantom user."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptopt.data import load_dataset
from promptopt.errors import DataFormatError
from tests.promptopt.test_data_loaders import write_lastfm, write_latest, write_ml1m, write_ml100k


@pytest.mark.parametrize("rating", ["nan", "inf", "-inf", "-99", "0", "6", "1e400"])
def test_ml100k_ratings_outside_one_to_five_are_errors(tmp_path: Path, rating: str) -> None:
    folder = write_ml100k(tmp_path, data=f"1\t2\t5\t881250949\n2\t4\t{rating}\t891717742\n")
    with pytest.raises(DataFormatError, match=rf"u\.data, line 2: rating must be a number from 1 to 5, "
                                              rf"got '{rating}'") as info:
        load_dataset("movielens-100k", folder)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("rating", ["nan", "inf", "-99"])
def test_ml1m_ratings_outside_one_to_five_are_errors(tmp_path: Path, rating: str) -> None:
    folder = write_ml1m(tmp_path, ratings=f"1::1::5::978300760\n1::2::{rating}::978302109\n")
    with pytest.raises(DataFormatError, match=r"ratings\.dat, line 2: Rating must be a number from 1 to 5"):
        load_dataset("movielens-1m", folder)


def test_latest_ratings_keep_half_stars_and_refuse_the_rest(tmp_path: Path) -> None:
    ok = write_latest(tmp_path / "ok", ratings="userId,movieId,rating,timestamp\n1,1,0.5,964982703\n")
    assert load_dataset("movielens-latest", ok).ratings.tolist() == [0.5]
    bad = write_latest(tmp_path / "bad", ratings="userId,movieId,rating,timestamp\n1,1,-99,964982703\n")
    with pytest.raises(DataFormatError, match=r"ratings\.csv, line 2: rating must be a number from 0\.5"):
        load_dataset("movielens-latest", bad)


def test_a_utf8_bom_in_u_data_creates_no_phantom_user(tmp_path: Path) -> None:
    plain = load_dataset("movielens-100k", write_ml100k(tmp_path / "plain"))
    folder = write_ml100k(tmp_path / "bom")
    data_file = folder / "u.data"
    data_file.write_bytes(b"\xef\xbb\xbf" + data_file.read_bytes())  # as a Windows editor saves it
    with_bom = load_dataset("movielens-100k", folder)
    assert with_bom.user_ids == plain.user_ids and with_bom.n_interactions == plain.n_interactions


def test_a_duplicate_rating_column_is_an_error_not_a_silent_winner(tmp_path: Path) -> None:
    folder = write_latest(tmp_path, ratings="userId,movieId,rating,timestamp,rating\n1,1,4.0,964982703,1.0\n")
    with pytest.raises(DataFormatError, match=r"ratings\.csv, line 1: column 'rating' appears more than"):
        load_dataset("movielens-latest", folder)


@pytest.mark.parametrize("year", ["9" * 20, "5000", "0"])
def test_lastfm_absurd_years_are_errors(tmp_path: Path, year: str) -> None:
    tagged = f"userID\tartistID\ttagID\tday\tmonth\tyear\n2\t52\t13\t1\t4\t{year}\n"
    with pytest.raises(DataFormatError, match=rf"line 2: year must be a year from 1 to 4999, got '{year}'"):
        load_dataset("lastfm", write_lastfm(tmp_path, tagged=tagged))
