"""Markdown building blocks of RESULTS.md and its detail sections, one function per section.

Each ``*_section`` function returns the section's lines; :func:`promptopt.experiments.study.report.render`
puts them in order after the setup and the targets' summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from promptopt.experiments.study.pooled import SELECTORS, Interval, PooledResults, current_attempt
from promptopt.experiments.study.targets import NONINFERIORITY_MARGIN, gains_by_mainstreamness

LABELS = {
    "random": "random template",
    "best_fixed": "best fixed template (exhaustive sweep)",
    "epsilon_greedy": "epsilon-greedy (same budget)",
    "linucb": "LinUCB (same budget)",
    "mlp_ppo": "MLP-only PPO",
    "policy_raw": "LightGCN+MLP PPO (raw argmax)",
    "policy": "LightGCN+MLP PPO + validated gate (the safe policy)",
    "realistic": "realistic per-user bound",
    "oracle": "oracle in hindsight (upper bound)",
}
"""Each selector's name in the report's tables."""
REWARD_TITLES = {"accuracy": "Accuracy-only reward (w = 0)", "robust": "Drift-robust reward (w > 0)"}


def format_interval(cell: Interval, signed: bool = False) -> str:
    """``0.1234 [0.1000, 0.1500]`` (``signed``: with a sign, for differences); ``n/a`` for ``nan``."""
    mean, low, high = cell
    if not np.isfinite(mean):
        return "n/a"
    f = "{:+.4f}" if signed else "{:.4f}"
    return f"{f.format(mean)} [{f.format(low)}, {f.format(high)}]"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def graph_comparison(pooled: PooledResults) -> str:
    """``policy_raw > mlp_ppo`` where the paired interval is above 0, ``<`` below, ``~`` otherwise."""
    parts = []
    for other in ("mlp_ppo", "linucb"):
        _, low, high = pooled.paired("accuracy", "last", "policy_raw", other)
        parts.append(f"policy_raw {'>' if low > 0 else '<' if high < 0 else '~'} {other}")
    return "; ".join(parts) + " (paired 95% CI)"


def selectors_section(pooled: PooledResults, protocol: str = "leave_last") -> list[str]:
    """Every selector on the test users' episode target, per reward: NDCG@10, HR@10, MRR, paired gap."""
    target = "first target from the time cut on" if protocol == "deploy" else "last item"
    out = [f"## Selectors on test users ({target}; protocol {protocol})", ""]
    for reward in ("accuracy", "robust"):
        rows = []
        for name in SELECTORS:
            if not pooled.values(reward, "last", name):
                continue
            d = pooled.paired(reward, "last", name, "best_fixed") if name != "best_fixed" else None
            rows.append(
                [
                    LABELS[name],
                    format_interval(pooled.mean(reward, "last", name)),
                    format_interval(pooled.mean(reward, "last", name, metric="hit@10")),
                    format_interval(pooled.mean(reward, "last", name, metric="mrr")),
                    format_interval(d, signed=True) if d else "-",
                ]
            )
        out += [
            "### " + REWARD_TITLES[reward],
            "",
            markdown_table(["selector", "NDCG@10", "HR@10", "MRR", "NDCG@10 - best fixed (paired)"], rows),
            "",
        ]
    return out


def noninferiority_section(noninferiority: list[dict[str, Any]]) -> list[str]:
    """Target 1: the gated and the raw policy minus the best fixed template."""
    rows = [
        [
            r["reward"],
            r["selector"],
            format_interval(r["diff"], signed=True),
            str(r["noninferior"]),
            str(r["superior"]),
        ]
        for r in noninferiority
    ]
    return [
        "## 1. Non-inferiority",
        "",
        markdown_table(
            [
                "reward",
                "selector",
                "NDCG@10 - best fixed [95% CI]",
                f"lower bound > {NONINFERIORITY_MARGIN:g}",
                "lower bound > 0",
            ],
            rows,
        ),
        "",
    ]


def budget_section(budget: list[dict[str, Any]]) -> list[str]:
    """Target 2: per seed and reward, the template PPO identified and the calls it took."""
    rows = [
        [
            str(r["seed"]),
            r["reward"],
            f"`{r['winner']}`",
            f"`{r['identified']}`",
            format_interval(r["gap"], signed=True),
            str(r["within"]),
            f"{r['calls']} / {r['exhaustive']} = {r['share']:.1%}",
            str(r["met"]),
        ]
        for r in budget
    ]
    return [
        "## 2. Budget: identifying the best fixed template",
        "",
        "The exhaustive sweep scores every training user with every template (and every view of the"
        " robust reward). `gap` is the sweep's winner minus the template the safe policy identified, in"
        " the sweep's own reward, paired over training users; identified counts when it is the winner or"
        " the gap's interval includes 0. Calls: distinct requests of PPO training and the safe policy's"
        " scan.",
        "",
        markdown_table(
            [
                "seed",
                "reward",
                "sweep winner",
                "identified (scan)",
                "gap [95% CI]",
                "identified",
                "calls / exhaustive",
                "met",
            ],
            rows,
        ),
        "",
    ]


