"""The rows of a prompt book: template scores, each user's choice, and what serving returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptopt.export.validation import TEMPLATE_FIELDS

if TYPE_CHECKING:
    from promptopt.llm.types import RankRequest


@dataclass(frozen=True)
class TemplateScore:
    """One row of the global template ranking: mean reward over ``n`` scored episodes."""

    template_id: str
    mean_reward: float | None
    n: int


@dataclass(frozen=True)
class UserChoice:
    """The template chosen for one user.

    Attributes:
        user_id: The dataset's raw user id.
        template_id: The chosen template.
        probabilities: The selector's probability of each catalog template (catalog order; empty
            when the selector is deterministic and has none).
        prompt: The chosen template filled for the user's latest task (``None`` when not stored).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"other"``.
        deviates: The safe policy sends this user to the learned choice instead of the default
            (``None``: a book without a gate).
        reason: Why the user gets the default or the learned choice (``None``: no gate).
    """

    user_id: str
    template_id: str
    probabilities: tuple[float, ...] = ()
    prompt: str | None = None
    split: str = "other"
    deviates: bool | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "user_id": self.user_id,
            "split": self.split,
            "template_id": self.template_id,
            "action_probabilities": [float(p) for p in self.probabilities],
            "prompt": self.prompt,
        }
        if self.deviates is not None:
            out["deviates"] = bool(self.deviates)
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class ServedPrompt:
    """What :meth:`PromptBook.prompt_for` returns.

    Attributes:
        user_id: The raw user id asked for.
        template_id: The template used.
        prompt: The filled prompt text.
        request: The ready-to-send request (candidates in the shown order).
        fallback: True when the user's chosen template was not used (unknown user, or a template
            this context cannot fill).
        reason: Why it fell back (empty otherwise).
        deviates: The safe policy sends this user away from the default template.
        decision: Why the user's choice is the default or the policy's (the book's per-user reason;
            for a book without a gate, says so).
    """

    user_id: str
    template_id: str
    prompt: str
    request: RankRequest
    fallback: bool
    reason: str = ""
    deviates: bool = False
    decision: str = ""


def template_to_json(template: Any) -> dict[str, Any]:
    """The stored fields of a :class:`promptopt.templates.PromptTemplate`."""
    entry: dict[str, Any] = {}
    for name in TEMPLATE_FIELDS:
        value = getattr(template, name)
        entry[name] = dict(value) if name == "slots" else value
    return entry
