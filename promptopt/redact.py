"""Credentials out of URLs and text before anything is stored or logged.

A key can reach promptopt inside a server URL (``http://user:KEY@host/v1`` or
``https://host/v1?api-key=KEY``). :func:`redact_url` keeps the scheme, host, port and path, and replaces
the user information and every credential-like query value with ``***``; :func:`redact_urls` does so for
every URL inside a text (a log line, a command line); :func:`redact_config` for the config dict written
to ``config.yaml``, wandb and reports.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

MARK = "***"
"""What a redacted credential reads as."""

_CREDENTIAL_NAME = re.compile(
    r"(?i)(key|token|secret|passw|pwd|auth|credential|signature|sig$|session|bearer|access)"
)
"""Query parameter names whose values are credentials (``api-key``, ``access_token``, ``sig`` ...)."""
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_PARTS = re.compile(r"(?s)([^?#]*)(\?[^#]*)?(#.*)?")
_QUERY_PAIR = re.compile(r"([?&])([^=&#]*)=([^&#]*)")
_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """``url`` with user name, password and credential-like query values replaced by ``***``.

    Works on the text, not on a parse: everything before the last ``@`` is user information (also
    when a password holds ``/``, ``?`` or ``#``, or the port is malformed), and the rest of the URL is
    kept byte for byte. When that last ``@`` lies inside the query (``?token=ab@cd``), the value it
    split is hidden too, so no part of a credential survives (the host is lost in that rare case).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return url
    prefix = scheme + sep
    if "@" in rest:  # a password may hold '/', '?' or '#': everything up to the last '@' goes
        dropped, _, rest = rest.rpartition("@")
        prefix += f"{MARK}@"
        if "?" in dropped:
            # The last '@' sat inside the query (``?token=ab@cd&x=1``), so the kept text starts in
            # the middle of a query value that may be a credential: hide that value, then treat
            # the remaining pairs as the query.
            end = re.search(r"[&#]", rest)
            rest = MARK + (rest[end.start():] if end else "")
            if end is None or rest[len(MARK)] == "#":
                return prefix + rest
            query, hash_, fragment = rest.partition("#")
            return prefix + _QUERY_PAIR.sub(_hide_pair, query) + hash_ + fragment
    match = _PARTS.match(rest)
    assert match is not None  # every string matches
    authority_path, query, fragment = match.groups()
    if query:
        query = _QUERY_PAIR.sub(_hide_pair, query)
    return f"{prefix}{authority_path}{query or ''}{fragment or ''}"


def _hide_pair(m: re.Match[str]) -> str:
    return f"{m.group(1)}{m.group(2)}={MARK}" if _CREDENTIAL_NAME.search(m.group(2)) else m.group(0)


def redact_urls(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the credentials of every URL in a record's message.

    Installed on the handlers of the CLI (stderr) and of each run's ``train.log``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "://" in message:
            redacted = redact_urls(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


def redact_config(value: Any) -> Any:
    """A plain config dict (or any nested value) with the credentials of every URL string redacted."""
    if isinstance(value, str):
        return redact_urls(value) if "://" in value else value
    if isinstance(value, Mapping):
        return {k: redact_config(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_config(v) for v in value]
    return value
