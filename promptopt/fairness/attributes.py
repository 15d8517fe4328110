"""Sensitive attributes of the counterfactual audit: names, values and the sentence that states a value.

An attribute set is a YAML file (the built-in ``fairllm`` set follows FaiRLLM's eight attributes)::

    name: fairllm
    placement: start            # the sentence goes before the prompt (or: end, after it)
    attributes:
      age:
        sentence: "I am {value}."
        values: [young, middle-aged, old]

A sentence holds ``{value}`` exactly once and no other brace; the value is substituted verbatim.
Errors name the file, the attribute and the fix, and are raised when the set is loaded, before
anything is sent to a ranker.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from promptopt.errors import ConfigError

BUILTIN_ATTRIBUTE_SETS: tuple[str, ...] = ("fairllm",)
"""Attribute sets shipped in ``promptopt/fairness/attribute_sets/``."""

Placement = Literal["start", "end"]
PLACEMENTS: tuple[str, ...] = ("start", "end")

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_TOP_KEYS = frozenset({"name", "description", "placement", "attributes"})
_ATTRIBUTE_KEYS = frozenset({"sentence", "values"})
MAX_VALUE_CHARS = 200


@dataclass(frozen=True)
class SensitiveAttribute:
    """One sensitive attribute.

    Attributes:
        name: Identifier (``age``, ``physical_trait``).
        sentence: The sentence stating a value, with ``{value}`` once.
        values: The values audited, in report order.
    """

    name: str
    sentence: str
    values: tuple[str, ...]

    def sentence_for(self, value: str) -> str:
        """The sentence stating ``value`` (substituted verbatim)."""
        return self.sentence.replace("{value}", value)

    @property
    def label(self) -> str:
        """Readable name (``physical trait``)."""
        return self.name.replace("_", " ")


@dataclass(frozen=True)
class AttributeSet:
    """The attributes an audit (or the fairness-aware reward) varies, and where the sentence goes.

    Attributes:
        name: The set's name.
        attributes: The attributes, in file order.
        placement: ``start`` (the sentence, a newline, then the prompt) or ``end``.
        source: Where the set came from (a built-in name or a path).
    """

    name: str
    attributes: tuple[SensitiveAttribute, ...]
    placement: Placement = "start"
    source: str = ""

    def __iter__(self) -> Iterator[SensitiveAttribute]:
        return iter(self.attributes)

    def __len__(self) -> int:
        return len(self.attributes)

    def __getitem__(self, name: str) -> SensitiveAttribute:
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute
        known = ", ".join(a.name for a in self.attributes)
        raise KeyError(f"attribute set {self.name!r} has no attribute {name!r} (known: {known})")

    @property
    def n_values(self) -> int:
        """Values over all attributes (one counterfactual copy each)."""
        return sum(len(a.values) for a in self.attributes)

    def cells(self) -> list[tuple[str, str, str]]:
        """``(attribute, value, sentence)`` of every value, attribute by attribute."""
        return [(a.name, v, a.sentence_for(v)) for a in self.attributes for v in a.values]

    def limited(self, max_values: int | None) -> AttributeSet:
        """The same set with at most the first ``max_values`` values of each attribute (``None``: all)."""
        if max_values is None:
            return self
        if max_values < 2:
            raise ConfigError(f"max_values must be >= 2 (a range needs two values), got {max_values}")
        attrs = tuple(SensitiveAttribute(a.name, a.sentence, a.values[:max_values]) for a in self.attributes)
        return AttributeSet(self.name, attrs, self.placement, self.source)

    def only(self, names: Sequence[str]) -> AttributeSet:
        """The attributes named ``names`` (in file order); empty ``names`` keeps all.

        Raises:
            ConfigError: A name that is not in the set.
        """
        if not names:
            return self
        known = {a.name for a in self.attributes}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"attribute set {self.source or self.name}: no attribute {unknown[0]!r} "
                              f"(known: {', '.join(a.name for a in self.attributes)})")
        attrs = tuple(a for a in self.attributes if a.name in set(names))
        return AttributeSet(self.name, attrs, self.placement, self.source)


def load_attribute_set(name_or_path: str | Path) -> AttributeSet:
    """Load a built-in attribute set (``fairllm``) or an attribute set YAML file.

    Raises:
        ConfigError: Unknown name, unreadable file, or an invalid set (the message names the file,
            the attribute and the fix).
    """
    from promptopt.strict_yaml import load_strict_yaml

    name = str(name_or_path)
    if name in BUILTIN_ATTRIBUTE_SETS:
        ref = resources.files("promptopt.fairness").joinpath("attribute_sets", f"{name}.yaml")
        text, source = ref.read_text(encoding="utf-8"), name
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"unknown attribute set {name!r}: use a built-in name "
                              f"({', '.join(BUILTIN_ATTRIBUTE_SETS)}) or the path of an attribute set "
                              "YAML file")
        try:
            text, source = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read attribute set {path}: {exc}") from None
    raw = load_strict_yaml(text, f"attribute set {source}", ConfigError)
    return attribute_set_from_dict(raw, source=source)


def attribute_set_from_dict(raw: Any, *, source: str = "attribute set") -> AttributeSet:
    """Validate a parsed attribute set mapping (see the module docstring for the layout).

    Raises:
        ConfigError: One line naming ``source``, the key and the fix.
    """
    where = f"attribute set {source}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with name, placement and attributes")
    extra = sorted(set(raw) - _TOP_KEYS)
    if extra:
        raise ConfigError(f"{where}: unknown key {extra[0]!r} (known: {', '.join(sorted(_TOP_KEYS))})")
    set_name = raw.get("name", Path(source).stem)
    if not isinstance(set_name, str) or not set_name.strip():
        raise ConfigError(f"{where}: name must be a non-empty string, got {set_name!r}")
    placement = raw.get("placement", "start")
    if placement not in PLACEMENTS:
        raise ConfigError(f"{where}: placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    entries = raw.get("attributes")
    if not isinstance(entries, Mapping) or not entries:
        raise ConfigError(f"{where}: attributes must be a non-empty mapping of attribute name -> "
                          "{sentence, values}")
    attributes = [_attribute(str(k), v, where) if isinstance(k, str) else _bad_name(k, where)
                  for k, v in entries.items()]
    return AttributeSet(set_name, tuple(attributes), placement, source)


def _bad_name(name: object, where: str) -> SensitiveAttribute:
    raise ConfigError(f"{where}: attribute names must be strings, got {name!r}")


def _attribute(name: str, entry: Any, where: str) -> SensitiveAttribute:
    if not _NAME.match(name):
        raise ConfigError(f"{where}: attribute name {name!r} must be lower-case letters, digits and '_', "
                          "starting with a letter")
    at = f"{where}: attribute {name!r}"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{at} must be a mapping with sentence and values")
    extra = sorted(set(entry) - _ATTRIBUTE_KEYS)
    if extra:
        raise ConfigError(f"{at}: unknown key {extra[0]!r} (known: sentence, values)")
    sentence = entry.get("sentence")
    if not isinstance(sentence, str) or "\n" in sentence or not sentence.strip():
        raise ConfigError(f"{at}: sentence must be one non-empty line holding {{value}}, got {sentence!r}")
    rest = sentence.replace("{value}", "")
    if sentence.count("{value}") != 1 or "{" in rest or "}" in rest:
        raise ConfigError(f"{at}: sentence must hold {{value}} exactly once and no other brace, got "
                          f"{sentence!r}")
    values = entry.get("values")
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) < 2:
        raise ConfigError(f"{at}: values must be a list of at least two values (a range needs two)")
    out: list[str] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"{at}: values must be strings, got {value!r}")
        text = str(value).strip()
        if not text or "\n" in text or len(text) > MAX_VALUE_CHARS:
            raise ConfigError(f"{at}: each value must be one non-empty line of at most {MAX_VALUE_CHARS} "
                              f"characters, got {value!r}")
        if text in out:
            raise ConfigError(f"{at}: value {text!r} is listed twice")
        out.append(text)
    return SensitiveAttribute(name, sentence, tuple(out))
