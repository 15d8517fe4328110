"""``promptopt cache``: inspect, export or clear a ranker answer cache (a SQLite file).

* ``promptopt cache stats PATH [--json]``: entries, size, tokens, money, time span, entries per ranker
* ``promptopt cache export PATH [-o OUT.jsonl]``: every prompt and answer as JSON Lines (for audits)
* ``promptopt cache clear PATH --yes``: delete every stored answer (they cost money: ``--yes`` is required)

A missing or foreign file is a one-line error (exit 2); no command creates a file that was not there.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cache_command", metavar="ACTION", parser_class=type(parser))
    sub.required = True
    stats = sub.add_parser("stats", help="what the cache holds: entries, tokens, money, rankers")
    stats.add_argument("path", metavar="PATH", help="the cache's SQLite file (cache.path of the config)")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    export = sub.add_parser("export", help="every prompt and answer as JSON Lines")
    export.add_argument("path", metavar="PATH", help="the cache's SQLite file")
    export.add_argument("-o", "--output", default=None, metavar="OUT",
                        help="file to write (default: standard output)")
    clear = sub.add_parser("clear", help="delete every stored answer")
    clear.add_argument("path", metavar="PATH", help="the cache's SQLite file")
    clear.add_argument("--yes", action="store_true", help="confirm: the answers cannot be recovered")


def run(args: argparse.Namespace) -> int:
    from promptopt.llm.cache import CacheStore

    store = CacheStore(args.path, create=False)
    try:
        if args.cache_command == "stats":
            return _stats(store, as_json=args.json)
        if args.cache_command == "export":
            return _export(store, args.output)
        return _clear(store, confirmed=args.yes)
    finally:
        store.close()


def _stats(store, *, as_json: bool) -> int:
    summary = store.summary()
    rankers = [{"identity": json.loads(identity), "entries": n} for identity, n in summary.by_identity]
    if as_json:
        payload = {
            "path": summary.path, "entries": summary.entries, "size_bytes": summary.size_bytes,
            "prompt_tokens": summary.prompt_tokens, "completion_tokens": summary.completion_tokens,
            "cost": summary.cost, "first_created": summary.first_created,
            "last_created": summary.last_created, "rankers": rankers,
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return 0

    def when(t: float | None) -> str:
        return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

    rows = [
        ("path", summary.path),
        ("entries", str(summary.entries)),
        ("size", f"{summary.size_bytes / 1e6:.2f} MB"),
        ("prompt_tokens", str(summary.prompt_tokens)),
        ("completion_tokens", str(summary.completion_tokens)),
        ("cost", f"{summary.cost:.4f}"),
        ("first", when(summary.first_created)),
        ("last", when(summary.last_created)),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    if rankers:
        lines += ["", "entries  ranker"]
        for ranker in rankers:
            identity = ranker["identity"]
            label = " ".join(f"{k}={identity[k]}" for k in sorted(identity) if k != "backend")
            lines.append(f"{ranker['entries']:>7}  {identity.get('backend', '?')}: {label}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _export(store, output: str | None) -> int:
    from promptopt.llm.cache import CacheError

    if output is None:
        count = store.export_jsonl(sys.stdout)
    else:
        try:
            with open(output, "w", encoding="utf-8") as fh:
                count = store.export_jsonl(fh)
        except OSError as exc:
            raise CacheError(f"cannot write {output!r}: {exc.strerror or exc}") from None
    logger.info("exported %d answers from %s", count, store.path)
    return 0


def _clear(store, *, confirmed: bool) -> int:
    from promptopt.llm.cache import CacheError

    if not confirmed:
        raise CacheError(
            f"refusing to delete the {len(store)} answers in {str(store.path)!r} without --yes "
            "(they cost calls to recompute)"
        )
    deleted = store.clear()
    logger.info("deleted %d answers from %s", deleted, store.path)
    return 0
