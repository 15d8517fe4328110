"""Train, evaluate and export one run: ``python experiments/train.py CONFIG [--section.key=value ...]``.

The same as ``promptopt train``; this is also the ``program`` of the wandb sweep files, which pass
each swept parameter as ``--ppo.learning_rate=0.0003``. Read it top to bottom: parse the command
line, resolve the config, then the three phases.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (as wandb agents do): import from the repository root, not from this folder
    # (whose evaluate.py / export.py would shadow libraries of the same name).
    sys.path[0] = str(Path(__file__).resolve().parent.parent)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """The script's options, and the ``--section.key=value`` config overrides."""
    from experiments.cli import split_overrides

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("config", nargs="?", help="experiment YAML (experiments/configs/)")
    parser.add_argument("--output-dir", help="run directory (default: runs/<config name>-<time>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    parser.add_argument("--no-eval", action="store_true", help="train only")
    args, extra = parser.parse_known_args(argv)
    overrides, rest = split_overrides(extra)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args, overrides


def main(argv: list[str] | None = None) -> int:
    from experiments import pipeline
    from experiments.report import print_summary
    from promptopt.errors import PromptoptError

    args, overrides = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        # ---- 1. config + training: LightGCN pretraining, PPO with checkpoints
        run_dir = pipeline.train_from_cli(args.config, overrides=overrides, output_dir=args.output_dir,
                                          resume=args.resume)
        if args.no_eval:
            print(f"run directory: {run_dir}")
            return 0
        # ---- 2. evaluation: every selector on held-out users, report.md, plots
        metrics = pipeline.evaluate(run_dir)
        # ---- 3. export: prompts.json, validated against its JSON Schema
        pipeline.export(run_dir)
    except PromptoptError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    print_summary(run_dir, metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
