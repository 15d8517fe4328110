"""The experiment pipeline as plain functions: build the problem, train, evaluate, export.

The CLI (``promptopt train | evaluate | export``) and the scripts ``experiments/train.py``,
``evaluate.py`` and ``export.py`` are thin wrappers over these functions::

    config = load_config("experiments/configs/quickstart.yaml", ["--ppo.learning_rate=3e-4"])
    run_dir = train(config, "runs/my-run")        # LightGCN pretraining + PPO, checkpoints
    evaluate(run_dir)                              # every selector on held-out users
    export(run_dir)                                # prompts.json, validated

Every phase reads the run's resolved ``config.yaml``, so a run directory is self-contained.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptopt.config import ExperimentConfig, config_to_dict, load_config
from promptopt.errors import ConfigError
from promptopt.experiments import safe_run
from promptopt.experiments.assembly import (
    agent_config,
    agent_kinds,
    build_problem,
    default_order,
    make_env,
    make_run_ranker,
    needs_default,
)
from promptopt.experiments.evaluate_run import run_protocol, summary_keys
from promptopt.experiments.export_run import build_book, check_no_secrets
from promptopt.experiments.latex import write_results_table
from promptopt.experiments.plots import write_run_plots
from promptopt.experiments.preflight import check_ranker, check_tracking
from promptopt.experiments.reference_rows import reference_rows
from promptopt.experiments.report import write_report
from promptopt.experiments.rundir import RunDir, default_run_dir
from promptopt.experiments.selector_factory import SelectorFactory
from promptopt.experiments.tracking import Tracker, start_tracking
from promptopt.experiments.training import train_agent
from promptopt.policies.agent import make_agent
from promptopt.policies.graph import build_graph
from promptopt.policies.lightgcn import LightGCNEmbeddings, pretrain_from_config
from promptopt.progress import progress_bar
from promptopt.selector_names import BANDIT_SELECTORS

if TYPE_CHECKING:
    from promptopt.data.interactions import InteractionData
    from promptopt.llm.types import Ranker
    from promptopt.problem import RecProblem

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def run_logging(path: Path) -> Iterator[None]:
    """Also write log lines to the run's ``train.log`` while the block runs."""
    from promptopt.redact import RedactingFilter

    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def tracker_for(run: RunDir, config: ExperimentConfig, phase: str) -> Tracker:
    """The run's wandb run (the same id for train, evaluate and export, so they share one page)."""
    id_file = run.wandb / "run_id"
    tracker = start_tracking(config.tracking, run_dir=run.root, run_name=run.root.name,
                             run_config=config_to_dict(config), api_key_env=config.ranker.api_key_env,
                             run_id=id_file.read_text().strip() if id_file.is_file() else None)
    if tracker.active and not id_file.is_file():
        id_file.write_text(tracker.run.id)
    logger.debug("tracking %s: %s", phase, "on" if tracker.active else "off")
    return tracker


