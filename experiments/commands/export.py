"""``promptopt export RUN_DIR``: write and validate the run's prompt book (prompts.json).

``promptopt export --check FILE`` validates any prompt book against the shipped JSON Schema.
"""

from __future__ import annotations

import argparse

REQUIRES_EXTRAS = ("train",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", nargs="?",
                        help="a run directory made by `promptopt train`")
    parser.add_argument("--output", metavar="PATH", help="where to write (default: RUN_DIR/prompts.json)")
    parser.add_argument("--check", metavar="FILE", help="only validate an existing prompt book")


def run(args: argparse.Namespace) -> int:
    from promptopt.errors import ConfigError

    if args.check:
        from promptopt.export import PromptBook

        book = PromptBook.load(args.check)
        print(f"{args.check}: valid prompt book (schema {book.schema_version}, {len(book)} users, "
              f"{len(book.template_ids)} templates, default {book.default_template})")
        return 0
    if not args.run_dir:
        raise ConfigError("give a run directory (promptopt export RUN_DIR) or --check FILE")
    from promptopt.experiments import pipeline

    path = pipeline.export(args.run_dir, output=args.output)
    print(f"prompt book: {path}")
    return 0
