"""Collaborative hints: what the interaction graph knows that a language model cannot infer.

Three kinds, all computed from the training interactions alone (the ``train_mask`` of
:func:`promptopt.splits.training_mask`), so an item seen only in a held-out target can never
appear in a hint:

* **similar users** — user-based collaborative filtering: the ``n_neighbors`` training users
  whose item sets are closest (cosine) to the user's history vote for their other items;
* **co-consumed** — items that training users interacted with within ``window`` steps of the
  user's most recent items (normalised co-occurrence);
* **popularity** — distinct training users per item, and a ``popular`` / ``niche`` tag.

Templates use them through the fields ``{similar_users_items:N}``, ``{co_consumed:N}`` and
``{candidates:popularity}`` / ``{candidates:counts}``.
"""

from __future__ import annotations

import math

import numpy as np

from promptopt.data.interactions import InteractionData
from promptopt.tasks import UserContext


class CollaborativeHints:
    """Hints computed from training interactions; build with :meth:`fit`.

    Scores:

    * similar users: ``sim(u, v) = |H_u ∩ I_v| / sqrt(|H_u| |I_v|)`` between the history ``H_u``
      and a training user's items ``I_v``; item ``j`` scores ``sum_{v in top-K} sim(u, v) [j in I_v]``.
    * co-consumed: ``c(i, j)`` counts training pairs of ``i`` and ``j`` at most ``window`` steps
      apart in one user's sequence; item ``j`` scores ``sum_{i in recent} c(i, j) / sqrt(d_i d_j)``
      with ``d_i = sum_j c(i, j)``.
    * popularity: ``pop(j)`` = distinct training users of ``j``; ``popular`` when ``pop(j)`` exceeds
      the count of the item ranked just below the top ``popular_share`` of items, ``niche`` when it
      is below the ``niche_share`` quantile (ties stay together, so shares are upper bounds).

    Items of the user's own history are never suggested; ties go to the more popular item, then
    the lower index, so hints are deterministic.
    """

    def __init__(
        self,
        *,
        n_users: int,
        n_items: int,
        user_offsets: np.ndarray,
        user_items: np.ndarray,
        item_offsets: np.ndarray,
        item_users: np.ndarray,
        pair_keys: np.ndarray,
        pair_counts: np.ndarray,
        n_neighbors: int = 20,
        recent: int = 5,
        popular_share: float = 0.2,
        niche_share: float = 0.5,
    ) -> None:
        self.n_users = n_users
        self.n_items = n_items
        self.n_neighbors = n_neighbors
        self.recent = recent
        self._user_offsets = user_offsets
        self._user_items = user_items
        self._item_offsets = item_offsets
        self._item_users = item_users
        self._pair_keys = pair_keys
        self._pair_counts = pair_counts.astype(np.float64)
        self._user_degree = np.diff(user_offsets).astype(np.float64)
        self.item_popularity: np.ndarray = np.diff(item_offsets)
        """``int64 (n_items,)``: distinct training users per item."""
        self._pair_degree = np.bincount(
            pair_keys // n_items, weights=self._pair_counts, minlength=n_items
        )
        counts = self.item_popularity
        ranked = np.sort(counts)
        # Strict comparisons keep ties together: at most the top share is "popular" and at most
        # the bottom share "niche", and a flat distribution tags nothing.
        self.popular_threshold = int(ranked[::-1][min(math.ceil(popular_share * n_items), n_items - 1)])
        """An item is ``popular`` with more distinct training users than this."""
        self.niche_threshold = int(ranked[min(int(niche_share * n_items), n_items - 1)])
        """An item is ``niche`` with fewer distinct training users than this."""
        # Tie-break key: popular first, then lower index.
        self._tie = np.lexsort((np.arange(n_items), -counts)).argsort()

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        data: InteractionData,
        train_mask: np.ndarray,
        *,
        n_neighbors: int = 20,
        window: int = 5,
        recent: int = 5,
        popular_share: float = 0.2,
        niche_share: float = 0.5,
    ) -> CollaborativeHints:
        """Learn the hints from the interactions selected by ``train_mask``.

        Args:
            data: The dataset.
            train_mask: ``bool (n_interactions,)``: the rows hints may learn from (the training
                graph, never held-out targets).
            n_neighbors: Similar users that vote.
            window: Co-consumption window in steps of a user's sequence.
            recent: Most recent history items the co-consumption hint starts from.
            popular_share: Share of items tagged ``popular`` (by distinct training users).
            niche_share: Share of items tagged ``niche``.

        Raises:
            ValueError: A mask of the wrong shape or type, or parameters out of range.
        """
        mask = np.asarray(train_mask)
        if mask.dtype != bool or mask.shape != (data.n_interactions,):
            raise ValueError(
                f"train_mask must be a bool array of shape ({data.n_interactions},), got "
                f"{mask.dtype} {mask.shape}: pass promptopt.splits.training_mask(data, ...)"
            )
        for name, value in (("n_neighbors", n_neighbors), ("window", window), ("recent", recent)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 0.0 < popular_share < 1.0 or not 0.0 < niche_share < 1.0:
            raise ValueError(
                f"popular_share and niche_share must be in (0, 1), got {popular_share}, {niche_share}"
            )
        n_users, n_items = data.n_users, data.n_items
        users = data.users[mask]
        items = data.items[mask]
        # Distinct (user, item) pairs, as CSR both ways.
        keys = np.unique(users * n_items + items)
        pair_user, pair_item = keys // n_items, keys % n_items
        user_offsets = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(pair_user, minlength=n_users), out=user_offsets[1:])
        by_item = np.lexsort((pair_user, pair_item))
        item_offsets = np.zeros(n_items + 1, dtype=np.int64)
        np.cumsum(np.bincount(pair_item, minlength=n_items), out=item_offsets[1:])
        # Rows stay sorted by user then time under the mask, so neighbours in the array are
        # neighbours in a user's sequence.
        firsts, seconds = [], []
        for step in range(1, window + 1):
            same = (users[:-step] == users[step:]) & (items[:-step] != items[step:])
            a, b = items[:-step][same], items[step:][same]
            firsts += [a, b]
            seconds += [b, a]
        if firsts:
            codes = np.concatenate(firsts) * n_items + np.concatenate(seconds)
            pair_keys, pair_counts = np.unique(codes, return_counts=True)
        else:
            pair_keys, pair_counts = np.zeros(0, np.int64), np.zeros(0, np.int64)
        return cls(
            n_users=n_users,
            n_items=n_items,
            user_offsets=user_offsets,
            user_items=pair_item.astype(np.int64),
            item_offsets=item_offsets,
            item_users=pair_user[by_item].astype(np.int64),
            pair_keys=pair_keys.astype(np.int64),
            pair_counts=pair_counts,
            n_neighbors=n_neighbors,
            recent=recent,
            popular_share=popular_share,
            niche_share=niche_share,
        )

    # ------------------------------------------------------------------ queries
    def popularity(self, item: int) -> int:
        """Distinct training users who interacted with ``item``."""
        return int(self.item_popularity[item])

    def popularity_tag(self, item: int) -> str:
        """``"popular"``, ``"niche"`` or ``""`` (neither) for ``item``."""
        count = int(self.item_popularity[item])
        if count > self.popular_threshold:
            return "popular"
        if count < self.niche_threshold:
            return "niche"
        return ""

    def similar_users_items(self, ctx: UserContext, n: int) -> list[int]:
        """Up to ``n`` items the training users most similar to ``ctx``'s history interacted with.

        The user's own training row never votes, and items of the history are left out.
        """
        history = _distinct_items(ctx)
        if not history.size or n < 1:
            return []
        voters = np.concatenate(
            [self._item_users[self._item_offsets[i]:self._item_offsets[i + 1]] for i in history]
        )
        overlap = np.bincount(voters, minlength=self.n_users).astype(np.float64)
        if 0 <= ctx.user < self.n_users:
            overlap[ctx.user] = 0.0
        candidates = np.flatnonzero(overlap)
        if not candidates.size:
            return []
        sim = overlap[candidates] / np.sqrt(self._user_degree[candidates] * history.size)
        order = np.lexsort((candidates, -sim))[: self.n_neighbors]
        neighbours, weights = candidates[order], sim[order]
        scores = np.zeros(self.n_items)
        for v, w in zip(neighbours, weights):
            scores[self._user_items[self._user_offsets[v]:self._user_offsets[v + 1]]] += w
        return self._top(scores, history, n)

    def co_consumed(self, ctx: UserContext, n: int) -> list[int]:
        """Up to ``n`` items training users consumed close in time to ``ctx``'s recent items."""
        history = _distinct_items(ctx)
        if not history.size or n < 1:
            return []
        recent = [ctx.items[p] for p in ctx.distinct_positions()[-self.recent:]]
        scores = np.zeros(self.n_items)
        for item in recent:
            lo, hi = np.searchsorted(self._pair_keys, [item * self.n_items, (item + 1) * self.n_items])
            if lo == hi:
                continue
            others = self._pair_keys[lo:hi] % self.n_items
            norm = np.sqrt(self._pair_degree[item] * self._pair_degree[others])
            scores[others] += self._pair_counts[lo:hi] / norm
        return self._top(scores, history, n)

    def available(self, ctx: UserContext) -> frozenset[str]:
        """The hint kinds (``similar_users``, ``co_consumed``, ``popularity``) that say something
        for ``ctx``: a kind is missing when its list would be empty."""
        kinds = {"popularity"}
        if self.similar_users_items(ctx, 1):
            kinds.add("similar_users")
        if self.co_consumed(ctx, 1):
            kinds.add("co_consumed")
        return frozenset(kinds)

    def _top(self, scores: np.ndarray, exclude: np.ndarray, n: int) -> list[int]:
        scores[exclude] = 0.0
        found = np.flatnonzero(scores > 0)
        if not found.size:
            return []
        order = np.lexsort((self._tie[found], -scores[found]))[:n]
        return [int(i) for i in found[order]]

    def describe(self) -> str:
        return (
            f"collaborative hints from {int(self._user_degree.sum())} training (user, item) pairs, "
            f"{len(self._pair_keys)} co-consumption pairs; popular > {self.popular_threshold} users, "
            f"niche < {self.niche_threshold}"
        )


def _distinct_items(ctx: UserContext) -> np.ndarray:
    return np.unique(np.fromiter(ctx.items, dtype=np.int64, count=len(ctx.items)))
