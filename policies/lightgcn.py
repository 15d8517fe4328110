"""LightGCN user embeddings: BPR pretraining with early stopping, saved and loaded as one file.

The model is :class:`torch_geometric.nn.models.LightGCN` (He et al., 2020,
https://arxiv.org/abs/2002.02126) with ``normalize=False`` layers fed the pre-normalised sparse
CSR adjacency of :class:`promptopt.policies.graph.InteractionGraph`; propagation is torch_geometric's own.
Final node embeddings are

.. math::
    \\mathbf{e} = \\sum_{l=0}^{L} \\alpha_l \\hat A^l \\mathbf{e}^{(0)}, \\quad \\alpha_l = 1/(L+1),

trained with the BPR loss over (user, positive item, sampled negative item) triples,

.. math::
    L = -\\operatorname{mean} \\ln \\sigma(\\mathbf{e}_u^\\top \\mathbf{e}_i - \\mathbf{e}_u^\\top
    \\mathbf{e}_j) + \\lambda \\lVert \\mathbf{e}^{(0)}_{batch} \\rVert^2 / B,

and stopped early on validation recall@20: each user's most recent training edge is held out,
ranked among all items the user has no training edge with.

The frozen embeddings (propagated once over the full training graph, held-out edges included)
are what a PPO step reads; nothing is propagated per step unless fine-tuning is on.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from promptopt.errors import PromptoptError
from promptopt.policies.graph import InteractionGraph, holdout_last_edges
from promptopt.progress import progress_bar

if TYPE_CHECKING:
    import torch
    from torch_geometric.nn.models import LightGCN

    from promptopt.config import PolicyConfig

logger = logging.getLogger(__name__)

FILE_FORMAT = "promptopt-lightgcn"
FILE_VERSION = 1


class EmbeddingsFileError(PromptoptError):
    """A LightGCN embeddings file is missing, unreadable or not a promptopt LightGCN file."""


@dataclass(frozen=True)
class EpochLog:
    """One pretraining epoch: mean BPR loss and validation recall@k (``nan`` when not evaluated)."""

    epoch: int
    loss: float
    recall: float


@dataclass(frozen=True, eq=False)
class LightGCNEmbeddings:
    """A pretrained LightGCN: its weights, the graph it propagates over and the frozen output.

    Attributes:
        n_users: User nodes.
        n_items: Item nodes.
        embedding_dim: Embedding size.
        n_layers: Propagation layers.
        node_weights: Layer-0 embeddings ``(n_users + n_items, embedding_dim)`` (the parameters).
        user_embeddings: Propagated user embeddings ``(n_users, embedding_dim)``, frozen.
        item_embeddings: Propagated item embeddings ``(n_items, embedding_dim)``, frozen.
        edges: ``int64 (2, n_edges)`` (user, item) pairs of the training graph.
        best_epoch: Epoch whose weights were kept (0 = untrained).
        best_recall: Validation recall@k of those weights.
        history: Per-epoch loss and validation recall.
        seconds: Wall time of pretraining.
    """

    n_users: int
    n_items: int
    embedding_dim: int
    n_layers: int
    node_weights: torch.Tensor
    user_embeddings: torch.Tensor
    item_embeddings: torch.Tensor
    edges: torch.Tensor
    best_epoch: int = 0
    best_recall: float = float("nan")
    history: tuple[EpochLog, ...] = ()
    seconds: float = 0.0

    @property
    def stopped_early(self) -> bool:
        """Whether training ended before its epoch budget because validation stopped improving."""
        return bool(self.history) and self.history[-1].epoch > self.best_epoch

    def graph(self) -> InteractionGraph:
        """The training graph the embeddings were propagated over."""
        edges = self.edges.numpy()
        return InteractionGraph(self.n_users, self.n_items, edges[0].copy(), edges[1].copy(),
                                np.full(edges.shape[1], -1, dtype=np.int64))

    def model(self) -> LightGCN:
        """A LightGCN (``normalize=False``) holding these weights, for fine-tuning."""
        import torch

        model = make_lightgcn(self.n_users + self.n_items, self.embedding_dim, self.n_layers)
        with torch.no_grad():
            model.embedding.weight.copy_(self.node_weights)
        return model

    def save(self, path: str | Path) -> Path:
        """Write the weights, graph and frozen embeddings to ``path`` (a torch file of tensors)."""
        import torch

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "embedding_dim": self.embedding_dim,
            "n_layers": self.n_layers,
            "node_weights": self.node_weights.detach().cpu(),
            "user_embeddings": self.user_embeddings.detach().cpu(),
            "item_embeddings": self.item_embeddings.detach().cpu(),
            "edges": self.edges.cpu(),
            "best_epoch": self.best_epoch,
            "best_recall": self.best_recall,
            "history": [[h.epoch, h.loss, h.recall] for h in self.history],
            "seconds": self.seconds,
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LightGCNEmbeddings:
        """Read a file written by :meth:`save` (tensors only; no pickled code is executed).

        Raises:
            EmbeddingsFileError: Missing file, not a torch file, or another format/version.
        """
        import torch

        path = Path(path)
        if not path.is_file():
            raise EmbeddingsFileError(
                f"LightGCN embeddings file {path} does not exist: pretrain first "
                "(promptopt.policies.lightgcn.pretrain_lightgcn(...).save(path)) or fix the path"
            )
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for corrupt / foreign files
            raise EmbeddingsFileError(f"cannot read LightGCN embeddings file {path}: {exc}") from None
        if not isinstance(raw, dict) or raw.get("format") != FILE_FORMAT:
            raise EmbeddingsFileError(f"{path} is not a promptopt LightGCN embeddings file")
        if raw.get("version") != FILE_VERSION:
            raise EmbeddingsFileError(
                f"{path} has LightGCN file version {raw.get('version')!r}; this promptopt reads "
                f"version {FILE_VERSION}: pretrain again"
            )
        return cls(
            n_users=int(raw["n_users"]),
            n_items=int(raw["n_items"]),
            embedding_dim=int(raw["embedding_dim"]),
            n_layers=int(raw["n_layers"]),
            node_weights=raw["node_weights"],
            user_embeddings=raw["user_embeddings"],
            item_embeddings=raw["item_embeddings"],
            edges=raw["edges"],
            best_epoch=int(raw["best_epoch"]),
            best_recall=float(raw["best_recall"]),
            history=tuple(EpochLog(int(e), float(lo), float(r)) for e, lo, r in raw["history"]),
            seconds=float(raw["seconds"]),
        )


def make_lightgcn(n_nodes: int, embedding_dim: int, n_layers: int) -> LightGCN:
    """A torch_geometric LightGCN whose layers expect a pre-normalised adjacency."""
    from torch_geometric.nn.models import LightGCN

    if embedding_dim < 1 or n_layers < 0:
        raise ValueError(f"embedding_dim must be >= 1 and n_layers >= 0, got {embedding_dim}, {n_layers}")
    return LightGCN(n_nodes, embedding_dim, n_layers, normalize=False)


def recall_at_k(
    user_embeddings: torch.Tensor,
    item_embeddings: torch.Tensor,
    known: InteractionGraph,
    users: np.ndarray,
    items: np.ndarray,
    k: int = 20,
    chunk: int = 1024,
) -> float:
    """Share of held-out ``(users[n], items[n])`` pairs whose item is in the user's top ``k``.

    Items are scored by :math:`\\mathbf{e}_u^\\top \\mathbf{e}_i`; items the user has an edge
    with in ``known`` are excluded from the ranking. With one held-out item per user this is
    recall@k = hit@k.

    Shapes:
        user_embeddings ``(n_users, d)``, item_embeddings ``(n_items, d)``, users/items ``(n,)``.
    """
    import torch

    if len(users) == 0:
        return float("nan")
    hits = 0
    order = np.argsort(known.users, kind="stable")
    known_users, known_items = known.users[order], known.items[order]
    bounds = np.searchsorted(known_users, np.arange(known.n_users + 1))
    with torch.no_grad():
        for start in range(0, len(users), chunk):
            u = np.asarray(users[start:start + chunk], dtype=np.int64)
            scores = user_embeddings[torch.from_numpy(u)] @ item_embeddings.T
            rows = [np.full(bounds[x + 1] - bounds[x], r) for r, x in enumerate(u)]
            cols = [known_items[bounds[x]:bounds[x + 1]] for x in u]
            if rows:
                scores[torch.from_numpy(np.concatenate(rows)), torch.from_numpy(np.concatenate(cols))] = (
                    -torch.inf
                )
            top = scores.topk(min(k, scores.shape[1]), dim=1).indices.numpy()
            hits += int((top == np.asarray(items[start:start + chunk])[:, None]).any(axis=1).sum())
    return hits / len(users)


def _sample_negatives(graph: InteractionGraph, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniformly drawn item per user that the user has no edge with (rejection, 20 rounds)."""
    negatives = rng.integers(0, graph.n_items, size=len(users))
    for _ in range(20):
        bad = np.flatnonzero(graph.has_edges(users, negatives))
        if bad.size == 0:
            break
        negatives[bad] = rng.integers(0, graph.n_items, size=bad.size)
    return negatives


