"""The embedding backend with the real packaged MiniLM, and against a local OpenAI-compatible server."""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.errors import RankerError
from promptopt.llm.embedding_backend import EmbeddingRanker
from promptopt.llm.types import RankRequest

pytest.importorskip("sentence_transformers")

CANDIDATES = {
    10: "Haunted Asylum (Horror, Thriller)",
    11: "Love in Paris (Romance, Comedy)",
    12: "Starship Armada (Sci-Fi, Action)",
    13: "The Singing Cowboys (Western, Musical)",
    14: "Inside the Ocean (Documentary)",
}
PROMPTS = {
    10: "The user loves horror films: ghosts, haunted houses, monsters and terrifying slashers.",
    11: "The user loves romantic comedies: couples falling in love, weddings and sweet dates.",
    12: "The user loves science fiction: space battles, spaceships, aliens and far galaxies.",
    14: "The user loves documentaries about nature, wildlife and the sea.",
}


@pytest.fixture(scope="module")
def minilm() -> EmbeddingRanker:
    return EmbeddingRanker(device="cpu")


def _request(prompt: str, order: list[int]) -> RankRequest:
    return RankRequest.from_prompt(prompt, order, [CANDIDATES[c] for c in order])


def test_a_prompt_about_a_genre_ranks_the_matching_candidate_first(minilm) -> None:
    order = [13, 11, 14, 10, 12]
    requests = [_request(prompt, order) for prompt in PROMPTS.values()]
    responses = minilm.rank(requests)
    for target, response in zip(PROMPTS, responses):
        assert response.ranking[0] == target
        assert sorted(response.ranking) == sorted(order)
        assert response.scores is not None
        scores = dict(zip(order, response.scores))
        assert [scores[c] for c in response.ranking] == sorted(scores.values(), reverse=True)
        assert all(-1.0 - 1e-6 <= s <= 1.0 + 1e-6 for s in response.scores)
        assert response.parse.complete and response.raw_text == ""


def test_scores_are_the_cosines_of_raw_model_encodings(minilm) -> None:
    order = [10, 11, 12]
    response = minilm.rank([_request(PROMPTS[12], order)])[0]
    vectors = minilm._model.encode([PROMPTS[12], *[CANDIDATES[c] for c in order]])
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = vectors[1:] @ vectors[0]
    assert np.allclose(response.scores, expected, atol=1e-5)


def test_each_distinct_item_text_is_encoded_once(monkeypatch) -> None:
    ranker = EmbeddingRanker(device="cpu")
    calls: list[list[str]] = []
    real = ranker._encode_by_length

    def spy(texts):
        calls.append(list(texts))
        return real(texts)

    monkeypatch.setattr(ranker, "_encode_by_length", spy)
    first = [_request(PROMPTS[10], [10, 11, 12]), _request(PROMPTS[11], [12, 11, 10])]
    ranker.rank(first)
    assert calls == [[PROMPTS[10], PROMPTS[11]], [CANDIDATES[10], CANDIDATES[11], CANDIDATES[12]]]
    calls.clear()
    # A later call re-encodes only its prompts and the one item text not seen before.
    again = ranker.rank([_request(PROMPTS[12], [12, 13, 10]), _request(PROMPTS[14], [10, 11, 12])])
    assert calls == [[PROMPTS[12], PROMPTS[14]], [CANDIDATES[13]]]
    assert ranker.n_cached_items == 4
    assert again[0].ranking[0] == 12


def test_requests_of_different_sizes_in_one_batch(minilm) -> None:
    responses = minilm.rank([_request(PROMPTS[10], [11, 10]), _request(PROMPTS[14], [10, 11, 12, 13, 14])])
    assert responses[0].ranking == (10, 11)
    assert len(responses[1].ranking) == 5 and responses[1].ranking[0] == 14
    assert minilm.rank([]) == []


def test_ties_keep_the_shown_order(minilm) -> None:
    text = CANDIDATES[10]
    request = RankRequest.from_prompt(PROMPTS[10], [5, 3, 9], [text, text, text])
    assert minilm.rank([request])[0].ranking == (5, 3, 9)


def test_identity_is_stable_and_names_the_model(minilm) -> None:
    other = EmbeddingRanker(model="all-MiniLM-L6-v2", device="cpu")
    assert minilm.identity == other.identity
    assert minilm.identity["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert minilm.identity["backend"] == "embedding" and minilm.identity["api"] is False
    assert "/" + "site-packages" not in str(minilm.identity)


def test_missing_local_model_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RankerError, match=r"no-such/embedder.*hf download"):
        EmbeddingRanker(model="no-such/embedder", device="cpu")


