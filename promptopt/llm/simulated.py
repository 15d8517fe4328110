r"""A deterministic black box with a known best template per user: a simulator for tests and demos.

:class:`SimulatedRanker` is **not** a language model. It reads who the request is for and which
template produced it from the request's typed identifiers (:class:`~promptopt.llm.types.RequestIds`:
raw user id, template id, task id and view), looks up a hidden quality, and places the user's
held-out item accordingly. It is built from the problem it simulates (the dataset, the catalog
and the profile encoder the policy observes), by whoever holds that problem
(``promptopt.experiments.assembly.make_simulator`` for a run), never from a config alone. It lets the whole
pipeline (env, PPO, baselines, evaluation, export) run offline in seconds with a known optimum.

The hidden rule
---------------
Users live in a 4-d *profile space* of properties a policy observes
(:class:`~promptopt.profile.ProfileEncoder` features): ``z(u) = (history length, genre
concentration, taste shift, mainstreamness)``, each the user's quantile among all users (so every
coordinate is spread evenly over ``[0, 1]``). Each option ``o`` of each template slot suits a
point ``c_o`` of that space (e.g. history "recent50" suits long, stable histories; "shift" suits
users whose taste changed; "popular" suits mainstream users; see :data:`OPTION_POINTS`; options the
table does not know get a point hashed from their id) and may carry a penalty ``g_o`` (in NDCG)
that hurts everyone (step-by-step reasoning, title answers; :data:`OPTION_PENALTIES`). For a slot
catalog, with slot weights ``w_s`` (history 0.55, reasoning 0.25, role 0.1, output 0.1) and
coordinate weights ``v_d`` (length 0.05, concentration 0.35, shift 0.35, mainstreamness 0.25), the
cost of template ``t`` for user ``u`` is

.. math::

    C(u, t) = \alpha \sqrt{\textstyle\sum_s w_s \sum_d v_d \, (c_{o_s(t), d} - z_d(u))^2}
              + \textstyle\sum_s g_{o_s(t)}, \qquad \alpha = 5

The user's hidden best template is ``best(u) = argmin_t C(u, t)`` over the templates the user can
fill (:meth:`TemplateCatalog.valid_mask` on the history before the last interaction), and

.. math::

    q(u, t) = \mathrm{clip}\big(peak(u) - (C(u, t) - C(u, best(u))), \; q_{rand}, 1\big),
    \qquad peak(u) = 0.85 + 0.1 \, (z_{len}(u) - 0.5)

so quality falls with the (weighted) slot-space distance between the chosen template and the
user's best one. ``q_rand = 0.227`` is the NDCG@10 of a random ranking of 20 candidates; templates
the user cannot fill get it too. A listed catalog (no slots) treats each template as an option of
one slot. On synthetic data (500 users) with the default ``movies`` catalog (24 templates) this
gives an oracle of 0.85 NDCG@10, a best fixed template (falling back along its ranking where a
user cannot fill it) of about 0.6 and a random fillable template of about 0.5; the users' best
templates spread over 16 templates (none best for more than 20% of users), and a
15-nearest-neighbour rule on the observed profile statistics of 400 users reaches
0.77 on the other 100, so the mapping is learnable.

``q(u, t)`` is calibrated as the **expected NDCG@10** of the response when the request has at least
11 candidates (:meth:`SimulatedRanker.expected_quality`). On drift views (requests whose view is
not ``base``) each template loses its options' fragility ``sum_s f_{o_s}`` (:data:`OPTION_FRAGILITY`:
a 5-title history suffers most from history dropout, etc.). Per request, with ``eps ~ N(0, 1)``
drawn from a hash of ``(seed, task, template, sample id, shown order)``:

* ``e = clip(q + noise * eps, 0, 1)`` is the response's expected NDCG@10;
* the target goes to the rank ``r`` whose NDCG ``1 / log2(r + 2)`` brackets ``e``, dithered
  between the two neighbouring ranks so that ``E[NDCG@10] = e`` exactly (ranks past 10 are
  uniform in the tail);
* the negatives keep a fixed, seeded item order (like a model's popularity prior).

The target is the candidate the user interacted with in ``data`` (task negatives never are).
Everything per user is precomputed, so a request costs a few microseconds.

Planted drift
-------------
With ``drift_share = s > 0`` and a ``time_cut``, a seeded share ``s`` of users (each drifts when a
uniform draw hashed from ``(seed, raw user id)`` is below ``s``: a Bernoulli(``s``) per user,
independent of everything else) have different preferences in the *target period*, on requests
whose target interaction is at or after the cut. There the drift the drift views simulate
happens for real: every template loses ``drift_strength`` times its fragility (``kappa f_t``, the
cost a drift view charges, scaled), and the user's source-period best template ``b`` additionally
falls :data:`DRIFT_MARGIN` below the best other fillable template:

.. math::

    q_T(u, t) = \mathrm{clip}\big(q(u, t) - \kappa f_t - \Delta_u [t = b(u)], \; q_{rand}, 1\big),
    \qquad \Delta_u = \max\big(0, (q_b - \kappa f_b) - \max_{t \ne b} (q_t - \kappa f_t)
    + \text{DRIFT\_MARGIN}\big)

So the best template changes, from the cut on, for exactly the drifted users who can fill two
templates (a known share ``s`` in expectation), and never for anyone when ``s = 0``. Sturdier
templates lose less, which a drift-robust reward can learn from the source period's drift views;
whether it does is what the study measures. :meth:`SimulatedRanker.drifted` and
:meth:`SimulatedRanker.best_template` (``period="target"``) expose the plant.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

from promptopt.errors import RankerError
from promptopt.llm.types import ParseStats, RankRequest, RankResponse, RequestIds, TokenUsage
from promptopt.profile import PROFILE_FEATURES, ProfileEncoder
from promptopt.tasks import UserContext

if TYPE_CHECKING:
    from promptopt.data.interactions import InteractionData
    from promptopt.templates import TemplateCatalog

DRIVERS: tuple[str, ...] = ("history_length", "top_genre_share", "taste_shift", "mainstreamness")
"""Profile features that decide which template suits a user (coordinates of the profile space)."""

DRIVER_WEIGHTS = np.array([0.05, 0.35, 0.35, 0.25])
"""Weight ``v_d`` of each profile-space coordinate in the distance (sums to 1). History length
weighs little here because it already decides which templates a user can fill at all."""

SLOT_WEIGHTS: Mapping[str, float] = {"history": 0.55, "reasoning": 0.25, "role": 0.1, "output": 0.1}
"""How much each slot's option matters; unknown slots share the weight of the known ones."""