def graph_section(pooled: PooledResults) -> list[str]:
    """Target 3: paired comparisons of the graph policy, the MLP-only policy and the bandits."""
    rows = []
    for reward in ("accuracy", "robust"):
        for a, b in (
            ("policy_raw", "mlp_ppo"),
            ("policy_raw", "linucb"),
            ("mlp_ppo", "linucb"),
            ("policy_raw", "epsilon_greedy"),
        ):
            rows.append(
                [reward, f"{a} - {b}", format_interval(pooled.paired(reward, "last", a, b), signed=True)]
            )
    return [
        "## 3. What the graph adds (same budget)",
        "",
        markdown_table(["reward", "comparison", "NDCG@10 difference [95% CI]"], rows),
        "",
    ]


PROTOCOLS = {
    "leave_last": (
        "`leave_last` (training users' episode target is their second-to-last interaction whatever its"
        " date, so what learns may see target-period interactions; source = each test user's latest"
        " target before the time cut, target = their latest from it on)"
    ),
    "deploy": (
        "`deploy` (learn on the past, deploy on the future: everything that learns uses interactions"
        " and targets before the time cut only; source = each test user's latest target before the"
        " cut, target = their first from the cut on, with the history up to it)"
    ),
}
"""How each ``split.protocol`` picks the periods' targets, as the report states it."""


def protocol_of(run: Mapping[str, Any]) -> str:
    """The run's ``split.protocol`` (``leave_last`` for runs from before the key existed)."""
    return str(run["config"]["experiment"]["split"].get("protocol", "leave_last"))


def drift_section(drift: Mapping[str, Any], protocol: str = "leave_last", *, source: str = "") -> list[str]:
    """Target 4: per selector and reward, source- and target-period NDCG@10 and the change, paired
    (``source``: a sentence saying which other run the numbers come from, when one does)."""
    periods = []
    gains = []
    final = any(np.isfinite(v["accuracy"].get("final", (np.nan,))[0]) for v in drift.values())
    for name, v in drift.items():
        for reward in ("accuracy", "robust"):
            periods.append([
                LABELS.get(name, name) if reward == "accuracy" else "",
                reward,
                format_interval(v[reward]["source"]),
                format_interval(v[reward]["target"]),
                format_interval(v[reward]["change"], signed=True),
            ] + ([format_interval(v[reward].get("final", (np.nan,) * 3))] if final else []))
        gains.append([
            LABELS.get(name, name),
            format_interval(v["target_gain"], signed=True),
            format_interval(v["source_gain"], signed=True),
            format_interval(v["reduction"], signed=True),
            str(v["n_users"]),
        ])
    return [
        f"## 4. Drift (test users, protocol {protocol})",
        "",
        f"Split: test users; protocol: {PROTOCOLS.get(protocol, f'`{protocol}`')}. NDCG@10 on each"
        " test user's source- and target-period target, paired over the users who have both (the same"
        " users in every row; each user's value is its mean over seeds), 95% bootstrap intervals."
        " Change = target - source (negative: the score falls under drift)."
        + (" Last item: the same users' last interaction (under deploy the target period's first"
           " target is the headline; the last one lies further from the cut)." if final else "")
        + (f" {source}" if source else ""),
        "",
        markdown_table(["selector", "reward", "source", "target", "change (target - source)"]
                       + (["last item (deploy)"] if final else []), periods),
        "",
        "Robust minus accuracy-only reward, paired over the same users: in the target period (what the"
        " drift-robust reward buys where it is deployed), in the source period, and the difference of"
        " changes (positive: the robust reward's score falls less).",
        "",
        markdown_table(
            ["selector", "target: robust - accuracy", "source: robust - accuracy",
             "change: robust - accuracy", "users"],
            gains,
        ),
        "",
    ]


