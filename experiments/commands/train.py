"""``promptopt train CONFIG``: train the policy, then evaluate and export (one command per experiment).

Examples::

    promptopt train experiments/configs/quickstart.yaml
    promptopt train experiments/configs/ml100k_embedding.yaml --ppo.learning_rate=3e-4 --seed=1
    promptopt train --resume runs/quickstart-20250101-120000     # continue an interrupted run
"""

from __future__ import annotations

import argparse

from promptopt.experiments.shipped import config_arg

ACCEPTS_OVERRIDES = True
REQUIRES_EXTRAS = ("train",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", type=config_arg,
                        help="experiment YAML, or the name of a shipped config (quickstart, ...)")
    parser.add_argument("--output-dir", metavar="DIR",
                        help="run directory (default: runs/<config name>-<time>)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue an interrupted run from its last checkpoint and the cache")
    parser.add_argument("--no-eval", action="store_true",
                        help="train only (skip evaluation, report and export)")


def run(args: argparse.Namespace) -> int:
    from promptopt.experiments import pipeline
    from promptopt.experiments.report import print_summary

    run_dir = pipeline.train_from_cli(
        args.config, overrides=args.overrides, output_dir=args.output_dir, resume=args.resume
    )
    if not args.no_eval:
        metrics = pipeline.evaluate(run_dir)
        pipeline.export(run_dir)
        print_summary(run_dir, metrics)
    else:
        print(f"run directory: {run_dir}")
    return 0