OPTION_POINTS: Mapping[str, Mapping[str, tuple[float, float, float, float]]] = {
    # (history length, genre concentration, taste shift, mainstreamness) the option suits best.
    "history": {
        "recent5": (0.10, 0.50, 0.75, 0.50),
        "recent10": (0.35, 0.50, 0.55, 0.50),
        "recent20": (0.60, 0.50, 0.35, 0.50),
        "recent50": (0.95, 0.50, 0.10, 0.50),
        "recency10": (0.50, 0.35, 0.95, 0.55),
        "liked10": (0.65, 0.70, 0.30, 0.35),
        "favourites10": (0.65, 0.70, 0.30, 0.35),
        "genres10": (0.40, 0.90, 0.50, 0.20),
        "tags10": (0.40, 0.90, 0.50, 0.20),
        "dated10": (0.55, 0.30, 0.80, 0.30),
        "oldest10": (0.85, 0.60, 0.00, 0.50),
        "profile": (0.90, 0.95, 0.10, 0.45),
        "profile_recent5": (0.70, 0.80, 0.65, 0.50),
        "shift": (0.85, 0.50, 1.00, 0.50),
        "attributes": (0.15, 0.25, 0.45, 0.70),
        "similar": (0.30, 0.25, 0.45, 0.95),
        "cowatched": (0.55, 0.30, 0.30, 0.85),
        "cotagged": (0.55, 0.30, 0.30, 0.85),
        "popular": (0.15, 0.50, 0.50, 1.00),
    },
    "reasoning": {
        "none": (0.50, 0.50, 0.50, 0.50),
        "preference": (0.50, 0.85, 0.30, 0.50),
        "history": (0.85, 0.50, 0.20, 0.50),
        "stepbystep": (0.50, 0.50, 0.50, 0.50),
        "recency": (0.50, 0.40, 0.95, 0.50),
        "similarity": (0.50, 0.75, 0.40, 0.20),
        "infer": (0.80, 0.30, 0.50, 0.50),
    },
    "role": {
        "none": (0.50, 0.50, 0.50, 0.50),
        "expert": (0.50, 0.50, 0.50, 0.50),
        "recommender": (0.50, 0.50, 0.50, 0.85),
        "ranker": (0.50, 0.70, 0.50, 0.50),
        "familiar": (0.50, 0.50, 0.50, 0.15),
        "dj": (0.30, 0.50, 0.70, 0.60),
    },
    "output": {
        "index": (0.50, 0.50, 0.50, 0.50),
        "json": (0.50, 0.50, 0.50, 0.50),
        "title": (0.50, 0.50, 0.50, 0.50),
    },
}
"""The profile point each known slot option suits (other options get a point hashed from their id)."""

