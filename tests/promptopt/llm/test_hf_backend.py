"""The hf backend on tiny random causal LMs built in the test (BPE trained on the fly, 2 layers)."""

from __future__ import annotations

import functools
import math
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from promptopt.errors import RankerError  # noqa: E402
from promptopt.llm.hf_backend import HFRanker  # noqa: E402
from promptopt.llm.types import RankRequest  # noqa: E402
from tests.promptopt.llm.tiny_models import build_tiny_model  # noqa: E402

# float32 unless a test says otherwise: dtype "auto" may pick bfloat16 on a CPU with fast bf16 kernels,
# and these tests compare scores to 1e-4.
_ranker = functools.partial(HFRanker, dtype="float32")

@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {
        "llama": build_tiny_model(root / "tiny-llama", "llama", chat=False),
        "gpt2": build_tiny_model(root / "tiny-gpt2", "gpt2", chat=False),
        "chat": build_tiny_model(root / "tiny-chat", "llama", chat=True),
    }


def _requests() -> list[RankRequest]:
    texts = [f"The Silent Harbor {j}" for j in range(12)]
    out = []
    cases = [(1, "index", 1), (4, "title", 1), (9, "index", 0), (2, "json", 1), (6, "title", 1)]
    for words, fmt, base in cases:
        prompt = "You are a movie ranker. " + "Rank the candidates. " * words
        out.append(RankRequest(
            messages=(("system", "You are a movie ranker."), ("user", prompt)),
            candidate_ids=tuple(range(100, 112)), candidate_texts=tuple(texts),
            output_format=fmt, index_base=base,
        ))
    return out


