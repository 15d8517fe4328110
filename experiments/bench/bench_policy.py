"""Benchmark the policy: PPO training speed per features extractor, and LightGCN pretraining.

One table, every ratio measured side by side in this run:

* PPO training steps/s on the same batched env (simulated ranker, so the ranker costs little
  and the policy's own cost shows) for SB3's ``MlpPolicy`` (flattened observation), the
  LightGCN+MLP extractor with frozen cached embeddings (target: >= 0.7 x ``MlpPolicy``), the same
  with graph fine-tuning on (one propagation per forward pass), and the profile-only MLP.
  Variants run interleaved, ``--repeats`` times each, and the median is reported, so load from
  other processes hits every variant alike. Ratios use process CPU time with one torch thread
  (``--threads``), which other processes' load barely changes; wall-clock rates are shown too.
* LightGCN propagation over the ML-100K training graph: the pre-normalised sparse CSR path
  (``normalize=False``) against the ``edge_index`` path (``normalize=True``).
* BPR pretraining on ML-100K with early stopping on validation recall@20: epochs, seconds.

Usage::

    python -m promptopt.experiments.bench.bench_policy [--steps 4096] [--ml100k PATH]

ML-100K is read from ``--ml100k`` or ``$PROMPTOPT_ML100K``, else ``../shared/data/ml-100k``
next to the repository; the rows are skipped when it is absent (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ML100K = REPO / ".." / "shared" / "data" / "ml-100k"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4096, help="PPO steps timed per variant and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per variant (median)")
    parser.add_argument("--users", type=int, default=500, help="synthetic users of the PPO env")
    parser.add_argument("--n-envs", type=int, default=8, help="sub-environments of the batched env")
    parser.add_argument("--ml100k", type=Path, default=None, help="ML-100K folder (u.data, u.item ...)")
    parser.add_argument("--bpr-epochs", type=int, default=200, help="maximum BPR epochs on ML-100K")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU time is per process)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _median_time(fn: Callable[[], None], repeats: int) -> float:
    """Median process CPU seconds of ``fn`` over ``repeats`` calls."""
    return statistics.median(_timed(fn)[1] for _ in range(repeats))


def _timed(fn: Callable[[], None]) -> tuple[float, float]:
    """``(wall seconds, process CPU seconds)`` of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_ppo(args: argparse.Namespace, workdir: Path) -> list[tuple[str, str, str, str]]:
    """Rows ``(what, size, time, rate / ratio)`` for the PPO variants."""
    from stable_baselines3 import PPO

    from promptopt.config import config_from_dict
    from promptopt.data import make_synthetic
    from promptopt.envs import BatchedPromptRecVecEnv
    from promptopt.llm.simulated import SimulatedRanker
    from promptopt.policies.agent import make_agent
    from promptopt.policies.graph import build_graph
    from promptopt.policies.lightgcn import pretrain_lightgcn
    from promptopt.problem import RecProblem
    from promptopt.splits import split_users
    from promptopt.templates import TemplateCatalog

    base = {
        "seed": args.seed,
        "env": {"n_envs": args.n_envs},
        "ppo": {"n_steps": 64, "batch_size": 128, "n_epochs": 4},
        "policy": {"embedding_dim": 64, "hidden": [64], "pi": [64], "vf": [64], "maskable": False},
    }
    config = config_from_dict(base)
    data = make_synthetic(n_users=args.users, n_items=400, seed=args.seed)
    split = split_users(data, seed=args.seed)
    catalog = TemplateCatalog.load("movies")
    problem = RecProblem.build(data, split, catalog, config.reward, config.split, seed=args.seed)
    ranker = SimulatedRanker(data, catalog, seed=args.seed)
    graph = build_graph(data, problem.train_mask)
    emb_path = workdir / "lightgcn.pt"
    pretrain_lightgcn(graph, embedding_dim=64, epochs=30, seed=args.seed).save(emb_path)
    rollout = config.ppo.n_steps * args.n_envs
    steps = max(rollout, args.steps // rollout * rollout)

    def variant(kind: str) -> Callable[[], None]:
        env = BatchedPromptRecVecEnv(problem, ranker, args.n_envs, seed=args.seed)
        if kind == "MlpPolicy":
            model = PPO("MlpPolicy", env, n_steps=64, batch_size=128, n_epochs=4, gamma=0.0,
                        policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]}},
                        seed=args.seed, device="cpu")
        else:
            overrides = {"frozen": {"kind": "lightgcn_mlp"},
                         "finetune": {"kind": "lightgcn_mlp", "finetune_graph": True},
                         "profile": {"kind": "mlp"}}[kind]
            cfg = config_from_dict({**base, "policy": {**base["policy"], **overrides}})
            model = make_agent(env, cfg, embeddings_path=emb_path, device="cpu")
        model.learn(rollout)  # warm-up: first-call allocations and caches, not timed
        return lambda: model.learn(steps, reset_num_timesteps=False)

    names = ("MlpPolicy", "frozen", "finetune", "profile")
    runs = {name: variant(name) for name in names}
    walls: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.repeats):
        for name in names:  # interleaved so background load hits every variant alike
            wall, cpu = _timed(runs[name])
            walls[name].append(wall)
            cpus[name].append(cpu)
    median = {name: statistics.median(t) for name, t in cpus.items()}
    median_wall = {name: statistics.median(t) for name, t in walls.items()}
    labels = {
        "MlpPolicy": "PPO, SB3 MlpPolicy (flattened obs)",
        "frozen": "PPO, LightGCN+MLP, frozen cached embeddings",
        "finetune": "PPO, LightGCN+MLP, graph fine-tuning",
        "profile": "PPO, profile-only MLP (ablation)",
    }
    rows = []
    for name in names:
        ratio = median["MlpPolicy"] / median[name]
        rows.append((labels[name], f"{steps} steps, {args.n_envs} envs",
                     f"{median[name]:.2f} s CPU ({median_wall[name]:.2f} s wall)",
                     f"{steps / median[name]:,.0f} steps/CPU-s ({ratio:.2f}x MlpPolicy), "
                     f"{steps / median_wall[name]:,.0f} steps/s wall"))
    return rows


