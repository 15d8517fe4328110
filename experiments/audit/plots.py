"""PNG plots of a fairness audit, drawn from its JSON (matplotlib Agg, imported lazily).

One plot per attribute: the similarity of each value's copies to the neutral ranking (Jaccard@K,
SERP*@K, PRAG*@K, means with intervals) and, dashed, ``1 -`` the noise level of the flag metric's
SNSR below the highest mean (an SNSR above the noise reaches below that line). One plot of the
group gaps: every selector's NDCG@10 per group of each dataset attribute.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptopt.fairness.similarity import SIMILARITY_LABELS, SIMILARITY_NAMES


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, plt: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def attribute_similarity(attribute: Mapping[str, Any], k: int, path: Path) -> Path:
    """Bars: per value, each similarity's mean and interval; the flag metric's noise band."""
    plt = _pyplot()
    values = [v["value"] for v in attribute["values"]]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(values) + 2), 3.4))
    width = 0.8 / len(SIMILARITY_NAMES)
    for j, metric in enumerate(SIMILARITY_NAMES):
        cells = [v["similarity"][metric] for v in attribute["values"]]
        xs = [i + (j - 1) * width for i in range(len(values))]
        means = [c["mean"] for c in cells]
        errors = [[m - c["low"] for m, c in zip(means, cells)], [c["high"] - m for m, c in zip(means, cells)]]
        ax.bar(xs, means, width=width, yerr=errors, capsize=2, label=f"{SIMILARITY_LABELS[metric]}@{k}")
    flag = attribute["flag_metric"]
    top = max(v["similarity"][flag]["mean"] for v in attribute["values"])
    noise = attribute["dispersion"][flag]["noise"]
    ax.axhline(top - noise, color="black", linestyle="--", linewidth=0.8,
               label=f"highest {SIMILARITY_LABELS[flag]} - noise")
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(values, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("similarity to the neutral ranking")
    verdict = "flagged" if attribute["flagged"] else "not above noise"
    snsr = attribute["dispersion"][flag]["snsr"]
    ax.set_title(f"{attribute['name'].replace('_', ' ')}: {SIMILARITY_LABELS[flag]} SNSR {snsr:.3f} "
                 f"(noise {noise:.3f}, {verdict})", fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, plt, path)


def group_gaps(gaps: list[Mapping[str, Any]], path: Path) -> Path | None:
    """One panel per dataset attribute: every selector's NDCG@10 per eligible group, with intervals."""
    panels = [g for g in gaps if g["eligible"]]
    if not panels:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.8 * len(panels)), squeeze=False)
    for ax, gap in zip(axes[:, 0], panels):
        groups = gap["eligible"]
        names = list(gap["selectors"])
        width = 0.8 / max(len(names), 1)
        for j, name in enumerate(names):
            cells = [gap["selectors"][name]["groups"][g] for g in groups]
            xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(groups))]
            means = [c["mean"] for c in cells]
            errors = [[m - c["low"] for m, c in zip(means, cells)],
                      [c["high"] - m for m, c in zip(means, cells)]]
            ax.bar(xs, means, width=width, yerr=errors, capsize=2, label=name)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{g} ({gap['sizes'][g]})" for g in groups], rotation=20, ha="right", fontsize=7)
        ax.set_ylabel("NDCG@10")
        ax.set_title(f"{gap['attribute']}: NDCG@10 by group (users)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return _save(fig, plt, path)


def write_audit_plots(audit: Mapping[str, Any], folder: Path) -> dict[str, Path]:
    """Every plot of an audit's JSON into ``folder``; name -> path."""
    k = int(audit["settings"]["k"])
    out: dict[str, Path] = {}
    for attribute in audit["counterfactual"]["all"]["attributes"]:
        out[f"similarity_{attribute['name']}"] = attribute_similarity(
            attribute, k, folder / f"similarity_{attribute['name']}.png")
    gaps = group_gaps(audit.get("group_gaps") or [], folder / "group_gaps.png")
    if gaps is not None:
        out["group_gaps"] = gaps
    return out
