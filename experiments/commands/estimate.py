"""``promptopt estimate CONFIG``: dry run — requests and prompt tokens a config would spend, no call made."""

from __future__ import annotations

import argparse

from promptopt.experiments.shipped import config_arg

ACCEPTS_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=config_arg,
                        help="experiment YAML, or the name of a shipped config (quickstart)")
    parser.add_argument("--sample", type=int, default=200, metavar="N",
                        help="requests rendered per phase to measure prompt length (default 200)")


def run(args: argparse.Namespace) -> int:
    from promptopt.config import load_config
    from promptopt.experiments.estimate_cost import estimate, format_estimate

    config = load_config(args.config, args.overrides)
    print(format_estimate(estimate(config, sample=args.sample), config.budget))
    return 0
