"""``promptopt audit fairness RUN``: the fairness audit of a run directory, its files and its wandb page.

The run's own config, problem, ranker (behind its cache and the run's budget ledger, phase
``audit``) and exported choices (``prompts.json``) are used, so the neutral prompts are exactly the
ones the evaluation sent and their answers come from the cache. Audited users are a seeded sample
of the evaluation split (``fairness.users``); the group gaps use every evaluation user, with each
selector of ``fairness.group_selectors`` re-scored through the cache. Writes::

    RUN_DIR/fairness/fairness.json    every number (promptopt.fairness.audit.FairnessAudit.to_json)
    RUN_DIR/fairness/fairness.md      the report
    RUN_DIR/fairness/plots/*.png      similarity by value per attribute, group gaps

plus a ``fairness`` section and ``fairness/...`` summary keys in ``metrics.json``, and the same keys
and plots on the run's wandb page when tracking is on. Only ``fairness.*``, ``budget.*``,
``tracking.*`` and ``eval.n_bootstrap`` / ``eval.confidence`` may be overridden: the rest defines the run.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.config import ExperimentConfig, load_config
from promptopt.errors import ConfigError
from promptopt.experiments.audit.markdown import fairness_markdown
from promptopt.experiments.audit.plots import write_audit_plots
from promptopt.experiments.rundir import RunDir, write_json
from promptopt.fairness.attributes import AttributeSet, load_attribute_set

logger = logging.getLogger(__name__)

AUDIT_OVERRIDES: tuple[str, ...] = (
    "fairness.", "budget.", "tracking.", "eval.n_bootstrap", "eval.confidence",
)
"""Config keys (or ``section.`` prefixes) an audit may override."""


def audit_config(run: RunDir, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The run's config with the audit's overrides (only :data:`AUDIT_OVERRIDES` may change).

    Raises:
        ConfigError: An override of another key, or a bad value.
    """
    for item in overrides:
        key = item.lstrip("-").partition("=")[0]
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in AUDIT_OVERRIDES):
            raise ConfigError(f"the audit cannot override {key}: it defines the run; an audit may change "
                              f"only {', '.join(AUDIT_OVERRIDES)} (audit another run for other settings)")
    return load_config(run.config, overrides)


def audited_users(config: ExperimentConfig, pool: np.ndarray) -> np.ndarray:
    """A seeded sample of ``fairness.users`` evaluation users (all when ``None`` or more), sorted."""
    users = np.asarray(pool, dtype=np.int64)
    n = config.fairness.users
    if n is None or n >= users.size:
        return np.sort(users)
    rng = np.random.default_rng([config.seed, 0xFA17])
    return np.sort(rng.choice(users, size=n, replace=False))


def audited_pairs(
    run: RunDir, config: ExperimentConfig, problem: Any, users: np.ndarray
) -> list[tuple[int, int]]:
    """``(user, template)`` pairs: each user's exported choice, or every template the user can fill.

    Raises:
        ConfigError: ``fairness.templates: chosen`` and the run has no prompt book, or the book does
            not list an audited user.
    """
    if config.fairness.templates == "all":
        return [(int(u), int(t)) for u in users for t in np.flatnonzero(problem.action_mask(int(u)))]
    from promptopt.export import PromptBook

    if not run.prompts.is_file():
        raise ConfigError(f"{run.prompts} does not exist: export the run's choices first (promptopt export "
                          f"{run.root}), or audit every template with --fairness.templates=all")
    book = PromptBook.load(run.prompts)
    pairs = []
    for user in users:
        raw = problem.data.user_ids[int(user)]
        if raw not in book.choices:
            raise ConfigError(f"{run.prompts} lists no choice for user {raw!r}: re-export with "
                              "--export.users=all, or use --fairness.templates=all")
        pairs.append((int(user), problem.catalog.index_of(book.choices[raw].template_id)))
    return pairs


