"""``promptopt study CONFIG``: the multi-seed study on real data; writes docs/RESULTS.md and its plots.

Examples::

    promptopt study experiments/configs/study_ml100k.yaml
    promptopt study experiments/configs/study_ml100k.yaml --data.path=/path/to/ml-100k --study.seeds=[0]

``--study.key=value`` overrides the protocol (``study`` section), any other ``--section.key=value``
the experiment config.
"""

from __future__ import annotations

import argparse

from promptopt.experiments.shipped import config_arg

ACCEPTS_OVERRIDES = True
REQUIRES_EXTRAS = ("train",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=config_arg,
                        help="study YAML, or a shipped config name (study_ml100k)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from promptopt.experiments.study.config import load_study
    from promptopt.experiments.study.protocol import run_study

    config, study = load_study(args.config, getattr(args, "overrides", []))
    path = run_study(config, study)
    text = Path(path).read_text(encoding="utf-8")
    print("## Targets" + text.split("## Targets", 1)[-1].split("\n## ", 1)[0])
    print(f"report: {path}")
    return 0