OPTION_PENALTIES: Mapping[str, Mapping[str, float]] = {
    "reasoning": {"stepbystep": 0.15},
    "role": {"none": 0.06},
    "output": {"title": 0.15, "json": 0.05},
    "history": {"oldest10": 0.10},
}
"""NDCG@10 every user loses with an option (e.g. "think step by step" and title answers hurt)."""

OPTION_FRAGILITY: Mapping[str, Mapping[str, float]] = {
    "history": {"recent5": 0.12, "recency10": 0.06, "profile": 0.0, "recent50": 0.01, "shift": 0.02},
    "reasoning": {"recency": 0.04},
}
"""NDCG@10 lost on drift views with an option; other history options lose 0.03, other slots 0."""
_DEFAULT_FRAGILITY: Mapping[str, float] = {"history": 0.03}

PEAK_BASE = 0.85
"""Mean quality of a user's best template (expected NDCG@10)."""
PEAK_SPREAD = 0.10
"""How much more a long history helps the best template: ``peak(u) = 0.85 + 0.10 (z_len(u) - 0.5)``."""
ALPHA = 5.0
"""NDCG@10 lost per unit of weighted profile-space distance."""
DRIFT_MARGIN = 0.05
"""Planted drift: how far a drifted user's source-period best template falls below the runner-up
in the target period (expected NDCG@10)."""


def _hashed_point(slot: str, option: str) -> tuple[float, ...]:
    rng = np.random.default_rng(zlib.crc32(f"{slot}:{option}".encode()))
    return tuple(float(x) for x in rng.uniform(0.1, 0.9, size=len(DRIVERS)))


def random_ranking_ndcg(n_candidates: int, k: int = 10) -> float:
    """Expected NDCG@k of a uniformly random ranking: ``(1/n) sum_{r<min(k,n)} 1 / log2(r + 2)``."""
    return sum(1.0 / math.log2(r + 2) for r in range(min(k, n_candidates))) / n_candidates


