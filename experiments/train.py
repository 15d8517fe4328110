"""``python experiments/train.py CONFIG [--section.key=value ...]``: ``promptopt train``, as sweeps run it.

The ``program`` of the wandb sweep files: an agent runs it with each swept value as an override
(``--ppo.learning_rate=0.0003``), which the CLI reads as it reads any other.
"""
import sys

from promptopt.experiments.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