def bench_ml100k(args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    """Rows for LightGCN propagation and BPR pretraining on ML-100K (skipped when absent)."""
    path = args.ml100k or (Path(os.environ["PROMPTOPT_ML100K"]) if "PROMPTOPT_ML100K" in os.environ
                           else DEFAULT_ML100K)
    if not (path / "u.data").is_file():
        return [("ML-100K rows", "-", "-", f"skipped: no u.data under {path.resolve()}")]
    import torch
    from torch_geometric.nn.models import LightGCN

    from promptopt.data import load_dataset
    from promptopt.policies.graph import build_graph
    from promptopt.policies.lightgcn import make_lightgcn, pretrain_lightgcn
    from promptopt.splits import time_cut_at_quantile, training_mask

    data = load_dataset("movielens-100k", path)
    mask = training_mask(data, n_targets=3, time_cut=time_cut_at_quantile(data, 0.8))
    graph = build_graph(data, mask)
    size = f"{graph.n_users} users, {graph.n_items} items, {graph.n_edges:,} edges"
    torch.manual_seed(args.seed)
    reference = LightGCN(graph.n_nodes, 64, 2)
    fast = make_lightgcn(graph.n_nodes, 64, 2)
    fast.load_state_dict(reference.state_dict())
    edge_index, adjacency = graph.edge_index(), graph.normalized_adjacency()
    with torch.no_grad():
        t_edge = _median_time(lambda: reference.get_embedding(edge_index), 5)
        t_csr = _median_time(lambda: fast.get_embedding(adjacency), 5)
    t_edge_bwd = _median_time(lambda: reference.get_embedding(edge_index).sum().backward(), 3)
    t_csr_bwd = _median_time(lambda: fast.get_embedding(adjacency).sum().backward(), 3)
    cpu = time.process_time()
    result = pretrain_lightgcn(graph, embedding_dim=64, n_layers=2, epochs=args.bpr_epochs,
                               batch_size=2048, lr=0.01, patience=10, seed=args.seed)
    cpu = time.process_time() - cpu
    epochs = len(result.history)
    return [
        ("LightGCN propagation, edge_index (normalize=True)", size, f"{t_edge * 1e3:.1f} ms CPU", "1.00x"),
        ("LightGCN propagation, CSR (normalize=False)", size, f"{t_csr * 1e3:.1f} ms CPU",
         f"{t_edge / t_csr:.1f}x faster"),
        ("LightGCN forward+backward, edge_index", size, f"{t_edge_bwd * 1e3:.1f} ms CPU", "1.00x"),
        ("LightGCN forward+backward, CSR", size, f"{t_csr_bwd * 1e3:.1f} ms CPU",
         f"{t_edge_bwd / t_csr_bwd:.1f}x faster"),
        ("BPR pretraining on ML-100K (64-d, 2 layers)", size,
         f"{cpu:.1f} s CPU ({result.seconds:.1f} s wall)",
         f"{epochs} epochs ({cpu / max(epochs, 1):.2f} s CPU/epoch), kept epoch "
         f"{result.best_epoch}, val recall@20 {result.best_recall:.3f}"),
    ]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench_ppo(args, Path(tmp))
    rows += bench_ml100k(args)
    header = ("what", "size", "time", "rate / ratio")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(4)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU; "
          "ratios from process CPU time")
    for row in (header, tuple("-" * w for w in widths), *rows):
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
