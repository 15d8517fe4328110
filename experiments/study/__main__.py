"""``python -m promptopt.experiments.study CONFIG [--report-from STUDY_JSON] [--section.key=value ...]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from promptopt.errors import ConfigError, PromptoptError
from promptopt.experiments.study.config import load_study


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the multi-seed study and write docs/RESULTS.md.")
    parser.add_argument("config", help="study YAML (experiments/configs/study_ml100k.yaml)")
    parser.add_argument(
        "--report-from", metavar="STUDY_JSON", help="only rewrite the report from a finished run's study.json"
    )
    args, overrides = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        path = _run(args.config, overrides, args.report_from)
    except PromptoptError as exc:  # bad input: one line, exit 2 (as `promptopt study`)
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"python -m promptopt.experiments.study: error: {message}", file=sys.stderr)
        return 2
    print(Path(path).read_text(encoding="utf-8").split("## Targets", 1)[-1].split("\n## ", 1)[0])
    print(f"report: {path}")
    return 0


def _run(config_path: str, overrides: Sequence[str], report_from: str | None) -> Path:
    config, study = load_study(config_path, overrides)
    if report_from is None:
        from promptopt.experiments.study.protocol import run_study

        return run_study(config, study)
    from promptopt.experiments.study.report import write_results

    try:
        run = json.loads(Path(report_from).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--report-from {report_from}: cannot read a study.json ({exc})") from None
    return write_results(run, study, append=False)


if __name__ == "__main__":
    raise SystemExit(main())