def _reference_scores(ranker: HFRanker, request: RankRequest) -> list[float]:
    """Each candidate's label log-likelihood from one full, unpadded forward pass per candidate."""
    prompt = ranker._encode(ranker.prompt_text(request))
    row = []
    for j in range(len(request.candidate_ids)):
        label = ranker.tokenizer(ranker.label(request, j), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = ranker.model(torch.tensor([prompt + label])).logits[0]
        logp = torch.log_softmax(logits.float(), dim=-1)
        row.append(sum(float(logp[len(prompt) - 1 + t, label[t]]) for t in range(len(label))))
    return row


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_score_batched_equals_unbatched_and_the_full_forward_likelihood(tiny_models, arch) -> None:
    requests = _requests()
    batched = _ranker(str(tiny_models[arch]), mode="score", batch_size=3, length_normalize="none")
    single = _ranker(str(tiny_models[arch]), mode="score", batch_size=1, length_normalize="none")
    got = batched.score(requests)
    one_by_one = [single.score([r])[0] for r in requests]
    # Multi-token labels (10, 11, 12, titles) go through the shared key/value cache.
    assert any(len(batched.tokenizer(batched.label(r, j), add_special_tokens=False)["input_ids"]) > 1
               for r in requests for j in range(12))
    assert batched.scorer._kv_reuse
    for request, row, alone in zip(requests, got, one_by_one):
        assert row == pytest.approx(alone, abs=1e-4)
        assert row == pytest.approx(_reference_scores(single, request), abs=1e-4)


def test_score_without_cache_reuse_matches(tiny_models) -> None:
    requests = _requests()
    with_cache = _ranker(str(tiny_models["llama"]), batch_size=4).score(requests)
    plain = _ranker(str(tiny_models["llama"]), batch_size=4)
    plain.scorer._kv_reuse = False
    for a, b in zip(with_cache, plain.score(requests)):
        assert a == pytest.approx(b, abs=1e-4)


def test_score_mode_ranks_by_score_with_ties_in_shown_order(tiny_models) -> None:
    ranker = _ranker(str(tiny_models["llama"]), batch_size=8)
    requests = _requests()
    responses = ranker.rank(requests)
    for request, response in zip(requests, responses):
        assert sorted(response.ranking) == sorted(request.candidate_ids)
        assert response.scores is not None and len(response.scores) == 12
        by_id = dict(zip(request.candidate_ids, response.scores))
        ranked_scores = [by_id[c] for c in response.ranking]
        assert ranked_scores == sorted(ranked_scores, reverse=True)
        for a, b in zip(response.ranking, response.ranking[1:]):
            if by_id[a] == by_id[b]:
                assert request.candidate_ids.index(a) < request.candidate_ids.index(b)
        assert response.usage.prompt_tokens > 5 and response.parse.complete
    # index_base 0 shifts every label by one: candidate 0 is scored as "0", not "1".
    zero = RankRequest.from_prompt("Rank.", [1, 2], ["a", "b"], index_base=0)
    one = RankRequest.from_prompt("Rank.", [1, 2], ["a", "b"], index_base=1)
    assert ranker.label(zero, 0) == "0" and ranker.label(one, 0) == "1"
    assert ranker.score([zero])[0] != ranker.score([one])[0]


def test_generate_mode_parses_into_a_valid_permutation(tiny_models) -> None:
    ranker = _ranker(str(tiny_models["llama"]), mode="generate", batch_size=2, max_new_tokens=12)
    requests = _requests()[:3]
    responses = ranker.rank(requests)
    assert len(responses) == 3
    for request, response in zip(requests, responses):
        assert sorted(response.ranking) == sorted(request.candidate_ids)
        assert response.parse.found + response.parse.missing == len(request.candidate_ids)
        assert set(response.unparsed) <= set(request.candidate_ids)
        assert 0 < response.usage.completion_tokens <= 12
    # Greedy decoding is deterministic, and batching does not change the text.
    again = _ranker(str(tiny_models["llama"]), mode="generate", batch_size=1, max_new_tokens=12)
    assert [r.raw_text for r in again.rank(requests)] == [r.raw_text for r in responses]


def test_chat_template_is_applied_when_the_tokenizer_has_one(tiny_models) -> None:
    chat = _ranker(str(tiny_models["chat"]), mode="generate", max_new_tokens=6)
    plain = _ranker(str(tiny_models["llama"]), mode="generate", max_new_tokens=6)
    request = _requests()[0]
    text = chat.prompt_text(request)
    assert text.startswith("<s>system: You are a movie ranker.\n<s>user: ") and text.endswith("assistant:")
    assert plain.prompt_text(request) == request.prompt.rstrip() + "\n"
    response = chat.rank([request])[0]
    assert sorted(response.ranking) == sorted(request.candidate_ids)
    assert isinstance(chat.identity["chat_template"], str) and plain.identity["chat_template"] is None


def test_identity_is_stable_across_folders_and_holds_no_path(tiny_models, tmp_path) -> None:
    copy = tmp_path / "elsewhere" / "tiny-llama"
    shutil.copytree(tiny_models["llama"], copy)
    a = _ranker(str(tiny_models["llama"])).identity
    b = _ranker(str(copy)).identity
    assert a == b
    assert a["model"] == "tiny-llama" and a["backend"] == "hf" and a["mode"] == "score"
    assert str(tmp_path) not in str(a) and str(tiny_models["llama"].parent) not in str(a)
    gpt2 = _ranker(str(tiny_models["gpt2"])).identity
    assert gpt2["config_sha256"] != a["config_sha256"]
    sampled = _ranker(str(tiny_models["llama"]), mode="generate", temperature=0.7, seed=3).identity
    assert sampled["temperature"] == 0.7 and sampled["seed"] == 3


def test_sampling_differs_between_sample_ids(tiny_models) -> None:
    ranker = _ranker(str(tiny_models["llama"]), mode="generate", temperature=1.5, max_new_tokens=16)
    base = _requests()[0]
    texts = set()
    for sample_id in range(4):
        request = RankRequest(**{**base.__dict__, "sample_id": sample_id})
        texts.add(ranker.rank([request])[0].raw_text)
    assert len(texts) > 1
    # The same sample id gives the same text again.
    first = RankRequest(**{**base.__dict__, "sample_id": 0})
    assert ranker.rank([first])[0].raw_text == ranker.rank([first])[0].raw_text
    # Sampling leaves the process-wide torch RNG alone.
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ranker.rank([first])
    assert torch.equal(torch.rand(3), expected)


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RankerError, match=r"no-such-org/no-such-model.*hf download"):
        HFRanker("no-such-org/no-such-model")
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(RankerError, match="empty-model"):
        _ranker(str(empty))


def test_bad_arguments_are_rejected(tiny_models) -> None:
    with pytest.raises(ValueError, match="mode"):
        _ranker(str(tiny_models["llama"]), mode="chat")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dtype"):
        _ranker(str(tiny_models["llama"]), dtype="int8")
    with pytest.raises(ValueError, match="batch_size"):
        _ranker(str(tiny_models["llama"]), batch_size=0)