def require_agents(run: RunDir, config: ExperimentConfig) -> None:
    """Refuse, before any model is loaded, a run that lacks an agent a group selector needs.

    Raises:
        ConfigError: ``fairness.group_selectors`` names a PPO selector whose agent file is missing.
    """
    from promptopt.selector_names import PPO_SELECTORS

    for name in config.fairness.group_selectors:
        if name not in PPO_SELECTORS:
            continue
        kind = "mlp" if name == "mlp_ppo" and config.policy.kind != "mlp" else "policy"
        path = run.agent(kind)
        if not path.is_file():
            raise ConfigError(f"{path} does not exist, so the group gaps cannot score {name!r}: train the "
                              f"run first (promptopt train --resume {run.root}), or leave {name} out of "
                              "--fairness.group_selectors")


def audited_attributes(config: ExperimentConfig) -> AttributeSet:
    """``fairness.attributes`` limited to ``fairness.only`` and ``fairness.max_values``."""
    f = config.fairness
    return load_attribute_set(f.attributes).only(f.only).limited(f.max_values)


@dataclass(frozen=True)
class AuditPlan:
    """What an audit will send (``--dry-run``)."""

    pairs: int
    copies_per_pair: int
    group_users: int
    group_selectors: tuple[str, ...]

    @property
    def requests(self) -> int:
        return self.pairs * (1 + self.copies_per_pair)

    def describe(self) -> str:
        return (f"{self.pairs} audited (user, template) pairs x (1 neutral + {self.copies_per_pair} "
                f"copies) = {self.requests:,} requests (at most that many new; cached answers cost nothing); "
                "group gaps: "
                f"{len(self.group_selectors)} selectors ({', '.join(self.group_selectors)}) re-scored on "
                f"{self.group_users} evaluation users through the cache")


def _evaluations(config: ExperimentConfig, problem: Any, ranker: Any, run: RunDir, users: np.ndarray) -> dict:
    from promptopt.evaluation import evaluate_selector
    from promptopt.experiments.selector_factory import SelectorFactory
    from promptopt.selectors import OracleSelector

    factory = SelectorFactory(config, problem, ranker, run)
    out = {}
    for name in config.fairness.group_selectors:
        logger.info("group gaps: scoring %s on %d %s users", name, users.size, config.eval.split)
        selector = (OracleSelector(problem, ranker, metric="reward") if name == "oracle" else factory(name))
        out[name] = evaluate_selector(selector, problem, ranker, users, n_bootstrap=config.eval.n_bootstrap,
                                      confidence=config.eval.confidence, seed=config.seed)
    return out


def summary_keys(audit: dict[str, Any]) -> dict[str, float]:
    """Flat ``fairness/...`` keys for metrics.json and wandb (all from the evaluation split's users)."""
    out: dict[str, float] = {"fairness/flagged": float(len(audit["flagged"])),
                             "fairness/requests": float(audit["spend"]["requests"])}
    for a in audit["counterfactual"]["all"]["attributes"]:
        for metric, d in a["dispersion"].items():
            out[f"fairness/{a['name']}/{metric}_snsr"] = d["snsr"]
            out[f"fairness/{a['name']}/{metric}_snsv"] = d["snsv"]
        out[f"fairness/{a['name']}/noise"] = a["dispersion"][a["flag_metric"]]["noise"]
    for gap in audit.get("group_gaps") or []:
        for name, row in gap["selectors"].items():
            if row["best_group"]:
                out[f"fairness/gap/{gap['attribute']}/{name}"] = row["gap"]["mean"]
    return out


