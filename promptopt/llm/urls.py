"""Server URLs as they may be shown: in a ranker's identity (hence the cache key), logs and errors."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def public_url(url: str) -> str:
    """``url`` without user name, password, query or fragment, and without a trailing slash.

    The host keeps its brackets when it is an IPv6 literal (``http://[::1]:8000/v1``) and its port
    when one is given; scheme and host are lower-cased (as :func:`urllib.parse.urlsplit` reads them).

    Raises:
        ValueError: The port is not a number in 0..65535.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal: urlsplit drops the brackets that keep it apart from the port
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
