"""wandb logging that never fails a run.

:func:`start_tracking` returns a :class:`Tracker`: a thin wrapper over a wandb run whose every call
is guarded, so an unreachable server, a missing login or a wandb bug turns into one warning and the
run goes on without tracking. wandb is imported only here, only when tracking is on.

* Offline by default: ``mode: online`` is honoured only when wandb has a key (``WANDB_API_KEY`` or
  ``wandb login``); otherwise the run is logged offline and can be synced later with
  ``wandb sync RUN_DIR/wandb/offline-run-*``. Under ``wandb agent`` (``WANDB_SWEEP_ID`` set) an
  offline config logs online, so the sweep server sees each run's metrics.
* wandb's files live in ``RUN_DIR/wandb``.
* Metric keys are namespaced: ``train/…``, ``reward/…``, ``eval/…``, ``llm/…``.
* Secrets never reach wandb: the config holds only the *name* of the key's environment variable,
  and every string logged is checked against the values of secret-looking environment variables.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from promptopt.config import TrackingConfig

logger = logging.getLogger(__name__)

_SECRET_ENV = re.compile(r"(?i)(api_?key|secret|token|password)")


def secret_values(extra_env: Sequence[str] = ()) -> tuple[str, ...]:
    """Values of environment variables that look like credentials (and of ``extra_env``)."""
    names = {n for n in os.environ if _SECRET_ENV.search(n)} | set(extra_env)
    return tuple(v for n in names if len(v := os.environ.get(n, "")) >= 8)


def redact(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` with every occurrence of a secret replaced by ``***`` (nested dicts and lists too)."""
    if isinstance(value, str):
        if "://" in value:
            from promptopt.redact import redact_urls

            value = redact_urls(value)
        for secret in secrets:
            value = value.replace(secret, "***")
        return value
    if isinstance(value, Mapping):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, secrets) for v in value]
    return value


class Tracker:
    """A wandb run, or nothing (``run is None``); every method is safe to call either way."""

    def __init__(self, run: Any = None, secrets: Sequence[str] = ()) -> None:
        self.run = run
        self._secrets = tuple(secrets)

    @property
    def active(self) -> bool:
        return self.run is not None

    def _guard(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.run is None:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # a tracking failure must never end a run
            logger.warning("wandb %s failed (%s: %s); tracking is off for the rest of the run",
                           what, type(exc).__name__, exc)
            self.run = None
            return None

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log namespaced scalars (``train/reward``, ``llm/calls`` ...)."""
        clean = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if clean:
            self._guard("log", lambda: self.run.log(clean, step=step))

    def summary(self, values: Mapping[str, Any]) -> None:
        """Set run summary values (what sweeps and the runs table read)."""
        values = redact(dict(values), self._secrets)
        self._guard("summary", lambda: self.run.summary.update(values))

    def images(self, paths: Sequence[Path], step: int | None = None) -> None:
        """Log PNG plots under ``plots/<file stem>``."""
        def log_images() -> None:
            import wandb

            self.run.log({f"plots/{Path(p).stem}": wandb.Image(str(p)) for p in paths if Path(p).is_file()},
                         step=step)

        if paths:
            self._guard("image upload", log_images)

    def artifact(self, path: Path, name: str, kind: str) -> None:
        """Log one file as a versioned artifact (``prompts.json``, the agent zip)."""
        def log_artifact() -> None:
            import wandb

            art = wandb.Artifact(re.sub(r"[^A-Za-z0-9_.-]", "-", name), type=kind)
            art.add_file(str(path))
            self.run.log_artifact(art)

        if Path(path).is_file():
            self._guard("artifact", log_artifact)

    def finish(self) -> None:
        self._guard("finish", lambda: self.run.finish())
        self.run = None


@contextlib.contextmanager
def _redacted_argv(secrets: Sequence[str]) -> Iterator[None]:
    """``sys.argv`` with URL credentials and secret values redacted while wandb records it."""
    from promptopt.redact import redact_urls

    saved = list(sys.argv)
    sys.argv[:] = [redact(redact_urls(arg), secrets) for arg in saved]
    try:
        yield
    finally:
        sys.argv[:] = saved


def _logged_in() -> bool:
    """Whether wandb has a key: ``WANDB_API_KEY`` or a ``wandb login`` entry in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def start_tracking(
    config: TrackingConfig,
    *,
    run_dir: Path,
    run_name: str,
    run_config: Mapping[str, Any],
    api_key_env: str | None = None,
    group: str | None = None,
    run_id: str | None = None,
) -> Tracker:
    """Start a wandb run for ``run_dir``, or return an inactive :class:`Tracker`.

    Args:
        config: The ``tracking`` section.
        run_dir: The run directory; wandb writes to ``run_dir/wandb``.
        run_name: Display name of the run.
        run_config: The resolved config as a plain dict (logged as the run's config).
        api_key_env: Name of the ranker's key variable; its value is redacted from anything logged.
        group: wandb group (a sweep name).
        run_id: Continue this wandb run (train, evaluate and export of one run share an id).
    """
    if not config.wandb or config.mode == "disabled":
        return Tracker()
    secrets = secret_values([api_key_env] if api_key_env else [])
    mode = config.mode
    if os.environ.get("WANDB_SWEEP_ID") and mode == "offline":
        # Launched by `wandb agent`: the sweep server needs the run's metrics, so log online.
        logger.info("running under wandb agent (sweep %s): logging online", os.environ["WANDB_SWEEP_ID"])
        mode = "online"
    if mode == "online" and not _logged_in():
        logger.warning("tracking.mode is online but wandb has no key (WANDB_API_KEY or `wandb login`): "
                       "logging offline (sync later with `wandb sync %s/offline-run-*`)", run_dir / "wandb")
        mode = "offline"
    try:
        import wandb

        from promptopt.redact import redact_config

        (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
        run_config = redact_config(dict(run_config))
        with _redacted_argv(secrets):  # wandb records sys.argv in the run's metadata
            run = wandb.init(
                project=config.project,
                entity=config.entity,
                name=run_name,
                group=group,
                id=run_id,
                resume="allow" if run_id else None,
                dir=str(run_dir),
                mode=mode,
                config=redact(run_config, secrets),
                reinit="finish_previous",
                # A generous start timeout: on a loaded 2-core machine wandb's service starts slowly.
                settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, save_code=False,
                                        init_timeout=300.0),
            )
    except Exception as exc:  # never fail a run because wandb is unreachable or broken
        logger.warning("wandb could not start (%s: %s); the run continues without tracking",
                       type(exc).__name__, exc)
        return Tracker()
    logger.info("wandb %s run %s in %s", mode, getattr(run, "id", "?"), run_dir / "wandb")
    return Tracker(run, secrets)
