"""Export a run's prompt book: ``python experiments/export.py RUN_DIR [--output PATH]``.

The same as ``promptopt export``: the trained policy's template for every user, with its action
probabilities and filled prompt, validated against ``promptopt/export/prompt_book.schema.json``.
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
    from promptopt.errors import PromptoptError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run directory made by experiments/train.py")
    parser.add_argument("--output", help="where to write (default: RUN_DIR/prompts.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        path = pipeline.export(args.run_dir, output=args.output)
    except PromptoptError as exc:
        print(f"export.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"prompt book: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
