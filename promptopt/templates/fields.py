"""The fields a template may name, what each needs from a user, and how each renders.

A field is a placeholder in template text: ``{recent_titles:10}`` lists the user's 10 most recent
titles. Every field declares what it needs (history length, ratings, user attributes,
collaborative hints), so a template's requirements are known when the catalog loads and
:meth:`TemplateCatalog.valid_mask` can tell which templates a user can fill.

History lists show each item once (its most recent occurrence, e.g. an artist tagged many times)
in chronological order, one ``- `` bullet per line; a list with nothing to show renders
``(none)``. Item text is copied verbatim.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from promptopt.templates.syntax import FieldRef

if TYPE_CHECKING:
    from promptopt.data.interactions import InteractionData
    from promptopt.tasks import RankingTask, UserContext
    from promptopt.templates.hints import CollaborativeHints

LIKED_RATING = 4.0
"""A history item counts as liked when its rating is at least this (``liked_titles``)."""

MAX_COUNT = 1000
"""Largest count argument a field accepts."""

MAX_ITEM_GENRES = 5
"""At most this many genres (or tags) are shown per item."""

EMPTY = "(none)"
"""What an empty list renders as."""

CANDIDATE_STYLES: tuple[str, ...] = ("title", "text", "popularity", "counts")
"""How ``{candidates:STYLE}`` lists each candidate: its title, its full text (title and genres),
its title tagged ``[popular]`` / ``[niche]``, or its title with the number of training users."""

HINT_KINDS: tuple[str, ...] = ("similar_users", "co_consumed", "popularity")


@dataclass(frozen=True)
class Needs:
    """What a field (or a whole template) needs from a user to be filled meaningfully.

    Attributes:
        min_history: Distinct history items.
        min_liked: Distinct history items rated at least :data:`LIKED_RATING`.
        needs_ratings: At least one known rating in the history.
        needs_attributes: At least one user attribute (age, gender, occupation ...).
        hint_kinds: Collaborative hints used (:data:`HINT_KINDS`).
    """

    min_history: int = 0
    min_liked: int = 0
    needs_ratings: bool = False
    needs_attributes: bool = False
    hint_kinds: frozenset[str] = frozenset()

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            max(self.min_history, other.min_history),
            max(self.min_liked, other.min_liked),
            self.needs_ratings or other.needs_ratings,
            self.needs_attributes or other.needs_attributes,
            self.hint_kinds | other.hint_kinds,
        )


class RenderInput:
    """Everything a field may read while one template renders one task."""

    def __init__(
        self,
        task: RankingTask,
        data: InteractionData,
        hints: CollaborativeHints | None,
        output_format: str,
        index_base: int,
    ) -> None:
        self.task = task
        self.ctx: UserContext = task.context
        self.data = data
        self.hints = hints
        self.output_format = output_format
        self.index_base = index_base

    @cached_property
    def positions(self) -> list[int]:
        """History positions of each distinct item's latest occurrence, chronological."""
        return self.ctx.distinct_positions()

    @cached_property
    def items(self) -> list[int]:
        return [self.ctx.items[p] for p in self.positions]

    def title(self, item: int) -> str:
        return self.data.item_titles[item]

    def with_genres(self, item: int) -> str:
        genres = self.data.item_genres[item][:MAX_ITEM_GENRES]
        return f"{self.title(item)} ({', '.join(genres)})" if genres else self.title(item)


def liked_count(ctx: UserContext) -> int:
    """Distinct history items whose latest rating is at least :data:`LIKED_RATING`."""
    return sum(1 for p in ctx.distinct_positions() if ctx.ratings[p] >= LIKED_RATING)


def _bullets(lines: Sequence[str]) -> str:
    return "\n".join(f"- {line}" for line in lines) if lines else EMPTY


def _date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d")


def _genre_profile(inp: RenderInput, items: Sequence[int], top: int) -> str:
    counts: Counter[str] = Counter()
    for item in items:
        counts.update(inp.data.item_genres[item])
    total = sum(counts.values())
    if not total:
        return EMPTY
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return ", ".join(f"{genre} ({round(100 * n / total)}%)" for genre, n in ranked)


# ---------------------------------------------------------------------- renderers
def _recent_titles(inp: RenderInput, n: int) -> str:
    return _bullets([inp.title(i) for i in inp.items[-n:]])


def _recent_with_genres(inp: RenderInput, n: int) -> str:
    return _bullets([inp.with_genres(i) for i in inp.items[-n:]])


