"""The ``promptopt`` command line.

Every sub-command lives in :mod:`promptopt.experiments.commands`; heavy libraries are imported only when a
command runs. User errors (:class:`promptopt.errors.PromptoptError`, an :class:`OSError` such as a
full disk, bad arguments) print one line and exit with status 2, never a traceback: :func:`main`
is the one boundary that turns them into that line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from promptopt import __version__

# (name, module under promptopt.experiments.commands, one-line help)
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("train", "train", "train a prompt-selection policy (LightGCN+MLP PPO) and export prompts"),
    ("evaluate", "evaluate", "compare the policy with every baseline on held-out users"),
    ("export", "export", "write the prompt book (prompts.json) of a run"),
    ("sweep", "sweep", "run a wandb sweep file locally (offline) with optuna"),
    ("study", "study", "run the multi-seed study and write docs/RESULTS.md"),
    ("estimate", "estimate", "dry run: count the calls and prompt tokens a config would spend"),
    ("templates", "templates", "list, show and render prompt templates"),
    ("data", "data", "dataset statistics, synthetic data and downloads"),
    ("cache", "cache", "inspect, export or clear a ranker answer cache"),
    ("audit", "audit", "fairness audit of a run: counterfactual sensitive attributes and group gaps"),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own convention)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="promptopt",
        description="Learn which prompt to send a frozen LLM recommender, per user.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"promptopt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module_name, help_text in COMMANDS:
        try:
            module = importlib.import_module(f"promptopt.experiments.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"promptopt.experiments.commands.{module_name}":
                raise
            continue
        command = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        module.add_arguments(command)
        command.set_defaults(_run=module.run, _extras=getattr(module, "REQUIRES_EXTRAS", ()))
        if getattr(module, "ACCEPTS_OVERRIDES", False):
            command.epilog = (
                "Any config field can be overridden with --section.key=value, e.g. "
                "--ppo.learning_rate=3e-4 --reward.robust_weight=0.3 (the names wandb sweeps pass)."
            )
            command.set_defaults(_overrides_ok=True)
    return parser


def split_overrides(extra: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split unparsed arguments into config overrides and anything else.

    Overrides are ``--section.key=value`` or a top-level field (``--seed=3``); ``--section.key
    value`` (two tokens) is accepted too and normalised to the ``=`` form.
    """
    import dataclasses

    from promptopt.config import ExperimentConfig

    top_level = {f.name for f in dataclasses.fields(ExperimentConfig)}
    overrides: list[str] = []
    rest: list[str] = []
    items = list(extra)
    k = 0
    while k < len(items):
        item = items[k]
        name = item[2:].partition("=")[0] if item.startswith("--") else ""
        dotted = "." in name and all(part.isidentifier() for part in name.split("."))
        if dotted or name in top_level:
            if "=" not in item and k + 1 < len(items) and not items[k + 1].startswith("--"):
                overrides.append(f"{item}={items[k + 1]}")
                k += 2
                continue
            overrides.append(item if "=" in item else f"{item}=true")
        else:
            rest.append(item)
        k += 1
    return overrides, rest


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    overrides, rest = split_overrides(extra)
    if rest or (overrides and not getattr(args, "_overrides_ok", False)):
        parser.error(f"unrecognized arguments: {' '.join(rest or overrides)}")
    args.overrides = overrides
    # A wandb service address inherited from a parent process (a notebook or a test runner that
    # used wandb) points at a service this process does not own: wandb would fail to start.
    os.environ.pop("WANDB_SERVICE", None)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from promptopt.redact import RedactingFilter

    for handler in logging.getLogger().handlers:  # credentials inside URLs never reach a log line
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    from promptopt.errors import PromptoptError
    from promptopt.extras import require_extras

    lacking = require_extras(args._extras)
    if lacking:
        print(f"promptopt {args.command}: error: {lacking}", file=sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:
        # The reader went away (`promptopt templates list | head`): stop quietly, as Python's docs
        # recommend, instead of a traceback when the interpreter flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (PromptoptError, OSError) as exc:
        # The one boundary of user errors: bad input, a server or disk that failed, a budget reached.
        # A run under way saved its checkpoint before the error reached here (promptopt.experiments.training).
        print(f"promptopt {args.command}: error: {error_line(exc)}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # a library of an extra the install left out: name the extra
        from promptopt.extras import missing_extra_hint

        hint = missing_extra_hint(exc)
        if hint is None:
            raise
        print(f"promptopt {args.command}: error: {hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"promptopt {args.command}: interrupted", file=sys.stderr)
        return 130


MAX_ERROR_CHARS = 2000
"""Longest error line printed (a message quoting a huge value is cut, never multi-megabyte)."""


def error_line(exc: BaseException) -> str:
    """One line for a user error: the message with line breaks joined, URLs' credentials redacted.

    An :class:`OSError` names the file and, for a full disk or a directory given as a file, the fix.
    """
    import errno

    from promptopt.redact import redact_urls

    if isinstance(exc, OSError) and not str(exc).startswith("promptopt"):
        where = f" {exc.filename!r}" if exc.filename else ""
        text = f"{exc.strerror}{where}" if exc.strerror else str(exc) or type(exc).__name__
        hints = {
            errno.ENOSPC: "free disk space, then continue (a run: promptopt train --resume RUN_DIR; "
                          "cached answers are reused)",
            errno.EISDIR: "give a file path, not a directory",
            errno.EACCES: "check the permissions, or choose another path",
            errno.ENOENT: "check the path",
        }
        if exc.errno in hints:
            text = f"{text}: {hints[exc.errno]}"
    else:
        text = str(exc) or type(exc).__name__
    message = "; ".join(line.strip() for line in redact_urls(text).splitlines() if line.strip())
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 3] + "..."
    return message


if __name__ == "__main__":
    sys.exit(main())
