"""The study's five targets, measured from the ``study.json`` dict (nothing is typed by hand).

1. non-inferiority of the gated policy to the best fixed template (:func:`noninferiority`);
2. the best fixed template identified within the budget (:func:`budget_identification`);
3. what the graph adds (paired comparisons, read straight from :class:`PooledResults`);
4. drift: the robust reward reduces the source -> target drop (:func:`drift_reduction`);
5. the search for signal: a template family where per-user choice pays (:func:`signal_search`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptopt.experiments.study.answers import AnswerTable
from promptopt.experiments.study.choice_rules import ridge_choices
from promptopt.experiments.study.pooled import Interval, PooledResults, mean_interval
from promptopt.profile import PROFILE_FEATURES
from promptopt.selector_names import RAW_POLICY, SAFE_POLICY

NONINFERIORITY_MARGIN = -0.005
"""Target 1: the paired lower bound of policy - best fixed must exceed it."""
RIDGE_MARGINS = (0.0, 0.02, 0.05, 0.1)
"""Candidate gain margins of the search's ridge selector (chosen on validation users)."""


@dataclass(frozen=True)
class TargetResults:
    """Targets 1, 2, 4 and 5 (target 3 is a set of paired comparisons of the pooled results)."""

    noninferiority: list[dict[str, Any]]
    budget: list[dict[str, Any]]
    drift: dict[str, Any]
    signal: list[dict[str, Any]]


def measure_targets(run: Mapping[str, Any], pooled: PooledResults) -> TargetResults:
    return TargetResults(
        noninferiority(pooled), budget_identification(run), drift_reduction(pooled), signal_search(run)
    )


def noninferiority(pooled: PooledResults) -> list[dict[str, Any]]:
    """Per reward, the gated and the raw policy minus the best fixed template (paired, test users)."""
    out = []
    for reward in ("accuracy", "robust"):
        for name in (SAFE_POLICY, RAW_POLICY):
            cell = pooled.paired(reward, "last", name, "best_fixed")
            out.append(
                {
                    "reward": reward,
                    "selector": name,
                    "diff": cell,
                    "noninferior": cell[1] > NONINFERIORITY_MARGIN,
                    "superior": cell[1] > 0,
                }
            )
    return out


