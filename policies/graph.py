"""The user–item interaction graph a policy may learn from: training interactions only.

Node layout is bipartite: users take node ids ``0..n_users-1`` and items
``n_users..n_users+n_items-1``. Every user of the dataset has a node (a held-out user keeps the
interactions before its first target and the drift cut, which is what the policy may see of it);
edges come only from rows selected by :func:`promptopt.splits.training_mask`, so no test target
and no interaction after the drift time cut ever reaches the graph.

Two adjacency forms feed :class:`torch_geometric.nn.models.LightGCN`:

* :meth:`InteractionGraph.edge_index` — both edge directions, for ``LGConv(normalize=True)``
  (the reference path);
* :meth:`InteractionGraph.normalized_adjacency` — the same graph pre-normalised,
  :math:`\\hat A = D^{-1/2} A D^{-1/2}`, as a torch sparse CSR tensor for
  ``LGConv(normalize=False)``: the same output, several times faster on CPU.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from promptopt.data.interactions import InteractionData

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, eq=False)
class InteractionGraph:
    """A bipartite user–item graph with one undirected edge per distinct (user, item) pair.

    Edges are sorted by user, then by the time of the pair's latest interaction, so a user's
    most recent training item is its last edge (what :func:`holdout_last_edges` holds out).

    Attributes:
        n_users: User nodes (all users of the dataset, with or without edges).
        n_items: Item nodes.
        users: ``int64 (E,)`` user index of each edge.
        items: ``int64 (E,)`` item index of each edge (not offset by ``n_users``).
        rows: ``int64 (E,)`` the interaction row each edge came from (its latest occurrence), or
            ``-1`` for graphs not built from a dataset.
    """

    n_users: int
    n_items: int
    users: np.ndarray
    items: np.ndarray
    rows: np.ndarray

    def __post_init__(self) -> None:
        if not (len(self.users) == len(self.items) == len(self.rows)):
            raise ValueError("users, items and rows of a graph must have the same length")
        for name, values, n in (("user", self.users, self.n_users), ("item", self.items, self.n_items)):
            if len(values) and (values.min() < 0 or values.max() >= n):
                raise ValueError(f"graph {name} index outside 0..{n - 1}")

    @property
    def n_nodes(self) -> int:
        return self.n_users + self.n_items

    @property
    def n_edges(self) -> int:
        """Distinct (user, item) pairs (each is two directed edges in :meth:`edge_index`)."""
        return len(self.users)

    @cached_property
    def user_degree(self) -> np.ndarray:
        """``int64 (n_users,)`` training items per user."""
        return np.bincount(self.users, minlength=self.n_users)

    @cached_property
    def item_degree(self) -> np.ndarray:
        """``int64 (n_items,)`` training users per item (training popularity)."""
        return np.bincount(self.items, minlength=self.n_items)

    @cached_property
    def pair_keys(self) -> np.ndarray:
        """Sorted ``user * n_items + item`` keys of the edges (fast membership tests)."""
        return np.sort(self.users * self.n_items + self.items)

    def has_edges(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each ``(users[k], items[k])`` pair is an edge. Shapes: ``(n,), (n,) -> (n,)``."""
        keys = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        pos = np.searchsorted(self.pair_keys, keys)
        pos = np.minimum(pos, max(len(self.pair_keys) - 1, 0))
        return (self.pair_keys[pos] == keys) if len(self.pair_keys) else np.zeros(len(keys), bool)

    def edge_index(self) -> torch.Tensor:
        """Both directions of every edge, items offset by ``n_users``.

        Shapes:
            ``(2, 2 * n_edges)`` int64; row 0 = source node, row 1 = target node.
        """
        import torch

        users = torch.as_tensor(self.users, dtype=torch.long)
        items = torch.as_tensor(self.items, dtype=torch.long) + self.n_users
        return torch.stack([torch.cat([users, items]), torch.cat([items, users])])

    def normalized_adjacency(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """:math:`\\hat A_{ij} = 1 / \\sqrt{\\deg(i) \\deg(j)}` for every edge, as sparse CSR.

        Symmetric, so it is its own transpose (``LGConv`` multiplies by ``adj_t``). Isolated
        nodes have empty rows.

        Shapes:
            ``(n_nodes, n_nodes)`` sparse CSR with ``2 * n_edges`` stored values.
        """
        import torch

        dtype = dtype or torch.float32
        degree = np.concatenate([self.user_degree, self.item_degree]).astype(np.float64)
        inv_sqrt = np.zeros_like(degree)
        np.divide(1.0, np.sqrt(degree), out=inv_sqrt, where=degree > 0)
        src = np.concatenate([self.users, self.items + self.n_users])
        dst = np.concatenate([self.items + self.n_users, self.users])
        order = np.lexsort((dst, src))
        src, dst = src[order], dst[order]
        values = inv_sqrt[src] * inv_sqrt[dst]
        crow = np.zeros(self.n_nodes + 1, dtype=np.int64)
        np.cumsum(np.bincount(src, minlength=self.n_nodes), out=crow[1:])
        with warnings.catch_warnings():
            # torch labels sparse CSR "beta" on every construction; the layout is what LGConv wants.
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(
                torch.from_numpy(crow),
                torch.from_numpy(dst.astype(np.int64)),
                torch.from_numpy(values).to(dtype),
                size=(self.n_nodes, self.n_nodes),
                check_invariants=False,
            )

    def subgraph(self, keep: np.ndarray) -> InteractionGraph:
        """The graph with only the edges where ``keep`` (bool ``(n_edges,)``) is true; same nodes."""
        keep = np.asarray(keep, dtype=bool)
        return InteractionGraph(self.n_users, self.n_items, self.users[keep], self.items[keep],
                                self.rows[keep])


def build_graph(data: InteractionData, train_mask: np.ndarray) -> InteractionGraph:
    """The interaction graph of the rows selected by ``train_mask``.

    Use ``problem.train_mask`` or :func:`promptopt.splits.training_mask` (rows before each user's
    first target and before the drift cut); any other mask is taken as given. A (user, item) pair
    seen several times becomes one edge, placed at its latest selected occurrence.

    Args:
        data: The dataset.
        train_mask: ``bool (n_interactions,)`` rows the graph may use.

    Raises:
        ValueError: The mask has the wrong shape or selects no interaction.
    """
    mask = np.asarray(train_mask)
    if mask.dtype != bool or mask.shape != (data.n_interactions,):
        raise ValueError(
            f"train_mask must be a bool array of shape ({data.n_interactions},) (one entry per "
            f"interaction of {data.name}), got {mask.dtype} {mask.shape}"
        )
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        raise ValueError(
            "train_mask selects no interaction: the graph would be empty (check split.n_targets and "
            "split.drift_quantile, which decide what counts as training history)"
        )
    users, items = data.users[rows], data.items[rows]
    keys = users * data.n_items + items
    # Latest occurrence of each pair: unique over the reversed rows keeps the last one.
    _, last = np.unique(keys[::-1], return_index=True)
    keep = np.sort(rows.size - 1 - last)  # data rows are sorted by user, then time
    return InteractionGraph(
        n_users=data.n_users,
        n_items=data.n_items,
        users=users[keep].astype(np.int64),
        items=items[keep].astype(np.int64),
        rows=rows[keep].astype(np.int64),
    )


def holdout_last_edges(
    graph: InteractionGraph, *, min_degree: int = 2
) -> tuple[InteractionGraph, np.ndarray]:
    """Split off each user's most recent edge for validation (LightGCN early stopping).

    Users with fewer than ``min_degree`` edges keep all of them (a user needs a training edge to
    get a propagated embedding).

    Returns:
        ``(fit_graph, held_out)`` where ``held_out`` is the bool ``(n_edges,)`` mask of the
        validation edges in ``graph``.
    """
    last = np.zeros(graph.n_edges, dtype=bool)
    if graph.n_edges:
        boundary = np.flatnonzero(np.diff(graph.users)) if graph.n_edges > 1 else np.array([], int)
        ends = np.append(boundary, graph.n_edges - 1)
        ends = ends[graph.user_degree[graph.users[ends]] >= min_degree]
        last[ends] = True
    return graph.subgraph(~last), last