def test_embeddings_api_through_a_local_openai_compatible_server(monkeypatch) -> None:
    from promptopt.testing import LocalOpenAIServer

    monkeypatch.setenv("PROMPTOPT_TEST_KEY", "sk-secret-123")
    with LocalOpenAIServer() as server:
        ranker = EmbeddingRanker(
            model="local-embed", api=True, base_url=server.base_url, api_key_env="PROMPTOPT_TEST_KEY",
            batch_size=2,
        )
        requests = [
            RankRequest.from_prompt("ghosts haunted asylum horror", [1, 2, 3],
                                    ["sunny beach romance", "haunted asylum horror", "space armada"]),
            RankRequest.from_prompt("space armada battles", [4, 2, 3],
                                    ["quiet farm life", "haunted asylum horror", "space armada"]),
        ]
        responses = ranker.rank(requests)
        stats = server.stats()
        base_url = server.base_url
        assert server.last_authorization == "Bearer sk-secret-123"
    assert responses[0].ranking[0] == 2 and responses[1].ranking[0] == 3
    # 2 prompts + 4 distinct item texts in batches of 2 = 3 HTTP calls; usage counts every word.
    assert stats.requests["/v1/embeddings"] == 3
    words = sum(len(r.prompt.split()) for r in requests) + sum(
        len(t.split()) for t in {t for r in requests for t in r.candidate_texts})
    assert sum(r.usage.prompt_tokens for r in responses) == words
    identity = ranker.identity
    assert identity == {"backend": "embedding", "model": "local-embed", "api": True,
                        "base_url": base_url.rstrip("/")}
    assert "sk-secret" not in str(identity)


def test_api_without_key_fails_before_any_call(monkeypatch) -> None:
    monkeypatch.delenv("PROMPTOPT_MISSING_KEY", raising=False)
    with pytest.raises(RankerError, match="PROMPTOPT_MISSING_KEY"):
        EmbeddingRanker(model="m", api=True, base_url="http://127.0.0.1:9/v1",
                        api_key_env="PROMPTOPT_MISSING_KEY")


def test_api_failure_is_a_clear_error(monkeypatch) -> None:
    from promptopt.testing import LocalOpenAIServer

    monkeypatch.setenv("PROMPTOPT_TEST_KEY", "k")
    with LocalOpenAIServer(failure_rate=1.0, failures=("500",)) as server:
        ranker = EmbeddingRanker(model="m", api=True, base_url=server.base_url,
                                 api_key_env="PROMPTOPT_TEST_KEY", max_retries=1)
        with pytest.raises(RankerError, match="embeddings endpoint failed"):
            ranker.rank([RankRequest.from_prompt("x", [1], ["y"])])
        assert server.stats().requests["/v1/embeddings"] == 2


def test_answers_do_not_depend_on_the_batch_they_were_encoded_in() -> None:
    """A cold cache encodes texts in other batches than the run that filled a warm one (issue 13).

    Padding a short text to a longer batch companion changes its vector in the last bits (on the
    ML-100K item texts, 82 of 119 moved by up to 1e-7), which flips near-tied candidates; texts are
    therefore only ever batched with texts of the same token length.
    """
    texts = [*CANDIDATES.values(), *PROMPTS.values(), "Up", "A much longer text " * 12]
    together = EmbeddingRanker(device="cpu", batch_size=4).encode(texts)[0]
    fresh = EmbeddingRanker(device="cpu", batch_size=64)
    alone = np.stack([fresh.encode([t])[0][0] for t in texts])
    reversed_ = fresh.encode(texts[::-1])[0][::-1]
    assert np.array_equal(together, alone) and np.array_equal(reversed_, alone)
    # The same request answered with different companions and a different item store: same bits.
    order = [13, 11, 14, 10, 12]
    first = EmbeddingRanker(device="cpu").rank([_request(PROMPTS[10], order)])[0]
    crowd = [_request(p, order[::-1]) for p in PROMPTS.values()]
    later = EmbeddingRanker(device="cpu").rank([*crowd, _request(PROMPTS[10], order)])[-1]
    assert later.scores == first.scores and later.ranking == first.ranking
