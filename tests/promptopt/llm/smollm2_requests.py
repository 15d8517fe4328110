"""Short ranking requests for the real SmolLM2-135M-Instruct tests (kept short: CPU time)."""

from __future__ import annotations

from promptopt.llm.types import RankRequest

MOVIES = (
    "Toy Story (1995)", "Heat (1995)", "Jumanji (1995)", "Casino (1995)", "Babe (1995)", "Sabrina (1995)",
)


def movie_requests() -> list[RankRequest]:
    """Three requests over six movies: index labels, title labels, and index labels numbered from 0."""
    listing = "\n".join(f"{i + 1}. {title}" for i, title in enumerate(MOVIES))
    listing0 = "\n".join(f"{i}. {title}" for i, title in enumerate(MOVIES))
    history = "The user watched: Aladdin (1992), The Lion King (1994), Pocahontas (1995)."
    ask_index = "Rank the candidates for this user. Answer with their numbers, best first, one per line."
    ask_title = "Rank the candidates for this user. Answer with their titles, best first, one per line."
    ids = tuple(range(10, 10 + len(MOVIES)))
    return [
        RankRequest(messages=(("user", f"{history}\nCandidates:\n{listing}\n{ask_index}"),),
                    candidate_ids=ids, candidate_texts=MOVIES),
        RankRequest(messages=(("system", "You recommend movies."),
                              ("user", f"{history}\nCandidates:\n{listing}\n{ask_title}")),
                    candidate_ids=ids, candidate_texts=MOVIES, output_format="title"),
        RankRequest(messages=(("user", f"{history}\nCandidates:\n{listing0}\n{ask_index}"),),
                    candidate_ids=ids, candidate_texts=MOVIES, index_base=0),
    ]


def capital_request() -> RankRequest:
    """A question any language model answers: the capital of France, among four title labels."""
    return RankRequest.from_prompt(
        "What is the capital of France? Answer with the city's name only.",
        [1, 2, 3, 4], ["Paris", "Banana", "Keyboard", "Seventeen"], output_format="title",
    )


def capital_index_request() -> RankRequest:
    """The same question with numbered candidates and index labels."""
    options = ["Banana", "Paris", "Keyboard", "Seventeen"]
    listing = "\n".join(f"{i + 1}. {o}" for i, o in enumerate(options))
    return RankRequest.from_prompt(
        f"What is the capital of France?\n{listing}\nAnswer with the number only.",
        [1, 2, 3, 4], options,
    )
