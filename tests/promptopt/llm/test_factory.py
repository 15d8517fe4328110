"""make_ranker: the backend a config names, cached and budgeted when asked, with clear errors."""

from __future__ import annotations

import dataclasses

import pytest

from promptopt.candidates import CandidateSampler
from promptopt.config import CacheConfig, RankerConfig
from promptopt.errors import BudgetExceeded, ConfigError
from promptopt.llm.budget import Budget
from promptopt.llm.cache import CachedRanker
from promptopt.llm.factory import make_ranker
from promptopt.llm.simulated import SimulatedRanker
from promptopt.splits import TaskBuilder
from promptopt.templates import TemplateCatalog


@pytest.fixture(scope="module")
def catalog() -> TemplateCatalog:
    return TemplateCatalog.load("movies")


@pytest.fixture(scope="module")
def requests(synthetic_data, catalog):
    builder = TaskBuilder(synthetic_data, CandidateSampler(synthetic_data.n_items, 19), seed=0)
    tasks = [builder.task(u, synthetic_data.history_length(u) - 1) for u in range(6)]
    return [catalog[0].request(t, synthetic_data) for t in tasks]


@pytest.fixture(scope="module")
def simulator(synthetic_data, catalog) -> SimulatedRanker:
    return SimulatedRanker(synthetic_data, catalog)


def test_simulated_is_built_from_its_problem_not_from_the_config() -> None:
    with pytest.raises(ConfigError, match=r"'simulated' simulates a problem.*pass backend=SimulatedRanker"):
        make_ranker(RankerConfig(backend="simulated"))


def test_cache_wraps_the_backend_and_answers_repeats(tmp_path, simulator, requests) -> None:
    cache = CacheConfig(enabled=True, path=str(tmp_path / "answers.sqlite"))
    ranker = make_ranker(RankerConfig(backend="simulated"), cache=cache, backend=simulator)
    assert isinstance(ranker, CachedRanker)
    assert ranker.identity["backend"] == "simulated"
    first = ranker.rank(requests)
    again = ranker.rank(requests)
    assert [r.ranking for r in again] == [r.ranking for r in first]
    assert all(r.cached for r in again) and not any(r.cached for r in first)
    assert ranker.stats.hits == len(requests) and ranker.stats.misses == len(requests)
    ranker.close()
    assert (tmp_path / "answers.sqlite").exists()
    plain = make_ranker(RankerConfig(backend="simulated"), cache=dataclasses.replace(cache, enabled=False),
                        backend=simulator)
    assert plain is simulator


def test_budget_is_shared_with_the_cache_and_enforced(tmp_path, simulator, requests) -> None:
    budget = Budget(max_calls=4)
    cache = CacheConfig(path=str(tmp_path / "c.sqlite"))
    ranker = make_ranker(RankerConfig(backend="simulated"), cache=cache, budget=budget, backend=simulator)
    assert ranker.budget is budget
    ranker.rank(requests[:3])
    with pytest.raises(BudgetExceeded, match="max_calls=4"):
        ranker.rank(requests[3:])
    # The answers that fitted in the budget were cached: asking again costs nothing.
    assert [r.cached for r in ranker.rank(requests[:4])] == [True] * 4
    ranker.close()


def test_budget_caps_need_the_cache(simulator) -> None:
    with pytest.raises(ConfigError, match=r"cache\.enabled"):
        make_ranker(RankerConfig(backend="simulated"), budget=Budget(max_tokens=10), backend=simulator)
    # A budget without caps does not need one.
    assert make_ranker(RankerConfig(backend="simulated"), budget=Budget(), backend=simulator) is simulator


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"ranker\.backend must be one of .*got 'gpt'"):
        make_ranker(RankerConfig(backend="gpt"))  # type: ignore[arg-type]


def test_openai_backend_from_the_config(monkeypatch) -> None:
    from promptopt.llm.openai_backend import OpenAIRanker

    monkeypatch.setenv("PROMPTOPT_FACTORY_KEY", "sk-factory-test-key")
    ranker = make_ranker(RankerConfig(backend="openai", model="local-test", base_url="http://127.0.0.1:9/v1",
                                      api_key_env="PROMPTOPT_FACTORY_KEY", temperature=0.3, max_tokens=64))
    assert isinstance(ranker, OpenAIRanker)
    assert ranker.identity["model"] == "local-test" and ranker.identity["temperature"] == 0.3


def test_embedding_backend_through_an_embeddings_api(monkeypatch) -> None:
    from promptopt.llm.embedding_backend import EmbeddingRanker
    from promptopt.llm.types import RankRequest
    from promptopt.testing import LocalOpenAIServer

    monkeypatch.setenv("PROMPTOPT_FACTORY_KEY", "sk-factory-test-key")
    with LocalOpenAIServer() as server:
        ranker = make_ranker(RankerConfig(backend="embedding", model="embed", embedding_api=True,
                                          base_url=server.base_url, api_key_env="PROMPTOPT_FACTORY_KEY",
                                          batch_size=8))
        assert isinstance(ranker, EmbeddingRanker) and ranker.batch_size == 8
        request = RankRequest.from_prompt("space armada", [1, 2], ["farm life", "space armada"])
        response = ranker.rank([request])
    assert response[0].ranking == (2, 1)


def test_embedding_backend_defaults_to_the_packaged_minilm() -> None:
    pytest.importorskip("sentence_transformers")
    ranker = make_ranker(RankerConfig(backend="embedding", device="cpu"))
    assert ranker.identity["model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_hf_backend_from_the_config(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from promptopt.llm.hf_backend import HFRanker

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=280, special_tokens=["<unk>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["rank the candidates 1 2 3"] * 5, trainer)
    torch.manual_seed(0)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                     eos_token="<pad>")
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(hf_tok), n_embd=16, n_layer=1, n_head=2))
    model.save_pretrained(tmp_path)
    hf_tok.save_pretrained(tmp_path)
    ranker = make_ranker(RankerConfig(backend="hf", model=str(tmp_path), hf_mode="generate", device="cpu",
                                      dtype="float32", batch_size=4, max_tokens=9, temperature=0.0))
    assert isinstance(ranker, HFRanker)
    assert (ranker.mode, ranker.batch_size, ranker.max_new_tokens, ranker.device) == ("generate", 4, 9, "cpu")
    assert ranker.identity["dtype"] == "float32"
