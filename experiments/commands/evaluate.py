"""``promptopt evaluate RUN_DIR``: every selector on held-out users; report.md, plots, the table."""

from __future__ import annotations

import argparse

REQUIRES_EXTRAS = ("train",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory made by `promptopt train`")


def run(args: argparse.Namespace) -> int:
    from promptopt.experiments import pipeline
    from promptopt.experiments.report import print_summary

    metrics = pipeline.evaluate(args.run_dir)
    print_summary(args.run_dir, metrics)
    return 0
