"""The prompt book: the versioned ``prompts.json`` of a run, and serving prompts from it.

A prompt book records, for every user a run knows, the template the trained selector chose (with
its action probabilities and the filled prompt of the user's latest task), the global ranking of
templates, the template catalog, the ranker's identity (never credentials), the dataset, split and
reward settings, the evaluation summary and (schema 1.1) the safe policy's validated ``gate``: the
ranked fallback list whose head is the default template, the threshold, and what it was validated
on; each user says whether the policy deviates from the default and why. :meth:`PromptBook.load`
validates a file against the
schema shipped next to this module (``prompt_book.schema.json``, see
:mod:`promptopt.export.validation`). Loading and serving import neither torch nor any RL library.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptopt import __version__
from promptopt.errors import PromptBookError, TemplateError
from promptopt.export.entries import ServedPrompt, TemplateScore, UserChoice, template_to_json
from promptopt.export.validation import (
    SCHEMA_VERSION,
    TEMPLATE_FIELDS,
    jsonable,
    scrub_identity,
    validate,
)

if TYPE_CHECKING:
    from promptopt.data.interactions import InteractionData
    from promptopt.tasks import UserContext
    from promptopt.templates import CollaborativeHints, PromptTemplate

logger = logging.getLogger(__name__)


class PromptBook:
    """A validated prompt book. Build one with :meth:`build`, read one with :meth:`load`.

    Example:
        >>> book = PromptBook.load("runs/quickstart/prompts.json")      # doctest: +SKIP
        >>> served = book.prompt_for(context, candidates, data)          # doctest: +SKIP
        >>> served.fallback, served.template_id                         # doctest: +SKIP
    """

    def __init__(self, payload: Mapping[str, Any], *, source: str = "prompt book") -> None:
        validate(payload, source=source)
        self._payload = json.loads(json.dumps(payload))
        self.source = source
        self._templates: dict[str, PromptTemplate] = {}
        self._choices = {
            row["user_id"]: UserChoice(
                user_id=row["user_id"],
                template_id=row["template_id"],
                probabilities=tuple(row["action_probabilities"]),
                prompt=row.get("prompt"),
                split=row.get("split", "other"),
                deviates=row.get("deviates"),
                reason=row.get("reason"),
            )
            for row in self._payload["users"]
        }

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        *,
        run: Mapping[str, Any],
        ranker_identity: Mapping[str, Any],
        dataset: Mapping[str, Any],
        split: Mapping[str, Any],
        reward: Mapping[str, Any],
        catalog_name: str,
        catalog_slots: Mapping[str, Sequence[str]],
        templates: Sequence[Any],
        global_ranking: Sequence[TemplateScore],
        choices: Sequence[UserChoice],
        evaluation: Mapping[str, Any] | None = None,
        default_template: str | None = None,
        gate: Mapping[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> PromptBook:
        """Assemble and validate a book.

        Args:
            run: ``name``, ``seed`` and optionally ``selector``.
            ranker_identity: The ranker's ``identity`` (credential-like keys are dropped).
            dataset: ``name``, ``n_users``, ``n_items``, ``n_interactions`` (and ``format``).
            split: ``n_train``, ``n_val``, ``n_test`` and protocol settings.
            reward: The reward settings (at least ``metric`` and ``robust_weight``).
            catalog_name: Built-in catalog name or path the templates came from.
            catalog_slots: Slot name -> option ids (empty for an explicit list).
            templates: :class:`~promptopt.templates.PromptTemplate` objects (or mappings with
                :data:`TEMPLATE_FIELDS`), in catalog order.
            global_ranking: Template scores; sorted best first here.
            choices: One entry per user.
            evaluation: The evaluation summary, ``None`` when not evaluated yet.
            default_template: Served to unknown users; defaults to the head of ``gate.order``, else
                the top of the global ranking.
            gate: The safe policy's rule (``promptopt.safe_policy.GateRule.to_json()``).
            created_at: Creation time (default: now, UTC).

        Raises:
            PromptBookError: The assembled book does not validate.
        """
        entries = [dict(t) if isinstance(t, Mapping) else template_to_json(t) for t in templates]
        ranking = sorted(
            global_ranking,
            key=lambda s: (s.mean_reward is None, -(s.mean_reward or 0.0), -s.n, s.template_id),
        )
        if default_template is None and gate is not None:
            default_template = str(gate["order"][0])
        if default_template is None:
            if not ranking:
                raise PromptBookError("cannot build a prompt book: no template scores and no default")
            default_template = ranking[0].template_id
        payload = {
            "schema_version": SCHEMA_VERSION,
            "created_at": (created_at or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
            "promptopt_version": __version__,
            "run": {k: jsonable(v) for k, v in run.items()},
            "ranker": scrub_identity(ranker_identity),
            "dataset": {k: jsonable(v) for k, v in dataset.items()},
            "split": {k: jsonable(v) for k, v in split.items()},
            "reward": {k: jsonable(v) for k, v in reward.items()},
            "catalog": {
                "name": catalog_name,
                "slots": {k: list(v) for k, v in catalog_slots.items()},
                "templates": entries,
            },
            "global_ranking": [
                {"template_id": s.template_id,
                 "mean_reward": None if s.mean_reward is None else float(s.mean_reward),
                 "n": int(s.n)}
                for s in ranking
            ],
            "default_template": default_template,
            "users": [c.to_json() for c in choices],
            "evaluation": (None if evaluation is None
                           else json.loads(json.dumps(evaluation, default=jsonable))),
        }
        if gate is not None:
            payload["gate"] = json.loads(json.dumps(gate, default=jsonable))
        return cls(payload, source="prompt book")

    @classmethod
    def load(cls, path: str | Path) -> PromptBook:
        """Read and validate ``prompts.json``.

        Raises:
            PromptBookError: Missing file, invalid JSON, or a schema violation (with its JSON path).
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PromptBookError(
                f"prompt book {path} does not exist (write one with `promptopt export RUN_DIR`)"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PromptBookError(f"cannot read prompt book {path}: {exc}") from None
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PromptBookError(f"{path}: not valid JSON at line {exc.lineno}: {exc.msg}") from None
        return cls(payload, source=str(path))

    def save(self, path: str | Path) -> Path:
        """Write the book as indented UTF-8 JSON (atomically: a crash leaves the old file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self._payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the JSON payload."""
        return json.loads(json.dumps(self._payload))

    # ------------------------------------------------------------------ reading
    @property
    def schema_version(self) -> str:
        return self._payload["schema_version"]

    @property
    def created_at(self) -> str:
        return self._payload["created_at"]

    @property
    def ranker(self) -> dict[str, Any]:
        return dict(self._payload["ranker"])

    @property
    def evaluation(self) -> dict[str, Any] | None:
        return self._payload["evaluation"]

    @property
    def gate(self) -> dict[str, Any] | None:
        """The safe policy's validated rule, ``None`` for a book written before schema 1.1."""
        gate = self._payload.get("gate")
        return None if gate is None else dict(gate)

    @property
    def fallback_order(self) -> tuple[str, ...]:
        """The ranked fallback list: the gate's order (the training-budget scan), else the global ranking."""
        gate = self._payload.get("gate")
        order = list(gate["order"]) if gate else [s["template_id"] for s in self._payload["global_ranking"]]
        return tuple(dict.fromkeys([*order, *self.template_ids]))

    @property
    def template_ids(self) -> tuple[str, ...]:
        return tuple(t["id"] for t in self._payload["catalog"]["templates"])

    @property
    def default_template(self) -> str:
        """The best global template, served to users the book does not know."""
        return self._payload["default_template"]

    @property
    def global_ranking(self) -> tuple[TemplateScore, ...]:
        return tuple(TemplateScore(r["template_id"], r["mean_reward"], r["n"])
                     for r in self._payload["global_ranking"])

    @property
    def choices(self) -> Mapping[str, UserChoice]:
        """Raw user id -> :class:`UserChoice`."""
        return dict(self._choices)

    def __len__(self) -> int:
        return len(self._choices)

    def __contains__(self, user_id: object) -> bool:
        return str(user_id) in self._choices

    def template_for(self, user_id: str | int) -> tuple[str, bool]:
        """``(template_id, fallback)`` for a raw user id; unknown users get the default template."""
        choice = self._choices.get(str(user_id))
        if choice is None:
            return self.default_template, True
        return choice.template_id, False

    def template(self, template_id: str) -> PromptTemplate:
        """The catalog template ``template_id``, rebuilt from the book.

        Raises:
            PromptBookError: Unknown template id.
        """
        if template_id not in self._templates:
            entry = next((t for t in self._payload["catalog"]["templates"] if t["id"] == template_id), None)
            if entry is None:
                raise PromptBookError(
                    f"{self.source}: template {template_id!r} is not in the catalog; "
                    f"known: {', '.join(self.template_ids)}"
                )
            self._templates[template_id] = _rebuild_template(entry, self.source)
        return self._templates[template_id]

    # ------------------------------------------------------------------ serving
    def prompt_for(
        self,
        context: UserContext,
        candidates: Sequence[int],
        data: InteractionData,
        *,
        hints: CollaborativeHints | None = None,
        sample_id: int = 0,
    ) -> ServedPrompt:
        """Fill the template chosen for ``context``'s user with a new context and candidate list.

        Falls back, says so (``fallback=True`` and ``reason``) and logs an INFO line when

        * the user is not in the book: the best global template (:attr:`default_template`);
        * the chosen template cannot be filled for this context (too short a history, no ratings,
          collaborative hints needed but ``hints`` not given): the first template of the ranked
          fallback list (:attr:`fallback_order`) that can be filled — the one rule every selector
          follows (:mod:`promptopt.fallback`).

        ``deviates`` and ``decision`` say whether the safe policy sends the user away from the
        default template and why (the rule validated on validation users, see :attr:`gate`).

        Args:
            context: The user's current history (``raw_user_id`` picks the template).
            candidates: Item indices of ``data`` to rank, in the order they will be shown.
            data: The dataset the item indices refer to (titles, genres).
            hints: Collaborative hints for templates that use them
                (``CollaborativeHints.fit(data, train_mask)``); ``None``: such templates are skipped.
            sample_id: Passed to the request (temperature > 0 sampling).

        Raises:
            PromptBookError: Empty candidate list, an item index outside ``data``, or no template
                of the book can be filled for this context.
        """
        from promptopt.tasks import RankingTask

        shown = tuple(int(c) for c in candidates)
        if not shown:
            raise PromptBookError("prompt_for needs at least one candidate item")
        bad = [c for c in shown if not 0 <= c < data.n_items]
        if bad:
            raise PromptBookError(
                f"prompt_for: candidate item index {bad[0]} is outside 0..{data.n_items - 1} of {data.name}"
            )
        template_id, fallback = self.template_for(context.raw_user_id)
        reason = f"user {context.raw_user_id!r} is not in the prompt book" if fallback else ""
        template, why_not = self._fillable(template_id, context, hints)
        if why_not:
            reason = "; ".join(r for r in (reason, why_not) if r)
            fallback = True
        deviates, decision = self._decision(context.raw_user_id)
        if fallback:
            logger.info("prompt_for: %s: serving template %r", reason, template.id)
        # The target is unknown at serving time; templates never show it, but a task needs one.
        task = RankingTask(
            task_id=f"{context.raw_user_id}/serve/base",
            context=context,
            target=shown[0],
            candidates=shown,
        )
        request = template.request(task, data, hints, sample_id=sample_id)
        return ServedPrompt(
            user_id=context.raw_user_id,
            template_id=template.id,
            prompt=request.prompt,
            request=request,
            fallback=fallback,
            reason=reason,
            deviates=deviates and not fallback,
            decision=decision,
        )

    def _decision(self, user_id: str) -> tuple[bool, str]:
        """Whether the book's policy deviates from the default for ``user_id``, and why."""
        choice = self._choices.get(user_id)
        if choice is None:
            return False, f"user {user_id!r} is not in the book: the default {self.default_template!r}"
        if self.gate is None or choice.deviates is None:
            return (choice.template_id != self.default_template,
                    f"{self.source} has no validated gate (schema {self.schema_version}, written before the "
                    "safe policy): serving the stored choice; re-export the run with `promptopt export "
                    "RUN_DIR` for the gated policy")
        return bool(choice.deviates), choice.reason or ""

    def _fillable(
        self, template_id: str, context: UserContext, hints: CollaborativeHints | None
    ) -> tuple[PromptTemplate, str]:
        """The first template, from ``template_id`` on, that ``context`` can fill, and why the
        preferred one could not be used (empty when it could)."""
        order = [template_id, *self.fallback_order]
        first_reason = ""
        for tid in dict.fromkeys(order):
            template = self.template(tid)
            missing = template.missing(context, hints if hints is not None else False)
            if not missing:
                return template, first_reason
            if not first_reason:
                first_reason = f"template {tid!r} cannot be filled: {'; '.join(missing)}"
        raise PromptBookError(
            f"prompt_for: no template of the book can be filled for user {context.raw_user_id!r} "
            f"({first_reason}); pass hints= or a longer history"
        )


def _rebuild_template(entry: Mapping[str, Any], source: str) -> PromptTemplate:
    """A :class:`PromptTemplate` from its stored fields (text validated as at catalog load)."""
    from promptopt.templates import PromptTemplate  # numpy: not needed to load and validate a book

    fields = {k: entry[k] for k in TEMPLATE_FIELDS if k in entry}
    try:
        return PromptTemplate(**fields)
    except (TemplateError, TypeError, ValueError) as exc:
        raise PromptBookError(f"{source}: template {entry.get('id')!r} cannot be rebuilt: {exc}") from None
