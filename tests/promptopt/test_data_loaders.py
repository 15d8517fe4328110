"""Every loader on tiny files written in the dataset's own format, and every malformed-input error."""

from __future__ import annotations

import logging
import math
import typing
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from promptopt.config import DataConfig, SynthConfig
from promptopt.data import DATASET_FORMATS, load_data, load_dataset, make_synthetic
from promptopt.data.assemble import year_from_title
from promptopt.data.generic import save_generic
from promptopt.errors import ConfigError, DataFormatError

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)


def _write(path: Path, text: str, encoding: str = "utf-8", newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


def _flags(*names: str) -> str:
    return "|".join("1" if g in names else "0" for g in ML100K_GENRES)


def write_ml100k(folder: Path, *, data: str | None = None, newline: str = "\n") -> Path:
    _write(folder / "u.genre", "".join(f"{g}|{k}\n" for k, g in enumerate(ML100K_GENRES)) + "\n")
    items = (
        f"1|Toy Story (1995)|01-Jan-1995||http://x/1|{_flags('Animation', 'Comedy')}\n"
        f"2|Misérables, Les (1995)|01-Jan-1995||http://x/2|{_flags('Drama', 'Musical')}\n"
        f"3|unknown||||{_flags('unknown')}\n"
        f"4|Brazil|01-Jan-1985||http://x/4|{_flags('Sci-Fi')}\n"
    )
    _write(folder / "u.item", items, encoding="latin-1", newline=newline)
    _write(folder / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n")
    _write(folder / "u.data", data if data is not None else (
        "1\t2\t5\t881250949\n1\t1\t3\t881250000\n2\t4\t4\t891717742\n2\t1\t1\t878887116\n"
        "3\t3\t2\t880000000\n"
    ), newline=newline)
    return folder


def test_movielens_100k_reads_latin1_titles_genres_years_and_users(tmp_path: Path) -> None:
    data = load_dataset("movielens-100k", write_ml100k(tmp_path, newline="\r\n"))
    assert (data.n_users, data.n_items, data.n_interactions) == (3, 4, 5)
    assert data.item_titles[1] == "Misérables, Les (1995)"
    assert data.item_years == (1995, 1995, None, 1985)  # Brazil: from the release date
    assert data.item_genres[0] == ("Animation", "Comedy")
    assert data.item_genres[2] == ()  # "unknown" is not a genre
    assert "unknown" not in data.genre_names and len(data.genre_names) == 18
    assert data.item_extra["url"][0] == "http://x/1"
    assert data.user_attribute(1) == {"age": "53", "gender": "F", "occupation": "other"}
    # Rows are chronological per user: user "1" saw item 1 before item 2.
    rows = data.user_rows(data.user_ids.index("1"))
    assert [data.item_ids[i] for i in data.items[rows]] == ["1", "2"]
    assert data.ratings[rows].tolist() == [3.0, 5.0]
    assert data.timestamps[rows].tolist() == [881250000, 881250949]


def test_movielens_100k_without_user_file_has_no_attributes(tmp_path: Path) -> None:
    folder = write_ml100k(tmp_path)
    (folder / "u.user").unlink()
    data = load_dataset("movielens-100k", folder)
    assert data.n_users == 3 and data.user_attribute(0) == {}


def write_ml1m(folder: Path, ratings: str | None = None) -> Path:
    _write(folder / "movies.dat",
           "1::Toy Story (1995)::Animation|Children's|Comedy\n"
           "2::Cité des enfants perdus, La (1995)::Adventure|Sci-Fi\n"
           "3::Fawlty Towers (1975-1979)::Comedy\n", encoding="latin-1")
    _write(folder / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    _write(folder / "ratings.dat", ratings if ratings is not None else
           "1::1::5::978300760\n1::2::3::978302109\n2::3::4::978301968\n2::1::2::978300275\n")
    return folder


def test_movielens_1m_decodes_codes_and_latin1(tmp_path: Path) -> None:
    data = load_dataset("movielens-1m", write_ml1m(tmp_path))
    assert (data.n_users, data.n_items, data.n_interactions) == (2, 3, 4)
    assert data.item_titles[1] == "Cité des enfants perdus, La (1995)"
    assert data.item_years == (1995, 1995, 1975)
    assert data.item_genres[0] == ("Animation", "Children's", "Comedy")
    assert data.user_attribute(0) == {"gender": "F", "age": "under 18", "occupation": "K-12 student"}
    assert data.user_attribute(1)["occupation"] == "self-employed"
    assert data.user_attribute(1)["age"] == "56+"


def write_latest(folder: Path, newline: str = "\n", ratings: str | None = None) -> Path:
    _write(folder / "movies.csv",
           "movieId,title,genres\n"
           '1,"American President, The (1995)",Comedy|Drama|Romance\n'
           "2,Amélie (Fabuleux destin d'Amélie Poulain Le) (2001),Comedy|Romance\n"
           '3,"Quote ""Test"" (2010) ",(no genres listed)\n', newline=newline)
    _write(folder / "ratings.csv", ratings if ratings is not None else
           "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,0.5,964981247\n2,2,4.5,1445714835\n",
           newline=newline)
    return folder


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_movielens_latest_reads_quoted_titles_and_half_stars(tmp_path: Path, newline: str) -> None:
    data = load_dataset("movielens-latest", write_latest(tmp_path / "ml-latest-small", newline))
    assert data.name == "ml-latest-small"
    assert data.item_titles == (
        "American President, The (1995)", "Amélie (Fabuleux destin d'Amélie Poulain Le) (2001)",
        'Quote "Test" (2010)',
    )
    assert data.item_years == (1995, 2001, 2010)
    assert data.item_genres[2] == ()
    assert sorted(data.ratings.tolist()) == [0.5, 4.0, 4.5]


LASTFM_TAGGED = (
    "userID\tartistID\ttagID\tday\tmonth\tyear\n"
    "2\t52\t13\t1\t4\t2009\n"
    "2\t52\t15\t1\t3\t2009\n"   # the same artist tagged earlier: the interaction keeps 1 March
    "2\t63\t13\t1\t4\t2009\n"
    "3\t52\t15\t1\t5\t2010\n"
    "3\t99\t15\t1\t5\t2010\n"   # artist 99 is not in artists.dat
    "3\t63\t13\t1\t1\t1956\n"   # before 1970: not Unix time
)


def write_lastfm(folder: Path, tagged: str = LASTFM_TAGGED, newline: str = "\r\n") -> Path:
    _write(folder / "artists.dat", "id\tname\turl\tpictureURL\n52\tMorcheeba\thttp://a/52\thttp://p/52\n"
           "63\tEnigma\thttp://a/63\t\n70\tBjörk\thttp://a/70\thttp://p/70\n", newline=newline)
    _write(folder / "tags.dat", "tagID\ttagValue\n13\tchillout\n15\ttrip-hop\n16\tcafé\n",
           encoding="latin-1", newline=newline)
    _write(folder / "user_taggedartists.dat", tagged, newline=newline)
    _write(folder / "user_artists.dat", "userID\tartistID\tweight\n2\t52\t100\n2\t63\t5\n2\t70\t50\n"
           "3\t52\t7\n", newline=newline)
    return folder


def test_lastfm_tag_assignments_become_dated_interactions(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        data = load_dataset("lastfm", write_lastfm(tmp_path))
    assert data.name == "lastfm-2k"
    assert data.item_titles == ("Morcheeba", "Enigma", "Björk")
    assert "dropped 1 interactions naming items missing" in caplog.text
    assert "dropped 1 tag assignments dated before 1970" in caplog.text
    u2 = data.user_rows(data.user_ids.index("2"))
    assert [data.item_titles[i] for i in data.items[u2]] == ["Morcheeba", "Enigma"]
    march = int(datetime(2009, 3, 1, tzinfo=timezone.utc).timestamp())
    assert int(data.timestamps[u2][0]) == march
    # Listening-count quintiles among the user's artists: 100 is the top, 5 the bottom of three.
    assert data.ratings[u2].tolist() == [4.0, 1.0]
    assert data.item_genres[0] == ("trip-hop", "chillout")  # 2 trip-hop tags vs 1 chillout
    assert data.item_extra["tags"][0] == "trip-hop, chillout"
    assert data.item_genres[2] == ()  # never tagged
    assert data.n_interactions == 3


def test_lastfm_strict_mode_and_no_ratings(tmp_path: Path) -> None:
    folder = write_lastfm(tmp_path, newline="\n")
    with pytest.raises(ConfigError, match="ratings must be 'weight_quintile' or 'none', got 'raw'"):
        load_dataset("lastfm", folder, ratings="raw")
    with pytest.raises(DataFormatError, match=r"user_taggedartists\.dat, line 6: item '99' is not in"):
        load_dataset("lastfm", folder, unknown_items="error")
    data = load_dataset("lastfm", folder, ratings="none")
    assert not data.has_ratings


def write_generic(folder: Path) -> Path:
    _write(folder / "items.csv", 'item,name,kind,year,studio\nA,"Tea, Earl Grey",drink;hot,1990,Twinings\n'
           "B,{braces} \"q\",,,\nC,Ünïcode,food,2001,X\n")
    _write(folder / "interactions.csv", "user,item,rating,timestamp\nu1,A,5,100\nu1,B,,2008-03-01\n"
           "u2,C,2.5,2008-03-01T12:30:00\nu2,A,1,50\n")
    _write(folder / "users.csv", "user,age,country\nu1,31,FR\nu2,,DE\n")
    return folder


def test_generic_layout_with_named_columns_iso_dates_and_users(tmp_path: Path) -> None:
    folder = write_generic(tmp_path / "shop")
    data = load_dataset("generic", folder, title_column="name", genres_column="kind",
                        genres_separator=";")
    assert data.name == "shop"
    assert data.item_titles == ("Tea, Earl Grey", '{braces} "q"', "Ünïcode")
    assert data.item_genres == (("drink", "hot"), (), ("food",))
    assert data.item_years == (1990, None, 2001)
    assert data.item_extra == {"studio": ("Twinings", "", "X")}
    u1 = data.user_rows(0)
    assert data.timestamps[u1].tolist() == [100, int(datetime(2008, 3, 1, tzinfo=timezone.utc).timestamp())]
    assert math.isnan(float(data.ratings[u1][1]))
    assert data.user_attribute(1) == {"country": "DE"}


def test_generic_round_trip_csv_and_parquet(tmp_path: Path) -> None:
    original = make_synthetic(n_users=20, n_items=40, mean_history=10, seed=3)
    for fmt in ("csv", "parquet"):
        save_generic(original, tmp_path / fmt, fmt=fmt)
        data = load_dataset("generic", tmp_path / fmt)
        assert data.item_titles == original.item_titles
        assert data.item_genres == original.item_genres
        assert data.item_years == original.item_years
        assert data.user_ids == original.user_ids
        assert dict(data.user_attributes) == dict(original.user_attributes)
        for a, b in (("users", "users"), ("items", "items"), ("timestamps", "timestamps"),
                     ("ratings", "ratings")):
            np.testing.assert_array_equal(getattr(data, a), getattr(original, b))


def test_load_data_dispatches_on_the_config(tmp_path: Path) -> None:
    synth = load_data(DataConfig(synthetic=SynthConfig(n_users=10, n_items=30, mean_history=8, seed=1)))
    np.testing.assert_array_equal(synth.items, make_synthetic(10, 30, mean_history=8, seed=1).items)
    folder = write_generic(tmp_path / "g")
    data = load_data(DataConfig(format="generic", path=str(folder), title_column="name", genres_column=None))
    assert data.item_genres == ((), (), ())
    with pytest.raises(ConfigError, match=r"data\.path is required"):
        load_data(DataConfig(format="movielens-1m"))


def test_every_config_format_has_a_loader() -> None:
    assert set(typing.get_args(typing.get_type_hints(DataConfig)["format"])) == set(DATASET_FORMATS)


def test_unknown_format_and_option_fail_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown dataset format 'movielens-10m'.*movielens-100k"):
        load_dataset("movielens-10m", tmp_path)
    with pytest.raises(ConfigError, match=r"no option 'title_colum'.*title_column"):
        load_dataset("generic", tmp_path, title_colum="name")


@pytest.mark.parametrize(("title", "year"), [
    ("Toy Story (1995)", 1995), ("Babylon 5 (1994) ", 1994), ("Fawlty Towers (1975-1979)", 1975),
    ("Brazil", None), ("2001: A Space Odyssey (1968)", 1968), ("Movie (0042)", None),
])
def test_year_from_title(title: str, year: int | None) -> None:
    assert year_from_title(title) == year


# ---------------------------------------------------------------------------- malformed input

def _ml100k_data(tmp_path: Path, text: str) -> Path:
    return write_ml100k(tmp_path, data=text)


MALFORMED_ML100K = [
    ("", r"u\.data: file is empty \(expected user id, item id, rating, timestamp\)"),
    ("1,1,5,881250949\n", r"u\.data, line 1: expected 4 tab-separated fields .*got 1; .*looks ','-sep"),
    ("1\t1\t5\t881250949\n2\t1\t5\n", r"u\.data, line 2: expected 4 tab-separated .*got 3; .*truncated"),
    ("1\t1\t5\t881250949\n\n2\t9\t5\t1\n", r"u\.data, line 3: item '9' is not in .*u\.item"),
    ("1\t1\tfive\t881250949\n", r"u\.data, line 1: rating must be a number, got 'five'"),
    ("1\t1\t5\tyesterday\n", r"u\.data, line 1: timestamp must be Unix seconds or an ISO-8601 date"),
    ("1\t1\t5\t-5\n", r"u\.data, line 1: timestamp '-5' is before 1970"),
    ("1\t1\t5\t881250949000\n", r"u\.data, line 1: .* after the year 5000; milliseconds\?"),
    ("7\t1\t5\t881250949\n", r"u\.data, line 1: user '7' is not in .*u\.user"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED_ML100K)
def test_ml100k_malformed_ratings(tmp_path: Path, text: str, message: str) -> None:
    folder = _ml100k_data(tmp_path, text)
    with pytest.raises(DataFormatError, match=message) as info:
        load_dataset("movielens-100k", folder)
    assert "\n" not in str(info.value)
    assert str(folder) in str(info.value)


def test_missing_files_name_the_path_and_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"nowhere: dataset folder does not exist"):
        load_dataset("movielens-100k", tmp_path / "nowhere")
    folder = write_ml100k(tmp_path / "a")
    (folder / "u.item").unlink()
    with pytest.raises(DataFormatError, match=r"u\.item: file not found \(expected MovieLens-100K items\)"):
        load_dataset("movielens-100k", folder)
    ml1m = write_ml1m(tmp_path / "b")
    (ml1m / "ratings.dat").unlink()
    with pytest.raises(DataFormatError, match=r"b/ratings\.dat: file not found \(expected 'UserID::MovieID"):
        load_dataset("movielens-1m", ml1m)
    empty = tmp_path / "c"
    empty.mkdir()
    with pytest.raises(DataFormatError, match=r"items\.csv: file not found .*items\.parquet"):
        load_dataset("generic", empty)


def test_ml100k_item_file_errors(tmp_path: Path) -> None:
    folder = write_ml100k(tmp_path)
    item = folder / "u.item"
    item.write_bytes(item.read_bytes() + b"1|Again (1990)|||x|" + _flags().encode() + b"\n")
    with pytest.raises(DataFormatError, match=r"u\.item, line 5: duplicate item id '1' \(first at line 1\)"):
        load_dataset("movielens-100k", folder)
    item.write_bytes(b"1|Bad (1990)|||x|" + b"|".join([b"2"] * 19) + b"\n")
    with pytest.raises(DataFormatError, match=r"u\.item, line 1: genre flags must be 0 or 1"):
        load_dataset("movielens-100k", folder)
    item.write_bytes(b"1|Short (1990)|||x|0|1\n")
    with pytest.raises(DataFormatError, match=r"u\.item, line 1: expected 24 '\|'-separated fields"):
        load_dataset("movielens-100k", folder)


def test_ml1m_wrong_separator_and_bad_code(tmp_path: Path) -> None:
    folder = write_ml1m(tmp_path, ratings="1\t1\t5\t978300760\n")
    with pytest.raises(DataFormatError, match=r"ratings\.dat, line 1: .*got 1; the line looks tab-separated"):
        load_dataset("movielens-1m", folder)
    folder = write_ml1m(tmp_path)
    _write(folder / "users.dat", "1::F::1::10::48067\n2::M::56::99::70072\n")
    with pytest.raises(DataFormatError, match=r"users\.dat, line 2: occupation code must be 0\.\.20"):
        load_dataset("movielens-1m", folder)


def test_utf8_files_reject_undecodable_bytes_with_the_line(tmp_path: Path) -> None:
    folder = write_latest(tmp_path)
    movies = folder / "movies.csv"
    movies.write_bytes(movies.read_bytes() + "4,Cité (1999),Drama\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"movies\.csv, line 5: byte 0xe9 cannot be decoded as utf-8"):
        load_dataset("movielens-latest", folder)
    folder = write_lastfm(tmp_path / "fm")
    artists = folder / "artists.dat"
    artists.write_bytes(artists.read_bytes() + "71\tSigur Rós\thttp://a\t\r\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"artists\.dat, line 5: byte 0xf3 cannot be decoded"):
        load_dataset("lastfm", folder)


@pytest.mark.parametrize(("ratings", "message"), [
    ("userId;movieId;rating;timestamp\n1;1;4;5\n", r"ratings\.csv, line 1: header has no column .*';'-sep"),
    ("userId,movieId,rating,timestamp\n1,1,4\n", r"ratings\.csv, line 2: expected 4 comma-separated .*trunc"),
    ("userId,movieId,rating,timestamp\n1,1,nan,5\n", r"ratings\.csv, line 2: rating must be a number from"),
])
def test_latest_csv_errors(tmp_path: Path, ratings: str, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        load_dataset("movielens-latest", write_latest(tmp_path, ratings=ratings))


@pytest.mark.parametrize(("tagged", "message"), [
    ("2\t52\t13\t1\t4\t2009\n", r"user_taggedartists\.dat, line 1: expected the header userID"),
    ("userID\tartistID\ttagID\tday\tmonth\tyear\n2\t52\t13\t31\t2\t2009\n",
     r"line 2: day/month/year 31/2/2009 is not a date"),
    ("userID\tartistID\ttagID\tday\tmonth\tyear\n2\t52\t77\t1\t2\t2009\n", r"line 2: tagID '77' is not in"),
    ("userID\tartistID\ttagID\tday\tmonth\tyear\n2\t52\t13\t1\t2\n", r"line 2: expected 6 tab-separated"),
])
def test_lastfm_errors(tmp_path: Path, tagged: str, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        load_dataset("lastfm", write_lastfm(tmp_path, tagged=tagged))


def test_generic_errors_name_column_and_fix(tmp_path: Path) -> None:
    folder = write_generic(tmp_path)
    with pytest.raises(DataFormatError, match=r"items\.csv, line 1: header has no column 'title'"):
        load_dataset("generic", folder)
    with pytest.raises(DataFormatError, match=r"no genres column 'genres' .*set it to null"):
        load_dataset("generic", folder, title_column="name")
    _write(folder / "users.csv", "user,age\nu1,3\nu1,4\n")
    with pytest.raises(DataFormatError, match=r"users\.csv, line 3: duplicate user id 'u1'"):
        load_dataset("generic", folder, title_column="name", genres_column=None)
    (folder / "users.csv").unlink()
    _write(folder / "interactions.csv", "user,item,rating,timestamp\nu1,A,5,1\nu1,A,x,2\n")
    with pytest.raises(DataFormatError, match=r"interactions\.csv, line 3: rating must be a number"):
        load_dataset("generic", folder, title_column="name", genres_column=None)


def test_repeated_pairs_keep_the_earliest_interaction(tmp_path: Path) -> None:
    folder = write_generic(tmp_path)
    _write(folder / "interactions.csv", "user,item,rating,timestamp\nu1,A,5,300\nu1,B,4,200\nu1,A,1,100\n")
    data = load_dataset("generic", folder, title_column="name", genres_column=None)
    assert data.n_interactions == 2
    assert data.timestamps.tolist() == [100, 200]
    assert data.ratings.tolist() == [1.0, 4.0]
