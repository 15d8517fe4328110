"""Score mode of the openai backend: reading echoed log-probabilities, the alignment check, the fallback."""

from __future__ import annotations

import json
import logging

import pytest

from promptopt.errors import ConfigError
from promptopt.llm.openai_backend import OpenAIRanker
from promptopt.llm.openai_scoring import (
    ALIGNMENT_TOLERANCE,
    ScoringUnsupported,
    alignment_problem,
    completion_body,
    read_generated,
    read_label_logprobs,
)
from promptopt.testing import LocalOpenAIServer


def _answer(tokens: list[str], logprobs: list[float | None], **usage: int) -> bytes:
    return json.dumps({
        "choices": [{"text": "".join(tokens), "logprobs": {
            "tokens": tokens, "token_logprobs": logprobs,
            # llama-cpp-python counts offsets without special tokens; nothing here reads them.
            "text_offset": [0] * len(tokens), "top_logprobs": [None] * len(tokens),
        }}],
        "usage": usage,
    }).encode()


def test_label_logprobs_are_the_echoed_tokens_that_spell_the_label() -> None:
    # prompt "<s>Pick:\n", label "12" (2 tokens), then one generated token "\n".
    raw = _answer(["<s>", "Pick", ":\n", "1", "2", "\n"], [None, -3.0, -2.0, -0.5, -1.5, -0.1],
                  prompt_tokens=5)
    values, usage = read_label_logprobs(raw, prompt="<s>Pick:\n", label="12")
    assert values == [-0.5, -1.5] and usage.prompt_tokens == 5
    # A token that straddles the prompt/label boundary belongs to the label; an end token is skipped.
    raw = _answer(["Pick", ":", "\n1", ""], [None, -2.0, -0.7, -0.2])
    assert read_label_logprobs(raw, prompt="Pick:\n", label="1")[0] == [-0.7]


@pytest.mark.parametrize(("raw", "match"), [
    (b"not json", "malformed"),
    (json.dumps({"choices": []}).encode(), "no choices"),
    (json.dumps({"choices": [{"text": "x", "logprobs": None}]}).encode(), "no token log-probabilities"),
    (_answer(["ab", "c"], [None, None]), "no log-probability"),
    (_answer(["x", "y", "z"], [-1.0, -1.0, -1.0]), "does not echo"),
])
def test_unusable_answers_are_scoring_unsupported(raw: bytes, match: str) -> None:
    with pytest.raises(ScoringUnsupported, match=match):
        read_label_logprobs(raw, prompt="ab", label="c")


def test_tokens_that_do_not_spell_the_label_are_refused() -> None:
    raw = json.loads(_answer(["a", "b", "d"], [None, -1.0, -1.0]))
    raw["choices"][0]["text"] = "abc"
    with pytest.raises(ScoringUnsupported, match="do not end with the label"):
        read_label_logprobs(json.dumps(raw).encode(), prompt="ab", label="c")


def test_generated_token_and_the_alignment_rule() -> None:
    assert read_generated(_answer([" four"], [-0.25])) == (" four", -0.25)
    assert alignment_problem((" four", -0.25), [-0.25 + ALIGNMENT_TOLERANCE / 2]) is None
    problem = alignment_problem((" four", -0.25), [-10.1])
    assert problem is not None and "misaligned" in problem and "' four'" in problem
    assert "empty token" in (alignment_problem(("", -0.1), [-0.1]) or "")


def test_completion_body_never_asks_for_zero_tokens() -> None:
    body = completion_body("m", "text", echo=True)
    assert body["max_tokens"] == 1 and body["echo"] is True and body["logprobs"] == 1
    assert "echo" not in completion_body("m", "text", echo=False)


def test_a_server_without_completions_falls_back_to_chat_with_one_line(monkeypatch, caplog) -> None:
    monkeypatch.setenv("SCORE_TEST_KEY", "local")
    with LocalOpenAIServer() as server, caplog.at_level(logging.WARNING):
        ranker = OpenAIRanker("local", base_url=server.base_url, api_key_env="SCORE_TEST_KEY",
                              api_mode="score", max_retries=0)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "cannot score labels" in warnings[0] and "HTTP 404" in warnings[0]
        assert ranker.api_mode == "chat" and "api_mode" not in ranker.identity
        ranker.close()


def test_bad_score_settings_are_config_errors(monkeypatch) -> None:
    monkeypatch.setenv("SCORE_TEST_KEY", "local")
    with pytest.raises(ConfigError, match="api_mode"):
        OpenAIRanker("m", api_key_env="SCORE_TEST_KEY", api_mode="logits")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="length_normalize"):
        OpenAIRanker("m", api_key_env="SCORE_TEST_KEY", length_normalize="tokens")
