"""``python experiments/evaluate.py RUN_DIR``: ``promptopt evaluate RUN_DIR``."""
import sys

from promptopt.experiments.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
