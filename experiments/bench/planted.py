"""The semi-synthetic planted benchmark: real answers, real noise, a known per-user better template.

A real answer table (MovieLens-100K, the MiniLM embedding ranker, every user x every template x the
user's last three targets, logged once in an answer cache) is replayed with zero model calls by
:class:`~promptopt.llm.replay.ReplayRanker`. :class:`PlantedRanker` changes it in one place only:
for the **planted users** (a known share, tied to an observable profile statistic or to the user's
graph neighbourhood) the **planted template** ``t*`` answers better, everything else is the real
answer with its real per-target noise.

How the gain is planted. For a planted user's request with ``t*``, the real answer of ``t*`` is
kept, except that with probability ``p`` (drawn from a hash of the task id, so every rerun sees the
same answers) the target is moved to the top of the ranking. NDCG@10 of that answer is then
``p + (1 - p) * ndcg`` and its expectation over the table is ``p + (1 - p) mu(t*)``; ``p`` is set so
that this equals ``mu(f) + gain``, where ``mu`` are the templates' mean NDCG@10 over every user and
target of the table and ``f`` is the best template in expectation. So, in expectation,

    value(u, t) = mu(t) + [u planted and t = t*] * (mu(f) + gain - mu(t*))

and the per-user oracle is ``t*`` for planted users and ``f`` for everyone else. A selector's
**captured share** is ``(value(selector) - value(f)) / (value(oracle) - value(f))`` over test users.

``python -m promptopt.experiments.bench.planted --build`` fills the answer table (timed; cached answers are
reused, so an interrupted build continues).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.config import ExperimentConfig, config_from_dict
from promptopt.llm.types import RankRequest, RankResponse

logger = logging.getLogger("promptopt.bench.planted")

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "ml-100k"
DEFAULT_CACHE = REPO / "runs" / "bench" / "planted_ml100k_minilm.sqlite"
TEMPLATES = (
    "expert.recent5.none.index",
    "expert.genres10.none.index",
    "expert.recent50.none.index",
    "expert.profile.none.index",
    "expert.similar.none.index",
    "expert.cowatched.none.index",
    "expert.popular.none.index",
)
"""The study's seven templates (recency styles and collaborative hints)."""
BACKS = (0, 1, 2)
"""Targets of the table: the last interaction (0), the second-to-last (1), the third-to-last (2)."""


def bench_config(
    data_path: str | Path = DEFAULT_DATA, cache_path: str | Path = DEFAULT_CACHE, *, seed: int = 0
) -> ExperimentConfig:
    """The benchmark's experiment: every ML-100K user, 20 candidates, accuracy-only NDCG@10."""
    return config_from_dict(
        {
            "name": "bench_learning",
            "seed": seed,
            "data": {"format": "movielens-100k", "path": str(data_path)},
            "split": {
                "val_fraction": 0.15,
                "test_fraction": 0.25,
                "min_history": 5,
                "n_targets": 3,
                "n_negatives": 19,
                "negatives": "uniform",
                "drift_quantile": 0.8,
            },
            "templates": {"catalog": "movies", "include": list(TEMPLATES)},
            "ranker": {
                "backend": "embedding",
                "model": "all-MiniLM-L6-v2",
                "device": "cpu",
                "batch_size": 64,
            },
            "cache": {"enabled": True, "path": str(cache_path)},
            "reward": {"metric": "ndcg@10", "robust_weight": 0.0},
            "env": {"n_envs": 8},
            "policy": {
                "kind": "lightgcn_mlp",
                "embedding_dim": 64,
                "n_layers": 2,
                "bpr_epochs": 15,
                "bpr_patience": 4,
                "bpr_batch_size": 32768,
                "bpr_lr": 0.05,
                "hidden": [64],
                "pi": [64],
                "vf": [64],
            },
            "ppo": {
                "total_timesteps": 1024,
                "n_steps": 16,
                "batch_size": 64,
                "n_epochs": 10,
                "learning_rate": 0.001,
                "ent_coef": 0.01,
                "checkpoint_every": 100000,
            },
            "eval": {"linucb_alpha": 1.0, "epsilon": 0.1},
            "tracking": {"wandb": False, "mode": "disabled"},
        },
        source="bench_learning",
    )


def population(problem: Any, n_users: int | None) -> np.ndarray:
    """The benchmark's users: the first ``n_users`` of the seed-0 split's train, val, test order.

    The seed-0 split deals users in strata of history length, so its training users (sorted by
    index) are a stratified sample of all users; ``None`` = every user.
    """
    users = np.concatenate([problem.split.train, problem.split.val, problem.split.test])
    return users if n_users is None else users[:n_users]


def table_rows(problem: Any, user: int) -> list[int]:
    """History rows of ``user``'s table targets (last, second- and third-to-last; rows >= 1)."""
    length = problem.data.history_length(int(user))
    return [length - 1 - b for b in BACKS if length - 1 - b >= 1]


