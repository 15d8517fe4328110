"""The placeholder syntax of template text, parsed once when a catalog loads.

Template text is literal text with placeholders ``{field}`` or ``{field:arg}``; ``{{`` and ``}}``
stand for literal braces. Parsing turns the text into a tuple of segments (literal strings and
:class:`FieldRef` objects); rendering joins the literals with the fields' values. Values are
substituted, never formatted, so item text holding braces or format specifiers such as
``{0.__class__}`` is copied verbatim and can never reach another field or an attribute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")
_ARG = re.compile(r"[A-Za-z0-9_-]+\Z")
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}\n]*)\}|[{}]")


class PlaceholderError(ValueError):
    """A placeholder that does not parse; ``field`` is the offending text between the braces."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class FieldRef:
    """A placeholder: the field's name and its optional argument (``{recent_titles:10}``)."""

    name: str
    arg: str | None = None

    def __str__(self) -> str:
        return "{" + self.name + ("" if self.arg is None else ":" + self.arg) + "}"


Segment = str | FieldRef


def parse_text(text: str) -> tuple[Segment, ...]:
    """Split template text into literal strings and :class:`FieldRef` placeholders.

    Raises:
        PlaceholderError: A lone brace, or a placeholder whose name or argument is malformed
            (names are lowercase identifiers, arguments letters, digits, ``_`` and ``-``).
    """
    segments: list[Segment] = []
    literal: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        literal.append(text[pos:match.start()])
        pos = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        if match.group(1) is None:
            line = text.count("\n", 0, match.start()) + 1
            raise PlaceholderError(
                f"lone {token!r} on line {line}: write {token * 2!r} for a literal brace", token
            )
        inner = match.group(1)
        name, sep, arg = inner.partition(":")
        if not _NAME.match(name) or (sep and not _ARG.match(arg)):
            raise PlaceholderError(
                f"malformed placeholder {token!r}: use {{field}} or {{field:arg}} with a lowercase "
                "field name (write {{ and }} for literal braces)",
                inner,
            )
        if literal:
            segments.append("".join(literal))
            literal = []
        segments.append(FieldRef(name, arg if sep else None))
    literal.append(text[pos:])
    if "".join(literal):
        segments.append("".join(literal))
    return tuple(segments)


def unparse(segments: tuple[Segment, ...]) -> str:
    """The template text of ``segments`` (literal braces escaped again); inverse of :func:`parse_text`."""
    return "".join(
        s.replace("{", "{{").replace("}", "}}") if isinstance(s, str) else str(s) for s in segments
    )
