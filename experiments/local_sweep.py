"""Run a wandb sweep file locally and offline with optuna.

The same ``experiments/sweeps/*.yaml`` serves both ways:

* online: ``wandb sweep FILE`` then ``wandb agent ID`` — wandb runs the file's ``command``, passing
  each parameter as ``--ppo.learning_rate=...`` through ``${args}``;
* offline: ``promptopt sweep FILE --count N`` — optuna proposes the parameters, each trial is a full
  train -> evaluate -> export run (logged to wandb offline) in ``SWEEP_DIR/trial-NNN``, and a
  leaderboard (CSV + markdown) is written after every trial.

Tuning never sees test users: every trial evaluates on validation users (``eval.split: val``), the
metric must be a validation (``val/...``) or training (``train/...``) key that the trials report,
checked before the first trial, and the leaderboard ends with the one command that scores the best
trial's settings on test users, once. A sweep whose every trial failed exits non-zero.

wandb's search methods map onto optuna samplers: ``grid`` -> ``GridSampler``, ``random`` ->
``RandomSampler``, ``bayes`` -> ``TPESampler``. Parameter specs map onto distributions:
``value`` (fixed), ``values`` (categorical), ``int_uniform``, ``uniform``, ``q_uniform``,
``log_uniform_values``, ``log_uniform`` (bounds are natural-log exponents, as in wandb),
``q_log_uniform_values`` (the step is dropped: optuna has no stepped log scale).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.config import load_config
from promptopt.errors import ConfigError, PromptoptError
from promptopt.experiments.leaderboard import (
    TRIAL_ATTR,
    TrialResult,
    as_overrides,
    format_value,
    study_results,
    write_leaderboard,
)
from promptopt.experiments.pipeline import run_all
from promptopt.experiments.rundir import default_run_dir
from promptopt.experiments.sweep_storage import check_joined, describe, fingerprint, open_storage
from promptopt.progress import progress_bar
from promptopt.suggest import closest

logger = logging.getLogger(__name__)

_METHODS = ("grid", "random", "bayes")
TUNING_PREFIXES = ("val/", "train/")
"""Summary keys a sweep may optimise: validation users' metrics and training statistics."""
TRIAL_OVERRIDES = ("--eval.split=val",)
"""Appended to every trial's overrides: trials are evaluated on validation users."""


@dataclass(frozen=True)
class SweepSpec:
    """A parsed wandb sweep file.

    Attributes:
        name: Sweep name (file stem unless the file has ``name``).
        method: ``grid``, ``random`` or ``bayes``.
        metric: Summary key to optimise (``val/ndcg@10``: validation users only).
        goal: ``maximize`` or ``minimize``.
        parameters: Dotted config path -> wandb parameter spec.
        fixed: Dotted config path -> value of parameters with a single ``value``.
        config_path: The experiment config named in ``command`` (``None`` when it names none).
    """

    name: str
    method: str
    metric: str
    goal: str
    parameters: Mapping[str, Mapping[str, Any]]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    config_path: str | None = None


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file.

    Raises:
        ConfigError: Missing file, bad YAML, unknown method, a parameter spec optuna cannot express.
    """
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"sweep file {path} does not exist") from None
    except yaml.YAMLError:
        raise ConfigError(f"sweep file {path} is not valid YAML") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"sweep file {path} must hold a mapping (program, method, metric, parameters)")
    method = raw.get("method")
    if method not in _METHODS:
        raise ConfigError(f"{path}: method must be one of {', '.join(_METHODS)}, got {method!r}")
    metric = raw.get("metric") or {}
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
        raise ConfigError(f"{path}: metric must be a mapping with a name (e.g. val/ndcg@10)")
    if not metric["name"].startswith(TUNING_PREFIXES):
        raise ConfigError(
            f"{path}: metric.name {metric['name']!r} is not a validation metric: sweeps tune on validation "
            "users (val/ndcg@10, val/policy/drift_drop, ...) or training keys (train/...), never on test "
            "users, who are scored once at the end"
        )
    goal = metric.get("goal", "maximize")
    if goal not in ("maximize", "minimize"):
        raise ConfigError(f"{path}: metric.goal must be maximize or minimize, got {goal!r}")
    params = raw.get("parameters")
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"{path}: parameters must map dotted config names to specs")
    searched: dict[str, Mapping[str, Any]] = {}
    fixed: dict[str, Any] = {}
    for name, spec in params.items():
        if name == "eval.split":
            raise ConfigError(f"{path}: parameters.eval.split cannot be swept: trials evaluate on validation "
                              "users, and test users are scored once, after the sweep")
        if not isinstance(spec, dict):
            raise ConfigError(f"{path}: parameters.{name} must be a mapping (value, values, min/max)")
        if "value" in spec:
            fixed[name] = spec["value"]
        else:
            _distribution(name, spec, source=str(path))  # fail at load, not mid-sweep
            searched[name] = spec
    if method == "grid":
        for name, spec in searched.items():
            if "values" not in spec:
                raise ConfigError(f"{path}: grid search needs a values list for parameters.{name}")
    config_path = next(
        (c for c in raw.get("command", []) or [] if isinstance(c, str) and c.endswith((".yaml", ".yml"))),
        None,
    )
    return SweepSpec(
        name=str(raw.get("name") or path.stem), method=method, metric=metric["name"], goal=goal,
        parameters=searched, fixed=fixed, config_path=config_path,
    )


def _distribution(name: str, spec: Mapping[str, Any], *, source: str) -> Any:
    """The optuna distribution of one wandb parameter spec."""
    import optuna.distributions as d

    if "values" in spec:
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: parameters.{name}.values must be a non-empty list")
        return d.CategoricalDistribution([_hashable(v) for v in values])
    kind = spec.get("distribution")
    if "min" not in spec or "max" not in spec:
        raise ConfigError(f"{source}: parameters.{name} needs value, values, or min and max")
    low, high = spec["min"], spec["max"]
    if kind is None:
        kind = "int_uniform" if isinstance(low, int) and isinstance(high, int) else "uniform"
    try:
        if kind == "int_uniform":
            return d.IntDistribution(int(low), int(high))
        if kind == "uniform":
            return d.FloatDistribution(float(low), float(high))
        if kind == "q_uniform":
            return d.FloatDistribution(float(low), float(high), step=float(spec.get("q", 1.0)))
        if kind in ("log_uniform_values", "q_log_uniform_values"):
            return d.FloatDistribution(float(low), float(high), log=True)
        if kind == "log_uniform":
            return d.FloatDistribution(math.exp(float(low)), math.exp(float(high)), log=True)
    except ValueError as exc:
        raise ConfigError(f"{source}: parameters.{name}: {exc}") from None
    raise ConfigError(
        f"{source}: parameters.{name}: distribution {kind!r} is not supported locally; use "
        "values, int_uniform, uniform, q_uniform, log_uniform or log_uniform_values"
    )


def _hashable(value: Any) -> Any:
    """optuna categorical choices must be None/bool/int/float/str: lists travel as YAML text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else format_value(value)


