"""Rules that choose templates: the safety gate, the default's confirmation, per-user bounds.

Every function here is a pure function of arrays (or of a problem and a ranker it is handed): no
study settings, no globals, nothing read from disk, so the rules can be used by any selector path.

* :func:`gate_choices` / :class:`GatedSelector` — a policy behind a safety gate: the default
  template for everyone, the policy's greedy choice only where its probability margin passes a
  threshold;
* :func:`choose_gate_threshold` — the threshold validated on held-out users (a bootstrap lower bound
  of the gain must be > 0, else the gate never deviates);
* :func:`confirm_top2` — identify the default within a call budget: the policy's two favourite
  templates compared, paired, on as many training users as the remaining distinct calls allow
  (counted by :class:`CountingRanker`);
* :func:`realistic_choices` / :class:`PerUserChoiceSelector` — the best template on each user's
  earlier targets (a realistic per-user bound);
* :func:`ridge_choices` — deviate from a default where a ridge regression on features predicts a gain;
* :func:`bootstrap_bounds` — the percentile bootstrap the rules test their gains with.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

GATE_BOOTSTRAP_RESAMPLES = 1000
"""Resamples of the bootstrap that validates a gate threshold."""


def bootstrap_bounds(
    values: np.ndarray | Sequence[float],
    *,
    n_resamples: int = GATE_BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile-bootstrap bounds of the mean of ``values`` (``scipy.stats.bootstrap``).

    Resamples are drawn from ``numpy.random.default_rng(seed)``. ``nan`` bounds when ``values`` is
    empty or holds a non-finite value; a single value is its own interval.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0 or not np.isfinite(x).all():
        return float("nan"), float("nan")
    if x.size == 1:  # every resample is the one value (scipy needs two)
        return float(x[0]), float(x[0])
    from scipy.stats import bootstrap

    interval = bootstrap(
        (x,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        random_state=np.random.default_rng(seed),
    ).confidence_interval
    return float(interval.low), float(interval.high)


# ---------------------------------------------------------------------- the safety gate
def gate_choices(probs: np.ndarray, default: int, threshold: float) -> np.ndarray:
    """Per user, the policy's greedy template where its margin over the default passes ``threshold``.

    For a user with policy probabilities p, greedy choice g and default template d: g when
    ``g != d`` and ``p[g] - p[d] >= threshold``, else d (``threshold = inf``: always d).

    Shapes: ``probs (n, T)`` -> ``(n,)`` int64.
    """
    greedy = probs.argmax(axis=1)
    margin = probs[np.arange(len(probs)), greedy] - probs[:, default]
    return np.where((greedy != default) & (margin >= threshold), greedy, default).astype(np.int64)


def choose_gate_threshold(
    probs: np.ndarray,
    default: int,
    scores: np.ndarray,
    grid: Sequence[float],
    *,
    seed: int,
    n_resamples: int = GATE_BOOTSTRAP_RESAMPLES,
) -> float:
    """The threshold with the best validated gain whose 95% bootstrap lower bound is > 0.

    Args:
        probs: ``(n, T)`` policy probabilities of the validation users.
        default: The default template.
        scores: ``(n, T)`` score of every template on the validation users' targets (``nan``: the
            user cannot fill it; counted as no gain).
        grid: Candidate thresholds.
        seed: Seed of the bootstrap.
        n_resamples: Bootstrap resamples.

    Returns:
        The threshold, or ``inf`` (never deviate) when no candidate's gain passes.
    """
    best, best_gain = float("inf"), 0.0
    rows = np.arange(len(scores))
    for threshold in grid:
        choice = gate_choices(probs, default, threshold)
        gain = np.nan_to_num(scores[rows, choice] - scores[rows, default])
        if (
            np.any(gain)
            and bootstrap_bounds(gain, n_resamples=n_resamples, seed=seed)[0] > 0
            and gain.mean() > best_gain
        ):
            best, best_gain = float(threshold), float(gain.mean())
    return best


class GatedSelector:
    """A policy behind the safety gate of :func:`gate_choices`.

    Args:
        policy: Anything with ``action_probabilities(users) -> (n, T)`` (a PPO selector).
        default: The default template.
        threshold: The gate's probability margin (``inf``: never deviate).
        name: Report name.
    """

    def __init__(self, policy: Any, default: int, threshold: float, name: str = "policy_safe") -> None:
        self.policy, self.default, self.threshold, self.name = policy, default, threshold, name

    def select(self, users: np.ndarray) -> np.ndarray:
        probs = self.policy.action_probabilities(np.asarray(users, dtype=np.int64))
        return gate_choices(probs, self.default, self.threshold)


# ---------------------------------------------------------------------- the default, within a budget
class CountingRanker:
    """Passes requests on and counts the distinct ones: the calls a run with its own cold cache pays."""

    def __init__(self, ranker: Any) -> None:
        self.ranker = ranker
        self.seen: set[Any] = set()
        self.requests = 0
        self.identity = ranker.identity

    def rank(self, requests: Sequence[Any]) -> list[Any]:
        self.requests += len(requests)
        self.seen.update(requests)
        return self.ranker.rank(requests)

    @property
    def calls(self) -> int:
        return len(self.seen)


def confirm_top2(
    problem: Any,
    counter: CountingRanker,
    mean_probs: np.ndarray,
    pool: np.ndarray,
    train: np.ndarray,
    cap: int,
    *,
    seed: int,
) -> tuple[int, dict[str, Any]]:
    """Spend what is left of a call budget comparing the policy's two favourite templates.

    The two templates with the highest mean policy probability are scored on the ``pool`` and on
    seeded training users outside it, as many as the remaining distinct calls allow (``cap`` minus
    what ``counter`` has seen); the one with the better mean reward, paired over those users, wins.

    Args:
        problem: The problem (tasks, masks, requests, :meth:`run`).
        counter: The ranker the policy trained through (its distinct calls count against ``cap``).
        mean_probs: ``(T,)`` mean policy probability of each template on the training users.
        pool: Training users the policy trained on (scored first).
        train: All training users.
        cap: Distinct calls allowed in total (training included).
        seed: Seed of the order of the further users.

    Returns:
        The winning template and ``confirm_users`` / ``confirm_top2`` / ``confirm_means``.
    """
    top = [int(t) for t in np.argsort(-mean_probs, kind="stable")[:2]]
    rest = np.random.default_rng(seed + 1).permutation(np.setdiff1d(train, pool))
    chosen: list[int] = []
    spent = counter.calls
    for user in np.concatenate([pool, rest]):
        tasks = problem.tasks(int(user))
        new = {r for t in top if problem.action_mask(int(user))[t] for r in problem.requests(tasks, t)}
        new -= counter.seen
        if spent + len(new) > cap:
            break
        spent += len(new)
        chosen.append(int(user))
    users = np.array(chosen, dtype=np.int64)
    rewards = np.full((users.size, 2), np.nan)
    for k, template in enumerate(top):
        for i, outcome in enumerate(problem.run(users, [template] * users.size, counter)):
            if outcome is not None and outcome.valid:
                rewards[i, k] = outcome.reward.total
    both = np.isfinite(rewards).all(axis=1)
    means = rewards[both].mean(axis=0) if both.any() else np.zeros(2)
    winner = top[int(np.argmax(means))]
    return winner, {"confirm_users": int(users.size), "confirm_top2": top, "confirm_means": means.tolist()}


# ---------------------------------------------------------------------- per-user choices
class PerUserChoiceSelector:
    """A precomputed template per user; ``default`` for a user without one."""

    def __init__(self, name: str, choices: dict[int, int], default: int) -> None:
        self.name, self.choices, self.default = name, choices, default

    def select(self, users: np.ndarray) -> np.ndarray:
        return np.array([self.choices.get(int(u), self.default) for u in users], dtype=np.int64)


def realistic_choices(
    earlier: Sequence[np.ndarray], users: np.ndarray, order: Sequence[int]
) -> dict[int, int]:
    """Per user, the template with the best mean score on the user's earlier targets.

    Args:
        earlier: ``(n, T)`` scores per earlier target (``nan``: invalid or no such target), rows
            aligned with ``users``.
        users: ``(n,)`` users.
        order: Every template, best first: breaks ties (and chooses for a user without scores).
    """
    stacked = np.stack(list(earlier))  # (k, n, T)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # users without an earlier target
        mean = np.nanmean(stacked, axis=0)
    rank = np.empty(len(order), dtype=np.float64)
    rank[list(order)] = np.arange(len(order))
    out = {}
    for i, user in enumerate(users):
        row = np.where(np.isfinite(mean[i]), mean[i], -np.inf)
        top = np.flatnonzero(row >= row.max() - 1e-12)
        out[int(user)] = int(top[np.argmin(rank[top])])
    return out


def ridge_choices(
    x_train: np.ndarray, gains_train: np.ndarray, x_eval: np.ndarray, margin: float, ridge: float = 10.0
) -> np.ndarray:
    """Per template, ridge-regress the gain over the default on features; deviate where > ``margin``.

    A template with fewer than 5 known training gains is never chosen.

    Shapes: ``x_train (n, d)``, ``gains_train (n, K)`` (``nan`` = unknown), ``x_eval (m, d)`` ->
    ``(m,)`` index of the chosen template among the K, ``-1`` = the default.
    """
    xb = np.hstack([x_train, np.ones((len(x_train), 1))])
    eb = np.hstack([x_eval, np.ones((len(x_eval), 1))])
    pred = np.full((len(x_eval), gains_train.shape[1]), -np.inf)
    for k in range(gains_train.shape[1]):
        ok = np.isfinite(gains_train[:, k])
        if ok.sum() < 5:
            continue
        a = xb[ok].T @ xb[ok] + ridge * np.eye(xb.shape[1])
        pred[:, k] = eb @ np.linalg.solve(a, xb[ok].T @ gains_train[ok, k])
    best = pred.argmax(axis=1)
    return np.where(pred[np.arange(len(pred)), best] > margin, best, -1)
