"""``python -m promptopt.experiments.tiny_llm CONFIG [--report-from RESULTS_JSON] [--section.key=value
...]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from promptopt.errors import ConfigError, PromptoptError
from promptopt.experiments.tiny_llm.config import load_tiny_llm


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Measure SmolLM2 (score, generate, grounding, position bias) beside reference rankers "
                    "on test users and write docs/RESULTS_smollm2.md."
    )
    parser.add_argument("config", help="YAML (experiments/configs/tiny_llm_ml100k.yaml)")
    parser.add_argument("--report-from", metavar="RESULTS_JSON",
                        help="only rewrite the report from a finished run's results.json")
    args, overrides = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        config, protocol = load_tiny_llm(args.config, overrides)
        if args.report_from is None:
            from promptopt.experiments.tiny_llm.protocol import run_protocol

            path = run_protocol(config, protocol)
        else:
            from promptopt.experiments.tiny_llm.markdown import write_report

            try:
                result = json.loads(Path(args.report_from).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigError(
                    f"--report-from {args.report_from}: cannot read a results.json ({exc})"
                ) from None
            path = write_report(result, Path(protocol.output))
    except PromptoptError as exc:  # bad input: one line, exit 2
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"python -m promptopt.experiments.tiny_llm: error: {message}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
