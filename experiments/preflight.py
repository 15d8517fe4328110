"""Checks that fail in seconds, run before a run pays for anything slow (LightGCN pretraining, PPO).

* :func:`check_ranker`: a ranker behind a server (the ``openai`` backend, the ``embedding`` backend
  with ``embedding_api``) answers one episode first: the key, the URL, the model name and the answer
  format are all exercised by the run's own ranker, with its retries, timeouts and budget. The key's
  presence is checked earlier, when the backend is built.
* :func:`check_tracking`: the libraries the ``tracking`` section asks for are installed.

The preflight episode goes through the answer cache like any other, so its answers are kept (and a
resumed run usually finds them there, costing nothing); its calls count against the budget, so a
failed preflight leaves the run directory holding only the spend ledger (``budget.json``), and the
same command run again continues that ledger.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from promptopt.errors import ConfigError, RankerError
from promptopt.llm.urls import public_url

if TYPE_CHECKING:
    from promptopt.config import ExperimentConfig, RankerConfig
    from promptopt.llm.types import Ranker
    from promptopt.problem import RecProblem

logger = logging.getLogger(__name__)


def calls_a_server(ranker: RankerConfig) -> bool:
    """Whether the configured backend sends requests over the network."""
    return ranker.backend == "openai" or (ranker.backend == "embedding" and ranker.embedding_api)


def check_tracking(config: ExperimentConfig) -> None:
    """Raises ConfigError when ``tracking.tensorboard_dir`` is set but tensorboard is not installed."""
    if config.tracking.tensorboard_dir and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            f"tracking.tensorboard_dir={config.tracking.tensorboard_dir!r} needs the tensorboard package: "
            "pip install 'promptopt[tracking]', or drop tracking.tensorboard_dir"
        )


def check_ranker(config: ExperimentConfig, problem: RecProblem, ranker: Ranker) -> None:
    """Send one training episode (1 + drift views requests) through ``ranker`` if it calls a server.

    Raises:
        RankerError: The server failed for good (after the backend's retries): the message says
            that nothing was trained yet, and why the server failed.
        BudgetExceeded: The budget cannot pay for one episode.
    """
    if not calls_a_server(config.ranker):
        return
    user, template = _first_episode(problem)
    where = public_url(config.ranker.base_url) if config.ranker.base_url else "the official API"
    started = time.perf_counter()
    try:
        (outcome,) = problem.run([user], [template], ranker)
    except RankerError as exc:
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise RankerError(
            f"preflight: {config.ranker.backend} ranker {config.ranker.model!r} at {where} failed one "
            f"episode before LightGCN pretraining, nothing was trained (run the same command again once "
            f"it answers): {message}"
        ) from None
    assert outcome is not None
    logger.info("preflight: %s ranker %r at %s answered %d request(s) in %.1f s", config.ranker.backend,
                config.ranker.model, where, outcome.calls, time.perf_counter() - started)
    if config.ranker.backend == "openai" and outcome.parse.found == 0:
        logger.warning(
            "preflight: the answers of %r named none of the shown candidates: check ranker.model and "
            "the templates' output format (promptopt cache export lists the raw answers)",
            config.ranker.model,
        )


def _first_episode(problem: RecProblem) -> tuple[int, int]:
    """The first training user with a template it can fill, and that template."""
    for user in problem.pool("train"):
        valid = np.flatnonzero(problem.action_mask(int(user)))
        if valid.size:
            return int(user), int(valid[0])
    raise ConfigError("no training user can fill any template of the catalog: use templates with "
                      "shorter history needs or a dataset with longer histories")
