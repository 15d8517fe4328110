"""Loaders for the MovieLens releases, reading GroupLens's own files in their own encodings.

* MovieLens-100K (``ml-100k/``): ``u.data``, ``u.item``, ``u.genre``, optional ``u.user``.
* MovieLens-1M (``ml-1m/``): ``ratings.dat``, ``movies.dat``, optional ``users.dat``.
* MovieLens latest / latest-small (``ml-latest*/``): ``ratings.csv``, ``movies.csv``.

Titles keep the dataset's own spelling (``"Misérables, Les (1995)"``); the release year is
read from the title's trailing ``(YYYY)``.
"""

from __future__ import annotations

from pathlib import Path

from promptopt.data.assemble import InteractionRows, assemble, year_from_title
from promptopt.data.interactions import InteractionData
from promptopt.data.textfile import (
    parse_int,
    parse_rating,
    parse_timestamp,
    read_csv,
    read_table,
    require_file,
)
from promptopt.errors import DataFormatError

_STARS = {"low": 1.0, "high": 5.0}
"""MovieLens-100K and 1M ratings: whole stars from 1 to 5."""

# MovieLens-1M's users.dat stores codes; the release README gives their meaning.
ML1M_AGES: dict[str, str] = {
    "1": "under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55",
    "56": "56+",
}
ML1M_OCCUPATIONS: tuple[str, ...] = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
_NO_GENRE = {"unknown", "(no genres listed)"}


def load_movielens_100k(path: str | Path) -> InteractionData:
    """MovieLens-100K from the folder holding ``u.data``, ``u.item``, ``u.genre`` (and ``u.user``).

    * ``u.data``: tab-separated ``user item rating timestamp`` (Unix seconds).
    * ``u.item``: latin-1, ``|``-separated ``id|title|release date|video date|IMDb URL|`` then 19
      genre flags in the order of ``u.genre``. The ``unknown`` genre is not kept as a genre.
    * ``u.genre``: ``name|index`` lines.
    * ``u.user`` (optional): ``id|age|gender|occupation|zip`` -> attributes age, gender, occupation.

    Raises:
        DataFormatError: A missing / empty / malformed file, naming the path and line.
    """
    folder = Path(path)
    genre_path = require_file(folder, "u.genre", "MovieLens-100K genres 'name|index'")
    names: dict[int, str] = {}
    for number, (name, index) in read_table(genre_path, "|", 2, "latin-1", "genre name|index"):
        names[parse_int(genre_path, number, index, "genre index")] = name
    if sorted(names) != list(range(len(names))):
        raise DataFormatError(
            f"{genre_path}: genre indices must be 0..{len(names) - 1}, got {sorted(names)}"
        )
    genre_names = [names[k] for k in range(len(names))]
    n_genres = len(genre_names)

    item_path = require_file(folder, "u.item", "MovieLens-100K items")
    what = f"id|title|release date|video release date|IMDb URL|{n_genres} genre flags"
    items: list[tuple[str, str, tuple[str, ...], int | None]] = []
    item_lines: list[int] = []
    urls: list[str] = []
    for number, fields in read_table(item_path, "|", 5 + n_genres, "latin-1", what):
        flags = fields[5:]
        if any(flag not in ("0", "1") for flag in flags):
            raise DataFormatError(
                f"{item_path}, line {number}: genre flags must be 0 or 1, got {'|'.join(flags)!r}"
            )
        genres = tuple(g for g, flag in zip(genre_names, flags) if flag == "1" and g not in _NO_GENRE)
        title = fields[1].strip()
        year = year_from_title(title)
        if year is None and fields[2][-4:].isdigit():
            year = int(fields[2][-4:])  # release date "01-Jan-1995"
        items.append((fields[0].strip(), title, genres, year))
        item_lines.append(number)
        urls.append(fields[4].strip())

    users, attributes, users_path, user_lines = None, None, None, None
    if (folder / "u.user").is_file():
        users_path = folder / "u.user"
        users, user_lines, attributes = [], [], {"age": [], "gender": [], "occupation": []}
        for number, (uid, age, gender, occupation, _zip) in read_table(
            users_path, "|", 5, "latin-1", "user id|age|gender|occupation|zip code"
        ):
            users.append(uid.strip())
            user_lines.append(number)
            attributes["age"].append(age.strip() or None)
            attributes["gender"].append(gender.strip() or None)
            attributes["occupation"].append(occupation.strip() or None)

    data_path = require_file(folder, "u.data", "MovieLens-100K ratings 'user item rating timestamp'")
    rows = InteractionRows(data_path)
    for number, (user, item, rating, ts) in read_table(
        data_path, "\t", 4, "latin-1", "user id, item id, rating, timestamp"
    ):
        rows.append(user.strip(), item.strip(), parse_rating(data_path, number, rating, "rating", **_STARS),
                    parse_timestamp(data_path, number, ts), number)
    return assemble(
        "ml-100k", items=items, items_path=item_path, rows=rows, item_extra={"url": urls},
        users=users, users_path=users_path, user_attributes=attributes,
        genre_names=[g for g in genre_names if g not in _NO_GENRE], item_lines=item_lines,
        user_lines=user_lines,
    )