@dataclass
class AnswerTable:
    """NDCG@10 of every (user, template, target) of the table (``nan``: invalid or no target).

    Shapes: ``ndcg (n_users, n_templates, len(BACKS))``.
    """

    ndcg: np.ndarray
    templates: tuple[str, ...]

    def means(self) -> np.ndarray:
        """``(n_templates,)`` mean NDCG@10 over every user and target that can fill the template."""
        flat = self.ndcg.transpose(1, 0, 2).reshape(self.ndcg.shape[1], -1)
        return np.nanmean(flat, axis=1)


def build_table(
    problem: Any, ranker: Any, users: Sequence[int], *, chunk: int = 512, n_targets: int = len(BACKS)
) -> AnswerTable:
    """Score every valid template on the first ``n_targets`` table targets of ``users`` (cached)."""
    n_users = problem.data.n_users
    ndcg = np.full((n_users, problem.n_templates, len(BACKS)), np.nan)
    plan: list[tuple[int, int, int, list, int]] = []
    batch: list[RankRequest] = []
    # Target-major, so an interrupted build already holds the last two targets of every user.
    for k in range(n_targets):
        for user in users:
            rows = table_rows(problem, int(user))
            if k >= len(rows):
                continue
            row = rows[k]
            tasks = problem.tasks(int(user), row=row)
            for t in np.flatnonzero(problem.action_mask(int(user), row=row)):
                plan.append((int(user), int(t), k, tasks, len(batch)))
                batch += problem.requests(tasks, int(t))
    started, answers = time.perf_counter(), []
    for start in range(0, len(batch), chunk):
        answers += ranker.rank(batch[start : start + chunk])
        logger.info(
            "answer table: %d/%d requests (%.0f s)", len(answers), len(batch), time.perf_counter() - started
        )
    for user, t, k, tasks, start in plan:
        _, per_view = problem.score(tasks, answers[start : start + len(tasks)])
        ndcg[user, t, k] = per_view["base"]["ndcg@10"]
    return AnswerTable(ndcg, tuple(problem.catalog.ids))


# ---------------------------------------------------------------------- planting
def planted_users(problem: Any, users: np.ndarray, *, tie: str, share: float) -> np.ndarray:
    """``(n_users,)`` bool: the ``share`` of ``users`` with the highest tie statistic.

    ``tie`` is a profile statistic (``top_genre_share``, ``mainstreamness`` ...; computed on the
    context of the user's earliest table target, which every split's episode context contains) or
    ``graph``: the user's coordinate on the leading non-trivial singular vector of the normalised
    training interaction matrix (a community of the graph, visible to LightGCN, not to the profile).
    """
    from promptopt.profile import PROFILE_FEATURES

    users = np.asarray(users, dtype=np.int64)
    stat = np.full(problem.data.n_users, -np.inf)
    if tie == "graph":
        stat[users] = graph_coordinate(problem)[users]
    else:
        if tie not in PROFILE_FEATURES:
            raise ValueError(f"tie must be 'graph' or one of {', '.join(PROFILE_FEATURES)}, got {tie!r}")
        j = 1 + PROFILE_FEATURES.index(tie)
        for u in users:
            stat[u] = problem.observation(int(u), row=table_rows(problem, int(u))[-1])[j]
    n = round(share * users.size)
    chosen = users[np.argsort(-stat[users], kind="stable")[:n]]
    out = np.zeros(problem.data.n_users, dtype=bool)
    out[chosen] = True
    return out


