"""Fixed-size profile statistics of a user's history: what a policy observes besides the user id."""

from __future__ import annotations

import numpy as np

from promptopt.data.interactions import InteractionData
from promptopt.tasks import UserContext

PROFILE_FEATURES: tuple[str, ...] = (
    "history_length",
    "genre_entropy",
    "top_genre_share",
    "mean_rating",
    "liked_share",
    "taste_shift",
    "activity_span",
    "mainstreamness",
    "recent_activity",
    "has_attributes",
)
"""Names of the components returned by :meth:`ProfileEncoder.encode`, in order."""


class ProfileEncoder:
    """Turns a :class:`UserContext` into ``len(PROFILE_FEATURES)`` numbers in ``[0, 1]``.

    Components (all clipped to ``[0, 1]``):

    * ``history_length``: ``log(1 + n) / log(1 + 500)``.
    * ``genre_entropy``: entropy of the history's genre distribution / ``log(n_genres)``.
    * ``top_genre_share``: share of genre mentions going to the most frequent genre.
    * ``mean_rating``: ``(mean - 1) / 4`` on a 1-5 scale (0.5 without ratings).
    * ``liked_share``: share of ratings >= 4 (0.5 without ratings).
    * ``taste_shift``: ``1 - cos(genres of the last 10 items, genres of the earlier ones)``.
    * ``activity_span``: ``log(1 + days) / log(1 + 3650)`` between first and last interaction.
    * ``mainstreamness``: mean ``log(1 + popularity)`` of the history's items / ``log(1 + max)``.
    * ``recent_activity``: share of the history within the last 10% of its span.
    * ``has_attributes``: 1 when the user has attributes (age, gender ...).

    Args:
        data: The dataset (item genres).
        popularity: ``(n_items,)`` interaction counts on training interactions only (so test
            targets cannot leak); defaults to zeros.
    """

    def __init__(self, data: InteractionData, popularity: np.ndarray | None = None) -> None:
        vocab = list(data.genre_names) or sorted({g for gs in data.item_genres for g in gs})
        index = {g: k for k, g in enumerate(vocab)}
        self.n_genres = max(len(vocab), 1)
        self.item_genres = np.zeros((data.n_items, self.n_genres), dtype=np.float32)
        for item, genres in enumerate(data.item_genres):
            for g in genres:
                if g in index:
                    self.item_genres[item, index[g]] = 1.0
        pop = np.zeros(data.n_items) if popularity is None else np.asarray(popularity, float)
        self.log_pop = np.log1p(pop) / max(np.log1p(pop.max()) if pop.size else 1.0, 1e-9)

    @property
    def size(self) -> int:
        return len(PROFILE_FEATURES)

    def encode(self, ctx: UserContext) -> np.ndarray:
        """Shapes: returns ``(len(PROFILE_FEATURES),)`` float32."""
        out = np.zeros(len(PROFILE_FEATURES), dtype=np.float32)
        n = len(ctx.items)
        out[0] = np.log1p(n) / np.log1p(500)
        out[9] = 1.0 if ctx.attributes else 0.0
        if n == 0:
            out[3:5] = 0.5
            return np.clip(out, 0.0, 1.0)
        items = np.fromiter(ctx.items, dtype=np.int64, count=n)
        genres = self.item_genres[items]
        counts = genres.sum(axis=0)
        total = counts.sum()
        if total > 0:
            p = counts[counts > 0] / total
            out[1] = float(-(p * np.log(p)).sum() / np.log(self.n_genres)) if self.n_genres > 1 else 0.0
            out[2] = float(p.max())
        ratings = np.asarray(ctx.ratings, dtype=np.float64)
        ratings = ratings[np.isfinite(ratings)]
        if ratings.size:
            out[3] = (ratings.mean() - 1.0) / 4.0
            out[4] = float((ratings >= 4).mean())
        else:
            out[3:5] = 0.5
        if n > 10:
            recent = genres[-10:].sum(axis=0)
            earlier = genres[:-10].sum(axis=0)
            denom = np.linalg.norm(recent) * np.linalg.norm(earlier)
            out[5] = 1.0 - float(recent @ earlier / denom) if denom > 0 else 0.0
        times = np.asarray(ctx.timestamps, dtype=np.float64)
        span = times[-1] - times[0]
        out[6] = np.log1p(span / 86400.0) / np.log1p(3650.0)
        out[7] = float(self.log_pop[items].mean())
        out[8] = float((times >= times[-1] - 0.1 * span).mean()) if span > 0 else 1.0
        return np.clip(out, 0.0, 1.0)