def test_length_normalize_titles_averages_only_title_labels(tiny_models) -> None:
    requests = _requests()
    summed = _ranker(str(tiny_models["llama"]), length_normalize="none")
    titles = _ranker(str(tiny_models["llama"]), length_normalize="titles")
    every = _ranker(str(tiny_models["llama"]), length_normalize="all")
    raw, by_title, by_all = summed.score(requests), titles.score(requests), every.score(requests)
    for request, r, t, a in zip(requests, raw, by_title, by_all):
        lengths = [len(summed.tokenizer(summed.label(request, j), add_special_tokens=False)["input_ids"])
                   for j in range(len(request.candidate_ids))]
        averaged = [x / n for x, n in zip(r, lengths)]
        assert a == pytest.approx(averaged, abs=1e-5)
        assert t == pytest.approx(averaged if request.output_format == "title" else r, abs=1e-5)
    assert any(n > 1 for n in lengths)
    assert titles.identity["length_normalize"] == "titles" != summed.identity["length_normalize"]
    with pytest.raises(ValueError, match="length_normalize"):
        _ranker(str(tiny_models["llama"]), length_normalize=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ratios", "expected"),
    [((2.0, 2.2, 1.9, 2.1, 2.0), "bfloat16"), ((1.02, 0.98, 1.05, 1.0, 1.01), "float32")],
)
def test_dtype_auto_on_cpu_follows_the_bfloat16_probe(tiny_models, monkeypatch, caplog, ratios, expected):
    from promptopt.llm import hf_loading

    probe = hf_loading.BFloat16Probe(ratios)
    monkeypatch.setattr(hf_loading, "probe_cpu_bfloat16", lambda hidden, inner: probe)
    with caplog.at_level("INFO", logger="promptopt.llm.hf_loading"):
        ranker = HFRanker(str(tiny_models["llama"]), device="cpu", dtype="auto")
    assert ranker.identity["dtype"] == expected
    assert next(ranker.model.parameters()).dtype == getattr(torch, expected)
    # The log says what was chosen and how sure the probe was.
    assert f"as {expected}" in caplog.text and probe.describe() in caplog.text
    assert f"faster in {probe.faster_rounds}/5" in caplog.text


def test_bfloat16_probe_needs_a_margin_and_agreeing_rounds() -> None:
    from promptopt.llm.hf_loading import BF16_MARGIN, BFloat16Probe

    assert BFloat16Probe((2.0,) * 9).prefers_bfloat16()
    # One round stretched by load cannot decide: the median ignores it.
    assert not BFloat16Probe((1.0,) * 8 + (9.0,)).prefers_bfloat16()
    assert BFloat16Probe((2.0,) * 8 + (0.1,)).prefers_bfloat16()
    # A win below the margin, or one that most rounds do not show, keeps float32.
    assert not BFloat16Probe((BF16_MARGIN - 0.05,) * 9).prefers_bfloat16()
    split = BFloat16Probe((1.5, 1.5, 1.5, 1.5, 1.5, 0.9, 0.9, 0.9, 0.9))
    assert split.median >= BF16_MARGIN and split.faster_rounds == 5 and not split.prefers_bfloat16()
    assert split.describe() == "median 1.50x over 9 interleaved rounds (0.90-1.50x), bfloat16 faster in 5/9"


def test_bfloat16_probe_measures_positive_ratios() -> None:
    from promptopt.llm.hf_loading import cpu_bfloat16_speedup, probe_cpu_bfloat16

    probe = probe_cpu_bfloat16(64, 128, rows=16, rounds=3, calls=2)
    assert len(probe.ratios) == 3 and all(r > 0 and math.isfinite(r) for r in probe.ratios)
    assert cpu_bfloat16_speedup(64, 128) > 0
    with pytest.raises(ValueError, match="rounds"):
        probe_cpu_bfloat16(64, 128, rounds=0)


def test_variant_shares_weights_or_copies_them_for_another_dtype(tiny_models) -> None:
    ranker = _ranker(str(tiny_models["llama"]), length_normalize="none")
    generator = ranker.variant(mode="generate", max_new_tokens=8)
    assert generator.model is ranker.model and generator.identity["mode"] == "generate"
    half = ranker.variant(dtype="bfloat16")
    assert half.model is not ranker.model and next(half.model.parameters()).dtype == torch.bfloat16
    assert next(ranker.model.parameters()).dtype == torch.float32  # the original is untouched
    assert half.identity["dtype"] == "bfloat16" != ranker.identity["dtype"]
    requests = _requests()
    assert half.score(requests)[0] == pytest.approx(ranker.score(requests)[0], abs=0.5)
    with pytest.raises(ValueError, match="dtype"):
        ranker.variant(dtype="int8")
    with pytest.raises(ValueError, match="mode"):
        ranker.variant(mode="chat")  # type: ignore[arg-type]
