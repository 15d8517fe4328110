"""``promptopt data``: dataset statistics, synthetic data in the generic layout, downloads.

* ``promptopt data stats PATH --format NAME [--drift-quantile Q] [--json]``
* ``promptopt data synth DEST [--n-users N --n-items N --n-genres N --mean-history N --drift P --seed S
  --start-days D]``
* ``promptopt data fetch NAME DEST [--url URL --sha256 HEX --timeout S --force]``
"""

from __future__ import annotations

import argparse
import json
import sys

_FORMATS = ("synthetic", "movielens-100k", "movielens-1m", "movielens-latest", "lastfm", "generic")
_FETCHABLE = ("movielens-100k", "movielens-1m", "movielens-latest-small")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(parser))
    sub.required = True

    stats = sub.add_parser("stats", help="users, items, interactions, time span, history lengths, drift")
    stats.add_argument("path", nargs="?", help="dataset folder (not needed for --format synthetic)")
    stats.add_argument("--format", required=True, choices=_FORMATS, help="layout of the files")
    stats.add_argument("--drift-quantile", type=float, default=0.8, metavar="Q",
                       help="time cut at this quantile of timestamps: source before, target after "
                            "(default 0.8, as split.drift_quantile; 0 = no drift statistics)")
    stats.add_argument("--title-column", default="title", help="generic layout: title column of items")
    stats.add_argument("--genres-column", default="genres",
                       help="generic layout: genres column of items ('' = none)")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")

    synth = sub.add_parser("synth", help="write a seeded synthetic dataset in the generic layout")
    synth.add_argument("dest", help="folder to write interactions.csv, items.csv, users.csv into")
    synth.add_argument("--n-users", type=int, default=300)
    synth.add_argument("--n-items", type=int, default=400)
    synth.add_argument("--n-genres", type=int, default=12)
    synth.add_argument("--mean-history", type=int, default=40)
    synth.add_argument("--drift", type=float, default=0.5, help="share of users whose taste changes")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--start-days", type=int, default=3 * 365,
                       help="users start within this many days (shorter: more users span a late time cut)")
    synth.add_argument("--parquet", action="store_true", help="write .parquet files instead of CSV")

    fetch = sub.add_parser("fetch", help="download an official MovieLens archive, verify, unpack")
    fetch.add_argument("name", choices=_FETCHABLE)
    fetch.add_argument("dest", help="folder to unpack into")
    fetch.add_argument("--url", help="a mirror of the same archive")
    fetch.add_argument("--sha256", help="expected SHA-256 (replaces the pinned value)")
    fetch.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the server")
    fetch.add_argument("--force", action="store_true", help="download even if already unpacked")


def run(args: argparse.Namespace) -> int:
    return {"stats": _stats, "synth": _synth, "fetch": _fetch}[args.data_command](args)


def _stats(args: argparse.Namespace) -> int:
    from promptopt.config import DataConfig
    from promptopt.data import load_data
    from promptopt.data.stats import dataset_stats, format_stats
    from promptopt.errors import ConfigError
    from promptopt.splits import time_cut_at_quantile

    if args.format != "synthetic" and not args.path:
        raise ConfigError(f"data stats --format {args.format} needs the dataset folder PATH")
    if not 0.0 <= args.drift_quantile < 1.0:
        raise ConfigError(f"--drift-quantile must be in [0, 1), got {args.drift_quantile}")
    config = DataConfig(
        format=args.format, path=args.path, title_column=args.title_column,
        genres_column=args.genres_column or None,
    )
    data = load_data(config)
    cut = time_cut_at_quantile(data, args.drift_quantile) if args.drift_quantile > 0 else None
    stats = dataset_stats(data, time_cut=cut)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(format_stats(stats))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from promptopt.data import make_synthetic
    from promptopt.data.generic import save_generic
    from promptopt.errors import ConfigError

    try:
        data = make_synthetic(
            n_users=args.n_users, n_items=args.n_items, n_genres=args.n_genres,
            mean_history=args.mean_history, drift=args.drift, seed=args.seed,
            start_days=args.start_days,
        )
    except ValueError as exc:
        raise ConfigError(f"data synth: {exc}") from None
    written = save_generic(data, args.dest, fmt="parquet" if args.parquet else "csv")
    print(f"{data.describe()} -> {', '.join(str(p) for p in written)}")
    print(f"read it with: promptopt data stats {args.dest} --format generic", file=sys.stderr)
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from promptopt.data.fetch import ARCHIVES, fetch_dataset

    folder = fetch_dataset(args.name, args.dest, url=args.url, sha256=args.sha256,
                           timeout=args.timeout, force=args.force)
    print(f"{folder} (load it with --format {ARCHIVES[args.name].format})")
    return 0
