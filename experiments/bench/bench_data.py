"""Benchmark the data spine on MovieLens-100K: load, stats, split, and every user's tasks.

One table, one row per step, each the median of ``--repeats`` runs in this process:

* ``raw read``: the floor — read ``u.data`` / ``u.item`` bytes and split them into fields, no
  validation, no index mapping. Every other row's ``x raw`` column is its time over this one.
* ``load``: ``load_dataset("movielens-100k")`` (decode, validate with line numbers, map ids,
  de-duplicate pairs, sort).
* ``stats``: ``dataset_stats`` with the drift time cut at ``--drift-quantile``.
* ``split``: ``split_users`` (stratified, seeded).
* ``tasks+candidates``: a ``TaskBuilder`` task (history context + 19 negatives, shuffled) for each
  of ``--n-targets`` targets of every user.
* ``training mask``: ``training_mask`` of the training users with the time cut.

Usage::

    python experiments/bench/bench_data.py [PATH] [--repeats 5] [--n-targets 3]

``PATH`` defaults to ``$PROMPTOPT_ML100K`` or ``../shared/data/ml-100k`` next to the repository;
nothing is downloaded (``promptopt data fetch movielens-100k DEST`` does that, when asked).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ML100K = REPO / ".." / "shared" / "data" / "ml-100k"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", type=Path,
                        default=Path(os.environ.get("PROMPTOPT_ML100K", DEFAULT_ML100K)),
                        help="MovieLens-100K folder (u.data, u.item, u.genre, u.user)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per step (median reported)")
    parser.add_argument("--n-targets", type=int, default=3, help="targets per user")
    parser.add_argument("--n-negatives", type=int, default=19, help="negatives per task")
    parser.add_argument("--drift-quantile", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _median(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _raw_read(folder: Path) -> int:
    rows = 0
    for name, sep, encoding in (("u.data", "\t", "latin-1"), ("u.item", "|", "latin-1")):
        for line in (folder / name).read_bytes().decode(encoding).split("\n"):
            if line:
                line.split(sep)
                rows += 1
    return rows


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from promptopt.candidates import CandidateSampler
    from promptopt.data import load_dataset
    from promptopt.data.stats import dataset_stats
    from promptopt.errors import PromptoptError
    from promptopt.splits import TaskBuilder, split_users, time_cut_at_quantile, training_mask

    if not (args.path / "u.data").is_file():
        print(f"bench_data: MovieLens-100K not found at {args.path} (pass its folder as PATH, or run "
              "`promptopt data fetch movielens-100k DEST`)", file=sys.stderr)
        return 2
    try:
        rows: list[tuple[str, float, int, str]] = []
        raw_s, n_raw = _median(lambda: _raw_read(args.path), args.repeats)
        rows.append(("raw read (floor)", raw_s, n_raw, "lines"))
        load_s, data = _median(lambda: load_dataset("movielens-100k", args.path), args.repeats)
        rows.append(("load", load_s, data.n_interactions, "interactions"))
        cut = time_cut_at_quantile(data, args.drift_quantile)
        stats_s, _ = _median(lambda: dataset_stats(data, time_cut=cut), args.repeats)
        rows.append(("stats (with drift cut)", stats_s, data.n_interactions, "interactions"))
        split_s, split = _median(lambda: split_users(data, seed=args.seed), args.repeats)
        rows.append(("split", split_s, data.n_users, "users"))
        sampler = CandidateSampler(data.n_items, n_negatives=args.n_negatives)
        every_user = [u for u in range(data.n_users) if data.history_length(u) >= 2]

        def build() -> list:
            builder = TaskBuilder(data, sampler, seed=args.seed, time_cut=cut)
            return builder.tasks(every_user, n_targets=args.n_targets)

        tasks_s, tasks = _median(build, args.repeats)
        rows.append(("tasks+candidates (all users)", tasks_s, len(tasks), "tasks"))
        mask_s, _ = _median(
            lambda: training_mask(data, split.train, n_targets=args.n_targets, time_cut=cut), args.repeats
        )
        rows.append(("training mask", mask_s, len(split.train), "users"))
    except PromptoptError as exc:
        print(f"bench_data: error: {exc}", file=sys.stderr)
        return 2

    print(f"MovieLens-100K at {args.path.resolve()}: {data.describe()}; median of {args.repeats} runs")
    header = f"{'step':<30} {'seconds':>9} {'x raw':>7} {'count':>9}  {'per second':>22}"
    print(header)
    print("-" * len(header))
    for name, seconds, count, unit in rows:
        rate = f"{count / seconds:,.0f} {unit}/s" if seconds > 0 else "-"
        print(f"{name:<30} {seconds:>9.4f} {seconds / raw_s:>7.1f} {count:>9,}  {rate:>22}")
    total = load_s + split_s + tasks_s
    print(f"load + split + every user's tasks: {total:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
