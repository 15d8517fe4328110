"""public_url: a server URL without credentials, query or fragment, as identities and messages show it."""

from __future__ import annotations

import pytest

from promptopt.llm.embedding_backend import EmbeddingRanker
from promptopt.llm.openai_backend import OpenAIRanker
from promptopt.llm.urls import public_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://[::1]:8000/v1", "http://[::1]:8000/v1"),
        ("http://[::1]/v1", "http://[::1]/v1"),
        ("https://u:p@[::1]:8000/v1/?k=1#x", "https://[::1]:8000/v1"),
        ("http://[2001:db8::7]:11434/v1/", "http://[2001:db8::7]:11434/v1"),
        ("https://user:pw@host.example:8443/v1/?key=abc#x", "https://host.example:8443/v1"),
        ("https://token@api.example.com/v1", "https://api.example.com/v1"),
        ("https://:secret@api.example.com/v1", "https://api.example.com/v1"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        ("http://localhost:0/v1", "http://localhost:0/v1"),
        ("https://api.openai.com/v1/", "https://api.openai.com/v1"),
        ("HTTPS://API.Example.COM/V1", "https://api.example.com/V1"),
    ],
)
def test_public_url_keeps_scheme_host_port_and_path_only(url: str, shown: str) -> None:
    assert public_url(url) == shown


def test_a_port_that_is_not_a_number_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"[Pp]ort"):
        public_url("http://host.example:80a/v1")


def test_both_api_backends_show_an_ipv6_server_the_same_way(monkeypatch) -> None:
    monkeypatch.setenv("PROMPTOPT_URL_TEST_KEY", "sk-url-test")
    url = "http://alice:pw@[::1]:8000/v1/?token=abc"
    chat = OpenAIRanker("m", base_url=url, api_key_env="PROMPTOPT_URL_TEST_KEY")
    embed = EmbeddingRanker(model="e", api=True, base_url=url, api_key_env="PROMPTOPT_URL_TEST_KEY")
    assert chat.identity["base_url"] == embed.identity["base_url"] == "http://[::1]:8000/v1"
