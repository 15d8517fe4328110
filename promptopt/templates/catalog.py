"""The action catalog: prompt templates loaded from YAML, listed or composed from RPP's slots."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from promptopt.errors import TemplateError
from promptopt.suggest import closest
from promptopt.templates.compose import SlotComposer
from promptopt.templates.fields import liked_count
from promptopt.templates.schema import check_unique, validate_catalog
from promptopt.templates.template import PromptTemplate, canonical_text

if TYPE_CHECKING:
    from promptopt.tasks import UserContext
    from promptopt.templates.hints import CollaborativeHints

BUILTIN_CATALOGS: tuple[str, ...] = ("movies", "music")
"""Catalog names shipped in ``promptopt/templates/catalogs/``."""



class TemplateCatalog:
    """An ordered, immutable collection of :class:`PromptTemplate` (the policy's actions).

    Build one with :meth:`load` (a built-in name or a YAML path) or :meth:`from_dict`. A slot
    catalog's templates are the product ``role x history x reasoning x output`` (RPP's four
    sentence patterns) in the order the options are written, with ids like
    ``expert.recent10.none.index``; ``include`` (or the file's ``default_include``) keeps the
    templates whose id matches one of its glob patterns.

    Args:
        templates: The templates, in action order.
        name: Catalog name.
        slot_options: Slot name -> option ids in declaration order (slot catalogs); only options
            used by a kept template appear in :attr:`slots`.
        source: Where the catalog came from (a path or a built-in name).
    """

    def __init__(
        self,
        templates: Sequence[PromptTemplate],
        *,
        name: str = "custom",
        slot_options: Mapping[str, Sequence[str]] | None = None,
        source: str = "",
    ) -> None:
        if not templates:
            raise TemplateError(f"catalog {name!r} has no templates")
        self.name = name
        self.source = source or name
        self._templates = tuple(templates)
        check_unique([t.id for t in self._templates], self.source)
        self._index = {t.id: k for k, t in enumerate(self._templates)}
        self._slots: dict[str, tuple[str, ...]] = {}
        if slot_options is None:
            slot_options = _common_slots(self._templates)
        if slot_options:
            for slot, options in slot_options.items():
                used = {t.slots[slot] for t in self._templates if slot in t.slots}
                missing = used - set(options)
                if missing:
                    raise TemplateError(
                        f"{self.source}: slot {slot!r} has no option {sorted(map(str, missing))[0]!r} "
                        "that a template names"
                    )
                self._slots[slot] = tuple(o for o in options if o in used)
            for t in self._templates:
                if set(t.slots) != set(self._slots) or any(
                    t.slots[s] not in self._slots[s] for s in self._slots
                ):
                    raise TemplateError(
                        f"{self.source}: template {t.id!r} has slots {dict(t.slots)} that do not match the "
                        f"catalog's slots {list(self._slots)}"
                    )
        self._vectors = [
            tuple(self._slots[s].index(t.slots[s]) for s in self._slots) for t in self._templates
        ]
        self._by_vector = {v: k for k, v in enumerate(self._vectors)}
        self._min_history = np.array([t.min_history for t in self._templates], dtype=np.int64)
        self._min_liked = np.array([t.min_liked for t in self._templates], dtype=np.int64)
        self._needs_ratings = np.array([t.needs_ratings for t in self._templates])
        self._needs_attributes = np.array([t.needs_attributes for t in self._templates])
        self._uses_hints = np.array([t.uses_hints for t in self._templates])

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls, name_or_path: str | Path, *, include: Sequence[str] = (), max_history: int = 50
    ) -> TemplateCatalog:
        """Load a built-in catalog (``"movies"``, ``"music"``) or a catalog YAML file.

        Args:
            name_or_path: Built-in name or path.
            include: Glob patterns on template ids (``"expert.*.none.index"``); keeps templates
                matching any of them. Empty: the file's ``default_include``, else every template.
            max_history: Cap on history items any field lists (``{recent_titles:50}`` lists at
                most this many and needs at most this many).

        Raises:
            TemplateError: Unknown name, unreadable or invalid file (the message names the
                template id and the field), or an include pattern that matches nothing.
        """
        text, source = _read_catalog(name_or_path)
        return cls.from_dict(_parse_yaml(text, source), source=source, include=include,
                             max_history=max_history)

    @classmethod
    def from_dict(
        cls,
        raw: Mapping[str, Any],
        *,
        source: str = "catalog",
        include: Sequence[str] = (),
        max_history: int = 50,
    ) -> TemplateCatalog:
        """Build a catalog from a parsed YAML mapping (see :meth:`load` for the arguments)."""
        if isinstance(max_history, bool) or not isinstance(max_history, int) or max_history < 1:
            raise TemplateError(f"max_history must be an integer >= 1, got {max_history!r}")
        if isinstance(include, str):
            include = (include,)
        validate_catalog(raw, source)
        patterns = tuple(include) or tuple(raw.get("default_include", ()))
        if "templates" in raw:
            entries = raw["templates"]
            check_unique([e["id"] for e in entries], source)
            ids = _filter_ids([e["id"] for e in entries], patterns, source)
            keep = set(ids)
            templates = [_listed(e, max_history, source) for e in entries if e["id"] in keep]
            return cls(templates, name=raw["name"], source=source, slot_options=raw.get("slot_options"))
        composer = SlotComposer(raw, max_history, source)
        ids = _filter_ids(composer.ids, patterns, source)
        return cls([composer.template(tid) for tid in ids], name=raw["name"],
                   slot_options=composer.options, source=source)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self._templates)

    def __iter__(self) -> Iterator[PromptTemplate]:
        return iter(self._templates)

    def __getitem__(self, key: int | str) -> PromptTemplate:
        """The template at action index ``key`` (or with id ``key``)."""
        if isinstance(key, str):
            return self._templates[self.index_of(key)]
        return self._templates[key]

    def __contains__(self, template_id: object) -> bool:
        return template_id in self._index

    def __repr__(self) -> str:
        return f"TemplateCatalog({self.name!r}, {len(self)} templates)"

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self._templates)

    def index_of(self, template_id: str) -> int:
        """Action index of ``template_id``.

        Raises:
            TemplateError: Unknown id; the message suggests the closest ids.
        """
        index = self._index.get(template_id)
        if index is None:
            raise TemplateError(
                f"{self.source}: unknown template {template_id!r}{suggest(template_id, self.ids)}"
            )
        return index

    @property
    def slots(self) -> dict[str, tuple[str, ...]]:
        """Slot name -> option ids used by this catalog's templates (empty for a listed catalog)."""
        return dict(self._slots)

    def slot_vector(self, index: int) -> tuple[int, ...]:
        """Option index per slot (in :attr:`slots` order) of template ``index``; ``()`` when listed."""
        return self._vectors[index]

    def from_slot_vector(self, vector: Sequence[int]) -> int | None:
        """The template index with these slot option indices, or ``None`` if it is not in the catalog.

        Raises:
            ValueError: Wrong length, or an option index out of range.
        """
        vec = tuple(int(v) for v in vector)
        sizes = [len(o) for o in self._slots.values()]
        if len(vec) != len(sizes) or any(not 0 <= v < n for v, n in zip(vec, sizes)):
            raise ValueError(f"slot vector {list(vec)} does not fit slot sizes {sizes}")
        return self._by_vector.get(vec)

    # ------------------------------------------------------------------ masks
    def valid_mask(self, ctx: UserContext, *, hints: bool | CollaborativeHints = True) -> np.ndarray:
        """``bool (len(catalog),)``: the templates ``ctx``'s user can fill.

        A template is masked when the user has fewer distinct history items than it lists, no
        ratings (or no liked item) for rating fields, no attributes for ``{user_attributes}``,
        or when it uses collaborative hints and ``hints`` is ``False`` (a
        :class:`~promptopt.templates.hints.CollaborativeHints` also masks hints that have nothing
        for this user). :meth:`PromptTemplate.missing` says why.
        """
        n = len(ctx.distinct_positions())
        mask = self._min_history <= n
        if self._needs_ratings.any() and not any(math.isfinite(r) for r in ctx.ratings):
            mask &= ~self._needs_ratings
        if self._min_liked.any():
            mask &= self._min_liked <= liked_count(ctx)
        if not ctx.attributes:
            mask &= ~self._needs_attributes
        if hints is False:
            mask &= ~self._uses_hints
        elif not isinstance(hints, bool) and self._uses_hints.any():
            available = hints.available(ctx)
            for k, t in enumerate(self._templates):
                if t.hint_kinds and not t.hint_kinds <= available:
                    mask[k] = False
        return mask

    # ------------------------------------------------------------------ export
    def to_dict(self) -> dict[str, Any]:
        """The catalog as a listed catalog mapping; :meth:`from_dict` rebuilds the same templates."""
        raw: dict[str, Any] = {"name": self.name}
        if self._slots:
            raw["slot_options"] = {s: list(o) for s, o in self._slots.items()}
        raw["templates"] = [t.to_dict() for t in self._templates]
        return raw

    @property
    def fingerprint(self) -> str:
        """sha256 (hex, first 16) of the templates' ids, texts and formats: changes when any prompt does."""
        payload = json.dumps(self.to_dict()["templates"], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------- helpers
def suggest(value: str, known: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known``, or a few known values."""
    close = closest(value, known, n=3, cutoff=50.0)
    if close:
        return f" (did you mean {' or '.join(repr(c) for c in close)}?)"
    shown = ", ".join(known[:5])
    return f" (known: {shown}{' ...' if len(known) > 5 else ''})"


def _read_catalog(name_or_path: str | Path) -> tuple[str, str]:
    name = str(name_or_path)
    if name in BUILTIN_CATALOGS:
        ref = resources.files("promptopt.templates").joinpath("catalogs", f"{name}.yaml")
        return ref.read_text(encoding="utf-8"), name
    path = Path(name_or_path)
    if not path.exists():
        raise TemplateError(
            f"unknown template catalog {name!r}: use a built-in name ({', '.join(BUILTIN_CATALOGS)}) "
            "or the path of a catalog YAML file"
        )
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"cannot read template catalog {path}: {exc}") from None


def _parse_yaml(text: str, source: str) -> Any:
    from promptopt.strict_yaml import load_strict_yaml

    return load_strict_yaml(text, source, TemplateError)


def _filter_ids(ids: Sequence[str], patterns: Sequence[str], source: str) -> list[str]:
    if not patterns:
        return list(ids)
    keep = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise TemplateError(f"{source}: include patterns must be non-empty strings, got {pattern!r}")
        if not any(fnmatch.fnmatchcase(tid, pattern) for tid in ids):
            raise TemplateError(
                f"{source}: include pattern {pattern!r} matches no template id{suggest(pattern, list(ids))}"
            )
    for tid in ids:
        if any(fnmatch.fnmatchcase(tid, p) for p in patterns):
            keep.append(tid)
    return keep


def _listed(entry: Mapping[str, Any], max_history: int, source: str) -> PromptTemplate:
    tid = entry["id"]
    try:
        # YAML block scalars end in a newline the author did not mean as part of the prompt.
        text = canonical_text(entry["text"].rstrip(), max_history=max_history, where=f"template {tid!r}")
        return PromptTemplate(
            id=tid,
            name=entry.get("name", ""),
            text=text,
            slots=entry.get("slots", {}),
            output_format=entry.get("output_format", "index"),
            index_base=entry.get("index_base", 1),
            min_history=min(entry.get("min_history", 0), max_history),
        )
    except TemplateError as exc:
        raise TemplateError(f"{source}: {exc}") from None


def _common_slots(templates: Sequence[PromptTemplate]) -> dict[str, list[str]]:
    """Slot options of listed templates that all carry the same slot names (a saved slot catalog)."""
    names = tuple(templates[0].slots)
    if not names or any(tuple(t.slots) != names for t in templates):
        return {}
    options: dict[str, list[str]] = {n: [] for n in names}
    for t in templates:
        for n in names:
            if t.slots[n] not in options[n]:
                options[n].append(t.slots[n])
    return options
