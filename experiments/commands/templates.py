"""``promptopt templates``: list, show and render prompt templates.

* ``promptopt templates list [--catalog NAME_OR_PATH] [--include GLOB ...] [--max-history N] [--json]``
* ``promptopt templates show ID [--catalog ...]``
* ``promptopt templates render ID --user RAW_ID [--config CONFIG] [--period source|target] [--json]``
* ``promptopt templates fields``

``show`` and ``render`` look ``ID`` up in the whole catalog file (every slot combination), not only
the default subset; an unknown id suggests the closest ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from promptopt.experiments.shipped import config_arg

ACCEPTS_OVERRIDES = True

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="templates_command", metavar="ACTION", parser_class=type(parser))
    sub.required = True

    def catalog_options(p: argparse.ArgumentParser, *, default_note: str) -> None:
        p.add_argument("--catalog", default=None, metavar="NAME_OR_PATH",
                       help="built-in catalog (movies, music) or a catalog YAML "
                            "(default: templates.catalog of --config, else movies)")
        p.add_argument("--include", action="append", default=None, metavar="GLOB",
                       help=f"keep templates whose id matches (repeatable; {default_note})")
        p.add_argument("--max-history", type=int, default=None, metavar="N",
                       help="cap on listed history items (default: templates.max_history, 50)")
        p.add_argument("--config", default=None, metavar="CONFIG", type=config_arg,
                       help="experiment YAML or shipped config name")

    listing = sub.add_parser("list", help="the templates of a catalog with their requirements")
    catalog_options(listing, default_note="default: the catalog's default subset")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")

    show = sub.add_parser("show", help="one template's text, settings and requirements")
    show.add_argument("id", help="template id, e.g. expert.recent10.none.index")
    catalog_options(show, default_note="default: every template of the file")

    render = sub.add_parser("render", help="fill a template for a user's latest ranking task")
    render.add_argument("id", help="template id")
    render.add_argument("--user", required=True, metavar="RAW_ID", help="the dataset's own user id")
    render.add_argument("--period", choices=("source", "target"), default=None,
                        help="render the user's last task of this drift period (default: final task)")
    render.add_argument("--json", action="store_true", help="print the ranker request as JSON")
    catalog_options(render, default_note="default: every template of the file")

    sub.add_parser("fields", help="the fields templates may use")


def run(args: argparse.Namespace) -> int:
    action = {"list": _list, "show": _show, "render": _render, "fields": _fields}[args.templates_command]
    return action(args)


# ---------------------------------------------------------------------- actions
def _list(args: argparse.Namespace) -> int:
    config = _config(args)
    catalog = _catalog(args, config, whole_file=False)
    if args.json:
        rows = [{**t.to_dict(), **_needs(t)} for t in catalog]
        print(json.dumps({"name": catalog.name, "source": catalog.source, "templates": rows},
                         indent=2, ensure_ascii=False))
        return 0
    width = max(len(t.id) for t in catalog)
    print(f"{catalog.name}: {len(catalog)} templates (from {catalog.source})")
    print(f"{'#':>3}  {'id':<{width}}  {'output':<6}  {'min_hist':>8}  needs")
    for k, t in enumerate(catalog):
        needs = ", ".join(n for n in ("attributes", "ratings", "hints") if _needs(t)[f"needs_{n}"]) or "-"
        print(f"{k:>3}  {t.id:<{width}}  {t.output_format:<6}  {t.min_history:>8}  {needs}")
    return 0


def _show(args: argparse.Namespace) -> int:
    config = _config(args)
    catalog = _catalog(args, config, whole_file=True)
    t = catalog[catalog.index_of(args.id)]
    print(f"id:            {t.id}")
    print(f"name:          {t.name}")
    if t.slots:
        print("slots:         " + ", ".join(f"{k}={v}" for k, v in t.slots.items()))
    print(f"output:        {t.output_format} (candidates numbered from {t.index_base})")
    print(f"needs:         {_describe_needs(t)}")
    print("text:")
    for line in t.text.split("\n"):
        print(f"  | {line}")
    return 0


def _render(args: argparse.Namespace) -> int:
    from promptopt.data import load_data
    from promptopt.errors import PromptoptError
    from promptopt.problem import RecProblem
    from promptopt.splits import split_for
    from promptopt.templates import TemplateCatalog

    config = _config(args)
    catalog = _catalog(args, config, whole_file=True)
    template = catalog[catalog.index_of(args.id)]
    data = load_data(config.data)
    try:
        user = data.user_ids.index(args.user)
    except ValueError:
        sample = ", ".join(repr(u) for u in data.user_ids[:5])
        raise PromptoptError(
            f"unknown user {args.user!r} in {data.name} ({data.n_users} users, ids like {sample})"
        ) from None
    if data.history_length(user) < 2:
        raise PromptoptError(
            f"user {args.user!r} has {data.history_length(user)} interaction(s); a ranking task needs >= 2"
        )
    s = config.split
    split = split_for(data, s, seed=config.seed)
    problem = RecProblem.build(data, split, TemplateCatalog([template], name=catalog.name),
                               config.reward, config.split, seed=config.seed,
                               fit_hints=template.uses_hints)
    tasks = problem.tasks(user, period=args.period, final=args.period is None)
    if not tasks:
        raise PromptoptError(f"user {args.user!r} has no task in the {args.period} period")
    task = tasks[0]
    reasons = template.missing(task.context, problem.hints if problem.hints is not None else False)
    if reasons:
        logger.warning("user %s cannot fill %s properly: %s", args.user, template.id, "; ".join(reasons))
    request = template.request(task, data, problem.hints)
    if args.json:
        print(json.dumps(request.to_json(), indent=2, ensure_ascii=False))
    else:
        print(request.prompt)
        print(f"\n[task {task.task_id}, period {task.period}, target shown at position "
              f"{task.target_position + template.index_base}]", file=sys.stderr)
    return 0


def _fields(args: argparse.Namespace) -> int:
    from promptopt.templates import FIELDS

    width = max(len(spec.usage) for spec in FIELDS.values())
    for spec in FIELDS.values():
        print(f"{spec.usage:<{width}}  {spec.summary}")
    return 0


# ---------------------------------------------------------------------- helpers
def _config(args: argparse.Namespace) -> Any:
    from promptopt.config import apply_overrides, config_from_dict, load_config

    overrides = getattr(args, "overrides", [])
    if args.config:
        return load_config(args.config, overrides)
    return config_from_dict(apply_overrides({}, overrides), source="command line")


def _catalog(args: argparse.Namespace, config: Any, *, whole_file: bool) -> Any:
    from promptopt.templates import TemplateCatalog

    name = args.catalog or config.templates.catalog
    include = args.include or (("*",) if whole_file else config.templates.include)
    max_history = args.max_history if args.max_history is not None else config.templates.max_history
    return TemplateCatalog.load(name, include=include, max_history=max_history)


def _needs(t: Any) -> dict[str, Any]:
    return {"min_history": t.min_history, "needs_attributes": t.needs_attributes,
            "needs_ratings": t.needs_ratings, "needs_hints": t.uses_hints}


def _describe_needs(t: Any) -> str:
    parts = [f"{t.min_history} history items"]
    if t.min_liked:
        parts.append(f"{t.min_liked} liked item(s)")
    if t.needs_ratings:
        parts.append("ratings")
    if t.needs_attributes:
        parts.append("user attributes")
    if t.hint_kinds:
        parts.append("collaborative hints (" + ", ".join(sorted(t.hint_kinds)) + ")")
    return ", ".join(parts)