def pretrain_lightgcn(
    graph: InteractionGraph,
    *,
    embedding_dim: int = 64,
    n_layers: int = 2,
    epochs: int = 200,
    lr: float = 0.01,
    batch_size: int = 2048,
    patience: int = 10,
    lambda_reg: float = 1e-4,
    k: int = 20,
    seed: int = 0,
) -> LightGCNEmbeddings:
    """Train LightGCN with BPR and keep the epoch with the best validation recall@k.

    Validation holds out each user's most recent training edge (users with >= 2 edges); the
    model is fitted on the rest and, once stopped, the kept weights are propagated over the
    full graph to give the frozen embeddings. Seeded: the same graph and arguments give the
    same embeddings, without touching the global torch or numpy random state.

    Args:
        graph: The training graph (:func:`promptopt.policies.graph.build_graph`).
        embedding_dim: Embedding size.
        n_layers: Propagation layers.
        epochs: Maximum epochs (0 returns the untrained, propagated initial embeddings).
        lr: Adam learning rate.
        batch_size: Positive edges per BPR step.
        patience: Stop after this many evaluated epochs without a better recall.
        lambda_reg: L2 weight of the batch's layer-0 embeddings.
        k: Cut-off of the validation recall.
        seed: Seed of initialisation, shuffling and negative sampling.

    Raises:
        ValueError: Non-positive sizes, or a graph without edges.
    """
    import torch

    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    for name, value in (("batch_size", batch_size), ("patience", patience), ("k", k)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if graph.n_edges == 0:
        raise ValueError("cannot pretrain LightGCN on a graph without edges")
    started = time.perf_counter()
    fit_graph, held_out = holdout_last_edges(graph)
    val_users, val_items = graph.users[held_out], graph.items[held_out]
    adjacency = fit_graph.normalized_adjacency()
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_lightgcn(graph.n_nodes, embedding_dim, n_layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    n_users = graph.n_users

    def evaluate() -> float:
        with torch.no_grad():
            emb = model.get_embedding(adjacency)
        return recall_at_k(emb[:n_users], emb[n_users:], fit_graph, val_users, val_items, k)

    validate = len(val_users) > 0
    if not validate:
        logger.warning("lightgcn: no user has 2 training edges, so there is no validation edge; "
                       "training all %d epochs without early stopping", epochs)
    best_recall = evaluate() if validate else float("nan")
    best_state = copy.deepcopy(model.state_dict())
    best_epoch, waited = 0, 0
    history: list[EpochLog] = []
    bar = progress_bar(total=epochs, desc="LightGCN BPR", unit="epoch")
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(fit_graph.n_edges)
        total, batches = 0.0, 0
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            users = fit_graph.users[batch]
            positives = fit_graph.items[batch]
            negatives = _sample_negatives(fit_graph, users, rng)
            u = torch.from_numpy(users)
            i = torch.from_numpy(positives + n_users)
            j = torch.from_numpy(negatives + n_users)
            emb = model.get_embedding(adjacency)
            # F.embedding, not emb[u]: the backward of advanced indexing accumulates rows in a
            # thread-dependent order on CPU (two runs of the same seed differed by ~1e-6 after one
            # epoch on ML-100K with 2 threads); embedding_dense_backward sums in a fixed order.
            e_u, e_i, e_j = (torch.nn.functional.embedding(x, emb) for x in (u, i, j))
            pos_rank = (e_u * e_i).sum(dim=-1)
            neg_rank = (e_u * e_j).sum(dim=-1)
            loss = model.recommendation_loss(
                pos_rank, neg_rank, node_id=torch.cat([u, i, j]), lambda_reg=lambda_reg
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            batches += 1
        model.eval()
        recall = evaluate() if validate else float("nan")
        history.append(EpochLog(epoch, total / batches, recall))
        logger.debug("lightgcn epoch %d: bpr loss %.4f, val recall@%d %.4f",
                     epoch, total / batches, k, recall)
        bar.update(1)
        bar.set_postfix_str(f"loss {total / batches:.4f}, val recall@{k} {recall:.4f}")
        if not validate or recall > best_recall:
            best_recall, best_epoch, waited = recall, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
            if waited >= patience:
                break
    bar.close()
    model.load_state_dict(best_state)
    with torch.no_grad():
        final = model.get_embedding(graph.normalized_adjacency())
    seconds = time.perf_counter() - started
    logger.info(
        "lightgcn: %d epochs in %.1fs, kept epoch %d (val recall@%d %.4f on %d users)",
        len(history), seconds, best_epoch, k, best_recall, len(val_users),
    )
    return LightGCNEmbeddings(
        n_users=n_users,
        n_items=graph.n_items,
        embedding_dim=embedding_dim,
        n_layers=n_layers,
        node_weights=model.embedding.weight.detach().clone(),
        user_embeddings=final[:n_users].clone(),
        item_embeddings=final[n_users:].clone(),
        edges=torch.from_numpy(np.stack([graph.users, graph.items])),
        best_epoch=best_epoch,
        best_recall=best_recall,
        history=tuple(history),
        seconds=seconds,
    )


def pretrain_from_config(graph: InteractionGraph, policy: PolicyConfig, *, seed: int) -> LightGCNEmbeddings:
    """:func:`pretrain_lightgcn` with the sizes and BPR settings of the config's ``policy`` section."""
    return pretrain_lightgcn(
        graph,
        embedding_dim=policy.embedding_dim,
        n_layers=policy.n_layers,
        epochs=policy.bpr_epochs,
        lr=policy.bpr_lr,
        batch_size=policy.bpr_batch_size,
        patience=policy.bpr_patience,
        seed=seed,
    )