def make_sampler(spec: SweepSpec, seed: int) -> Any:
    """The optuna sampler for the sweep's method."""
    import optuna

    if spec.method == "grid":
        return optuna.samplers.GridSampler(
            {k: [_hashable(v) for v in s["values"]] for k, s in spec.parameters.items()}, seed=seed
        )
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


TrialFn = Callable[[Sequence[str], Path], Mapping[str, Any]]
"""Runs one trial from overrides into a run directory and returns its metrics summary."""


def run_sweep(
    spec: SweepSpec,
    *,
    count: int,
    output_dir: Path,
    trial_fn: TrialFn,
    seed: int | None = 0,
    storage: str | None = None,
    study_name: str | None = None,
    config_path: str | None = None,
) -> list[TrialResult]:
    """Run ``count`` trials (fewer when a grid is exhausted); write the leaderboard after each.

    With ``storage`` (an RDB URL or a journal file, :mod:`promptopt.experiments.sweep_storage`), this worker
    joins the study ``study_name`` (default: the sweep's name) that other workers share: optuna hands
    out the trial numbers, so each trial runs once, in ``output_dir/trial-NNN``, and the leaderboard
    lists every worker's trials. A trial that fails with a user error (:class:`PromptoptError`) is
    recorded as failed and the sweep goes on; any other exception stops the sweep after recording it.
    ``config_path`` ends the leaderboard with the command that scores the best trial on test users.

    Returns:
        This worker's trials in the order they ran.
    """
    import optuna

    if count < 1:
        raise ConfigError(f"--count must be >= 1, got {count}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per failed trial
    study = optuna.create_study(
        study_name=study_name or spec.name, sampler=make_sampler(spec, seed),
        storage=open_storage(storage), load_if_exists=True,
        direction="maximize" if spec.goal == "maximize" else "minimize",
    )
    check_joined(study, digest=fingerprint(spec.method, spec.metric, spec.goal, spec.parameters, spec.fixed),
                 storage=storage, goal=spec.goal)
    dists = {k: _distribution(k, s, source=spec.name) for k, s in spec.parameters.items()}
    results: list[TrialResult] = []
    output_dir.mkdir(parents=True, exist_ok=True)
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial: Any) -> float:
        params = {**spec.fixed, **{k: _suggest(trial, k, dist) for k, dist in dists.items()}}
        run_dir = output_dir / f"trial-{trial.number:03d}"
        info = {"params": params, "run_dir": str(run_dir), "worker": worker}
        trial.set_user_attr(TRIAL_ATTR, info)  # a running trial shows in the others' leaderboards
        logger.info("sweep %s trial %d: %s", spec.name, trial.number, " ".join(as_overrides(params)))
        start = time.perf_counter()
        try:
            summary = trial_fn(as_overrides(params), run_dir)
            value = summary.get(spec.metric)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(
                    f"trial {trial.number} did not report the sweep metric {spec.metric!r} "
                    f"(reported: {', '.join(sorted(summary)[:12])})"
                )
        except BaseException as exc:
            error = str(exc) if isinstance(exc, PromptoptError) else f"{type(exc).__name__}: {exc}"
            seconds = time.perf_counter() - start
            trial.set_user_attr(TRIAL_ATTR, {**info, "seconds": seconds, "error": error})
            results.append(TrialResult(trial.number, params, None, "failed", str(run_dir), seconds, error,
                                       worker))
            if isinstance(exc, PromptoptError):
                logger.warning("sweep %s trial %d failed: %s", spec.name, trial.number, exc)
            raise
        seconds = time.perf_counter() - start
        trial.set_user_attr(TRIAL_ATTR, {**info, "seconds": seconds})
        results.append(TrialResult(trial.number, params, float(value), "complete", str(run_dir), seconds,
                                   worker=worker))
        return float(value)

    def after_trial(study: Any, _trial: Any) -> None:  # the trial's state is final here
        write_leaderboard(spec, study_results(study), output_dir, config_path=config_path)
        bar.update(1)
        done = [r.value for r in results if r.value is not None]
        if done:
            best = max(done) if spec.goal == "maximize" else min(done)
            bar.set_postfix_str(f"best {spec.metric} {best:.4f} (this worker)")

    # A user error fails that trial only (optuna records it and goes on); anything else stops the
    # sweep. GridSampler stops the study by itself once every grid point has run.
    with progress_bar(total=count, desc=f"sweep {spec.name}", unit="trial") as bar:
        try:
            study.optimize(objective, n_trials=count, catch=(PromptoptError,), callbacks=[after_trial])
        finally:
            write_leaderboard(spec, study_results(study), output_dir, config_path=config_path)
    return results


