"""The prompt book's JSON Schema and the checks a schema cannot express.

:func:`validate` reports the first problem with its JSON path (``$.users[3].template_id``), so a
hand-edited or truncated ``prompts.json`` fails with one line that says where to look.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from promptopt.errors import PromptBookError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "1.1"
"""Version written into new books (1.1 adds the safe policy's ``gate`` and each user's ``deviates`` /
``reason``); books of any ``1.x`` version load."""

SCHEMA_PATH = Path(__file__).with_name("prompt_book.schema.json")
"""The JSON Schema every prompt book validates against."""

TEMPLATE_FIELDS: tuple[str, ...] = (
    "id", "name", "text", "slots", "output_format", "index_base", "min_history",
    "needs_attributes", "needs_ratings", "uses_hints",
)
"""The template attributes a book stores (enough to rebuild the template and render it)."""

_SECRET_KEY = re.compile(r"(?i)(api_?key|secret|password|authorization|bearer)")


@cache
def schema() -> dict[str, Any]:
    """The prompt book JSON Schema (draft 2020-12)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate(payload: Any, *, source: str = "prompt book") -> None:
    """Check ``payload`` against the schema and the cross-references a schema cannot express.

    Raises:
        PromptBookError: One line with the JSON path of the first problem
            (``prompts.json: $.users[3].template_id: ...``).
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(payload), key=lambda e: (len(e.absolute_path), e.json_path))
    if errors:
        err = errors[0]
        raise PromptBookError(f"{source}: {err.json_path}: {_short(err.message)}")
    ids = [t["id"] for t in payload["catalog"]["templates"]]
    known = set(ids)
    if len(known) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise PromptBookError(f"{source}: $.catalog.templates: template id {dup!r} appears twice")
    refs: list[tuple[str, str]] = [("$.default_template", payload["default_template"])]
    refs += [(f"$.global_ranking[{k}].template_id", row["template_id"])
             for k, row in enumerate(payload["global_ranking"])]
    refs += [(f"$.users[{k}].template_id", row["template_id"]) for k, row in enumerate(payload["users"])]
    gate_order = (payload.get("gate") or {}).get("order", [])
    refs += [(f"$.gate.order[{k}]", tid) for k, tid in enumerate(gate_order)]
    for path, template_id in refs:
        if template_id not in known:
            raise PromptBookError(
                f"{source}: {path}: template {template_id!r} is not in the catalog "
                f"(known: {', '.join(ids[:8])}{' ...' if len(ids) > 8 else ''})"
            )
    seen: set[str] = set()
    for k, row in enumerate(payload["users"]):
        probs = row["action_probabilities"]
        if probs and len(probs) != len(ids):
            raise PromptBookError(
                f"{source}: $.users[{k}].action_probabilities: {len(probs)} values for "
                f"{len(ids)} templates"
            )
        if row["user_id"] in seen:
            raise PromptBookError(f"{source}: $.users[{k}].user_id: user {row['user_id']!r} appears twice")
        seen.add(row["user_id"])


def _short(message: str, limit: int = 200) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


def scrub_identity(identity: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of a ranker identity without any key that could name a credential."""
    clean: dict[str, Any] = {}
    for key, value in identity.items():
        if _SECRET_KEY.search(str(key)):
            logger.warning("ranker identity key %r looks like a credential; left out of the book", key)
            continue
        clean[str(key)] = scrub_identity(value) if isinstance(value, Mapping) else jsonable(value)
    return clean


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (tuples as lists, numpy scalars as numbers, the rest as text)."""
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)