def audit_run(
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    *,
    report: str | Path | None = None,
    dry_run: bool = False,
    command: str | None = None,
    notes: Sequence[str] = (),
) -> Path | AuditPlan:
    """Audit a run (see the module docstring); returns ``fairness.md`` (or the plan with ``dry_run``).

    Args:
        run_dir: A run directory (trained; evaluated and exported for the group gaps and the choices).
        overrides: ``--fairness.users=20`` ... (only :data:`AUDIT_OVERRIDES`).
        report: Also write the report here, its plots and JSON into ``<parent>/<stem lowercased>/``.
        dry_run: Count what would be sent and return the plan; nothing is sent.
        command: The command line named in the report.
        notes: Extra lines for the report's header (what was limited, and why).

    Raises:
        ConfigError: A missing run, prompt book or attribute set, a bad override.
        BudgetExceeded: The run's budget ran out; every answer received is cached (re-run to go on).
    """
    from promptopt.experiments.assembly import build_problem, make_run_ranker
    from promptopt.experiments.pipeline import run_logging, tracker_for

    run = RunDir(Path(run_dir)).require()
    config = audit_config(run, overrides)
    attributes = audited_attributes(config)
    require_agents(run, config)
    with run.locked(), run_logging(run.log):
        started = time.perf_counter()
        data, _split, _catalog, problem = build_problem(config)
        pool = problem.pool(config.eval.split)
        users = audited_users(config, pool)
        pairs = audited_pairs(run, config, problem, users)
        plan = AuditPlan(len(pairs), attributes.n_values, int(pool.size), config.fairness.group_selectors)
        logger.info("fairness audit of %s: %s", run.root, plan.describe())
        if dry_run:
            return plan
        ranker = make_run_ranker(config, problem, run=run, phase="audit")
        try:
            evaluations = _evaluations(config, problem, ranker, run, pool)
            audit = _audit(config, problem, ranker, pairs, attributes, evaluations)
        finally:
            close = getattr(ranker, "close", None)
            if callable(close):
                close()
        result = audit.to_json()
        seconds = time.perf_counter() - started
        folder = run.root / "fairness"
        write_json(folder / "fairness.json", result)
        plots = write_audit_plots(result, folder / "plots")
        meta = {"title": f"Fairness audit of {run.root.name}",
                "command": command or f"promptopt audit fairness {run.root}", "ranker": _ranker_line(run),
                "data": data.describe(),
                "split": config.eval.split, "seconds": seconds, "notes": list(notes),
                "pairs_from": _pairs_from(config, users.size, pool.size)}
        path = folder / "fairness.md"
        path.write_text(fairness_markdown(result, meta, {k: f"plots/{p.name}" for k, p in plots.items()}),
                        encoding="utf-8")
        if report is not None:
            _copy_report(Path(report), result, meta, plots)
        keys = summary_keys(result)
        run.update_metrics("fairness", {"flagged": result["flagged"], "spend": result["spend"],
                                        "seconds": seconds, "files": "fairness/"}, summary=keys)
        tracker = tracker_for(run, config, "audit")
        try:
            tracker.summary(keys)
            tracker.images(list(plots.values()))
            tracker.artifact(folder / "fairness.json", f"{run.root.name}-fairness", "fairness-audit")
        finally:
            tracker.finish()
        logger.info("fairness audit: %s; flagged: %s", path, ", ".join(result["flagged"]) or "none")
    return path


def _audit(config: ExperimentConfig, problem: Any, ranker: Any, pairs: list[tuple[int, int]],
           attributes: AttributeSet, evaluations: dict) -> Any:
    from tqdm.auto import tqdm

    from promptopt.fairness.audit import fairness_audit

    bar = tqdm(total=0, desc="fairness audit", unit="request", disable=None, leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        return fairness_audit(problem, ranker, pairs, attributes, config.fairness, evaluations=evaluations,
                              n_bootstrap=config.eval.n_bootstrap, confidence=config.eval.confidence,
                              seed=config.seed, progress=progress)
    finally:
        bar.close()


def _ranker_line(run: RunDir) -> str:
    identity = run.read_metrics().get("ranker") or {}
    parts = [str(identity.get("backend", "?"))]
    for key in ("model", "mode", "hf_mode"):
        if identity.get(key):
            parts.append(f"{key} {identity[key]}")
    return ", ".join(parts)


def _pairs_from(config: ExperimentConfig, n_users: int, n_pool: int) -> str:
    which = ("each user's exported template (prompts.json)" if config.fairness.templates == "chosen"
             else "every template each user can fill")
    return f"{n_users} of the {n_pool} {config.eval.split} users (seeded sample), {which}"


def _copy_report(report: Path, result: dict[str, Any], meta: dict[str, Any], plots: dict[str, Path]) -> None:
    folder = report.parent / report.stem.lower()
    folder.mkdir(parents=True, exist_ok=True)
    links = {}
    for name, source in plots.items():
        shutil.copyfile(source, folder / source.name)
        links[name] = f"{folder.name}/{source.name}"
    write_json(folder / "fairness.json", result)
    report.write_text(fairness_markdown(result, meta, links), encoding="utf-8")
