"""A seeded synthetic dataset: readable items, users whose genre taste drifts over time.

Used by tests and by the quickstart (the embedded default needs no download). Items have
readable titles and one to three genres with Zipf-like popularity; each user has a genre taste
(concentrated or broad); a ``drift`` share of users switch to a new taste part-way through their
history, so the recent and the long-term history disagree — the case where prompt choice matters.

Which template suits a user is the ranker's business, not the data's: the simulated ranker plants a
change of best template at the drift time cut for a known share of users (``ranker.drift_share``,
:mod:`promptopt.llm.simulated`); ``start_days`` decides how many users have history on both sides
of that cut.
"""

from __future__ import annotations

import numpy as np

from promptopt.data.interactions import InteractionData

GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
# Title words by genre, so that an item's title says something about its content (as real titles
# often do): a text ranker can then match a user's history to candidates, as it would on real data.
_TITLE_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Action": (
        ("Fast", "Deadly", "Iron", "Explosive", "Rogue", "Final"),
        ("Strike", "Fury", "Mission", "Chase", "Target", "Showdown"),
    ),
    "Adventure": (
        ("Lost", "Hidden", "Distant", "Wild", "Golden", "Forgotten"),
        ("Expedition", "Journey", "Treasure", "Island", "Quest", "Voyage"),
    ),
    "Animation": (
        ("Little", "Magic", "Brave", "Tiny", "Happy", "Dancing"),
        ("Bunny", "Dragon", "Robot", "Kitten", "Toys", "Forest"),
    ),
    "Comedy": (
        ("Crazy", "Silly", "Awkward", "Hilarious", "Clumsy", "Wacky"),
        ("Wedding", "Roommates", "Vacation", "Neighbors", "Party", "Mix-Up"),
    ),
    "Crime": (
        ("Dirty", "Stolen", "Corrupt", "Underworld", "Midnight", "Cold"),
        ("Heist", "Money", "Gangster", "Detective", "Cartel", "Alibi"),
    ),
    "Documentary": (
        ("Untold", "Inside", "Real", "Hidden", "True", "Living"),
        ("Story", "Planet", "History", "Truth", "Report", "Ocean"),
    ),
    "Drama": (
        ("Quiet", "Broken", "Long", "Fragile", "Bitter", "Tender"),
        ("Family", "Promise", "Letters", "Years", "Silence", "Return"),
    ),
    "Fantasy": (
        ("Enchanted", "Ancient", "Cursed", "Elven", "Mystic", "Crystal"),
        ("Kingdom", "Sorcerer", "Crown", "Realm", "Sword", "Prophecy"),
    ),
    "Horror": (
        ("Haunted", "Bloody", "Dead", "Evil", "Cursed", "Screaming"),
        ("House", "Nightmare", "Crypt", "Demon", "Graveyard", "Ghost"),
    ),
    "Musical": (
        ("Singing", "Golden", "Dancing", "Broadway", "Jazz", "Rhythm"),
        ("Melody", "Stage", "Song", "Ballroom", "Chorus", "Serenade"),
    ),
    "Mystery": (
        ("Secret", "Vanishing", "Strange", "Silent", "Missing", "Hidden"),
        ("Clue", "Puzzle", "Riddle", "Witness", "Key", "Case"),
    ),
    "Romance": (
        ("Sweet", "Endless", "Summer", "Forbidden", "First", "Secret"),
        ("Love", "Kiss", "Heart", "Affair", "Romance", "Valentine"),
    ),
    "Sci-Fi": (
        ("Galactic", "Cyber", "Quantum", "Alien", "Stellar", "Robotic"),
        ("Galaxy", "Starship", "Android", "Planet", "Future", "Colony"),
    ),
    "Thriller": (
        ("Deadly", "Dark", "Silent", "Final", "Twisted", "Hunted"),
        ("Conspiracy", "Escape", "Hostage", "Trap", "Agent", "Countdown"),
    ),
    "War": (
        ("Bloody", "Last", "Brave", "Fallen", "Iron", "Frozen"),
        ("Battalion", "Battle", "Soldier", "Trenches", "Front", "Platoon"),
    ),
    "Western": (
        ("Dusty", "Lone", "Wild", "Outlaw", "Rusty", "High"),
        ("Ranger", "Saloon", "Frontier", "Gunslinger", "Canyon", "Sheriff"),
    ),
}
_OCCUPATIONS = ("student", "engineer", "artist", "doctor", "writer", "educator", "retired", "other")
_START = 946_684_800  # 2000-01-01


