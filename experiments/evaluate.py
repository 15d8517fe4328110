"""Evaluate a trained run: ``python experiments/evaluate.py RUN_DIR`` (the same as ``promptopt evaluate``).

Every selector (random, best fixed, epsilon-greedy, LinUCB, MLP-only PPO, LightGCN+MLP PPO, oracle)
on the held-out users' identical tasks; writes metrics.json, report.md and plots, prints the table.
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


def main(argv: list[str] | None = None) -> int:
    from experiments import pipeline
    from experiments.report import print_summary
    from promptopt.errors import PromptoptError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run directory made by experiments/train.py")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        metrics = pipeline.evaluate(args.run_dir)
    except PromptoptError as exc:
        print(f"evaluate.py: error: {exc}", file=sys.stderr)
        return 2
    print_summary(args.run_dir, metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
