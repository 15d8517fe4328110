"""Assemble a run's prompt book from its config, trained policy and metrics."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.config import ExperimentConfig, config_to_dict
from promptopt.errors import ConfigError
from promptopt.experiments import safe_run
from promptopt.experiments.assembly import build_problem, load_agent
from promptopt.experiments.rundir import RunDir
from promptopt.experiments.tracking import secret_values
from promptopt.export import PromptBook, TemplateScore, UserChoice
from promptopt.safe_policy import GatedSelector

logger = logging.getLogger(__name__)


def build_book(run: RunDir, config: ExperimentConfig) -> PromptBook:
    """The prompt book of ``run``: the safe policy's choice for every listed user.

    Users listed are every user of the split (``export.users: all``) or the test users; each gets
    the safe policy's template for their latest task (the default of the run's validated rule, or
    the learned policy's choice where the gate deviates, saying which and why), the policy's action
    probabilities, and (``export.prompts``) that task's filled prompt. The rule itself is the
    book's ``gate``; its ranked list (the training-budget scan) is the global ranking.

    No ranker is built: the prompts are rendered from the data and the catalog, the policy's
    choices need only the agent, and the ranker's identity is the one training recorded. So
    exporting an ``openai`` run needs no API key, and exporting an ``hf`` run loads no model.
    """
    from promptopt.policies.selectors import PPOSelector  # torch

    metrics = run.read_metrics()
    if not run.agent("policy").is_file():
        raise ConfigError(f"{run.agent('policy')} does not exist: finish training first "
                          f"(promptopt train --resume {run.root})")
    identity = metrics.get("ranker")
    if not identity:
        raise ConfigError(f"{run.metrics} has no ranker identity (training records it first): the file "
                          f"was replaced or damaged; run `promptopt train --resume {run.root}` to record it "
                          "again")
    rule = safe_run.require_rule(run)
    data, split, catalog, problem = build_problem(config)
    policy = PPOSelector(load_agent(run, config, problem, "policy"), problem, final=True)
    selector = GatedSelector.from_rule(policy, rule, catalog.ids,
                                       lambda u: problem.action_mask(int(u), final=True))
    parts = {"train": split.train, "val": split.val, "test": split.test}
    if config.export.users == "test":
        parts = {"test": split.test}
    users = np.concatenate([np.asarray(v, dtype=np.int64) for v in parts.values()])
    part_of = {int(u): name for name, pool in parts.items() for u in pool}
    users = np.sort(users)
    probs = policy.action_probabilities(users) if users.size else np.zeros((0, len(catalog)))
    decision = selector.decide(users)
    choices = []
    for i, (user, template, row) in enumerate(zip(users, decision.choices, probs)):
        prompt = None
        if config.export.prompts:
            tasks = problem.tasks(int(user), final=True)
            prompt = problem.requests(tasks[:1], int(template))[0].prompt if tasks else None
        deviates = bool(decision.deviates[i])
        reason = rule.reason(deviates, float(decision.margins[i]), catalog.ids[int(decision.defaults[i])],
                             catalog.ids[int(decision.greedy[i])])
        choices.append(UserChoice(user_id=data.user_ids[int(user)], template_id=catalog.ids[int(template)],
                                  probabilities=tuple(float(p) for p in row), prompt=prompt,
                                  split=part_of[int(user)], deviates=deviates, reason=reason))
    evaluation = metrics.get("evaluation")
    scan = (rule.scan.get("templates") or (evaluation or {}).get("template_scan")
            or (metrics.get("train") or {}).get("template_ranking") or [])
    ranking = [TemplateScore(r["template_id"], r["mean_reward"], int(r["n"])) for r in scan]
    if not any(s.mean_reward is not None for s in ranking):
        ranking = [TemplateScore(tid, None, 0) for tid in catalog.ids]
    cfg = config_to_dict(config)
    return PromptBook.build(
        run={"name": config.name, "seed": config.seed, "selector": "policy",
             "policy": config.policy.kind, "run_dir": run.root.name},
        ranker_identity=identity,
        dataset={"name": data.name, "format": config.data.format, "n_users": data.n_users,
                 "n_items": data.n_items, "n_interactions": data.n_interactions},
        split={"n_train": len(split.train), "n_val": len(split.val), "n_test": len(split.test),
               "time_cut": int(problem.time_cut), **cfg["split"]},
        reward=cfg["reward"],
        catalog_name=config.templates.catalog,
        catalog_slots=catalog.slots,
        templates=[catalog[i] for i in range(len(catalog))],
        global_ranking=ranking,
        choices=choices,
        evaluation=_book_evaluation(evaluation),
        default_template=rule.default,
        gate=rule.to_json(),
    )


def _book_evaluation(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    """The evaluation summary a prompt book carries (means and intervals, not per-user data)."""
    if not evaluation:
        return None
    keep = ("split", "n_users", "confidence", "n_bootstrap", "paired", "paired_raw", "drop", "llm")
    out = {k: evaluation[k] for k in keep if k in evaluation}
    out["methods"] = {n: {"metrics": r["metrics"], "calls": r.get("calls"), "tokens": r.get("tokens")}
                      for n, r in evaluation.get("methods", {}).items()}
    if "periods" in evaluation:
        out["periods"] = {p: evaluation["periods"][p]["methods"] for p in ("source", "target")
                          if p in evaluation["periods"]}
    return out


def check_no_secrets(path: Path, config: ExperimentConfig) -> None:
    """Refuse to leave a file that contains the value of the ranker's API key (or any secret).

    Raises:
        ConfigError: A secret's value appears in the file (the file is deleted).
    """
    secrets = secret_values([config.ranker.api_key_env])
    if not secrets:
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    leaked = [name for name in os.environ if os.environ[name] in secrets and os.environ[name] in text]
    if leaked:
        path.unlink()
        raise ConfigError(f"{path} would contain the value of ${leaked[0]}; it was deleted. Report this bug.")