def _recent_with_dates(inp: RenderInput, n: int) -> str:
    ctx = inp.ctx
    return _bullets([f"{_date(ctx.timestamps[p])}: {inp.title(ctx.items[p])}" for p in inp.positions[-n:]])


def _recent_with_ratings(inp: RenderInput, n: int) -> str:
    ctx = inp.ctx
    lines = []
    for p in inp.positions[-n:]:
        rating = ctx.ratings[p]
        title = inp.title(ctx.items[p])
        lines.append(f"{title} (rated {rating:g})" if math.isfinite(rating) else title)
    return _bullets(lines)


def _oldest_titles(inp: RenderInput, n: int) -> str:
    return _bullets([inp.title(i) for i in inp.items[:n]])


def _liked_titles(inp: RenderInput, n: int) -> str:
    ctx = inp.ctx
    liked = [ctx.items[p] for p in inp.positions if ctx.ratings[p] >= LIKED_RATING]
    return _bullets([inp.title(i) for i in liked[-n:]])


def _last_title(inp: RenderInput, _: None) -> str:
    return inp.title(inp.items[-1]) if inp.items else EMPTY


def _genre_profile_field(inp: RenderInput, top: int) -> str:
    return _genre_profile(inp, inp.items, top)


def _recent_genre_profile(inp: RenderInput, n: int) -> str:
    return _genre_profile(inp, inp.items[-n:], 5)


def _user_attributes(inp: RenderInput, _: None) -> str:
    attrs = inp.ctx.attributes
    return ", ".join(f"{k}: {v}" for k, v in attrs.items()) if attrs else "unknown"


def _n_candidates(inp: RenderInput, _: None) -> str:
    return str(len(inp.task.candidates))


def _n_history(inp: RenderInput, _: None) -> str:
    return str(len(inp.items))


def _similar_users_items(inp: RenderInput, n: int) -> str:
    assert inp.hints is not None
    return _bullets([inp.title(i) for i in inp.hints.similar_users_items(inp.ctx, n)])


def _co_consumed(inp: RenderInput, n: int) -> str:
    assert inp.hints is not None
    return _bullets([inp.title(i) for i in inp.hints.co_consumed(inp.ctx, n)])


def _candidates(inp: RenderInput, style: str) -> str:
    lines = []
    for k, item in enumerate(inp.task.candidates):
        if style == "text":
            label = inp.data.item_text(item)
        elif style == "popularity":
            assert inp.hints is not None
            tag = inp.hints.popularity_tag(item)
            label = f"{inp.title(item)} [{tag}]" if tag else inp.title(item)
        elif style == "counts":
            assert inp.hints is not None
            label = f"{inp.title(item)} ({inp.hints.popularity(item)} users)"
        else:
            label = inp.title(item)
        # Title answers are read back by text, so numbers would only invite index answers.
        prefix = "- " if inp.output_format == "title" else f"{k + inp.index_base}. "
        lines.append(prefix + label)
    return "\n".join(lines)


# ---------------------------------------------------------------------- registry
ArgKind = Literal["none", "count", "optional_count", "choice"]


@dataclass(frozen=True)
class FieldSpec:
    """One field: its argument, what it needs and how it renders.

    Attributes:
        name: The placeholder name.
        summary: One line for docs and ``promptopt templates fields``.
        arg: ``"none"`` (``{name}``), ``"count"`` (``{name:N}``), ``"optional_count"`` or
            ``"choice"`` (one of ``choices``).
        needs: Requirements given the (normalised) argument.
        render: The value given the render input and the argument.
        default: Argument used when an optional one is left out.
        choices: Allowed arguments of a ``"choice"`` field.
        history_count: The count is a number of history items, capped by ``max_history``.
    """

    name: str
    summary: str
    arg: ArgKind
    needs: Callable[[Any], Needs]
    render: Callable[[RenderInput, Any], str]
    default: int | str | None = None
    choices: tuple[str, ...] = ()
    history_count: bool = False

    @property
    def usage(self) -> str:
        if self.arg == "count":
            return "{" + self.name + ":N}"
        if self.arg == "optional_count":
            return "{" + self.name + "} or {" + self.name + ":N}"
        if self.arg == "choice":
            return "{" + self.name + "} or {" + self.name + ":" + "|".join(self.choices) + "}"
        return "{" + self.name + "}"


def _hist(n: int) -> Needs:
    return Needs(min_history=n)


def _candidate_needs(style: object) -> Needs:
    kinds = frozenset({"popularity"}) if style in ("popularity", "counts") else frozenset()
    return Needs(hint_kinds=kinds)


FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec("candidates", "the candidates in the shown order, numbered from the output format's "
                  "index_base (bullets for title answers); STYLE: " + ", ".join(CANDIDATE_STYLES),
                  "choice", _candidate_needs, _candidates, default="title", choices=CANDIDATE_STYLES),
        FieldSpec("n_candidates", "number of candidates", "none", lambda _: Needs(), _n_candidates),
        FieldSpec("n_history", "number of distinct items in the history", "none", lambda _: Needs(),
                  _n_history),
        FieldSpec("recent_titles", "the N most recent titles, oldest first", "count", _hist,
                  _recent_titles, history_count=True),
        FieldSpec("recent_with_genres", "the N most recent titles with their genres (tags)", "count",
                  _hist, _recent_with_genres, history_count=True),
        FieldSpec("recent_with_dates", "the N most recent titles with the date (YYYY-MM-DD, UTC)",
                  "count", _hist, _recent_with_dates, history_count=True),
        FieldSpec("recent_with_ratings", "the N most recent titles with the user's rating", "count",
                  lambda n: _hist(n) | Needs(needs_ratings=True), _recent_with_ratings,
                  history_count=True),
        FieldSpec("oldest_titles", "the N oldest titles of the history", "count", _hist, _oldest_titles,
                  history_count=True),
        FieldSpec("liked_titles", f"the N most recent titles rated >= {LIKED_RATING:g}", "count",
                  lambda _: Needs(min_history=1, min_liked=1, needs_ratings=True), _liked_titles,
                  history_count=True),
        FieldSpec("last_title", "the most recent title", "none", lambda _: Needs(min_history=1),
                  _last_title),
        FieldSpec("genre_profile", "the history's top genres (tags) with their share, top 5 or top N",
                  "optional_count", lambda _: Needs(min_history=1), _genre_profile_field,
                  default=5),
        FieldSpec("recent_genre_profile", "top 5 genres (tags) of the N most recent items", "count",
                  _hist, _recent_genre_profile, history_count=True),
        FieldSpec("user_attributes", "the user's known attributes (age: 25, gender: F, ...)", "none",
                  lambda _: Needs(needs_attributes=True), _user_attributes),
        FieldSpec("similar_users_items", "hint: N items users with similar histories interacted with "
                  "(training graph only)", "count",
                  lambda _: Needs(min_history=1, hint_kinds=frozenset({"similar_users"})),
                  _similar_users_items),
        FieldSpec("co_consumed", "hint: N items often consumed close in time to the user's recent "
                  "ones (training graph only)", "count",
                  lambda _: Needs(min_history=1, hint_kinds=frozenset({"co_consumed"})),
                  _co_consumed),
    )
}
"""Every field a template may name, by placeholder name."""


def normalise_ref(ref: FieldRef, max_history: int) -> FieldRef:
    """Check a placeholder against :data:`FIELDS` and fill / cap its argument.

    Counts of history fields are capped at ``max_history``; optional arguments get their default,
    so the returned placeholder says exactly what renders.

    Raises:
        KeyError: Unknown field (the caller names the template).
        ValueError: A missing, unexpected or malformed argument.
    """
    spec = FIELDS.get(ref.name)
    if spec is None:
        raise KeyError(ref.name)
    if spec.arg == "none":
        if ref.arg is not None:
            raise ValueError(f"takes no argument, got {ref.arg!r} (write {spec.usage})")
        return ref
    if spec.arg == "choice":
        arg = ref.arg if ref.arg is not None else spec.default
        if arg not in spec.choices:
            raise ValueError(f"argument must be one of {', '.join(spec.choices)}, got {ref.arg!r}")
        return FieldRef(ref.name, str(arg))
    if ref.arg is None:
        if spec.arg == "optional_count":
            return FieldRef(ref.name, str(spec.default))
        raise ValueError(f"needs a count argument, e.g. {{{ref.name}:10}}")
    if not ref.arg.isdigit() or not 1 <= int(ref.arg) <= MAX_COUNT:
        raise ValueError(f"argument must be an integer count in 1..{MAX_COUNT}, got {ref.arg!r}")
    count = int(ref.arg)
    if spec.history_count:
        count = min(count, max_history)
    return FieldRef(ref.name, str(count))


def field_arg(ref: FieldRef) -> int | str | None:
    """The typed argument of a normalised placeholder."""
    spec = FIELDS[ref.name]
    if ref.arg is None or spec.arg == "choice":
        return ref.arg
    return int(ref.arg)