class SimulatedRanker:
    """A deterministic simulator of a frozen LLM ranker with a hidden best template per user.

    See the module documentation for the rule. Quality is a function of the user and the template
    only (plus noise), so the oracle, best-fixed and random selectors are known in advance:
    :meth:`expected_quality` and :meth:`best_template`.

    Args:
        data: The dataset; the target of a request is the candidate the user interacted with.
        catalog: The template catalog whose ids the requests name (``RequestIds.template``).
        noise: Standard deviation of the per-request quality noise (0 = only rank dithering).
        seed: Seed of the noise, the dithering and the negatives' order.
        profile: The profile encoder policies observe (default: one over all interactions).
        drift_share: Share of users whose preferences drift at ``time_cut`` (planted drift, see the
            module documentation; 0 = none).
        drift_strength: ``kappa``: multiple of each template's drift-view fragility a drifted user's
            target-period request loses.
        time_cut: The drift time cut (Unix seconds): requests whose target interaction is at or
            after it are in the target period. Required when ``drift_share > 0``.

    Raises:
        ValueError: ``noise`` is negative, ``drift_share`` is outside [0, 1], ``drift_strength`` is
            negative, or ``drift_share > 0`` without a ``time_cut``.
    """

    def __init__(
        self,
        data: InteractionData,
        catalog: TemplateCatalog,
        *,
        noise: float = 0.05,
        seed: int = 0,
        profile: ProfileEncoder | None = None,
        drift_share: float = 0.0,
        drift_strength: float = 1.0,
        time_cut: int | None = None,
    ) -> None:
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        if not 0.0 <= drift_share <= 1.0:
            raise ValueError(f"drift_share must be in [0, 1], got {drift_share}")
        if not drift_strength >= 0.0:
            raise ValueError(f"drift_strength must be >= 0, got {drift_strength}")
        if drift_share > 0 and time_cut is None:
            raise ValueError("drift_share > 0 needs the drift time cut (time_cut, Unix seconds)")
        self.data = data
        self.catalog = catalog
        self.noise = float(noise)
        self.seed = int(seed)
        self.profile = profile if profile is not None else ProfileEncoder(data, data.item_popularity)
        self._user_index = {raw: u for u, raw in enumerate(data.user_ids)}
        self._template_index = {tid: k for k, tid in enumerate(catalog.ids)}
        self._items: list[frozenset[int]] = [
            frozenset(data.items[data.user_rows(u)].tolist()) for u in range(data.n_users)
        ]
        prior = np.random.default_rng([self.seed, 0x5EED]).random(data.n_items)
        self._prior: list[float] = prior.tolist()
        self.coordinates = self._profile_coordinates()
        points, penalty, fragility = self._template_geometry()
        self.template_points = points
        self.template_penalty = penalty
        self.template_fragility = fragility
        self.quality = self._quality_matrix()
        self._quality_rows: list[list[float]] = self.quality.tolist()
        self.drift_share = float(drift_share)
        self.drift_strength = float(drift_strength)
        self.time_cut = None if time_cut is None else int(time_cut)
        self._drifted = self._drifted_users()
        self.target_quality = self._target_quality_matrix()
        self._target_rows: list[list[float]] = self.target_quality.tolist()
        self._item_times = self._interaction_times()
        self._fragility: list[float] = fragility.tolist()
        self._normal = NormalDist()
        self._tables: dict[int, tuple[list[float], list[float], int]] = {}

    # ------------------------------------------------------------------ the hidden rule
    def _profile_coordinates(self) -> np.ndarray:
        """Shapes: ``(n_users, 4)`` quantiles of the driver features (history before the last item)."""
        columns = [PROFILE_FEATURES.index(name) for name in DRIVERS]
        raw = np.zeros((self.data.n_users, len(DRIVERS)))
        lengths = self.data.history_lengths
        for u in range(self.data.n_users):
            ctx = UserContext.at(self.data, u, max(int(lengths[u]) - 1, 0))
            raw[u] = self.profile.encode(ctx)[columns]
        # Mid-rank quantiles in (0, 1): ties share a value.
        coords = np.zeros_like(raw)
        n = max(self.data.n_users, 1)
        for d in range(raw.shape[1]):
            sorted_col = np.sort(raw[:, d])
            lo = np.searchsorted(sorted_col, raw[:, d], side="left")
            hi = np.searchsorted(sorted_col, raw[:, d], side="right")
            coords[:, d] = (lo + hi) / (2.0 * n)
        return coords

    def _template_geometry(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per template: option points ``(T, S, 4)``, penalty ``(T,)`` and fragility ``(T,)``.

        Slot weights are stored in the points' scale: ``sqrt(w_s)`` multiplies each slot's point
        difference so a plain squared distance gives ``D``.
        """
        slots = self.catalog.slots
        n = len(self.catalog)
        if slots:
            names = list(slots)
            options = [[slots[s][i] for s, i in zip(names, self.catalog.slot_vector(k))] for k in range(n)]
        else:
            names = ["template"]
            options = [[tid] for tid in self.catalog.ids]
        known = sum(SLOT_WEIGHTS[s] for s in names if s in SLOT_WEIGHTS)
        unknown = [s for s in names if s not in SLOT_WEIGHTS]
        default = (1.0 - known) / len(unknown) if unknown and known < 1.0 else 1.0 / len(names)
        weights = np.array([SLOT_WEIGHTS.get(s, default) for s in names])
        weights = weights / weights.sum()
        points = np.zeros((n, len(names), len(DRIVERS)))
        penalty = np.zeros(n)
        fragility = np.zeros(n)
        for k, opts in enumerate(options):
            for j, (slot, option) in enumerate(zip(names, opts)):
                point = OPTION_POINTS.get(slot, {}).get(option) or _hashed_point(slot, option)
                points[k, j] = np.asarray(point)
                penalty[k] += OPTION_PENALTIES.get(slot, {}).get(option, 0.0)
                fragility[k] += OPTION_FRAGILITY.get(slot, {}).get(option, _DEFAULT_FRAGILITY.get(slot, 0.0))
        self.slot_names = tuple(names)
        self.slot_weights = weights
        return points, penalty, fragility

    def _quality_matrix(self) -> np.ndarray:
        """Shapes: ``(n_users, n_templates)`` expected NDCG@10 on the base view."""
        z = self.coordinates[:, None, None, :]  # (U, 1, 1, 4)
        sq = (((self.template_points[None] - z) ** 2) * DRIVER_WEIGHTS).sum(-1)  # (U, T, S)
        cost = ALPHA * np.sqrt((sq * self.slot_weights).sum(-1)) + self.template_penalty[None]  # (U, T)
        floor = random_ranking_ndcg(20)
        lengths = self.data.history_lengths
        valid = np.ones(cost.shape, dtype=bool)
        for u in range(self.data.n_users):
            ctx = UserContext.at(self.data, u, max(int(lengths[u]) - 1, 0))
            valid[u] = np.asarray(self.catalog.valid_mask(ctx), dtype=bool)
        best_cost = np.where(valid, cost, np.inf).min(axis=1, keepdims=True)
        best_cost = np.where(np.isfinite(best_cost), best_cost, 0.0)
        peak = PEAK_BASE + PEAK_SPREAD * (self.coordinates[:, :1] - 0.5)  # (U, 1)
        quality = np.clip(peak - (cost - best_cost), floor, 1.0)
        quality[~valid] = floor
        quality.setflags(write=False)
        self._valid = valid
        return quality

    def _drifted_users(self) -> np.ndarray:
        """Shapes: ``(n_users,)`` bool: the users whose preferences drift (Bernoulli(drift_share) each)."""
        draws = np.array([
            int.from_bytes(hashlib.blake2b(f"{self.seed}\x1fdrift\x1f{raw}".encode(), digest_size=8).digest(),
                           "little") / 2.0**64
            for raw in self.data.user_ids
        ])
        return draws < self.drift_share

    def _target_quality_matrix(self) -> np.ndarray:
        """Shapes: ``(n_users, n_templates)`` expected NDCG@10 on the base view in the target period."""
        quality = self.quality.copy()
        floor = random_ranking_ndcg(20)
        for u in np.flatnonzero(self._drifted):
            valid = np.flatnonzero(self._valid[u])
            if valid.size < 2:
                continue  # one fillable template: nothing to change to
            drifted = self.quality[u, valid] - self.drift_strength * self.template_fragility[valid]
            best = int(np.argmax(self.quality[u]))
            at = int(np.flatnonzero(valid == best)[0])
            runner_up = float(np.max(np.delete(drifted, at)))
            drifted[at] -= max(0.0, drifted[at] - runner_up + DRIFT_MARGIN)
            quality[u, valid] = np.clip(drifted, floor, 1.0)
        quality.setflags(write=False)
        return quality

    def _interaction_times(self) -> list[dict[int, int]]:
        """Per user: item -> timestamp of the user's first interaction with it (a request's target time)."""
        times: list[dict[int, int]] = []
        for u in range(self.data.n_users):
            rows = self.data.user_rows(u)
            first: dict[int, int] = {}
            for item, t in zip(self.data.items[rows].tolist(), self.data.timestamps[rows].tolist()):
                first.setdefault(item, t)
            times.append(first)
        return times

    def drifted(self, user: int) -> bool:
        """Whether ``user``'s preferences drift at the time cut (planted drift)."""
        return bool(self._drifted[user])

    @property
    def drifted_users(self) -> np.ndarray:
        """Indices of the users whose preferences drift at the time cut."""
        return np.flatnonzero(self._drifted)

    def expected_quality(
        self, user: int, template_index: int, *, view: str = "base", period: str = "source"
    ) -> float:
        """Expected NDCG@10 (>= 11 candidates, before noise) of ``template_index`` for ``user``.

        ``period="target"``: for a request whose target is at or after the time cut (planted drift).
        """
        rows = self._target_rows if period == "target" else self._quality_rows
        q = rows[user][template_index]
        if view != "base":
            q = max(q - self._fragility[template_index], 0.0)
        return q

    def best_template(self, user: int, *, period: str = "source") -> int:
        """The user's hidden best template on the base view (lowest index among ties) in ``period``."""
        return int(np.argmax(self.target_quality[user] if period == "target" else self.quality[user]))

    def period_of(self, user: int, item: int) -> str:
        """``"target"`` when ``user``'s interaction with ``item`` is at or after the time cut, else
        ``"source"``."""
        if self.time_cut is None:
            return "source"
        t = self._item_times[user].get(item)
        return "target" if t is not None and t >= self.time_cut else "source"

    @property
    def identity(self) -> Mapping[str, Any]:
        """Simulator version, dataset and catalog fingerprints, noise and seed."""
        digest = hashlib.sha256()
        for column in (self.data.users, self.data.items, self.data.timestamps):
            digest.update(np.ascontiguousarray(column).tobytes())
        return {
            "backend": "simulated",
            "version": 1,
            "data": f"{self.data.name}:{digest.hexdigest()[:16]}",
            "catalog": getattr(self.catalog, "fingerprint", ",".join(self.catalog.ids)),
            "noise": self.noise,
            "seed": self.seed,
            **({"drift_share": self.drift_share, "drift_strength": self.drift_strength,
                "time_cut": self.time_cut} if self.drift_share > 0 else {}),
        }

    # ------------------------------------------------------------------ ranking
    def _rank_table(self, n: int) -> tuple[list[float], list[float], int]:
        """NDCG@10 of ranks ``0..min(n, 11) - 1`` (descending; 0 stands for the tail past rank 10),
        the same negated (ascending, for bisection), and the number of head ranks."""
        table = self._tables.get(n)
        if table is None:
            head = min(n, 10)
            values = [1.0 / math.log2(r + 2) for r in range(head)]
            if n > 10:
                values.append(0.0)
            table = self._tables[n] = (values, [-v for v in values], head)
        return table

    def _uniforms(self, request: RankRequest, task: str, template: str) -> tuple[float, float, float]:
        key = f"{self.seed}\x1f{task}\x1f{template}\x1f{request.sample_id}\x1f{hash(request.candidate_ids)}"
        a, b, c = struct.unpack("<QQQ", hashlib.blake2b(key.encode(), digest_size=24).digest())
        scale = 1.0 / 18446744073709551616.0
        return (a + 0.5) * scale, (b + 0.5) * scale, (c + 0.5) * scale

    def _target_rank(self, quality: float, n: int, u1: float, u2: float, u3: float) -> int:
        expected = quality + self.noise * self._normal.inv_cdf(u1) if self.noise > 0 else quality
        values, negated, head = self._rank_table(n)
        expected = min(max(expected, values[-1]), 1.0)
        # The last rank whose NDCG is >= expected: values[r] >= expected > values[r + 1].
        r = bisect_right(negated, -expected) - 1
        if r + 1 < len(values) and values[r] > expected:
            p_upper = (expected - values[r + 1]) / (values[r] - values[r + 1])
            if u2 >= p_upper:
                r += 1
        if r >= head:  # the tail: any rank from 10 to n - 1, uniformly
            r = head + min(int(u3 * (n - head)), n - head - 1)
        return r

    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        """Rank each request's candidates by the simulator's rule (no model, microseconds each).

        Raises:
            RankerError: A request has no ``ids``, names an unknown user or template, or lists no
                item the user interacted with.
        """
        responses = []
        prior = self._prior
        for request in requests:
            ids = request.ids
            user = self._user_index.get(ids.user) if ids is not None else None
            t_index = self._template_index.get(ids.template) if ids is not None else None
            if ids is None or user is None or t_index is None:
                raise RankerError(self._ids_error(ids))
            seen = self._items[user]
            candidates = request.candidate_ids
            target = next((c for c in candidates if c in seen), None)
            if target is None:
                raise RankerError(
                    f"simulated ranker: request {ids.task} for user {ids.user!r} lists no item the user "
                    "interacted with; build requests with PromptTemplate.request from a RankingTask"
                )
            period = self.period_of(user, target) if self._drifted[user] else "source"
            quality = self.expected_quality(user, t_index, view=ids.view, period=period)
            u1, u2, u3 = self._uniforms(request, ids.task, ids.template)
            n = len(candidates)
            r = self._target_rank(quality, n, u1, u2, u3)
            negatives = sorted((c for c in candidates if c != target), key=prior.__getitem__)
            negatives.insert(r, target)
            responses.append(RankResponse(
                ranking=tuple(negatives),
                usage=TokenUsage(prompt_tokens=sum(len(c) for _, c in request.messages) // 4 + 1),
                parse=ParseStats(found=n),
            ))
        return responses

    def _ids_error(self, ids: RequestIds | None) -> str:
        if ids is None:
            return ("simulated ranker: a request has no ids (which user, template and task it is for); "
                    "build requests with PromptTemplate.request")
        if ids.user not in self._user_index:
            return f"simulated ranker: unknown user {ids.user!r} (not in dataset {self.data.name!r})"
        return (
            f"simulated ranker: unknown template {ids.template!r} (not in catalog "
            f"{getattr(self.catalog, 'name', '?')!r}; the simulator must share the env's catalog)"
        )
