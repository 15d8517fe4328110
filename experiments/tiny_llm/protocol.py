"""The protocol: the same test tasks, shown in ``B`` orders, ranked by every row; then the report.

1. The experiment's problem (:func:`promptopt.experiments.assembly.build_problem`): the split's seeded test
   pool
   (its first ``tiny_llm.users`` users), each user's last item as the target, 19 negatives, the base
   shown order and ``reward.bootstrap - 1`` shuffled copies. Nothing here is tuned: every row is
   a fixed ranker, so the test users are scored once, by every row, on identical tasks.
2. Rows without an LLM: the shown order itself (a pure position ranker), training popularity and the
   run's own LightGCN (BPR-pretrained here on the leak-free training graph, as ``promptopt train``
   does; :mod:`promptopt.experiments.reference_rows`), and the MiniLM embedding ranker.
3. SmolLM2 (``experiment.ranker``, the hf backend; loaded once, its modes are variants sharing the
   weights): score mode with index labels, score mode with title labels, generate mode. Generate
   mode's answers are parsed twice, without and with embedding grounding (the same generated text:
   grounding is a step of the parser), and the parse statistics of both are kept.

Every ranker sits behind the SQLite answer cache (``experiment.cache``): an interrupted run resumes
without paying twice, and re-running the command rewrites the report from cached answers in minutes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.config import ExperimentConfig, config_to_dict
from promptopt.experiments.assembly import build_problem
from promptopt.experiments.reference_rows import rank_by_scores, reference_scorers
from promptopt.experiments.tiny_llm.config import TinyLLMConfig
from promptopt.experiments.tiny_llm.markdown import write_report
from promptopt.experiments.tiny_llm.measures import ShownTask, chance_ndcg, summarise
from promptopt.llm.cache import CachedRanker
from promptopt.llm.parsing import parse_ranking
from promptopt.llm.types import ParseStats, Ranker, RankRequest, RankResponse
from promptopt.problem import RecProblem
from promptopt.tasks import RankingTask

logger = logging.getLogger("promptopt.tiny_llm")


def run_protocol(config: ExperimentConfig, protocol: TinyLLMConfig) -> Path:
    """Run every row and write the report; returns the report's path."""
    started = time.perf_counter()
    load_start = _load_average()
    work = Path(protocol.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    data, _, catalog, problem = build_problem(config)
    test = [int(u) for u in problem.pool("test")[: protocol.users]]
    tasks = {u: problem.tasks(u) for u in test}
    tasks = {u: t for u, t in tasks.items() if t}
    n_candidates = len(next(iter(tasks.values()))[0].candidates)
    logger.info("%d test users, %d shown orders each, %d candidates", len(tasks), config.reward.bootstrap,
                n_candidates)
    rows: list[dict[str, Any]] = []

    def add(name: str, kind: str, shown: list[ShownTask], seconds: float, **extra: Any) -> None:
        row = {"name": name, "kind": kind, "split": "test", "seconds": seconds, **extra,
               **summarise(shown, n_bootstrap=config.eval.n_bootstrap, seed=config.seed)}
        rows.append(row)
        logger.info("%s: NDCG@10 %.4f (base order), %.4f (merged orders), %d users, %.0f s", name,
                    row["base"]["mean"], row["merged"]["mean"], row["n_users"], seconds)

    # ------------------------------------------------------------------ rows without an LLM
    start = time.perf_counter()
    add("shown order (position only)", "reference", _score_rows(tasks, lambda u, c: -np.arange(len(c))),
        time.perf_counter() - start)
    lightgcn = _pretrain_lightgcn(config, data, problem, work / "lightgcn.pt")
    for name, scorer in reference_scorers(problem, lightgcn).items():
        start = time.perf_counter()
        label = {"popularity": "popularity (training interactions)",
                 "lightgcn": "LightGCN (this run's, e_u . e_i)"}[name]
        add(label, "reference", _score_rows(tasks, scorer), time.perf_counter() - start)
    cache_path = config.cache.path if config.cache.enabled else str(work / "cache.sqlite")
    minilm = _embedding_ranker(cache_path)
    shown, seconds, _ = _llm_rows(problem, catalog, tasks, minilm, protocol.embedding_template,
                                  protocol.chunk)
    add("MiniLM embedding (all-MiniLM-L6-v2)", "embedding", shown, seconds,
        template=protocol.embedding_template)

    # ------------------------------------------------------------------ SmolLM2
    smol = _hf_ranker(config)
    model = {"model": config.ranker.model, "dtype": smol.identity["dtype"], "dtype_reason": smol.dtype_reason}
    scorer = CachedRanker(smol, cache_path)
    for template in protocol.index_templates:
        shown, seconds, _ = _llm_rows(problem, catalog, tasks, scorer, template, protocol.chunk)
        add(f"SmolLM2 score, index labels: {template}", "score", shown, seconds, template=template)
    for template in protocol.title_templates:
        shown, seconds, _ = _llm_rows(problem, catalog, tasks, scorer, template, protocol.chunk)
        add(f"SmolLM2 score, title labels: {template}", "score", shown, seconds, template=template,
            length_normalize=smol.length_normalize)
    generating = smol.variant(mode="generate", max_new_tokens=protocol.max_new_tokens)
    generator = CachedRanker(generating, cache_path)
    grounder = _grounder()
    some = {u: tasks[u] for u in list(tasks)[: protocol.generate_users]}
    grounding: list[dict[str, Any]] = []
    for template in protocol.generate_templates:
        shown, seconds, answers = _llm_rows(problem, catalog, some, generator, template, protocol.chunk)
        add(f"SmolLM2 generate: {template}", "generate", shown, seconds, template=template,
            max_new_tokens=protocol.max_new_tokens, parse=_parse_json([r.parse for _, r in answers]))
        start = time.perf_counter()
        # The same answers parsed again, with grounding: no new generation.
        reparsed = [parse_ranking(response.raw_text, request, grounder) for request, response in answers]
        regrounded = [ShownTask(t.user, t.copy, t.target, t.shown, ranking)
                      for t, (ranking, _, _) in zip(shown, reparsed)]
        add(f"SmolLM2 generate + embedding grounding: {template}", "generate", regrounded,
            seconds + time.perf_counter() - start, template=template,
            max_new_tokens=protocol.max_new_tokens, parse=_parse_json([stats for _, stats, _ in reparsed]),
            grounding="embedding")
        grounding.append({"template": template, "without": rows[-2], "with": rows[-1]})

    result = {
        "config": {"experiment": config_to_dict(config), "tiny_llm": config_to_dict(protocol)},
        "split": "test",
        "describe": problem.describe(),
        "users": len(tasks),
        "generate_users": len(some),
        "orders": config.reward.bootstrap,
        "n_candidates": n_candidates,
        "chance": chance_ndcg(n_candidates),
        "smollm2": model,
        "rows": rows,
        "minutes": (time.perf_counter() - started) / 60,
        "load_average": {"start": load_start, "end": _load_average()},
        "cache": {"path": cache_path, **_cache_counts([minilm, scorer, generator])},
    }
    (work / "results.json").write_text(json.dumps(result, indent=1, default=float), encoding="utf-8")
    return write_report(result, Path(protocol.output))


# ---------------------------------------------------------------------- helpers
def _score_rows(tasks: dict[int, list[RankingTask]], scorer: Any) -> list[ShownTask]:
    out = []
    for user, user_tasks in tasks.items():
        for copy, task in enumerate(user_tasks):
            scores = scorer(user, np.asarray(task.candidates, dtype=np.int64))
            ranking = rank_by_scores(task.candidates, scores)
            out.append(ShownTask(user, copy, task.target, task.candidates, ranking))
    return out


def _llm_rows(
    problem: RecProblem, catalog: Any, tasks: dict[int, list[RankingTask]], ranker: Ranker, template: str,
    chunk: int,
) -> tuple[list[ShownTask], float, list[tuple[RankRequest, RankResponse]]]:
    """Every user's tasks rendered by ``template`` and ranked, ``chunk`` requests per call (logged)."""
    index = catalog.index_of(template)
    pairs: list[tuple[int, int, RankingTask, RankRequest]] = []
    for user, user_tasks in tasks.items():
        for copy, (task, request) in enumerate(zip(user_tasks, problem.requests(user_tasks, index))):
            pairs.append((user, copy, task, request))
    start = time.perf_counter()
    responses: list[RankResponse] = []
    for lo in range(0, len(pairs), chunk):
        responses += ranker.rank([p[3] for p in pairs[lo: lo + chunk]])
        done = len(responses)
        elapsed = time.perf_counter() - start
        logger.info("%s %s: %d/%d requests, %.0f s", ranker.identity.get("backend"), template, done,
                    len(pairs), elapsed)
    seconds = time.perf_counter() - start
    shown = [ShownTask(u, c, t.target, t.candidates, tuple(r.ranking))
             for (u, c, t, _), r in zip(pairs, responses)]
    return shown, seconds, [(p[3], r) for p, r in zip(pairs, responses)]


def _parse_json(stats: Sequence[ParseStats]) -> dict[str, float]:
    """Mean parse statistics per answer, and the share of complete answers."""
    n = max(len(stats), 1)
    total = sum(stats, ParseStats())
    return {"answers": len(stats), "found": total.found / n, "hallucinated": total.hallucinated / n,
            "duplicates": total.duplicates / n, "missing": total.missing / n,
            "grounded": total.grounded / n, "complete": sum(s.complete for s in stats) / n}


def _pretrain_lightgcn(config: ExperimentConfig, data: Any, problem: RecProblem, path: Path) -> Path:
    """The run's LightGCN: BPR on the leak-free training graph (reused when ``path`` exists)."""
    if path.is_file():
        logger.info("LightGCN: reusing %s", path)
        return path
    from promptopt.policies.graph import build_graph
    from promptopt.policies.lightgcn import pretrain_from_config

    graph = build_graph(data, problem.train_mask)
    emb = pretrain_from_config(graph, config.policy, seed=config.seed)
    emb.save(path)
    logger.info("LightGCN: best epoch %d (recall@20 %.4f) in %.1f s", emb.best_epoch, emb.best_recall,
                emb.seconds)
    return path


def _embedding_ranker(cache_path: str) -> CachedRanker:
    from promptopt.llm.embedding_backend import EmbeddingRanker

    return CachedRanker(EmbeddingRanker("all-MiniLM-L6-v2", device="cpu", batch_size=64), cache_path)


def _hf_ranker(config: ExperimentConfig) -> Any:
    from promptopt.llm.hf_backend import HFRanker

    r = config.ranker
    return HFRanker(r.model, mode="score", device=r.device, dtype=r.dtype, batch_size=r.batch_size,
                    gguf_file=r.gguf_file, length_normalize=r.length_normalize, prompt_style=r.prompt_style)


def _grounder() -> Any:
    from promptopt.llm.grounding import make_grounder

    return make_grounder("embedding", device="cpu")


def _cache_counts(rankers: Sequence[CachedRanker]) -> dict[str, int]:
    hits = sum(r.stats.hits for r in rankers)
    misses = sum(r.stats.misses for r in rankers)
    return {"hits": hits, "misses": misses}


def _load_average() -> float:
    import os

    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
