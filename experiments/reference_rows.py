"""Reference rows of the evaluation table: rankings made without the LLM, on the same tasks.

A researcher compares an LLM ranker with these first (LLMRank, Hou et al. 2024, reports Pop and
BPRMF beside ChatGPT). Each row ranks every evaluated user's base task (the same candidates and
shown order the selectors' prompts show) by

* ``popularity``: the candidates' interaction counts in the training graph
  (:attr:`RecProblem.popularity`, built from :attr:`RecProblem.train_mask` only), ties in shown order;
* ``lightgcn``: the run's own pretrained LightGCN, ``score(u, i) = e_u . e_i`` of the propagated
  embeddings the policy observes (``lightgcn.pt``), ties in shown order.

They cost no LLM call. They are references, not selectors: nothing here picks a template.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.config import ExperimentConfig
from promptopt.evaluation import bootstrap_interval
from promptopt.metrics import METRIC_NAMES, metric_fn
from promptopt.problem import RecProblem

logger = logging.getLogger(__name__)

Scorer = Callable[[int, np.ndarray], np.ndarray]
"""``(user, candidates) -> one score per candidate`` (higher ranks first)."""


def rank_by_scores(candidates: Sequence[int], scores: Sequence[float]) -> tuple[int, ...]:
    """Candidates by descending score, ties in shown order."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return tuple(int(candidates[k]) for k in order)


def reference_scorers(problem: RecProblem, lightgcn: Path | None) -> dict[str, Scorer]:
    """The available reference scorers: popularity always, LightGCN when the run has embeddings."""
    popularity = np.asarray(problem.popularity, dtype=np.float64)
    scorers: dict[str, Scorer] = {"popularity": lambda user, items: popularity[items]}
    if lightgcn is not None and lightgcn.is_file():
        from promptopt.policies.lightgcn import LightGCNEmbeddings

        embeddings = LightGCNEmbeddings.load(lightgcn)
        users = embeddings.user_embeddings.detach().cpu().double().numpy()
        items = embeddings.item_embeddings.detach().cpu().double().numpy()
        scorers["lightgcn"] = lambda user, cands: items[cands] @ users[user]
    return scorers


def evaluate_reference(
    scorer: Scorer,
    problem: RecProblem,
    users: Sequence[int] | np.ndarray,
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics of ranking each user's base task by ``scorer`` (the JSON of one reference row)."""
    values: dict[str, list[float]] = {name: [] for name in METRIC_NAMES}
    fns = {name: metric_fn(name) for name in METRIC_NAMES}
    for user in users:
        tasks = problem.tasks(int(user))
        if not tasks:
            continue
        task = tasks[0]
        candidates = np.asarray(task.candidates, dtype=np.int64)
        ranking = rank_by_scores(task.candidates, scorer(int(user), candidates))
        for name, fn in fns.items():
            values[name].append(float(fn(ranking, task.target)))
    metrics = {
        name: bootstrap_interval(v, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed).to_json()
        for name, v in values.items()
    }
    return {"metrics": metrics, "n_users": len(values[METRIC_NAMES[0]]), "calls": 0}


def reference_rows(config: ExperimentConfig, problem: RecProblem, lightgcn: Path | None) -> dict[str, Any]:
    """The ``evaluation.reference`` section of metrics.json: every reference row on the evaluated users."""
    cfg = config.eval
    users = problem.pool(cfg.split)
    return {
        name: evaluate_reference(scorer, problem, users, n_bootstrap=cfg.n_bootstrap,
                                 confidence=cfg.confidence, seed=config.seed)
        for name, scorer in reference_scorers(problem, lightgcn).items()
    }