def _suggest(trial: Any, name: str, dist: Any) -> Any:
    import optuna.distributions as d

    if isinstance(dist, d.CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, d.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def sweep(file: str | Path, *, count: int, config_path: str | None = None,
          output_dir: str | Path | None = None, seed: int | None = None, storage: str | None = None,
          study_name: str | None = None) -> Path:
    """``promptopt sweep``: run a wandb sweep file with optuna; returns the sweep directory.

    ``seed`` seeds the sampler; left out, it is 0 for a sweep in this process alone and random for a
    worker of a shared study (``storage``), so workers do not propose the same parameters in lockstep.
    """
    spec = load_sweep(file)
    base = config_path or spec.config_path
    if base is None:
        raise ConfigError(f"{file}: its command names no config YAML; pass --config CONFIG")
    check_metric(spec, load_config(base, TRIAL_OVERRIDES))  # before the first trial
    out = Path(output_dir) if output_dir else default_run_dir(f"sweep-{spec.name}")

    def trial(overrides: Sequence[str], run_dir: Path) -> dict[str, Any]:
        config = load_config(base, [*overrides, *TRIAL_OVERRIDES])
        if config.tracking.mode == "online":  # local sweeps log offline; `wandb sync` uploads later
            offline = dataclasses.replace(config.tracking, mode="offline")
            config = dataclasses.replace(config, tracking=offline)
        return run_all(config, run_dir)

    if seed is None and storage is None:
        seed = 0
    logger.info("sweep %s: study %r in %s, sampler seed %s", spec.name, study_name or spec.name,
                describe(storage), "random" if seed is None else seed)
    results = run_sweep(spec, count=count, output_dir=out, trial_fn=trial, seed=seed, storage=storage,
                        study_name=study_name, config_path=base)
    logger.info("sweep %s: %d trials of this worker in %s", spec.name, len(results), out)
    if not any(r.state == "complete" for r in results):
        first = next((r.error for r in results if r.error), "no trial ran")
        raise ConfigError(f"sweep {spec.name}: every trial failed ({len(results)} of {len(results)}); the "
                          f"first: {first}; see {out / 'leaderboard.md'}")
    return out


def expected_keys(config: Any) -> set[str]:
    """The summary keys a trial of ``config`` reports (``val/...`` for its evaluation, ``train/...``)."""
    from promptopt.metrics import METRIC_NAMES

    split = config.eval.split
    selectors = list(config.eval.selectors)
    keys = {"train/steps", "train/reward_last"}
    main = next((n for n in ("policy", "mlp_ppo", "best_fixed") if n in selectors), None)
    metrics = set(METRIC_NAMES)
    keys |= {f"{split}/{name}/{m}" for name in selectors for m in metrics}
    if main is not None:
        keys |= {f"{split}/{m}" for m in metrics}
    if config.eval.periods:
        keys |= {f"{split}/{name}/drift_drop" for name in selectors}
    if {"policy", "best_fixed"} <= set(selectors):
        keys |= {f"{split}/policy_minus_best_fixed", f"{split}/policy_minus_best_fixed_low"}
    return keys


def check_metric(spec: SweepSpec, config: Any) -> None:
    """Refuse a sweep metric its trials will not report (a typo would fail every trial, after paying)."""
    keys = expected_keys(config)
    if spec.metric not in keys:
        close = closest(spec.metric, sorted(keys), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(keys)[:12])} ..."
        raise ConfigError(f"sweep {spec.name}: trials will not report metric {spec.metric!r}; {hint}")
