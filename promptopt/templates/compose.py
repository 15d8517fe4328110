"""Composing a slot catalog: RPP's four sentence patterns put together by a layout.

A template composed from options ``(role, history, reasoning, output)`` has the id
``role.history.reasoning.output`` and the text of the layout with each slot placeholder replaced
by the chosen option's sentence. A layout line holding only empty sentences ("no role") is
dropped. Everything that could go wrong in any combination is checked up front, so a bad option
fails at load time even when the ``include`` filter drops its templates.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from typing import Any

from promptopt.errors import TemplateError
from promptopt.templates.schema import SLOT_NAMES, option_location
from promptopt.templates.syntax import FieldRef, parse_text, unparse
from promptopt.templates.template import PromptTemplate, canonical_text

DEFAULT_LAYOUT = (
    "{role}\n{history}\nNow there are {n_candidates} candidates:\n{candidates}\n{reasoning}\n{output}"
)
"""Layout of a slot catalog without its own ``layout``."""

_OPTION_SETTINGS = ("candidates", "output_format", "index_base")

logger = logging.getLogger(__name__)


class SlotComposer:
    """Validates a slot catalog's layout and options, and composes templates by id.

    Args:
        raw: The catalog mapping, already checked against the JSON Schema.
        max_history: Cap of history counts in every option.
        source: File name or catalog name for error messages.

    Attributes:
        options: Slot name -> option ids, in the order written.
        ids: Every combination's template id, in product order.
    """

    def __init__(self, raw: Mapping[str, Any], max_history: int, source: str) -> None:
        self.source = source
        self.max_history = max_history
        self.options: dict[str, tuple[str, ...]] = {s: tuple(raw["slots"][s]) for s in SLOT_NAMES}
        self.texts: dict[tuple[str, str], str] = {}
        self.settings: dict[tuple[str, str], dict[str, Any]] = {}
        self.names: dict[tuple[str, str], str] = {}
        for slot in SLOT_NAMES:
            for option, value in raw["slots"][slot].items():
                spec = {"text": value} if isinstance(value, str) else dict(value)
                where = option_location(slot, option)
                text = spec["text"].strip()
                try:
                    text = canonical_text(text, max_history=max_history, where=where)
                except TemplateError as exc:
                    raise TemplateError(f"{source}: {exc}") from None
                self.texts[slot, option] = text
                self.names[slot, option] = spec.get("name", option)
                self.settings[slot, option] = {k: spec[k] for k in _OPTION_SETTINGS if k in spec}
        if all(self.texts["reasoning", option] for option in self.options["reasoning"]):
            logger.warning(
                "%s: no reasoning option is empty; keep one (reasoning sentences such as 'think step "
                "by step' often lower recommendation accuracy, Kusano et al. 2024)", source
            )
        layout = raw.get("layout", DEFAULT_LAYOUT).strip()
        layout = canonical_text(layout, max_history=max_history, where=f"{source}: layout",
                                allowed=frozenset(SLOT_NAMES))
        self.lines = [parse_text(line) for line in layout.split("\n")]
        for slot in SLOT_NAMES:
            count = sum(1 for line in self.lines for s in line if s == FieldRef(slot))
            if count != 1:
                raise TemplateError(
                    f"{source}: layout must hold {{{slot}}} exactly once (found {count}); otherwise the "
                    f"chosen {slot} sentence would not reach the prompt"
                )
        self._check_settings()
        self._check_candidates()
        self.ids = [".".join(combo) for combo in itertools.product(*self.options.values())]

    def _check_settings(self) -> None:
        """Two slots that both set ``output_format`` (etc.) would conflict in some template."""
        for key in _OPTION_SETTINGS:
            setters = {slot: option for (slot, option), s in self.settings.items() if key in s}
            if len(setters) > 1:
                example = ".".join(setters.get(s, self.options[s][0]) for s in SLOT_NAMES)
                raise TemplateError(
                    f"{self.source}: template {example!r}: field {key!r} is set by options of "
                    f"{len(setters)} slots ({', '.join(setters)}); set it in one slot only"
                )

    def _check_candidates(self) -> None:
        """Every composed template must list the candidates exactly once."""
        in_layout = sum(_count_candidates(line) for line in self.lines)
        counts = {key: _count_candidates(parse_text(text)) for key, text in self.texts.items()}
        for pick in (min, max):
            chosen = {s: pick(self.options[s], key=lambda o, s=s: counts[s, o]) for s in SLOT_NAMES}
            total = in_layout + sum(counts[s, o] for s, o in chosen.items())
            if total != 1:
                example = ".".join(chosen[s] for s in SLOT_NAMES)
                raise TemplateError(
                    f"{self.source}: template {example!r}: field 'candidates' must appear exactly once "
                    f"(layout plus options), found {total}"
                )

    def template(self, tid: str) -> PromptTemplate:
        chosen = dict(zip(SLOT_NAMES, tid.split(".")))
        settings: dict[str, Any] = {}
        for slot, option in chosen.items():
            settings.update(self.settings[slot, option])
        lines = []
        for line in self.lines:
            slot_refs = [s for s in line if isinstance(s, FieldRef) and s.name in chosen]
            if slot_refs and all(not self.texts[s.name, chosen[s.name]] for s in slot_refs) and all(
                (isinstance(s, FieldRef) and s.name in chosen) or (isinstance(s, str) and not s.strip())
                for s in line
            ):
                continue  # a line holding only empty sentences ("no role", "no reasoning")
            parts = [
                self.texts[s.name, chosen[s.name]] if isinstance(s, FieldRef) and s.name in chosen
                else unparse((s,))
                for s in line
            ]
            text = "".join(parts)
            lines.append(text.strip(" ") if slot_refs else text)
        text = "\n".join(lines)
        style = settings.get("candidates")
        if style is not None:
            text = _set_candidate_style(text, style, tid, self.source)
        try:
            return PromptTemplate(
                id=tid,
                name=", ".join(self.names[s, chosen[s]] for s in SLOT_NAMES),
                text=text,
                slots=chosen,
                output_format=settings.get("output_format", "index"),
                index_base=settings.get("index_base", 1),
            )
        except TemplateError as exc:
            raise TemplateError(f"{self.source}: {exc}") from None


def _count_candidates(segments: tuple[str | FieldRef, ...]) -> int:
    return sum(1 for s in segments if isinstance(s, FieldRef) and s.name == "candidates")


def _set_candidate_style(text: str, style: str, tid: str, source: str) -> str:
    segments = []
    for seg in parse_text(text):
        if isinstance(seg, FieldRef) and seg.name == "candidates":
            if seg.arg not in (None, "title", style):
                raise TemplateError(
                    f"{source}: template {tid!r}: field 'candidates' is {{candidates:{seg.arg}}} in the "
                    f"text but an option sets candidates: {style}"
                )
            seg = FieldRef("candidates", style)
        segments.append(seg)
    return unparse(tuple(segments))
