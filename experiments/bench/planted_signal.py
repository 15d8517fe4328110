"""How well does each metric's paired signal separate the planted users? (diagnostic, reads the plant)

On the planted benchmark's answers (every user of the table x its two logged targets, ``f`` and
``t*`` as the planted ranker answers them, zero model calls), for each metric ``m``:

* the **contrast**: mean of ``m(t*) - m(f)`` on planted users minus on the others;
* the **noise**: the within-group standard deviation of the signal;
* **signal / noise** of the plain paired difference and of the control-variate signal
  ``m(t*) - beta m(f)`` (``beta`` = the within-group regression slope, the noise-minimising choice).

It reads the plant's labels, so it is not a learner: it says which signal a learner should fit.
A ratio ``r`` times larger needs ``r^2`` times fewer paired answers for the same precision.

Usage (after ``python -m promptopt.experiments.bench.planted --build``)::

    python -m promptopt.experiments.bench.planted_signal [--data ../shared/data/ml-100k]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

METRICS = ("ndcg@10", "ndcg@5", "mrr", "hit@1", "hit@10")


def separation(d: np.ndarray, planted: np.ndarray) -> tuple[float, float]:
    """Contrast of ``d`` between planted and other rows, and its within-group standard deviation."""
    contrast = float(d[planted].mean() - d[~planted].mean())
    residual = np.concatenate([d[planted] - d[planted].mean(), d[~planted] - d[~planted].mean()])
    return contrast, float(residual.std())


def main(argv: Sequence[str] | None = None) -> int:
    from promptopt.experiments.bench.bench_learning import _parse, setup
    from promptopt.experiments.bench.planted import table_rows
    from promptopt.runner import Episode

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="the ml-100k folder")
    parser.add_argument("--cache", default=None, help="the answer cache of the table")
    own = parser.parse_args(argv)
    bench = [*(["--data", own.data] if own.data else []), *(["--cache", own.cache] if own.cache else [])]
    _, problem, plant, ranker, info, users = setup(_parse(bench))
    slots = [(int(u), r) for u in users for r in table_rows(problem, int(u))[:2]]
    episodes = [Episode(u, t, row=r) for u, r in slots for t in (plant.best, plant.template)]
    outcomes = problem.run_episodes(episodes, ranker)
    f, star, planted = [], [], []
    for k, (u, _) in enumerate(slots):
        a, b = outcomes[2 * k], outcomes[2 * k + 1]
        if a is None or b is None or not (a.valid and b.valid):
            continue
        f.append([a.metrics["base"][m] for m in METRICS])
        star.append([b.metrics["base"][m] for m in METRICS])
        planted.append(bool(plant.planted[u]))
    fa, sa, pl = np.array(f), np.array(star), np.array(planted)
    print(f"f = {info['best']}, t* = {info['planted_template']}; {len(pl)} tasks ({pl.sum()} planted) "
          f"of {users.size} users x 2 targets")
    header = ("metric", "contrast", "noise", "paired s/n", "beta", "cv s/n")
    print(" | ".join(f"{h:>{w}}" for h, w in zip(header, (8, 8, 6, 10, 5, 6))))
    for k, metric in enumerate(METRICS):
        contrast, noise = separation(sa[:, k] - fa[:, k], pl)
        centred = np.concatenate([fa[pl, k] - fa[pl, k].mean(), fa[~pl, k] - fa[~pl, k].mean()])
        other = np.concatenate([sa[pl, k] - sa[pl, k].mean(), sa[~pl, k] - sa[~pl, k].mean()])
        beta = float(centred @ other / (centred @ centred))
        cv_contrast, cv_noise = separation(sa[:, k] - beta * fa[:, k], pl)
        print(f"{metric:<8} | {contrast:>+8.4f} | {noise:>6.4f} | {contrast / noise:>10.3f} | {beta:>5.2f} | "
              f"{cv_contrast / cv_noise:>6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
