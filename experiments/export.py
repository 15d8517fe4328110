"""``python experiments/export.py RUN_DIR [--output PATH]``: ``promptopt export``."""
import sys

from promptopt.experiments.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
