r"""Per attribute: similarity by value, SNSR / SNSV, and whether they rise above their noise level.

Inputs are tables of one similarity per (audited pair, value)
(:func:`promptopt.fairness.rankings.similarity_table`).
The value's similarity :math:`\mathrm{Sim}(a)` is the mean over pairs (with a percentile bootstrap
interval over pairs); SNSR and SNSV summarise the values (:mod:`promptopt.fairness.similarity`).

**Noise level.** Even a model that treats every value alike gives per-value means that differ by
chance: every copy is a different prompt, and only finitely many users are audited. The noise level
is measured on label-shuffled copies: within each pair, the copies' value labels are permuted at
random (what a value-blind ranker would make exchangeable), and SNSR is recomputed,
``n_permutations`` times. The attribute's noise level is the :math:`1 - \alpha / m` quantile of those
SNSRs (``m`` attributes audited: a Bonferroni correction, so that with value-blind rankings no
attribute at all is flagged with probability at least :math:`1 - \alpha`), and its permutation
p-value is :math:`(1 + \#\{\mathrm{SNSR}_\pi \ge \mathrm{SNSR}\}) / (1 + P)`. An attribute is
**flagged** when its SNSR (of ``flag_metric``) is above its noise level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptopt.evaluation import Interval, bootstrap_interval
from promptopt.fairness.similarity import snsr, snsv

_MAX_CELLS = 2_000_000  # permuted floats held at once


def permutation_snsr(table: np.ndarray, *, n_permutations: int, seed: int = 0) -> np.ndarray:
    """SNSR of ``table`` after permuting each row's value labels, ``n_permutations`` times.

    Shapes:
        ``table (n, V)`` -> ``(n_permutations,)``.
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    x = np.asarray(table, dtype=np.float64)
    n, v = x.shape
    out = np.empty(n_permutations)
    if n == 0 or v < 2:
        out[:] = 0.0
        return out
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_CELLS // (n * v))
    for start in range(0, n_permutations, chunk):
        size = min(chunk, n_permutations - start)
        shuffled = rng.permuted(np.broadcast_to(x, (size, n, v)), axis=2)
        means = shuffled.mean(axis=1)  # (size, V)
        out[start:start + size] = means.max(axis=1) - means.min(axis=1)
    return out


@dataclass(frozen=True)
class Dispersion:
    """SNSR / SNSV of one similarity over an attribute's values, and the SNSR's noise level.

    Attributes:
        snsr: Range of the per-value means.
        snsv: Population standard deviation of the per-value means.
        noise: The ``1 - level`` quantile of SNSR on label-shuffled copies.
        p_value: Permutation p-value of the SNSR.
    """

    snsr: float
    snsv: float
    noise: float
    p_value: float

    @property
    def above_noise(self) -> bool:
        return self.snsr > self.noise + 1e-12

    def to_json(self) -> dict[str, float | bool]:
        return {"snsr": self.snsr, "snsv": self.snsv, "noise": self.noise, "p_value": self.p_value,
                "above_noise": self.above_noise}


def dispersion(table: np.ndarray, *, level: float, n_permutations: int, seed: int = 0) -> Dispersion:
    """SNSR and SNSV of ``table``'s column means, with the noise level at ``level`` (e.g. 0.05 / m)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    x = np.asarray(table, dtype=np.float64)
    means = x.mean(axis=0) if x.shape[0] else np.zeros(x.shape[1])
    observed = snsr(means)
    null = permutation_snsr(x, n_permutations=n_permutations, seed=seed)
    noise = float(np.quantile(null, 1.0 - level))
    p_value = (1 + int((null >= observed - 1e-12).sum())) / (1 + null.size)
    return Dispersion(observed, snsv(means), noise, p_value)


@dataclass(frozen=True)
class AttributeSummary:
    """One attribute over the audited pairs.

    Attributes:
        name: The attribute.
        values: Its values, in order.
        similarity: Metric -> per value, the mean similarity and its interval.
        ndcg_change: Per value, the mean NDCG@10 change (copy - neutral) and its interval.
        dispersion: Metric -> SNSR, SNSV, noise level, p-value.
        flag_metric: The metric whose SNSR decides :attr:`flagged`.
        n_pairs: Audited (user, template) pairs.
    """

    name: str
    values: tuple[str, ...]
    similarity: Mapping[str, tuple[Interval, ...]]
    ndcg_change: tuple[Interval, ...]
    dispersion: Mapping[str, Dispersion]
    flag_metric: str
    n_pairs: int

    @property
    def flagged(self) -> bool:
        """SNSR of :attr:`flag_metric` above its noise level."""
        return self.dispersion[self.flag_metric].above_noise

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "n_pairs": self.n_pairs, "flag_metric": self.flag_metric,
            "flagged": self.flagged,
            "values": [
                {"value": value,
                 "similarity": {m: s[j].to_json() for m, s in self.similarity.items()},
                 "ndcg@10_change": self.ndcg_change[j].to_json()}
                for j, value in enumerate(self.values)
            ],
            "dispersion": {m: d.to_json() for m, d in self.dispersion.items()},
        }


def summarise_attribute(
    name: str,
    values: Sequence[str],
    similarity: Mapping[str, np.ndarray],
    ndcg_change: np.ndarray,
    *,
    flag_metric: str,
    level: float,
    n_permutations: int = 2000,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AttributeSummary:
    """Summarise one attribute's tables (each ``(n_pairs, n_values)``).

    Args:
        name: The attribute.
        values: Its values (the tables' columns).
        similarity: Metric name -> similarity table.
        ndcg_change: NDCG@10 change table.
        flag_metric: One of ``similarity``'s keys.
        level: Test level of this attribute (the family-wise alpha over the number of attributes).
        n_permutations, n_bootstrap, confidence, seed: Noise level and intervals.

    Raises:
        ValueError: ``flag_metric`` is not among the tables, or tables of the wrong shape.
    """
    if flag_metric not in similarity:
        raise ValueError(f"flag_metric {flag_metric!r} is not among {sorted(similarity)}")
    shape = (np.asarray(ndcg_change).shape[0], len(values))
    for metric, table in similarity.items():
        if np.asarray(table).shape != shape:
            got = np.asarray(table).shape
            raise ValueError(f"{metric} table of {name!r} has shape {got}, expected {shape}")
    kw = {"n_bootstrap": n_bootstrap, "confidence": confidence, "seed": seed}
    sims = {m: tuple(bootstrap_interval(np.asarray(t)[:, j], **kw) for j in range(len(values)))
            for m, t in similarity.items()}
    change = tuple(bootstrap_interval(np.asarray(ndcg_change)[:, j], **kw) for j in range(len(values)))
    disp = {m: dispersion(t, level=level, n_permutations=n_permutations, seed=seed)
            for m, t in similarity.items()}
    return AttributeSummary(name, tuple(values), sims, change, disp, flag_metric, shape[0])