# ---------------------------------------------------------------------- phases
def train(config: ExperimentConfig, output_dir: str | Path, *, resume: bool = False) -> Path:
    """Pretrain LightGCN and train the PPO agent(s) into ``output_dir``.

    Writes ``config.yaml``, ``lightgcn.pt``, ``agent.zip`` (and ``agent_mlp.zip`` when the MLP-only
    baseline is evaluated), checkpoints, the ``train`` section of ``metrics.json`` and the safe
    policy's rule (``safe_policy``: the training-budget scan and the gate validated on validation
    users, :mod:`promptopt.experiments.safe_run`).

    Args:
        config: The resolved config.
        output_dir: The run directory.
        resume: Continue the run in ``output_dir`` from its last checkpoint (its answers are cached).

    Raises:
        ConfigError: ``output_dir`` already holds a run and ``resume`` is false (or vice versa).
        BudgetExceeded: The budget ran out; a checkpoint was saved and the message says how to go on.
    """
    run = RunDir(Path(output_dir))
    if resume:
        run.require("a run directory to resume")
    created = run.first_missing()
    with run.locked():  # a second process on the same directory is refused, naming the first
        try:
            if not resume and run.config.is_file():
                raise ConfigError(f"{run.root} already holds a run: continue it with `promptopt train "
                                  f"--resume {run.root}`, delete it, or choose another --output-dir")
            started = time.perf_counter()
            data, _split, _catalog, problem = build_problem(config)
            check_tracking(config)
            ranker = make_run_ranker(config, problem, run=run, phase="train")
            try:
                check_ranker(config, problem, ranker)  # one remote episode, before pretraining
                run.create()
                _write_config(run, config)
                with run_logging(run.log):
                    logger.info("run directory %s", run.root)
                    tracker = tracker_for(run, config, "train")
                    try:
                        _train_agents(run, config, data, problem, ranker, tracker, started)
                        safe_run.fit_and_store(run, config, problem, ranker)
                    finally:
                        tracker.finish()
            finally:
                _close(ranker)
        except BaseException:
            # A start that failed before anything worth keeping (bad data, catalog, key) leaves no
            # directory behind, so a plain re-run works; otherwise the error says how to resume.
            run.remove_failed_start(created)
            raise
    return run.root


def _train_agents(run: RunDir, config: ExperimentConfig, data: InteractionData, problem: RecProblem,
                  ranker: Ranker, tracker: Tracker, started: float) -> None:
    """LightGCN pretraining, then each agent (skipping those a resumed run already finished)."""
    metrics = run.update_metrics("ranker", dict(ranker.identity))
    lightgcn = _pretrain(run, config, data, problem)
    order: list[int] | None = None
    scan: dict[str, Any] | None = None
    if needs_default(config):  # cached answers: a resumed run rescans for free
        order, scan = default_order(config, problem, ranker)
    agents: dict[str, Any] = {}
    for kind in agent_kinds(config):
        done = (metrics.get("train") or {}).get("agents", {}).get(kind)
        if run.agent(kind).is_file() and done:
            agents[kind] = done
            continue
        env = make_env(config, problem, ranker, default_order=order)
        cfg = agent_config(config, kind)
        default = None if order is None else order[0]
        state = train_agent(kind, lambda env=env, cfg=cfg, default=default: make_agent(
                                env, cfg, embeddings_path=run.lightgcn, default=default,
                                tensorboard_log=config.tracking.tensorboard_dir),
                            total_timesteps=config.ppo.total_timesteps,
                            checkpoint_every=config.ppo.checkpoint_every, checkpoint_dir=run.checkpoints,
                            output=run.agent(kind), tracker=tracker, ranker=ranker,
                            tb_log_name=f"{run.root.name}-{kind}")
        agents[kind] = state.to_json()
        metrics = run.update_metrics("train", _train_section(agents, lightgcn, started, scan))
    section = _train_section(agents, lightgcn, started, scan)
    run.update_metrics("train", section, summary=_train_summary(section))
    tracker.summary(_train_summary(section))


