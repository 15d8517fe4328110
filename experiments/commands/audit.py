"""``promptopt audit fairness RUN``: counterfactual sensitive attributes and user-group gaps of a run.

Examples::

    promptopt audit fairness runs/quickstart-20250101-120000                 # writes RUN/fairness/
    promptopt audit fairness RUN --fairness.users=20 --fairness.max_values=3   # a cheaper audit
    promptopt audit fairness RUN --fairness.templates=all --dry-run          # count, send nothing
    promptopt audit fairness experiments/configs/fairness_ml100k_smollm2.yaml \\
        --output-dir runs/fairness_ml100k --report docs/FAIRNESS.md           # train, evaluate, export, audit

Given a config file instead of a run directory, the run is made first (train, evaluate, export into
``--output-dir``; an existing run there is continued, not redone) and then audited.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

ACCEPTS_OVERRIDES = True
REQUIRES_EXTRAS = ("train",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="audit_kind", metavar="KIND", parser_class=type(parser))
    sub.required = True
    fairness = sub.add_parser("fairness", help="counterfactual sensitive attributes (FaiRLLM's SNSR / SNSV) "
                              "and accuracy gaps between the dataset's user groups")
    fairness.add_argument("target", metavar="RUN_OR_CONFIG",
                          help="a run directory, or an experiment YAML to train, evaluate and export first")
    fairness.add_argument("--output-dir", metavar="DIR", help="with a config: the run directory (default: "
                          "runs/<config name>-<time>); an existing run there is continued")
    fairness.add_argument("--report", metavar="PATH", help="also write the report here (e.g. "
                          "docs/FAIRNESS.md), its plots and JSON into <parent>/<stem lowercased>/")
    fairness.add_argument("--dry-run", action="store_true", help="count the requests the audit would send")
    fairness.add_argument("--note", action="append", default=[], metavar="TEXT",
                          help="a line for the report's header (repeatable): what was limited, and why")


def run(args: argparse.Namespace) -> int:
    from promptopt.errors import ConfigError
    from promptopt.experiments.audit.fairness_run import audit_run

    target = Path(args.target)
    words = [args.target, *(["--output-dir", args.output_dir] if args.output_dir else []),
             *(["--report", args.report] if args.report else []),
             *(w for note in args.note for w in ("--note", note)), *args.overrides]
    command = "promptopt audit fairness " + " ".join(shlex.quote(str(w)) for w in words)
    overrides = args.overrides
    if target.is_file():
        if args.dry_run:
            raise ConfigError("--dry-run audits an existing run: give its directory (estimate a config's "
                              "training with `promptopt estimate CONFIG`)")
        target = _make_run(target, overrides, args.output_dir)
        overrides = []
    elif args.output_dir:
        raise ConfigError("--output-dir goes with a config file; a run directory is audited in place")
    elif not target.is_dir():
        raise ConfigError(f"{target} is neither a run directory nor a config file")
    result = audit_run(target, overrides, report=args.report, dry_run=args.dry_run, command=command,
                       notes=args.note)
    print(result.describe() if args.dry_run else f"fairness report: {result}")  # type: ignore[union-attr]
    return 0


def _make_run(config_path: Path, overrides: list[str], output_dir: str | None) -> Path:
    """Train, evaluate and export ``config_path`` into ``output_dir`` (continuing a run already there)."""
    from promptopt.config import load_config
    from promptopt.experiments import pipeline
    from promptopt.experiments.rundir import RunDir, check_resume_overrides

    run = RunDir(Path(output_dir)) if output_dir else None
    if run is None or not run.config.is_file():
        root = pipeline.train_from_cli(str(config_path), overrides=overrides, output_dir=output_dir)
        run = RunDir(Path(root))
    else:
        check_resume_overrides(load_config(run.config), load_config(config_path, overrides))
        if not run.agent("policy").is_file():
            pipeline.train_from_cli(None, resume=str(run.root))
    if "evaluation" not in run.read_metrics():
        pipeline.evaluate(run.root)
    if not run.prompts.is_file():
        pipeline.export(run.root)
    return run.root