def load_movielens_1m(path: str | Path) -> InteractionData:
    """MovieLens-1M from the folder holding ``ratings.dat``, ``movies.dat`` (and ``users.dat``).

    * ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``.
    * ``movies.dat``: latin-1 ``MovieID::Title::Genres`` with ``|``-separated genres.
    * ``users.dat`` (optional): ``UserID::Gender::Age::Occupation::Zip-code``; age and occupation
      codes become the README's words (``"25-34"``, ``"programmer"``).

    Raises:
        DataFormatError: A missing / empty / malformed file, naming the path and line.
    """
    folder = Path(path)
    movies_path = require_file(folder, "movies.dat", "MovieLens-1M movies 'MovieID::Title::Genres'")
    items: list[tuple[str, str, tuple[str, ...], int | None]] = []
    item_lines: list[int] = []
    vocab: dict[str, None] = {}
    for number, fields in read_table(movies_path, "::", 3, "latin-1", "MovieID::Title::Genres",
                                     at_least=True):
        # A title could in principle contain "::": the id is the first field, genres the last.
        movie, title, genre_text = fields[0], "::".join(fields[1:-1]), fields[-1]
        genres = tuple(g for g in genre_text.strip().split("|") if g and g not in _NO_GENRE)
        vocab.update(dict.fromkeys(genres))
        items.append((movie.strip(), title.strip(), genres, year_from_title(title)))
        item_lines.append(number)

    users, attributes, users_path, user_lines = None, None, None, None
    if (folder / "users.dat").is_file():
        users_path = folder / "users.dat"
        users, user_lines, attributes = [], [], {"age": [], "gender": [], "occupation": []}
        for number, (uid, gender, age, occupation, _zip) in read_table(
            users_path, "::", 5, "latin-1", "UserID::Gender::Age::Occupation::Zip-code"
        ):
            code = parse_int(users_path, number, occupation, "occupation")
            if not 0 <= code < len(ML1M_OCCUPATIONS):
                raise DataFormatError(
                    f"{users_path}, line {number}: occupation code must be 0..20, got {occupation!r}"
                )
            users.append(uid.strip())
            user_lines.append(number)
            attributes["gender"].append(gender.strip() or None)
            attributes["age"].append(ML1M_AGES.get(age.strip(), age.strip() or None))
            attributes["occupation"].append(ML1M_OCCUPATIONS[code])

    ratings_path = require_file(folder, "ratings.dat", "'UserID::MovieID::Rating::Timestamp' lines")
    rows = InteractionRows(ratings_path)
    for number, (user, movie, rating, ts) in read_table(
        ratings_path, "::", 4, "latin-1", "UserID::MovieID::Rating::Timestamp"
    ):
        rows.append(user.strip(), movie.strip(),
                    parse_rating(ratings_path, number, rating, "Rating", **_STARS),
                    parse_timestamp(ratings_path, number, ts, "Timestamp"), number)
    return assemble(
        "ml-1m", items=items, items_path=movies_path, rows=rows, users=users, users_path=users_path,
        user_attributes=attributes, genre_names=list(vocab), item_lines=item_lines, user_lines=user_lines,
    )


def load_movielens_latest(path: str | Path) -> InteractionData:
    """MovieLens latest or latest-small from the folder holding ``ratings.csv`` and ``movies.csv``.

    Both are UTF-8 CSV with a header (``userId,movieId,rating,timestamp`` and
    ``movieId,title,genres``); titles holding commas are quoted; CRLF or LF line ends.
    ``(no genres listed)`` becomes an empty genre list.

    Raises:
        DataFormatError: A missing / empty / malformed file, naming the path and line.
    """
    folder = Path(path)
    movies_path = require_file(folder, "movies.csv", "CSV with header movieId,title,genres")
    header, movie_rows = read_csv(movies_path, "CSV with header movieId,title,genres",
                                  required=("movieId", "title", "genres"))
    col = {name: k for k, name in enumerate(header)}
    items: list[tuple[str, str, tuple[str, ...], int | None]] = []
    item_lines: list[int] = []
    vocab: dict[str, None] = {}
    for number, fields in movie_rows:
        title = fields[col["title"]].strip()
        genres = tuple(
            g for g in fields[col["genres"]].split("|") if g.strip() and g not in _NO_GENRE
        )
        vocab.update(dict.fromkeys(genres))
        items.append((fields[col["movieId"]].strip(), title, genres, year_from_title(title)))
        item_lines.append(number)

    ratings_path = require_file(folder, "ratings.csv", "CSV with header userId,movieId,rating,timestamp")
    header, rating_rows = read_csv(ratings_path, "CSV with header userId,movieId,rating,timestamp",
                                   required=("userId", "movieId", "rating", "timestamp"))
    col = {name: k for k, name in enumerate(header)}
    rows = InteractionRows(ratings_path)
    u, m, r, t = col["userId"], col["movieId"], col["rating"], col["timestamp"]
    for number, fields in rating_rows:
        rating = parse_rating(ratings_path, number, fields[r], "rating", low=0.5, high=5.0)
        rows.append(fields[u].strip(), fields[m].strip(), rating,
                    parse_timestamp(ratings_path, number, fields[t]), number)
    name = folder.resolve().name if folder.resolve().name.startswith("ml-latest") else "ml-latest"
    return assemble(name, items=items, items_path=movies_path, rows=rows, genre_names=list(vocab),
                    item_lines=item_lines)