def budget_identification(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per seed and reward: did PPO identify the sweep's winner within the budget share of calls?"""
    out = []
    tables = run["tables"]
    ids = run["templates"]
    for seed in run["seeds"]:
        for reward, res in seed["rewards"].items():
            sweep = AnswerTable.from_json(tables[f"train_{reward}"]).reward
            winner, found = res["sweep_order"][0], res["identified"]
            ok = np.isfinite(sweep[:, winner]) & np.isfinite(sweep[:, found])
            gap = mean_interval(sweep[ok, winner] - sweep[ok, found], seed=seed["seed"])
            within = found == winner or gap[1] <= 0
            calls = res["train"]["policy"]["distinct_calls"]
            share = calls / res["exhaustive_calls"]
            out.append(
                {
                    "seed": seed["seed"],
                    "reward": reward,
                    "winner": ids[winner],
                    "identified": ids[found],
                    "gap": gap,
                    "within": within,
                    "calls": calls,
                    "exhaustive": res["exhaustive_calls"],
                    "share": share,
                    "met": within and share <= run["config"]["study"]["budget_share"] + 1e-9,
                }
            )
    return out


DRIFT_SELECTORS = ("random", "best_fixed", "epsilon_greedy", "linucb", "mlp_ppo", RAW_POLICY, SAFE_POLICY,
                   "oracle")
"""Selectors whose source- and target-period scores the drift section reports."""


def drift_reduction(pooled: PooledResults) -> dict[str, Any]:
    """Target 4, per selector: each reward's source- and target-period NDCG@10 and its change.

    Paired over the test users who have a target in both periods under both rewards (each user's
    value is its mean over seeds): per reward the source mean, the target mean and the change
    ``target - source`` (negative: the score falls under drift), each with its 95% bootstrap
    interval; then, robust minus accuracy, the target-period difference (``target_gain``, what the
    drift-robust reward buys where it is deployed) and the difference of changes (``reduction`` =
    robust change - accuracy change = accuracy drop - robust drop: positive when the robust reward
    falls less). Selectors without both periods are left out.
    """
    out: dict[str, Any] = {}
    for name in DRIFT_SELECTORS:
        cells = {
            (r, p): pooled.values(r, p, name) for r in ("accuracy", "robust") for p in ("source", "target")
        }
        users = sorted(set.intersection(*(set(v) for v in cells.values())))
        if not users:
            continue
        v = {k: np.array([cell[u] for u in users]) for k, cell in cells.items()}
        change = {r: v[(r, "target")] - v[(r, "source")] for r in ("accuracy", "robust")}
        finals = {r: pooled.values(r, "final", name) for r in ("accuracy", "robust")}
        out[name] = {
            "n_users": len(users),
            **{
                r: {
                    "source": mean_interval(v[(r, "source")]),
                    "target": mean_interval(v[(r, "target")]),
                    "change": mean_interval(change[r]),
                    # deploy: each of these users' last item too (beside its first from the cut on)
                    "final": mean_interval([finals[r][u] for u in users if u in finals[r]]),
                }
                for r in ("accuracy", "robust")
            },
            "target_gain": mean_interval(v[("robust", "target")] - v[("accuracy", "target")]),
            "source_gain": mean_interval(v[("robust", "source")] - v[("accuracy", "source")]),
            "reduction": mean_interval(change["robust"] - change["accuracy"]),
        }
    return out


def signal_search(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per template family: does per-user choice beat the family's own best fixed template?

    For each family F (and the whole catalog) on test users' last item: the family's best fixed
    template f (chosen on training users) minus the global best fixed g, and, against f (paired):
    the oracle within F, the realistic per-user bound (best member on the user's earlier targets)
    and a ridge selector on observation features deviating from f only where its predicted gain
    passes a margin validated on validation users.
    """
    ids, tables = run["templates"], run["tables"]

    def ndcg(name: str) -> np.ndarray:
        return AnswerTable.from_json(tables[name]).ndcg

    train, val, last = ndcg("train_accuracy"), ndcg("val"), ndcg("test_last")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        earlier = np.nanmean(np.stack([ndcg("test_back1"), ndcg("test_back2")]), axis=0)
    g = int(np.nanargmax(np.nanmean(train, axis=0)))
    families = {"all templates": list(ids), **run["config"]["study"]["families"]}
    out = []
    for family, members in families.items():
        idx = [ids.index(t) for t in members]
        f = idx[int(np.nanargmax(np.nanmean(train[:, idx], axis=0)))]
        k_f = idx.index(f)

        def filled(table: np.ndarray, idx: list[int] = idx, f: int = f) -> np.ndarray:
            # A user who cannot fill a member keeps the family's best fixed template.
            return np.where(np.isfinite(table[:, idx]), table[:, idx], table[:, [f]])

        sub, sub_val, sub_train = filled(last), filled(val), filled(train)
        ok = np.isfinite(sub[:, k_f]) & np.isfinite(last[:, g])
        base = sub[:, k_f]
        e = np.where(np.isfinite(earlier[:, idx]), earlier[:, idx], -np.inf)
        e[~np.isfinite(e).any(axis=1) | (e.max(axis=1) == -np.inf), k_f] = 0.0
        real = sub[np.arange(len(sub)), e.argmax(axis=1)]
        adv_e, adv_l = earlier[:, idx] - earlier[:, [f]], sub - sub[:, [k_f]]
        both = np.isfinite(adv_e) & np.isfinite(adv_l) & (np.arange(len(idx))[None, :] != k_f)
        corr = float(np.corrcoef(adv_e[both], adv_l[both])[0, 1]) if both.sum() > 2 else float("nan")
        ridge = np.mean(
            [_ridge_values(run, seed, sub, sub_val, sub_train, k_f) for seed in run["seeds"]], axis=0
        )
        out.append(
            {
                "family": family,
                "templates": members,
                "family_best": ids[f],
                "global_best": ids[g],
                "fixed": mean_interval(base[ok] - last[ok, g]),
                "oracle": mean_interval(sub.max(axis=1)[ok] - base[ok]),
                "realistic": mean_interval(real[ok] - base[ok]),
                "ridge": mean_interval(ridge[ok] - base[ok]),
                "corr": corr,
            }
        )
    return out


def _ridge_values(
    run: Mapping[str, Any],
    seed: Mapping[str, Any],
    sub: np.ndarray,
    sub_val: np.ndarray,
    sub_train: np.ndarray,
    k_f: int,
) -> np.ndarray:
    """One seed's ridge selector within a family: its test users' NDCG@10 (``sub``'s rows).

    ``sub``, ``sub_val``, ``sub_train``: the family's columns of the test-last, validation and
    training tables; ``k_f``: the column of the family's best fixed template.
    """
    tables = run["tables"]
    feats = np.array(seed["features"])
    pos = {u: i for i, u in enumerate(seed["feature_users"])}
    x = {k: feats[[pos[u] for u in tables[k]["users"]]] for k in ("train_accuracy", "val", "test_last")}
    gains = sub_train - sub_train[:, [k_f]]
    best_margin, best_gain = np.inf, 0.0
    for margin in RIDGE_MARGINS:
        pick = ridge_choices(x["train_accuracy"], gains, x["val"], margin)
        chosen = np.where(pick >= 0, sub_val[np.arange(len(sub_val)), np.maximum(pick, 0)], sub_val[:, k_f])
        gain = float(np.nanmean(chosen - sub_val[:, k_f]))
        if gain > best_gain:
            best_margin, best_gain = margin, gain
    pick = ridge_choices(x["train_accuracy"], gains, x["test_last"], best_margin)
    return np.where(pick >= 0, sub[np.arange(len(sub)), np.maximum(pick, 0)], sub[:, k_f])


def gains_by_mainstreamness(
    run: Mapping[str, Any],
) -> tuple[str, list[str], list[tuple[str, list[Interval]]]]:
    """Gain of each template over the global best fixed, per test-user mainstreamness tertile.

    Returns:
        The global best fixed template, the tertiles' names, and per other template its gain in
        each tertile.
    """
    ids, tables = run["templates"], run["tables"]
    last = AnswerTable.from_json(tables["test_last"]).ndcg
    train = AnswerTable.from_json(tables["train_accuracy"]).ndcg
    g = int(np.nanargmax(np.nanmean(train, axis=0)))
    main = np.array(run["profile"])[:, PROFILE_FEATURES.index("mainstreamness")]
    cuts = np.quantile(main, [1 / 3, 2 / 3])
    groups = {
        "niche (lowest third)": main <= cuts[0],
        "middle": (main > cuts[0]) & (main <= cuts[1]),
        "mainstream (top third)": main > cuts[1],
    }
    rows = []
    for t, tid in enumerate(ids):
        if t == g:
            continue
        gains = [last[mask, t] - last[mask, g] for mask in groups.values()]
        rows.append((tid, [mean_interval(d[np.isfinite(d)]) for d in gains]))
    return ids[g], list(groups), rows
