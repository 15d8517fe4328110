"""One fallback rule for every selector: a ranked list of templates, the first a user can fill.

A template may need more than a user has (ten history items for a user with four, ratings, a
profile attribute, collaborative hints): the user cannot fill it, and a request built from it
would be scored 0. No selector may choose such a template. Every path (the best fixed template,
the bandits, the raw and the gated policy, the prompt book) replaces a choice the user cannot fill
by the **first template of one ranked list** the user can fill; the list is the templates ranked by
the training-budget scan (best mean reward on training users first, see
:func:`promptopt.selectors.best_fixed`).

* :class:`FallbackOrder` — the ranked list and the rule (:meth:`~FallbackOrder.first_fillable`,
  :meth:`~FallbackOrder.repair`);
* :class:`FallbackSelector` — any selector with the rule applied to its choices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MaskFn = Callable[[int], np.ndarray]
"""``user -> (n_templates,) bool``: the templates the user's context can fill."""


class FallbackOrder:
    """Templates ranked best first; a user gets the first of them the user can fill.

    Args:
        order: Template indices, best first. Templates missing from it are appended in index
            order when ``n_templates`` is given, so every template has a rank.
        n_templates: The catalog size (checks the indices and completes the order).

    Raises:
        ValueError: Empty order, a repeated template, or an index outside ``0..n_templates-1``.
    """

    def __init__(self, order: Sequence[int], n_templates: int | None = None) -> None:
        ranked = [int(t) for t in order]
        if not ranked:
            raise ValueError("a fallback order needs at least one template")
        if len(set(ranked)) != len(ranked):
            dup = next(t for t in ranked if ranked.count(t) > 1)
            raise ValueError(f"template {dup} appears twice in the fallback order {ranked}")
        if n_templates is not None:
            bad = [t for t in ranked if not 0 <= t < n_templates]
            if bad:
                raise ValueError(f"template index {bad[0]} is outside 0..{n_templates - 1}")
            ranked += [t for t in range(n_templates) if t not in set(ranked)]
        self.order: tuple[int, ...] = tuple(ranked)

    @property
    def default(self) -> int:
        """The top template (what a user who can fill it gets by default)."""
        return self.order[0]

    def first_fillable(self, mask: np.ndarray) -> int:
        """The first template of the order ``mask`` allows (the top one when the user can fill none:
        every template then scores 0, and the evaluation counts it as invalid)."""
        return next((t for t in self.order if t < len(mask) and mask[t]), self.order[0])

    def defaults(self, masks: np.ndarray) -> np.ndarray:
        """Per user, the first fillable template. Shapes: ``masks (n, T)`` -> ``(n,)`` int64."""
        return np.array([self.first_fillable(row) for row in masks], dtype=np.int64)

    def repair(self, choices: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Keep each choice the user can fill; replace the others by the first fillable template.

        Shapes: ``choices (n,)``, ``masks (n, T)`` -> ``(n,)`` int64.
        """
        choices = np.asarray(choices, dtype=np.int64)
        out = choices.copy()
        for i, (choice, row) in enumerate(zip(choices, masks)):
            if not (0 <= choice < len(row) and row[choice]):
                out[i] = self.first_fillable(row)
        return out

    def to_ids(self, ids: Sequence[str]) -> list[str]:
        """The order as template ids."""
        return [ids[t] for t in self.order]

    @classmethod
    def from_ids(cls, order: Sequence[str], ids: Sequence[str]) -> FallbackOrder:
        """The order of template ids ``order`` over the catalog ``ids``.

        Raises:
            ValueError: A template id the catalog does not hold (names it and the catalog).
        """
        index = {tid: k for k, tid in enumerate(ids)}
        missing = [t for t in order if t not in index]
        if missing:
            raise ValueError(f"template {missing[0]!r} of the fallback order is not in the catalog "
                             f"({', '.join(ids)})")
        return cls([index[t] for t in order], n_templates=len(ids))


def stack_masks(masks: MaskFn, users: np.ndarray, n_templates: int) -> np.ndarray:
    """Shapes: ``users (n,)`` -> ``(n, n_templates)`` bool."""
    if len(users) == 0:
        return np.zeros((0, n_templates), dtype=bool)
    return np.stack([np.asarray(masks(int(u)), dtype=bool) for u in users])


class FallbackSelector:
    """``selector`` with :meth:`FallbackOrder.repair` applied to every choice.

    Args:
        selector: Any selector (``name`` and ``select``).
        order: The ranked fallback list.
        masks: ``user -> (T,) bool`` of the context the choice is scored on (the same period as
            the evaluation: a user's latest source-period context may be shorter than the last).
        n_templates: The catalog size.

    Attributes:
        name: The wrapped selector's name.
        repaired: Choices replaced by the last :meth:`select` call.
    """

    def __init__(self, selector: Any, order: FallbackOrder, masks: MaskFn, n_templates: int) -> None:
        self.selector = selector
        self.order = order
        self.masks = masks
        self.n_templates = n_templates
        self.name: str = selector.name
        self.repaired = 0

    @property
    def spend(self) -> Any:
        """What the wrapped selector spent choosing (the evaluation reports it)."""
        return getattr(self.selector, "spend", None)

    def select(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        choices = np.asarray(self.selector.select(users), dtype=np.int64)
        out = self.order.repair(choices, stack_masks(self.masks, users, self.n_templates))
        self.repaired = int((out != choices).sum())
        return out
