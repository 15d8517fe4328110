"""The JSON Schema of catalog YAML files, and one-line errors naming the template and field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from promptopt.errors import TemplateError
from promptopt.suggest import closest
from promptopt.templates.fields import CANDIDATE_STYLES

SLOT_NAMES: tuple[str, ...] = ("role", "history", "reasoning", "output")
"""The four sentence patterns of RPP, in the order their option ids form a template id."""

OPTION_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
TEMPLATE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_FORMATS = ["index", "title", "json"]

OPTION_SCHEMA: dict[str, Any] = {
    "description": "A slot option: its sentence, or a mapping with the sentence and settings.",
    "type": ["string", "object"],
    "required": ["text"],
    "additionalProperties": False,
    "properties": {
        "text": {"type": "string", "description": "The sentence (may hold fields)."},
        "name": {"type": "string", "description": "Readable name used in template names."},
        "candidates": {"enum": list(CANDIDATE_STYLES), "description": "Style of {candidates}."},
        "output_format": {"enum": _FORMATS},
        "index_base": {"enum": [0, 1]},
    },
}

TEMPLATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "text"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": TEMPLATE_ID},
        "name": {"type": "string"},
        "text": {"type": "string"},
        "slots": {"type": "object", "additionalProperties": {"type": "string"}},
        "output_format": {"enum": _FORMATS},
        "index_base": {"enum": [0, 1]},
        "min_history": {"type": "integer", "minimum": 0},
    },
}

CATALOG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "promptopt template catalog",
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "version": {"type": ["integer", "string"]},
        "layout": {"type": "string", "description": "How slot sentences are put together."},
        "slots": {
            "type": "object",
            "required": list(SLOT_NAMES),
            "additionalProperties": False,
            "properties": {
                name: {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": {"pattern": OPTION_ID},
                    "additionalProperties": OPTION_SCHEMA,
                }
                for name in SLOT_NAMES
            },
        },
        "default_include": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "slot_options": {
            "description": "Listed catalogs saved from a slot catalog: option ids per slot, in order.",
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
        "templates": {"type": "array", "minItems": 1, "items": TEMPLATE_SCHEMA},
    },
}
"""Draft 2020-12 schema of a catalog file (either ``slots`` or ``templates``)."""

_TYPE_NAMES = {"string": "a string", "object": "a mapping", "integer": "an integer", "array": "a list",
               "boolean": "true or false"}


def validate_catalog(raw: Any, source: str) -> None:
    """Check a parsed catalog file against :data:`CATALOG_SCHEMA`.

    Raises:
        TemplateError: One line naming the template (or slot option) and the field.
    """
    import jsonschema

    if not isinstance(raw, Mapping):
        raise TemplateError(f"{source}: a catalog must be a mapping, got {type(raw).__name__}")
    has_slots, has_list = "slots" in raw, "templates" in raw
    if has_slots == has_list:
        raise TemplateError(
            f"{source}: a catalog needs exactly one of 'slots' (a product of slot options) or "
            f"'templates' (an explicit list), got {'both' if has_slots else 'neither'}"
        )
    if has_list and "layout" in raw:
        raise TemplateError(
            f"{source}: 'layout' only applies to slot catalogs; put the text in each template"
        )
    validator = jsonschema.Draft202012Validator(CATALOG_SCHEMA)
    errors = sorted(validator.iter_errors(raw), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise TemplateError(f"{source}: {_describe(raw, errors[0])}")


def option_location(slot: str, option: str) -> str:
    """How error messages name the templates composed from one slot option."""
    pattern = ".".join(option if name == slot else "*" for name in SLOT_NAMES)
    return f"templates {pattern!r} (slot {slot!r}, option {option!r})"


def _describe(raw: Mapping[str, Any], error: Any) -> str:
    path = list(error.absolute_path)
    where, rest = "catalog", path
    if path[:1] == ["templates"] and len(path) >= 2 and isinstance(path[1], int):
        entry = raw["templates"][path[1]]
        tid = entry.get("id") if isinstance(entry, Mapping) else None
        where = f"templates[{path[1]}]"
        if isinstance(tid, str):
            where = f"template {tid!r} ({where})"
        rest = path[2:]
    elif path[:1] == ["slots"] and len(path) >= 3:
        where, rest = option_location(str(path[1]), str(path[2])), path[3:]
    elif path[:1] == ["slots"] and len(path) == 2:
        where, rest = f"slot {path[1]!r}", []
    kind = error.validator
    value = error.instance
    if kind == "additionalProperties" and isinstance(value, Mapping):
        known = list(error.schema.get("properties", {}))
        unknown = [k for k in value if k not in known]
        name = unknown[0] if unknown else "?"
        close = closest(str(name), known)
        hint = f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(known)}"
        return f"{where}: unknown field {name!r} ({hint})"
    if kind == "required":
        missing = [k for k in error.validator_value if k not in value]
        return f"{where}: missing field {missing[0]!r}" if missing else f"{where}: {error.message}"
    field = f"field {'.'.join(str(p) for p in rest)!r}" if rest else "value"
    if kind == "type":
        expected = error.validator_value
        expected = [expected] if isinstance(expected, str) else expected
        wanted = " or ".join(_TYPE_NAMES.get(t, t) for t in expected)
        if "object" in expected and path[:1] == ["slots"]:
            wanted += " with 'text'"
        return f"{where}: {field} must be {wanted}, got {type(value).__name__} {value!r}"
    if kind == "enum":
        options = ", ".join(repr(v) for v in error.validator_value)
        return f"{where}: {field} must be one of {options}, got {value!r}"
    if kind == "propertyNames" or (kind == "pattern" and path[:1] == ["slots"]):
        return f"{where}: option id {value!r} must hold only letters, digits, '_' and '-' (no dots)"
    return f"{where}: {field}: {_short(error.message)}"


def _short(message: str, limit: int = 160) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


def check_unique(ids: Sequence[str], source: str) -> None:
    """Raise :class:`TemplateError` naming the first id that appears twice."""
    seen: set[str] = set()
    for k, tid in enumerate(ids):
        if tid in seen:
            raise TemplateError(f"{source}: template id {tid!r} appears twice (second at templates[{k}])")
        seen.add(tid)