def _write_config(run: RunDir, config: ExperimentConfig) -> None:
    import yaml

    from promptopt.redact import redact_config

    _WRITTEN[run.root.resolve()] = config
    run.config.write_text(
        "# Resolved config of this run (every field, overrides applied; credentials in URLs redacted).\n"
        f"# Re-run with:  promptopt train {run.config}\n"
        + yaml.safe_dump(redact_config(config_to_dict(config)), sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )


def _close(ranker: Any) -> None:
    log_spend(ranker)
    close = getattr(ranker, "close", None)
    if callable(close):
        close()


def log_spend(ranker: Any) -> None:
    """One INFO line with what a (cached) ranker spent in this session: requests, cache hits, calls sent,
    failures, and the backend's own attempt counters (HTTP attempts, retries per error kind) when it has them.
    """
    stats = getattr(ranker, "stats", None)
    if stats is None:
        return
    counters = dict(getattr(getattr(ranker, "backend", None), "counters", None) or {})
    line = (f"ranker spend: {stats.requests} requests, {stats.hits} cache hits, {stats.calls} calls sent, "
            f"{stats.failures} failed, {stats.tokens} tokens, cost {stats.cost:.4f}")
    if counters:
        kinds = ", ".join(f"{k[6:]}={v}" for k, v in sorted(counters.items()) if k.startswith("error:"))
        line += (f"; backend: attempts={counters.get('calls', 0)} retries={counters.get('retries', 0)} "
                 f"succeeded={counters.get('succeeded', 0)} failures={counters.get('failures', 0)}"
                 f" ({kinds or 'no errors'})")
    logger.info(line)


def _pretrain(run: RunDir, config: ExperimentConfig, data: InteractionData, problem: RecProblem) -> dict:
    """LightGCN BPR pretraining on the training graph (skipped when the run already has weights)."""
    if run.lightgcn.is_file():
        emb = LightGCNEmbeddings.load(run.lightgcn)
        logger.info("LightGCN: reusing %s", run.lightgcn)
    elif config.policy.kind == "lightgcn_mlp" or set(BANDIT_SELECTORS) & set(config.eval.selectors):
        graph = build_graph(data, problem.train_mask)
        logger.info("LightGCN: pretraining on %d users, %d items, %d training edges",
                    graph.n_users, graph.n_items, graph.n_edges)
        emb = pretrain_from_config(graph, config.policy, seed=config.seed)
        emb.save(run.lightgcn)
        logger.info("LightGCN: best epoch %d (recall@20 %.4f) in %.1f s", emb.best_epoch,
                    emb.best_recall, emb.seconds)
    else:
        return {}
    return {"best_epoch": emb.best_epoch, "best_recall": emb.best_recall, "epochs": len(emb.history),
            "seconds": emb.seconds, "stopped_early": emb.stopped_early,
            "history": [[h.epoch, h.loss, h.recall] for h in emb.history]}


def _train_section(agents: dict[str, Any], lightgcn: dict, started: float,
                   scan: dict[str, Any] | None = None) -> dict[str, Any]:
    main = agents.get("policy") or next(iter(agents.values()), {})
    episodes = main.get("template_episodes", {})
    rewards = main.get("template_reward", {})
    ranking = sorted(
        ({"template_id": t, "mean_reward": rewards.get(t, 0.0) / n, "n": n}
         for t, n in episodes.items() if n),
        key=lambda r: -r["mean_reward"],
    )
    llm: dict[str, float] = {}
    for agent in agents.values():
        for key, value in (agent.get("llm") or {}).items():
            if key != "cache_hit_rate":
                llm[key] = llm.get(key, 0) + value
    seen = llm.get("calls", 0) + llm.get("hits", 0)
    llm["cache_hit_rate"] = llm.get("hits", 0) / seen if seen else 0.0
    return {"steps": main.get("steps", 0), "seconds": time.perf_counter() - started,
            "curve": main.get("curve", []), "template_ranking": ranking, "agents": agents,
            "lightgcn": lightgcn, "llm": llm, **({"default_scan": scan} if scan else {})}


def _train_summary(section: dict[str, Any]) -> dict[str, float]:
    curve = section.get("curve") or [{}]
    llm = section.get("llm", {})
    return {"train/steps": section.get("steps", 0), "train/reward_last": curve[-1].get("reward", 0.0),
            "llm/train_calls": llm.get("calls", 0), "llm/train_tokens": llm.get("tokens", 0),
            "llm/train_cache_hit_rate": llm.get("cache_hit_rate", 0.0)}


_WRITTEN: dict[Path, ExperimentConfig] = {}
"""Configs this process wrote to run directories: config.yaml has URL credentials redacted, so the
later phases of the same ``promptopt train`` use the config as given."""


def read_config(run: RunDir) -> ExperimentConfig:
    return _WRITTEN.get(run.root.resolve()) or load_config(run.config)


def evaluate(run_dir: str | Path) -> dict[str, Any]:
    """Compare every selector on held-out users; write metrics.json, report.md and the plots.

    Returns:
        The run's metrics (``train``, ``evaluation``, ``summary``).
    """
    run = RunDir(Path(run_dir)).require()
    config = read_config(run)
    with run.locked(), run_logging(run.log):
        tracker = tracker_for(run, config, "evaluate")
        try:
            _data, _split, _catalog, problem = build_problem(config)
            ranker = make_run_ranker(config, problem, run=run, phase="evaluate")
            bar = progress_bar(total=len(config.eval.selectors), desc="evaluate", unit="selector")

            def progress(name: str) -> None:
                if bar.n or getattr(bar, "postfix", None):  # a disabled bar (no TTY) has no postfix
                    bar.update(1)
                bar.set_postfix_str(name)
                logger.info("evaluating %s", name)

            try:
                factory = SelectorFactory(config, problem, ranker, run)
                evaluation, _ = run_protocol(config, problem, ranker, factory, progress=progress)
            finally:
                bar.close()
                _close(ranker)
            if factory.fitted_rule is not None:  # a run trained before the safe policy
                run.update_metrics(safe_run.SECTION, factory.fitted_rule.to_json())
            if factory.scan:
                evaluation["template_scan"] = factory.scan
            evaluation["reference"] = reference_rows(config, problem, run.lightgcn)
            if factory.curves:
                evaluation["bandit_curves"] = factory.curves
            metrics = run.update_metrics("evaluation", evaluation, summary=summary_keys(evaluation))
            plots = write_run_plots(run, metrics)
            write_results_table(run.root / "results.tex", metrics["evaluation"], title=config.name)
            write_report(run.report, config=config_to_dict(config), metrics=metrics,
                         plots={k: str(p.relative_to(run.root)) for k, p in plots.items()},
                         ranker_identity=metrics.get("ranker"))
            tracker.summary(metrics.get("summary", {}))
            tracker.images(list(plots.values()))
        finally:
            tracker.finish()
    return metrics


def export(run_dir: str | Path, *, output: str | Path | None = None) -> Path:
    """Write the run's prompt book (default ``RUN_DIR/prompts.json``), validated against the schema."""
    run = RunDir(Path(run_dir)).require()
    config = read_config(run)
    path = Path(output) if output else run.prompts
    with run.locked(), run_logging(run.log):
        book = build_book(run, config)
        book.save(path)
        check_no_secrets(path, config)
        logger.info("prompt book %s: %d users, default template %s", path, len(book), book.default_template)
        tracker = tracker_for(run, config, "export")
        try:
            tracker.artifact(path, f"{run.root.name}-prompts", "prompt-book")
            tracker.artifact(run.agent("policy"), f"{run.root.name}-agent", "model")
        finally:
            tracker.finish()
    return path


def run_all(config: ExperimentConfig, output_dir: str | Path) -> dict[str, Any]:
    """train -> evaluate -> export; returns the metrics summary (what sweeps optimise)."""
    run_dir = train(config, output_dir)
    metrics = evaluate(run_dir)
    export(run_dir)
    return dict(metrics.get("summary", {}))


# ---------------------------------------------------------------------- CLI helpers
def train_from_cli(
    config_path: str | None,
    *,
    overrides: Sequence[str] = (),
    output_dir: str | None = None,
    resume: str | None = None,
) -> Path:
    """``promptopt train CONFIG [--output-dir DIR] [overrides]`` or ``--resume RUN_DIR [overrides]``."""
    if resume:
        if config_path:
            raise ConfigError(
                "give CONFIG or --resume RUN_DIR, not both (a resumed run keeps its config.yaml)"
            )
        from promptopt.experiments.rundir import check_resume_overrides

        run = RunDir(Path(resume)).require("a run directory to resume")
        config = load_config(run.config, overrides)
        check_resume_overrides(load_config(run.config), config, overrides)
        if overrides:
            logger.info("resuming %s with overrides %s", run.root, " ".join(overrides))
        return train(config, run.root, resume=True)
    if not config_path:
        raise ConfigError("give a config file: promptopt train CONFIG (see experiments/configs/), "
                          "or --resume RUN_DIR")
    config = load_config(config_path, overrides)
    return train(config, output_dir or default_run_dir(config.name))
