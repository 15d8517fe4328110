"""The headline results as a LaTeX table, for papers (``RUN_DIR/results.tex``).

A ``booktabs`` table (``\\usepackage{booktabs}``): one row per selector, the chosen metrics as
``mean [low, high]`` with the bootstrap interval, the requests each selector spent. The best mean of
each column among the selectors that can ship is bold; the oracle is marked as the upper bound it is
(it scores every template on every user). The caption names the users the numbers come from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from promptopt.experiments.report import metric_label

HEADLINE_METRICS: tuple[str, ...] = ("ndcg@10", "hit@10", "mrr")
UPPER_BOUNDS = frozenset({"oracle"})

_ESCAPES = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return "".join(_ESCAPES.get(c, c) for c in text)


def results_table(
    evaluation: Mapping[str, Any],
    *,
    metrics: Sequence[str] = HEADLINE_METRICS,
    label: str = "tab:promptopt-results",
    title: str = "",
) -> str:
    """The ``table`` environment of the evaluation section of ``metrics.json``.

    Args:
        evaluation: ``metrics.json``'s ``evaluation`` (``methods``, ``split``, ``n_users``, ``confidence``).
        metrics: Metric columns, in order.
        label: The ``\\label``.
        title: Words put before the caption (the run or dataset name).
    """
    methods: Mapping[str, Any] = evaluation.get("methods") or {}
    metrics = [m for m in metrics if any(m in r.get("metrics", {}) for r in methods.values())]
    requests = any("calls" in r for r in methods.values())
    best = {m: max((r["metrics"][m]["mean"] for n, r in methods.items()
                    if n not in UPPER_BOUNDS and m in r.get("metrics", {})), default=None)
            for m in metrics}
    conf = round(100 * float(evaluation.get("confidence", 0.95)))
    split = {"test": "held-out test users", "val": "validation users"}.get(
        evaluation.get("split", "test"), f"{evaluation.get('split')} users")
    note = f" {escape(evaluation['note'])}" if evaluation.get("note") else ""
    prefix = f"{escape(title)}: " if title else ""
    caption = (f"{prefix}selectors on {evaluation.get('n_users', '?')} {split}; "
               f"mean with its {conf}\\% bootstrap interval."
               + (" $\\dagger$: the per-user oracle, an upper bound that scores every template on every user."
                  if UPPER_BOUNDS & set(methods) else "")
               + note)
    lines = [
        "% promptopt: headline results (needs \\usepackage{booktabs})",
        "\\begin{table}[t]",
        "\\centering",
        "\\small",
        f"\\begin{{tabular}}{{l{'c' * len(metrics)}{'r' if requests else ''}}}",
        "\\toprule",
        " & ".join(["Selector", *(escape(metric_label(m)) for m in metrics),
                    *(["Requests"] if requests else [])]) + " \\\\",
        "\\midrule",
    ]
    for name, result in methods.items():
        cells = [escape(name) + ("$^\\dagger$" if name in UPPER_BOUNDS else "")]
        for m in metrics:
            cell = result.get("metrics", {}).get(m)
            if cell is None:
                cells.append("--")
                continue
            mean = f"{cell['mean']:.3f}"
            if name not in UPPER_BOUNDS and best[m] is not None and cell["mean"] == best[m]:
                mean = f"\\textbf{{{mean}}}"
            cells.append(f"{mean} [{cell['low']:.3f}, {cell['high']:.3f}]")
        if requests:
            cells.append(f"{int(result.get('calls', 0)):,}".replace(",", "{,}"))
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{caption}}}", f"\\label{{{label}}}",
              "\\end{table}", ""]
    return "\n".join(lines)


def write_results_table(path: Path, evaluation: Mapping[str, Any], *, title: str = "") -> Path:
    """Write :func:`results_table` to ``path``."""
    path.write_text(results_table(evaluation, title=title), encoding="utf-8")
    return path
