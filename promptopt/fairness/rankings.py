"""Counterfactual rankings: each neutral prompt and its copies stating sensitive attributes, ranked.

For every audited (user, template) pair the neutral request is the one the evaluation sends (the
user's base task, candidates in its shown order), so its answer is usually in the cache already;
one copy per value of each attribute states that value (:func:`counterfactual_request`) and keeps
the candidates and their order. Everything goes through the given ranker, so a
:class:`~promptopt.llm.cache.CachedRanker` keys, stores and budgets every copy, and a re-run (or a
run stopped by its budget) pays only for what is missing. Requests are sent ``batch`` at a time.

:func:`run_counterfactuals` returns the rankings; :func:`similarity_table` turns them into one
similarity per (pair, value) and :mod:`promptopt.fairness.summary` into SNSR / SNSV with noise levels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from promptopt.fairness.attributes import AttributeSet
from promptopt.fairness.counterfactual import counterfactual_request
from promptopt.fairness.similarity import similarity_fn
from promptopt.llm.types import Ranker, RankRequest
from promptopt.metrics import ndcg_at_k
from promptopt.problem import RecProblem
from promptopt.selectors import Spend


@dataclass(frozen=True, eq=False)
class CounterfactualRankings:
    """What the ranker answered for every audited pair and copy.

    Attributes:
        users: ``(n,)`` user index of each pair.
        templates: ``(n,)`` template index of each pair.
        targets: ``(n,)`` the base task's held-out item.
        neutral: The neutral ranking of each pair.
        copies: Attribute name -> per pair, the ranking of the copy stating each value (value order).
        attributes: The attribute set audited.
        spend: Requests, cache hits and tokens of the audit (neutral requests included).
    """

    users: np.ndarray
    templates: np.ndarray
    targets: np.ndarray
    neutral: list[tuple[int, ...]]
    copies: dict[str, list[list[tuple[int, ...]]]]
    attributes: AttributeSet
    spend: Spend

    def __len__(self) -> int:
        return int(self.users.size)


def plan_requests(problem: RecProblem, pairs: Sequence[tuple[int, int]],
                  attributes: AttributeSet) -> tuple[list[tuple[int, int, int]], list[RankRequest]]:
    """``(user, template, target)`` of each pair that has a task, and all requests: per pair the
    neutral request, then one copy per value of each attribute (attribute by attribute).

    Raises:
        ValueError: A template index outside the catalog, or a template the user cannot fill.
    """
    kept: list[tuple[int, int, int]] = []
    requests: list[RankRequest] = []
    cells = attributes.cells()
    for user, template in pairs:
        user, template = int(user), int(template)
        if not 0 <= template < problem.n_templates:
            raise ValueError(f"template index must be in 0..{problem.n_templates - 1}, got {template}")
        tasks = problem.tasks(user)
        if not tasks:
            continue
        if not problem.action_mask(user)[template]:
            raise ValueError(f"user {problem.data.user_ids[user]!r} cannot fill template "
                             f"{problem.catalog.ids[template]!r}")
        neutral = problem.requests(tasks[:1], template)[0]
        kept.append((user, template, int(tasks[0].target)))
        requests.append(neutral)
        requests += [counterfactual_request(neutral, sentence, attributes.placement)
                     for _, _, sentence in cells]
    return kept, requests


def run_counterfactuals(
    problem: RecProblem,
    ranker: Ranker,
    pairs: Sequence[tuple[int, int]],
    attributes: AttributeSet,
    *,
    batch: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> CounterfactualRankings:
    """Rank the neutral request and every counterfactual copy of each (user, template) pair.

    Args:
        problem: The run's problem (tasks, requests, masks).
        ranker: The run's ranker, behind its cache and budget.
        pairs: ``(user, template)`` pairs to audit; users without a task are skipped.
        attributes: The sensitive attributes and their values.
        batch: Requests per ``rank`` call (answers are cached after each).
        progress: Called with ``(requests done, requests in all)`` after each call.

    Raises:
        ValueError: ``batch < 1``, a bad template, or the ranker returned a wrong number of answers.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    kept, requests = plan_requests(problem, pairs, attributes)
    responses = []
    for start in range(0, len(requests), batch):
        chunk = requests[start:start + batch]
        answers = ranker.rank(chunk)
        if len(answers) != len(chunk):
            raise ValueError(f"ranker returned {len(answers)} responses for {len(chunk)} requests")
        responses += answers
        if progress is not None:
            progress(len(responses), len(requests))
    per_pair = 1 + attributes.n_values
    neutral: list[tuple[int, ...]] = []
    copies: dict[str, list[list[tuple[int, ...]]]] = {a.name: [] for a in attributes}
    for p in range(len(kept)):
        block = responses[p * per_pair:(p + 1) * per_pair]
        neutral.append(tuple(block[0].ranking))
        at = 1
        for attribute in attributes:
            n = len(attribute.values)
            copies[attribute.name].append([tuple(r.ranking) for r in block[at:at + n]])
            at += n
    spend = Spend(len(responses), sum(1 for r in responses if r.cached),
                  sum(r.usage.total_tokens for r in responses))
    users, templates, targets = (np.array([row[i] for row in kept], dtype=np.int64) for i in range(3))
    return CounterfactualRankings(users, templates, targets, neutral, copies, attributes, spend)


def similarity_table(rankings: CounterfactualRankings, attribute: str, metric: str, k: int) -> np.ndarray:
    """Similarity of each copy's top-``k`` to its neutral one.

    Shapes:
        Returns ``(n_pairs, n_values)`` float64.
    """
    fn = similarity_fn(metric)
    rows = rankings.copies[attribute]
    return np.array([[fn(neutral, copy, k) for copy in row] for neutral, row in zip(rankings.neutral, rows)],
                    dtype=np.float64).reshape(len(rows), len(rankings.attributes[attribute].values))


def ndcg_change_table(rankings: CounterfactualRankings, attribute: str, k: int = 10) -> np.ndarray:
    """NDCG@``k`` of each copy minus that of its neutral ranking.

    Shapes:
        Returns ``(n_pairs, n_values)`` float64.
    """
    rows = rankings.copies[attribute]
    out = np.zeros((len(rows), len(rankings.attributes[attribute].values)))
    for i, (neutral, row, target) in enumerate(zip(rankings.neutral, rows, rankings.targets)):
        base = ndcg_at_k(neutral, int(target), k)
        out[i] = [ndcg_at_k(copy, int(target), k) - base for copy in row]
    return out


def neutral_ndcg(rankings: CounterfactualRankings, k: int = 10) -> np.ndarray:
    """Shapes: ``(n_pairs,)`` NDCG@``k`` of each neutral ranking."""
    return np.array([ndcg_at_k(r, int(t), k) for r, t in zip(rankings.neutral, rankings.targets)])
