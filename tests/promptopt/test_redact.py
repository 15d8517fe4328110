"""URL redaction: user information and credential-like query values never survive; the rest does."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptopt.redact import RedactingFilter, redact_config, redact_url, redact_urls


@pytest.mark.parametrize(("url", "expected"), [
    ("http://user:KEY@host:8000/v1", "http://***@host:8000/v1"),
    ("https://KEY@api.example.com/v1/", "https://***@api.example.com/v1/"),
    ("https://host/v1?api-key=KEY&api-version=2024", "https://host/v1?api-key=***&api-version=2024"),
    ("https://host/v1?access_token=KEY", "https://host/v1?access_token=***"),
    ("https://host/v1?sig=KEY&se=2030", "https://host/v1?sig=***&se=2030"),
    ("http://[::1]:8080/v1?password=KEY", "http://[::1]:8080/v1?password=***"),
    ("http://host/v1", "http://host/v1"),
    ("http://host/v1?api-version=2024", "http://host/v1?api-version=2024"),
    ("http://user:KEY@host:notaport/v1", "http://***@host:notaport/v1"),
    ("http://host/v1?token=@KEY&x=1", "http://***@***&x=1"),
    ("https://host/v1?a=b@c&key=KEY", "https://***@***&key=***"),
])
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert "KEY" not in redact_urls(f"connecting to {url} now")


@given(user=st.text(st.characters(codec="ascii", exclude_characters="@/?#[]\\ \t\n\r"), min_size=1),
       secret=st.text(st.characters(codec="ascii", exclude_characters="&#\\ \t\n\r"), min_size=6))
def test_no_credential_survives(user: str, secret: str) -> None:
    for url in (f"http://{user}:{secret}@host/v1", f"http://host/v1?token={secret}&x=1",
                f"http://host/v1?a=b@c&token={secret}&x=1"):
        redacted = redact_url(url)
        assert secret not in redacted.replace("***", "") or secret in url.replace(secret, "")


def test_config_and_log_records_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    config = {"ranker": {"base_url": "http://u:KEY@h/v1", "model": "m"}, "tags": ["https://h/?key=KEY"]}
    assert "KEY" not in str(redact_config(config))
    logger = logging.getLogger("test.redact")
    handler = logging.Handler()
    records: list[str] = []
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        logger.warning("resuming with --ranker.base_url=%s", "http://u:KEY@h/v1")
    finally:
        logger.removeHandler(handler)
    assert records == ["resuming with --ranker.base_url=http://***@h/v1"]