def make_synthetic(
    n_users: int = 300,
    n_items: int = 400,
    n_genres: int = 12,
    mean_history: int = 40,
    drift: float = 0.5,
    seed: int = 0,
    start_days: int = 3 * 365,
) -> InteractionData:
    """Generate a dataset.

    Args:
        n_users: Number of users.
        n_items: Number of items.
        n_genres: Genres used (at most 16).
        mean_history: Mean interactions per user (each user gets at least 8).
        drift: Share of users whose taste switches to another genre mix part-way.
        seed: Seed; the same arguments always give the same dataset.
        start_days: Users start their history uniformly within this many days of 2000-01-01 (a user's
            history then spans about ``3 * mean_history`` days). Shorter than a history, most users
            have interactions on both sides of a late time cut (a drift study's source and target
            period); the default spreads them over three years.

    Raises:
        ValueError: Sizes out of range.
    """
    if not 2 <= n_genres <= len(GENRES):
        raise ValueError(f"n_genres must be in 2..{len(GENRES)}, got {n_genres}")
    if n_items < 30:
        raise ValueError(f"n_items must be >= 30, got {n_items}")
    if n_users < 1 or mean_history < 8:
        raise ValueError(
            f"n_users must be >= 1 and mean_history >= 8, got {n_users} and {mean_history}"
        )
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be in [0, 1], got {drift}")
    if not 1 <= start_days <= 36_500:
        raise ValueError(f"start_days must be in 1..36500, got {start_days}")
    rng = np.random.default_rng(seed)
    genres = GENRES[:n_genres]

    # Items: one to three genres each, Zipf-like popularity, readable unique titles.
    item_genres: list[tuple[str, ...]] = []
    genre_matrix = np.zeros((n_items, n_genres))
    for item in range(n_items):
        k = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
        chosen = sorted(rng.choice(n_genres, size=min(k, n_genres), replace=False))
        genre_matrix[item, chosen] = 1.0
        item_genres.append(tuple(genres[g] for g in chosen))
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    rng.shuffle(popularity)
    years = rng.integers(1950, 2024, size=n_items)
    titles: list[str] = []
    used: set[str] = set()
    per_genre: dict[str, int] = {}
    for item in range(n_items):
        # Deterministic (no RNG draws), so titles never change the rest of the data.
        main = item_genres[item][item % len(item_genres[item])]
        k = per_genre[main] = per_genre.get(main, -1) + 1
        adjectives, nouns = _TITLE_WORDS[main]
        base = f"The {adjectives[k % len(adjectives)]} {nouns[(k // len(adjectives)) % len(nouns)]}"
        title, part = base, 1
        while title in used:
            part += 1
            title = f"{base} {part}"
        used.add(title)
        titles.append(f"{title} ({years[item]})")

    rows: list[tuple[str, str, float, int]] = []
    attrs: dict[str, list[str | None]] = {"age": [], "gender": [], "occupation": []}
    user_ids = [str(u + 1) for u in range(n_users)]
    for user in range(n_users):
        concentration = 0.3 if rng.random() < 0.5 else 3.0
        taste = rng.dirichlet(np.full(n_genres, concentration))
        later = rng.dirichlet(np.full(n_genres, concentration)) if rng.random() < drift else None
        length = max(8, int(rng.geometric(1.0 / mean_history)))
        length = min(length, n_items // 2)
        switch = int(length * rng.uniform(0.4, 0.8)) if later is not None else length
        t = _START + int(rng.integers(0, start_days * 86400))
        seen: set[int] = set()
        for position in range(length):
            current = taste if position < switch else later
            assert current is not None
            weights = (genre_matrix @ current) * popularity
            if seen:
                weights[list(seen)] = 0.0
            item = int(rng.choice(n_items, p=weights / weights.sum()))
            seen.add(item)
            affinity = float(genre_matrix[item] @ current / genre_matrix[item].sum())
            rating = float(np.clip(np.rint(2.0 + 6.0 * affinity + rng.normal(0, 0.7)), 1, 5))
            t += int(rng.exponential(3 * 86400)) + 60
            rows.append((user_ids[user], str(item + 1), rating, t))
        known = rng.random() < 0.7
        attrs["age"].append(str(int(rng.integers(16, 70))) if known else None)
        attrs["gender"].append(str(rng.choice(["F", "M"])) if known else None)
        attrs["occupation"].append(str(rng.choice(_OCCUPATIONS)) if known else None)

    return InteractionData.from_raw(
        "synthetic",
        items=[(str(i + 1), titles[i], item_genres[i], int(years[i])) for i in range(n_items)],
        interactions=rows,
        users=user_ids,
        user_attributes=attrs,
        genre_names=genres,
    )