def graph_coordinate(problem: Any) -> np.ndarray:
    """``(n_users,)``: each user's score on the 2nd left singular vector of ``D_u^-1/2 R D_i^-1/2``."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import svds

    data, mask = problem.data, problem.train_mask
    r = sp.csr_matrix(
        (np.ones(int(mask.sum())), (data.users[mask], data.items[mask])), shape=(data.n_users, data.n_items)
    )
    r.data[:] = 1.0
    du = np.asarray(r.sum(axis=1)).ravel()
    di = np.asarray(r.sum(axis=0)).ravel()
    norm = sp.diags(1 / np.sqrt(np.maximum(du, 1))) @ r @ sp.diags(1 / np.sqrt(np.maximum(di, 1)))
    u, s, _ = svds(norm.astype(np.float64), k=3, random_state=0)
    vec = u[:, np.argsort(-s)[1]]
    return vec if vec[np.argmax(np.abs(vec))] > 0 else -vec  # a fixed sign


def _uniform(task_id: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}|{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class PlantedRanker:
    """Real logged answers, except that planted users' planted template answers better.

    Args:
        base: The ranker of the real answers (a :class:`~promptopt.llm.replay.ReplayRanker`).
        planted: ``(n_users,)`` bool planted users.
        raw_user_ids: Raw user id -> user index (requests carry raw ids in their meta).
        template: Id of the planted template ``t*``.
        promote: Probability ``p`` that a planted answer puts the target on top.
        targets: Task id -> its target item (requests do not carry the label).
        salt: Seed of the per-task draws.
    """

    def __init__(
        self,
        base: Any,
        planted: np.ndarray,
        raw_user_ids: dict[str, int],
        template: str,
        promote: float,
        targets: dict[str, int],
        *,
        salt: str = "planted",
    ) -> None:
        if not 0.0 <= promote <= 1.0:
            raise ValueError(f"promote must be in [0, 1], got {promote}")
        self.base, self.planted, self.raw = base, planted, raw_user_ids
        self.template, self.promote, self.targets, self.salt = template, promote, targets, salt
        self.calls = 0

    @property
    def identity(self) -> dict[str, Any]:
        return {
            "backend": "planted",
            "base": dict(self.base.identity),
            "template": self.template,
            "promote": self.promote,
            "planted": int(self.planted.sum()),
            "salt": self.salt,
        }

    @property
    def stats(self) -> Any:
        return self.base.stats

    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        answers = self.base.rank(requests)
        out = []
        for request, answer in zip(requests, answers):
            ids = request.ids
            if ids is None:
                raise ValueError("the planted ranker needs requests built by PromptTemplate.request (ids)")
            task, user = ids.task, self.raw.get(ids.user, -1)
            if (
                ids.template == self.template
                and user >= 0
                and self.planted[user]
                and _uniform(task, self.salt) < self.promote
            ):
                target = self.targets[task]
                answer = dataclasses.replace(
                    answer, ranking=(target, *(c for c in answer.ranking if c != target)), scores=None
                )
            out.append(answer)
        return out


@dataclass(frozen=True)
class Plant:
    """The planted structure and its values in expectation (see the module docstring)."""

    planted: np.ndarray
    template: int
    best: int
    gain: float
    promote: float
    means: np.ndarray
    tie: str

    def values(self) -> np.ndarray:
        """``(n_users, n_templates)`` expected NDCG@10 of every template for every user."""
        values = np.repeat(self.means[None, :], len(self.planted), axis=0)
        values[self.planted, self.template] = self.means[self.best] + self.gain
        return values

    def captured(self, users: np.ndarray, choices: np.ndarray) -> tuple[float, float, float]:
        """(selector - best fixed, oracle - best fixed, captured share) in expectation over ``users``."""
        v = self.values()[users]
        rows = np.arange(len(users))
        base = v[:, self.best]
        chosen = np.nan_to_num(v[rows, choices], nan=0.0) - base
        oracle = np.nanmax(v, axis=1) - base
        num, den = float(chosen.mean()), float(oracle.mean())
        return num, den, num / den if den > 0 else float("nan")


def make_plant(
    table: AnswerTable, planted: np.ndarray, *, gain: float, template: str | None, tie: str
) -> Plant:
    """Choose ``t*`` (default: the best template whose planted share cannot make it the best fixed)."""
    means = table.means()
    order = [int(t) for t in np.argsort(-means, kind="stable")]
    best = order[0]
    share = float(planted.mean())
    if template is None:
        # t* must stay below f for everyone together: share * (mu_f + gain - mu_t) + mu_t < mu_f - margin
        margin = 0.005
        fits = [
            t for t in order[1:] if share * (means[best] + gain - means[t]) + means[t] < means[best] - margin
        ]
        t_star = fits[0]
    else:
        t_star = table.templates.index(template)
    promote = (means[best] + gain - means[t_star]) / (1.0 - means[t_star])
    return Plant(planted, t_star, best, gain, float(promote), means, tie)


def load_table(path: Path) -> AnswerTable:
    raw = np.load(path, allow_pickle=False)
    return AnswerTable(raw["ndcg"], tuple(json.loads(str(raw["templates"]))))


def save_table(table: AnswerTable, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, ndcg=table.ndcg, templates=json.dumps(list(table.templates)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--build", action="store_true", help="fill the answer table through the cache (timed)"
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the ml-100k folder")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="the answer cache")
    parser.add_argument("--users", type=int, default=None, help="the benchmark's population (default: all)")
    parser.add_argument("--targets", type=int, default=len(BACKS), help="table targets per user (1-3)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from promptopt.experiments.assembly import build_problem, make_run_ranker

    config = bench_config(args.data, args.cache)
    _, _, _, problem = build_problem(config)
    ranker = make_run_ranker(config, problem) if args.build else _replay(config)
    users = population(problem, args.users)
    started = time.perf_counter()
    table = build_table(problem, ranker, users, n_targets=args.targets)
    seconds = time.perf_counter() - started
    save_table(table, Path(args.cache).with_suffix(".table.npz"))
    stats = getattr(ranker, "stats", None)
    print(
        json.dumps(
            {
                "seconds": round(seconds, 1),
                "users": int(users.size),
                "answers": int(np.isfinite(table.ndcg).sum()),
                "ranker": {k: getattr(stats, k, None) for k in ("calls", "hits", "misses")},
                "means": dict(zip(table.templates, np.round(table.means(), 4).tolist())),
            },
            indent=1,
        )
    )
    return 0


def _replay(config: ExperimentConfig) -> Any:
    from promptopt.llm.replay import ReplayRanker

    return ReplayRanker(config.cache.path)


if __name__ == "__main__":
    raise SystemExit(main())
