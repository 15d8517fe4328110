"""The fairness audit as one library call: counterfactual sensitivity and group gaps of a problem's prompts.

:func:`fairness_audit` ranks the audited (user, template) pairs and their counterfactual copies
(:mod:`promptopt.fairness.rankings`), summarises every attribute (similarity by value, SNSR / SNSV,
noise level, NDCG@10 change: :mod:`promptopt.fairness.summary`) over all pairs and, separately, over
the pairs whose template puts the user's own attributes into the prompt (``{user_attributes}``,
marked by :attr:`PromptTemplate.needs_attributes`) and those whose template does not, and, given
selector evaluations, compares the dataset's user groups (:mod:`promptopt.fairness.groups`).
``promptopt audit fairness RUN`` is this call on a run's problem, ranker and exported choices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from promptopt.evaluation import Interval, bootstrap_interval
from promptopt.fairness.attributes import AttributeSet
from promptopt.fairness.groups import AttributeGaps, group_gaps, group_labels
from promptopt.fairness.rankings import (
    CounterfactualRankings,
    ndcg_change_table,
    neutral_ndcg,
    run_counterfactuals,
    similarity_table,
)
from promptopt.fairness.similarity import SIMILARITY_NAMES
from promptopt.fairness.summary import AttributeSummary, summarise_attribute
from promptopt.llm.types import Ranker
from promptopt.problem import RecProblem

if TYPE_CHECKING:
    from promptopt.config import FairnessConfig
    from promptopt.evaluation import SelectorEvaluation
    from promptopt.templates import TemplateCatalog

PARTITIONS: dict[str, str] = {
    "all": "all audited prompts",
    "uses_attributes": "templates that put the user's own attributes into the prompt",
    "no_attributes": "templates without user attributes",
}


@dataclass(frozen=True)
class Partition:
    """The attribute summaries over one set of audited pairs.

    Attributes:
        name: A key of :data:`PARTITIONS`.
        n_pairs: Audited (user, template) pairs in it.
        templates: Template id -> pairs using it.
        neutral_ndcg: NDCG@10 of the neutral prompts.
        attributes: One summary per attribute.
    """

    name: str
    n_pairs: int
    templates: Mapping[str, int]
    neutral_ndcg: Interval
    attributes: tuple[AttributeSummary, ...]

    @property
    def flagged(self) -> list[str]:
        return [a.name for a in self.attributes if a.flagged]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "label": PARTITIONS[self.name], "n_pairs": self.n_pairs,
                "templates": dict(self.templates), "neutral_ndcg@10": self.neutral_ndcg.to_json(),
                "flagged": self.flagged, "attributes": [a.to_json() for a in self.attributes]}


@dataclass(frozen=True, eq=False)
class FairnessAudit:
    """Everything an audit measured (JSON: :meth:`to_json`).

    Attributes:
        rankings: The raw counterfactual rankings.
        partitions: Partition name -> summaries (``all`` always; the other two when non-empty).
        gaps: Per dataset attribute, every selector's group gaps.
        settings: The audit's settings (JSON-able).
    """

    rankings: CounterfactualRankings
    partitions: Mapping[str, Partition]
    gaps: tuple[AttributeGaps, ...]
    settings: Mapping[str, Any]

    @property
    def flagged(self) -> list[str]:
        """Attributes whose SNSR is above its noise level over all audited prompts."""
        return self.partitions["all"].flagged

    def to_json(self) -> dict[str, Any]:
        spend = self.rankings.spend
        return {
            "settings": dict(self.settings),
            "spend": {"requests": spend.calls, "cached": spend.cached, "uncached": spend.uncached,
                      "tokens": spend.tokens},
            "flagged": self.flagged,
            "counterfactual": {n: p.to_json() for n, p in self.partitions.items()},
            "group_gaps": [g.to_json() for g in self.gaps],
        }


def summarise_counterfactuals(
    rankings: CounterfactualRankings,
    catalog: TemplateCatalog,
    *,
    k: int = 10,
    flag_metric: str = "serp",
    alpha: float = 0.05,
    n_permutations: int = 2000,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Partition]:
    """Attribute summaries over all pairs and over the pairs with / without user-attribute templates.

    Each attribute is tested at ``alpha / number of attributes`` (see :mod:`promptopt.fairness.summary`).
    """
    uses = np.array([catalog[int(t)].needs_attributes for t in rankings.templates], dtype=bool)
    parts = {"all": np.ones(len(rankings), dtype=bool)}
    if uses.any() and (~uses).any():
        parts["uses_attributes"], parts["no_attributes"] = uses, ~uses
    elif uses.any():
        parts["uses_attributes"] = uses
    level = alpha / max(len(rankings.attributes), 1)
    tables = {a.name: ({m: similarity_table(rankings, a.name, m, k) for m in SIMILARITY_NAMES},
                       ndcg_change_table(rankings, a.name)) for a in rankings.attributes}
    base = neutral_ndcg(rankings)
    kw = {"n_bootstrap": n_bootstrap, "confidence": confidence, "seed": seed}
    out: dict[str, Partition] = {}
    for name, mask in parts.items():
        ids, counts = np.unique(rankings.templates[mask], return_counts=True)
        summaries = tuple(
            summarise_attribute(a.name, a.values, {m: t[mask] for m, t in tables[a.name][0].items()},
                                tables[a.name][1][mask], flag_metric=flag_metric, level=level,
                                n_permutations=n_permutations, **kw)
            for a in rankings.attributes)
        templates = {catalog.ids[int(t)]: int(c) for t, c in zip(ids, counts)}
        neutral = bootstrap_interval(base[mask], **kw)
        out[name] = Partition(name, int(mask.sum()), templates, neutral, summaries)
    return out


def selector_gaps(
    problem: RecProblem,
    evaluations: Mapping[str, SelectorEvaluation],
    attributes: Sequence[str] = (),
    *,
    metric: str = "ndcg@10",
    min_group_users: int = 10,
    age_bins: Sequence[int] = (18, 25, 35, 45, 50, 56),
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[AttributeGaps, ...]:
    """Group gaps of every evaluated selector under each of the dataset's user attributes.

    Users are those every evaluation scored; ``attributes`` empty means every attribute the data has.

    Raises:
        ValueError: An attribute the dataset does not have, or evaluations without a common user.
    """
    data = problem.data
    names = list(attributes) or list(data.user_attributes)
    missing = [a for a in names if a not in data.user_attributes]
    if missing:
        raise ValueError(f"dataset {data.name!r} has no user attribute {missing[0]!r} "
                         f"(it has: {', '.join(data.user_attributes) or 'none'})")
    if not evaluations or not names:
        return ()
    common = set.intersection(*(set(int(u) for u in ev.users) for ev in evaluations.values()))
    if not common:
        raise ValueError("the selector evaluations share no user")
    users = np.array(sorted(common), dtype=np.int64)
    values = {}
    for name, ev in evaluations.items():
        position = {int(u): i for i, u in enumerate(ev.users)}
        values[name] = ev.per_user[metric][[position[int(u)] for u in users]]
    return tuple(group_gaps(a, group_labels(data, users, a, age_bins), values,
                            min_group_users=min_group_users, n_bootstrap=n_bootstrap, confidence=confidence,
                            seed=seed) for a in names)


def fairness_audit(
    problem: RecProblem,
    ranker: Ranker,
    pairs: Sequence[tuple[int, int]],
    attributes: AttributeSet,
    settings: FairnessConfig,
    *,
    evaluations: Mapping[str, SelectorEvaluation] | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> FairnessAudit:
    """Audit ``pairs`` (``(user, template)``) under ``attributes`` and compare the evaluations' groups.

    Args:
        problem: Tasks, requests, catalog and data.
        ranker: The ranker (behind its cache and budget: every copy is one request).
        pairs: The audited prompts (e.g. each test user's exported template).
        attributes: The sensitive attributes (already limited to what is audited).
        settings: ``k``, ``flag_metric``, ``alpha``, ``n_permutations``, the group settings, ``batch``.
        evaluations: Selector name -> its evaluation on the evaluation users (for group gaps).
        n_bootstrap, confidence, seed: The intervals.
        progress: ``(done, total)`` after each ranker call.

    Raises:
        ValueError: See :func:`run_counterfactuals` and :func:`selector_gaps`.
    """
    rankings = run_counterfactuals(problem, ranker, pairs, attributes, batch=settings.batch,
                                   progress=progress)
    kw = {"n_bootstrap": n_bootstrap, "confidence": confidence, "seed": seed}
    partitions = summarise_counterfactuals(rankings, problem.catalog, k=settings.k,
                                           flag_metric=settings.flag_metric, alpha=settings.alpha,
                                           n_permutations=settings.n_permutations, **kw)
    gaps = selector_gaps(problem, evaluations or {}, settings.group_attributes,
                         min_group_users=settings.min_group_users, age_bins=settings.age_bins, **kw)
    info = {"attributes": attributes.name, "placement": attributes.placement, "k": settings.k,
            "flag_metric": settings.flag_metric, "alpha": settings.alpha,
            "level_per_attribute": settings.alpha / max(len(attributes), 1),
            "n_permutations": settings.n_permutations, "n_bootstrap": n_bootstrap, "confidence": confidence,
            "n_values": {a.name: list(a.values) for a in attributes},
            "sentences": {a.name: a.sentence for a in attributes},
            "min_group_users": settings.min_group_users}
    return FairnessAudit(rankings, partitions, gaps, info)