def signal_section(run: Mapping[str, Any], signal: list[dict[str, Any]]) -> list[str]:
    """Target 5: per template family, per-user choice against the family's best fixed template."""
    rows = [
        [
            r["family"],
            f"`{r['family_best']}`",
            format_interval(r["fixed"], signed=True),
            format_interval(r["oracle"], signed=True),
            format_interval(r["realistic"], signed=True),
            format_interval(r["ridge"], signed=True),
            f"{r['corr']:.3f}",
        ]
        for r in signal
    ]
    best, tertiles, gains = gains_by_mainstreamness(run)
    header = [f"template - `{best}`", *tertiles]
    taste = [[f"`{tid}`", *(format_interval(c, signed=True) for c in cells)] for tid, cells in gains]
    global_best = signal[0]["global_best"] if signal else "?"
    return [
        "## 5. Search for signal",
        "",
        "Per template family F, on test users' last item (NDCG@10, paired over users, 95% CI): the family's"
        " best fixed template f (chosen on training users) minus the global best fixed template"
        f" `{global_best}`; then, **against f**: the oracle in hindsight within F (optimistic), the"
        " realistic per-user bound (the member best on the user's 2 earlier targets), and a ridge selector"
        " on observation features (profile statistics + the seed's LightGCN embedding) trained on the"
        " training users' exhaustive answers, deviating from f only where the predicted gain passes a margin"
        " chosen on validation users (averaged over seeds). `corr`: correlation of per-user advantages over"
        " f on the earlier targets with those on the last target. Per-user choice helps where the realistic"
        " bound or the ridge selector is above 0 with its interval.",
        "",
        markdown_table(
            ["family F", "f", "f - global best", "oracle - f", "realistic - f", "ridge - f", "corr"], rows
        ),
        "",
        "Gain of each template over the global best fixed template by the test user's mainstreamness (mean"
        " popularity of their history), where collaborative hints should matter most:",
        "",
        markdown_table(header, taste),
        "",
    ]


def per_seed_section(run: Mapping[str, Any], pooled: PooledResults) -> list[str]:
    """Best fixed, raw and gated policy of each seed, with the gate's threshold."""
    rows = []
    for k, seed in enumerate(run["seeds"]):
        for reward in ("accuracy", "robust"):
            res = seed["rewards"][reward]
            cells = [
                format_interval(pooled.mean(reward, "last", n, seeds=[k]))
                for n in ("best_fixed", "policy_raw", "policy")
            ]
            threshold = res["tau"]  # the gate threshold (study.json key)
            rows.append(
                [
                    str(seed["seed"]),
                    reward,
                    *cells,
                    format_interval(
                        pooled.paired(reward, "last", "policy", "best_fixed", seeds=[k]), signed=True
                    ),
                    "never deviates" if threshold == float("inf") else f"{threshold}",
                    f"{seed['lightgcn']['recall@20']:.4f}",
                ]
            )
    return [
        "## Per seed",
        "",
        markdown_table(
            [
                "seed",
                "reward",
                "best fixed",
                "policy_raw",
                "policy",
                "policy - best fixed",
                "gate",
                "LightGCN recall@20",
            ],
            rows,
        ),
        "",
    ]


def _note_cell(note: Any) -> str:
    """The attempt's note as one table cell (a YAML-parsed mapping is joined back)."""
    if isinstance(note, dict):
        note = "; ".join(f"{k}: {v}" for k, v in note.items())
    return str(note or "-").replace("|", "/")


def attempts_section(attempts: list[dict[str, Any]]) -> list[str]:
    """Every attempt's headline numbers from the attempts log, oldest first."""
    rows = []
    for a in attempts:
        # The log's keys name the targets: t1 non-inferiority, t4 drift, t5 the search for signal.
        a = current_attempt(a)
        gated = a["t1"].get("accuracy/policy") or [float("nan")] * 3
        raw = a["t1"].get("accuracy/policy_raw") or [float("nan")] * 3
        drift = a["t4"].get("policy") or [float("nan")] * 3
        target_gain = (a.get("t4_target") or {}).get("policy") or [float("nan")] * 3
        realistic = max(
            (v["realistic"][0] for k, v in a["t5"].items() if k != "all templates"), default=float("nan")
        )
        rows.append(
            [
                a["when"],
                _note_cell(a["note"]),
                a.get("protocol", "leave_last"),
                str(a["seeds"]),
                str(a["templates"]),
                str(a["ppo_steps"]),
                format_interval(tuple(raw), signed=True),
                format_interval(tuple(gated), signed=True),
                format_interval(tuple(target_gain), signed=True),
                format_interval(tuple(drift), signed=True),
                f"{realistic:+.4f}",
                f"{a['minutes']:.1f}",
            ]
        )
    return [
        "## Attempts",
        "",
        "Every run of the study appends its headline numbers to the attempts log (`attempts.jsonl` beside"
        " the plots); the note is the config's `study.note` (what the attempt changed). Drift columns"
        " (policy, the gated policy; test users): the target-period NDCG@10 of the robust minus the"
        " accuracy-only reward, and the difference of their changes (target - source; older attempts"
        " paired source and target users independently).",
        "",
        markdown_table(
            [
                "when",
                "note",
                "protocol",
                "seeds",
                "templates",
                "PPO steps",
                "policy_raw - best fixed",
                "policy - best fixed",
                "drift: target robust - accuracy",
                "drift: change robust - accuracy",
                "best family realistic gain",
                "minutes",
            ],
            rows,
        ),
        "",
    ]


def plots_section(plots: Mapping[str, str]) -> list[str]:
    """Name -> path of each plot, relative to the report."""
    return ["## Plots", ""] + [f"![{k}]({v})" for k, v in plots.items()] + [""]
