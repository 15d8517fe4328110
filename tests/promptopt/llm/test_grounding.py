"""BIGRec-style grounding of invented list items to the nearest unplaced candidate."""

from __future__ import annotations

import pytest

from promptopt.llm.grounding import EmbeddingGrounder, make_grounder
from promptopt.llm.parsing import parse_ranking
from promptopt.llm.types import RankRequest

TITLES = ("Toy Story (1995)", "Heat (1995)", "Leaving Las Vegas (1995)", "Babe: Pig in the City (1998)")


def _request(fmt: str = "title") -> RankRequest:
    return RankRequest.from_prompt("Rank the movies.", [10, 11, 12, 13], TITLES, output_format=fmt)


def _by_words(mentions, candidates):
    """Similarity = shared lowercase words (a deterministic stand-in for embeddings in unit tests)."""
    return [[len(set(m.lower().split()) & set(c.lower().split())) for c in candidates] for m in mentions]


def test_without_a_grounder_invented_items_are_hallucinations() -> None:
    ranking, stats, _ = parse_ranking("1. Vegas nights\n2. Heat\n3. City pig", _request())
    assert ranking[0] == 11 and stats.found == 1 and stats.hallucinated == 2 and stats.grounded == 0


def test_invented_items_are_grounded_to_the_nearest_unplaced_candidate_in_answer_order() -> None:
    text = "1. Vegas nights\n2. Heat\n3. City pig\n4. Robot toy adventure\n5. Vegas again"
    ranking, stats, unparsed = parse_ranking(text, _request(), grounder=_by_words)
    assert ranking == (12, 11, 13, 10)
    # "Vegas again" is nearest to Leaving Las Vegas, already placed, and no candidate is left.
    assert (stats.found, stats.grounded, stats.hallucinated, stats.missing) == (1, 3, 1, 0)
    assert unparsed == ()
    _, plain, _ = parse_ranking(text, _request())
    assert plain.grounded == 0 and plain.hallucinated == 4


def test_grounding_never_touches_prose_or_bare_numbers() -> None:
    text = "Here is my ranking:\n1. Heat\n2. 77"
    _, stats, _ = parse_ranking(text, _request("index"), grounder=_by_words)
    assert stats.grounded == 0 and stats.hallucinated == 1


def test_json_strings_are_grounded_too() -> None:
    ranking, stats, _ = parse_ranking('["Heat", "Pig city"]', _request(), grounder=_by_words)
    assert ranking[:2] == (11, 13) and stats.found == 1 and stats.grounded == 1


def test_a_failing_grounder_is_not_fatal() -> None:
    def broken(mentions, candidates):
        raise RuntimeError("encoder down")

    ranking, stats, _ = parse_ranking("1. Heat\n2. Something else", _request(), grounder=broken)
    assert sorted(ranking) == [10, 11, 12, 13] and stats.hallucinated == 1 and stats.grounded == 0


def test_minilm_grounds_a_paraphrase_to_its_movie() -> None:
    grounder = make_grounder("embedding")
    assert isinstance(grounder, EmbeddingGrounder) and grounder.identity.startswith("embedding:")
    titles = ("Heat (1995)", "The Lion King (1994)", "Alien (1979)")
    request = RankRequest.from_prompt("Rank.", [1, 2, 3], titles)
    text = "1. a cartoon about a lion cub who becomes king"
    ranking, stats, _ = parse_ranking(text, request, grounder=grounder)
    assert ranking[0] == 2 and stats.grounded == 1
    assert parse_ranking(text, request)[1].hallucinated == 1
    with pytest.raises(ValueError, match="grounding"):
        make_grounder("fuzzy")
