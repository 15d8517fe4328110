"""Does an embedding ranker's answer depend on which other prompts share its encode batch?

A cold answer cache is filled in whatever batches the run happens to send: the study's answer
tables in chunks of 512 requests, a PPO vector env in steps of ``n_envs``, an evaluation in one call
per selector. A warm cache returns what an earlier run computed in *its* batches. When a prompt's
vector depends on its batch companions (padding to the longest prompt of the batch changes the
shapes of every matrix product, so the float sums round differently), two identical runs can see
different scores, tied or near-tied candidates change places, and PPO, which amplifies every
reward difference, ends somewhere else.

This script encodes the same requests (every template for every user of the study's
MovieLens-100K sample) in three compositions — the study's table chunks, PPO-sized shuffled steps,
and each request alone — and prints, for each pair, the largest score difference and how many
rankings and NDCG@10 values changed. It then does the same for each torch thread count given.

    python -m promptopt.experiments.bench.bench_reproducibility [--users 100] [--data PATH] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO / ".." / "shared" / "data" / "ml-100k"))
    parser.add_argument("--users", type=int, default=100, help="users of the study's sample (x 7 templates)")
    parser.add_argument("--step", type=int, default=8, help="requests per call of the PPO-like composition")
    parser.add_argument("--chunk", type=int, default=512, help="requests per call of the table composition")
    parser.add_argument("--threads", type=int, nargs="*", default=[], help="also compare torch thread counts")
    return parser.parse_args(argv)


def _requests(data_path: str, n_users: int) -> tuple[Any, list[Any], list[int]]:
    from promptopt.experiments.bench.planted import TEMPLATES
    from promptopt.experiments.study.config import load_study
    from promptopt.problem import RecProblem
    from promptopt.splits import split_users

    config, _ = load_study(
        REPO / "experiments" / "configs" / "study_ml100k.yaml", [f"--data.path={data_path}"]
    )
    from promptopt.data import load_data
    from promptopt.templates import TemplateCatalog

    data = load_data(config.data)
    s = config.split
    split = split_users(
        data,
        val_fraction=s.val_fraction,
        test_fraction=s.test_fraction,
        min_history=s.min_history,
        seed=0,
        max_users=s.max_users,
    )
    catalog = TemplateCatalog.load("movies", include=TEMPLATES)
    problem = RecProblem.build(data, split, catalog, config.reward, config.split, seed=0)
    requests, targets = [], []
    for user in split.train[:n_users]:
        tasks = problem.tasks(int(user))
        for t in np.flatnonzero(problem.action_mask(int(user))):
            requests += problem.requests(tasks[:1], int(t))
            targets.append(tasks[0].target)
    return problem, requests, targets


def _answer(ranker: Any, requests: list[Any], order: np.ndarray, size: int) -> list[Any]:
    out: list[Any] = [None] * len(requests)
    for start in range(0, len(order), size):
        idx = order[start : start + size]
        for i, answer in zip(idx, ranker.rank([requests[i] for i in idx])):
            out[i] = answer
    return out


def _compare(targets: list[int], a: list[Any], b: list[Any]) -> dict[str, float]:
    from promptopt.metrics import ndcg_at_k

    diff = max(float(np.max(np.abs(np.subtract(x.scores, y.scores)))) for x, y in zip(a, b))
    rankings = sum(x.ranking != y.ranking for x, y in zip(a, b))
    ndcg = [abs(ndcg_at_k(x.ranking, t, 10) - ndcg_at_k(y.ranking, t, 10)) for x, y, t in zip(a, b, targets)]
    return {
        "max_score_diff": diff,
        "rankings_changed": rankings,
        "ndcg_changed": int(np.count_nonzero(ndcg)),
        "mean_abs_ndcg_diff": float(np.mean(ndcg)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from promptopt.llm.embedding_backend import EmbeddingRanker

    args = _parse(argv)
    problem, requests, targets = _requests(args.data, args.users)
    n = len(requests)
    rng = np.random.default_rng(0)
    compositions = {
        f"table (chunks of {args.chunk}, table order)": (np.arange(n), args.chunk),
        f"ppo (steps of {args.step}, shuffled)": (rng.permutation(n), args.step),
        "alone (one request per call)": (np.arange(n), 1),
    }
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {n} requests "
        f"({args.users} users x {problem.n_templates} templates, study sample)"
    )
    answers: dict[str, list[Any]] = {}
    for name, (order, size) in compositions.items():
        ranker = EmbeddingRanker(None, device="cpu", batch_size=64)  # a fresh model: nothing remembered
        started = time.process_time()
        answers[name] = _answer(ranker, requests, order, size)
        print(f"  {name:<40} {time.process_time() - started:7.1f} s CPU ({ranker.identity})")
    names = list(answers)
    print(
        f"{'composition A':<40} | {'composition B':<40} | max |score diff| | "
        "rankings changed | NDCG@10 changed"
    )
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            c = _compare(targets, answers[x], answers[y])
            print(
                f"{x:<40} | {y:<40} | {c['max_score_diff']:.2e}         | {c['rankings_changed']:>5} / {n} "
                f"    | {c['ndcg_changed']:>5} / {n} (mean |diff| {c['mean_abs_ndcg_diff']:.2e})"
            )
    base_threads = torch.get_num_threads()
    for threads in args.threads:
        torch.set_num_threads(threads)
        ranker = EmbeddingRanker(None, device="cpu", batch_size=64)
        order, size = compositions[names[0]]
        other = _answer(ranker, requests, order, size)
        c = _compare(targets, answers[names[0]], other)
        print(
            f"threads {base_threads} vs {threads} ({names[0]}): max |score diff| {c['max_score_diff']:.2e}, "
            f"rankings changed {c['rankings_changed']} / {n}, NDCG@10 changed {c['ndcg_changed']} / {n}"
        )
    torch.set_num_threads(base_threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
