"""One prompt template: text with placeholders, parsed once, rendered for any ranking task."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from promptopt.errors import TemplateError
from promptopt.llm.types import OutputFormat, RankRequest, RequestIds
from promptopt.suggest import closest
from promptopt.templates.fields import (
    FIELDS,
    MAX_COUNT,
    Needs,
    RenderInput,
    field_arg,
    liked_count,
    normalise_ref,
)
from promptopt.templates.syntax import FieldRef, PlaceholderError, parse_text, unparse

if TYPE_CHECKING:
    from promptopt.data.interactions import InteractionData
    from promptopt.tasks import RankingTask, UserContext
    from promptopt.templates.hints import CollaborativeHints

OUTPUT_FORMATS: tuple[str, ...] = ("index", "title", "json")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def canonical_text(
    text: str, *, max_history: int = MAX_COUNT, where: str = "template", allowed: frozenset[str] = frozenset()
) -> str:
    """``text`` with every placeholder checked, optional arguments filled in and history counts
    capped at ``max_history`` (``{candidates}`` -> ``{candidates:title}``).

    Args:
        text: Template text.
        max_history: Cap of history counts.
        where: Names the template in error messages (``"template 'expert.recent10.none.index'"``).
        allowed: Further placeholder names left as they are (a layout's slot names).

    Raises:
        TemplateError: A malformed placeholder, an unknown field or a bad argument; the message
            names the template and the field.
    """
    try:
        segments = parse_text(text)
    except PlaceholderError as exc:
        raise TemplateError(f"{where}: field {exc.field!r}: {exc}") from None
    out: list[str | FieldRef] = []
    for seg in segments:
        if isinstance(seg, FieldRef) and seg.name not in allowed:
            try:
                seg = normalise_ref(seg, max_history)
            except KeyError:
                close = closest(seg.name, FIELDS)
                hint = f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(FIELDS)}"
                raise TemplateError(
                    f"{where}: unknown field {seg.name!r} in text ({hint}; write {{{{ and }}}} for "
                    "literal braces)"
                ) from None
            except ValueError as exc:
                raise TemplateError(f"{where}: field {seg.name!r}: {exc}") from None
        out.append(seg)
    return unparse(tuple(out))


@dataclass(frozen=True, kw_only=True)
class PromptTemplate:
    """A hard-prompt template (immutable; all arguments are keywords).

    The text is parsed when the template is built: an unknown field or a bad argument raises
    :class:`~promptopt.errors.TemplateError` naming the template id and the field, and the
    requirements (``min_history``, ``needs_*``, ``uses_hints``) are derived from the fields used.
    Values passed for them can only make a template stricter.

    Attributes:
        id: Stable readable id (``expert.recent10.none.index`` for composed templates).
        name: Human-readable description.
        text: Template text with placeholders (see :mod:`promptopt.templates.fields`).
        slots: Slot name -> option id it was composed from (empty for listed templates).
        output_format: How the answer refers to candidates: ``index``, ``title`` or ``json``.
        index_base: Number of the first listed candidate (1 by default, or 0).
        min_history: Distinct history items a user needs.
        needs_attributes: Needs user attributes (age, gender, occupation ...).
        needs_ratings: Needs known ratings (liked-only lists, ratings).
        uses_hints: Needs :class:`~promptopt.templates.hints.CollaborativeHints`.
        min_liked: Distinct liked history items a user needs.
        hint_kinds: Hint kinds the text uses (``similar_users``, ``co_consumed``, ``popularity``).
    """

    id: str
    text: str
    name: str = ""
    slots: Mapping[str, str] = field(default_factory=dict)
    output_format: OutputFormat = "index"
    index_base: int = 1
    min_history: int = 0
    needs_attributes: bool = False
    needs_ratings: bool = False
    uses_hints: bool = False
    min_liked: int = field(init=False, default=0)
    hint_kinds: frozenset[str] = field(init=False, default=frozenset())
    _plan: tuple[Any, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        tid = self.id
        if not isinstance(tid, str) or not _ID.match(tid):
            raise TemplateError(
                f"template id {tid!r} must start with a letter or digit and hold only letters, "
                "digits, '_', '-' and '.'"
            )
        if not isinstance(self.text, str):
            raise TemplateError(f"template {tid!r}: field 'text' must be a string, got {self.text!r}")
        if self.output_format not in OUTPUT_FORMATS:
            raise TemplateError(
                f"template {tid!r}: field 'output_format' must be one of {', '.join(OUTPUT_FORMATS)}, "
                f"got {self.output_format!r}"
            )
        if self.index_base not in (0, 1) or isinstance(self.index_base, bool):
            raise TemplateError(
                f"template {tid!r}: field 'index_base' must be 0 or 1, got {self.index_base!r}"
            )
        value = self.min_history
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TemplateError(
                f"template {tid!r}: field 'min_history' must be an integer >= 0, got {value!r}"
            )
        for name in ("needs_attributes", "needs_ratings", "uses_hints"):
            if not isinstance(getattr(self, name), bool):
                raise TemplateError(
                    f"template {tid!r}: field {name!r} must be true or false, got {getattr(self, name)!r}"
                )
        text = canonical_text(self.text, where=f"template {tid!r}")
        segments = parse_text(text)
        refs = [s for s in segments if isinstance(s, FieldRef)]
        n_candidates = sum(1 for r in refs if r.name == "candidates")
        if n_candidates != 1:
            raise TemplateError(
                f"template {tid!r}: field 'candidates' must appear exactly once in the text, found "
                f"{n_candidates} (the ranker's answer is read against that one list)"
            )
        needs = Needs()
        for ref in refs:
            needs = needs | FIELDS[ref.name].needs(field_arg(ref))
        plan = tuple(
            s if isinstance(s, str) else (FIELDS[s.name].render, field_arg(s)) for s in segments
        )
        put = object.__setattr__
        put(self, "text", text)
        put(self, "name", self.name or tid)
        put(self, "slots", MappingProxyType(dict(self.slots)))
        put(self, "min_history", max(self.min_history, needs.min_history))
        put(self, "needs_ratings", self.needs_ratings or needs.needs_ratings)
        put(self, "needs_attributes", self.needs_attributes or needs.needs_attributes)
        put(self, "uses_hints", self.uses_hints or bool(needs.hint_kinds))
        put(self, "min_liked", needs.min_liked)
        put(self, "hint_kinds", needs.hint_kinds)
        put(self, "_plan", plan)

    def __hash__(self) -> int:
        return hash((self.id, self.text, self.output_format, self.index_base))

    # ------------------------------------------------------------------ rendering
    def render(
        self, task: RankingTask, data: InteractionData, hints: CollaborativeHints | None = None
    ) -> str:
        """The prompt for ``task``: its context's history, its candidates in the shown order.

        Fields a user lacks render as ``(none)`` / ``unknown``; use
        :meth:`TemplateCatalog.valid_mask` to avoid such templates.

        Raises:
            TemplateError: The template uses collaborative hints and ``hints`` is ``None``.
        """
        if self.hint_kinds and hints is None:
            raise TemplateError(
                f"template {self.id!r} uses collaborative hints ({', '.join(sorted(self.hint_kinds))}): "
                "pass hints=CollaborativeHints.fit(data, train_mask)"
            )
        inp = RenderInput(task, data, hints, self.output_format, self.index_base)
        return "".join(step if isinstance(step, str) else step[0](inp, step[1]) for step in self._plan)

    def request(
        self,
        task: RankingTask,
        data: InteractionData,
        hints: CollaborativeHints | None = None,
        *,
        sample_id: int = 0,
    ) -> RankRequest:
        """The ranker request of ``task``: the rendered prompt, candidates in the shown order.

        ``candidate_ids`` is exactly ``task.candidates`` and ``candidate_texts`` is each one's
        ``data.item_text``, so the answer is read back against the order the prompt showed.
        """
        return RankRequest.from_prompt(
            self.render(task, data, hints),
            task.candidates,
            [data.item_text(c) for c in task.candidates],
            output_format=self.output_format,
            index_base=self.index_base,
            sample_id=sample_id,
            ids=RequestIds(user=task.context.raw_user_id, template=self.id, task=task.task_id,
                           view=task.view),
        )

    def missing(self, ctx: UserContext, hints: bool | CollaborativeHints = True) -> list[str]:
        """Why ``ctx`` cannot fill this template (empty when it can).

        Args:
            ctx: The user's context.
            hints: Whether collaborative hints are available; a
                :class:`~promptopt.templates.hints.CollaborativeHints` also checks that each hint
                this template uses has something to say for ``ctx``.
        """
        reasons: list[str] = []
        n = len(ctx.distinct_positions())
        if n < self.min_history:
            reasons.append(f"needs {self.min_history} history items, the user has {n}")
        has_ratings = any(math.isfinite(r) for r in ctx.ratings)
        if self.needs_ratings and not has_ratings:
            reasons.append("needs ratings, the user's history has none")
        if self.min_liked and liked_count(ctx) < self.min_liked:
            reasons.append(f"needs {self.min_liked} liked (rated >= 4) item(s), the user has none")
        if self.needs_attributes and not ctx.attributes:
            reasons.append("needs user attributes, the user has none")
        if self.hint_kinds:
            if hints is False:
                reasons.append("uses collaborative hints, none are available")
            elif hints is not True and not isinstance(hints, bool):
                lacking = self.hint_kinds - hints.available(ctx)
                if lacking:
                    reasons.append(f"hints {', '.join(sorted(lacking))} have nothing for this user")
        return reasons

    def to_dict(self) -> dict[str, Any]:
        """The template as an entry of a listed catalog (round-trips through the YAML format)."""
        entry: dict[str, Any] = {"id": self.id, "name": self.name, "text": self.text}
        if self.slots:
            entry["slots"] = dict(self.slots)
        entry["output_format"] = self.output_format
        entry["index_base"] = self.index_base
        entry["min_history"] = self.min_history
        return entry
