"""``promptopt sweep FILE --count N``: run a wandb sweep file locally and offline with optuna.

The same file runs online with ``wandb sweep FILE`` and ``wandb agent``. Each trial is a full
train -> evaluate -> export run in ``SWEEP_DIR/trial-NNN``; ``leaderboard.csv`` and
``leaderboard.md`` are rewritten after every trial. ``--storage`` (an RDB URL or a journal file)
lets workers on several machines share one study.
"""

from __future__ import annotations

import argparse

from promptopt.experiments.shipped import config_arg, sweep_arg

REQUIRES_EXTRAS = ("train",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", type=sweep_arg,
                        help="sweep YAML in wandb's format, or a shipped sweep name (ppo_bayes)")
    parser.add_argument("--count", type=int, default=10, help="number of trials (default 10)")
    parser.add_argument("--config", metavar="CONFIG", type=config_arg,
                        help="experiment YAML (default: the one named in the sweep's command)")
    parser.add_argument("--output-dir", metavar="DIR",
                        help="sweep directory (default: runs/sweep-<name>-<time>)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the search sampler (default 0; random with --storage, so that "
                             "workers differ)")
    parser.add_argument("--storage", metavar="URL_OR_FILE",
                        help="optuna storage shared by several workers: an RDB URL (sqlite:///sweep.db, "
                             "postgresql://...) or a journal file path; each worker runs --count trials")
    parser.add_argument("--study-name", metavar="NAME",
                        help="study in --storage to join or create (default: the sweep's name)")


def run(args: argparse.Namespace) -> int:
    from promptopt.experiments.local_sweep import sweep

    out = sweep(args.file, count=args.count, config_path=args.config, output_dir=args.output_dir,
                seed=args.seed, storage=args.storage, study_name=args.study_name)
    print((out / "leaderboard.md").read_text(encoding="utf-8"))
    print(f"sweep directory: {out}")
    return 0
