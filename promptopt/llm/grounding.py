"""Grounding what a generative ranker invents: BIGRec's second step, as an option of the parser.

Bao et al., "A Bi-Step Grounding Paradigm for Large Language Models in Recommendation Systems"
(2023): a model first *generates* item names, which are then *grounded* to real items by embedding
similarity. Here the real items are the request's candidates: a list item of the answer that
neither an index nor (fuzzy) title matching can place is grounded to the most similar candidate not
placed yet (cosine between sentence embeddings, the packaged MiniLM by default), in the order of the
answer. Grounded mentions are counted apart (``ParseStats.grounded``), never as ``found``.

Only list items and JSON strings are grounded; prose lines ("Here is my ranking:") are not items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Grounder = Callable[[Sequence[str], Sequence[str]], Sequence[Sequence[float]]]
"""``similarity(mentions, candidate_texts)`` -> one row of similarities per mention (higher: closer)."""

GROUNDINGS: tuple[str, ...] = ("none", "embedding")
"""Values of ``ranker.grounding``."""


class EmbeddingGrounder:
    """Cosine similarity of sentence embeddings (a :class:`~promptopt.llm.embedding_backend.EmbeddingRanker`'s
    encoder, so the packaged MiniLM works offline).

    Args:
        model: A sentence-transformers model; ``all-MiniLM-L6-v2`` is the packaged one.
        device: Torch device.
    """

    def __init__(self, model: str = "all-MiniLM-L6-v2", device: str = "auto") -> None:
        from promptopt.llm.embedding_backend import EmbeddingRanker

        self.encoder = EmbeddingRanker(model, device=device)
        self.model = model

    @property
    def identity(self) -> str:
        """What the grounding adds to a ranker's identity (it changes rankings)."""
        return f"embedding:{self.encoder.identity.get('model', self.model)}"

    def __call__(self, mentions: Sequence[str], candidates: Sequence[str]) -> list[list[float]]:
        """Shapes: ``len(mentions)`` rows of ``len(candidates)`` cosine similarities."""
        import numpy as np

        vectors, _ = self.encoder.encode([*mentions, *candidates])
        vectors = np.asarray(vectors, dtype=np.float64)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        left, right = vectors[: len(mentions)], vectors[len(mentions):]
        return (left @ right.T).tolist()


def make_grounder(kind: str, model: str = "all-MiniLM-L6-v2", device: str = "auto") -> Any:
    """The grounder ``ranker.grounding`` names (None for ``"none"``).

    Raises:
        ValueError: An unknown kind.
    """
    if kind not in GROUNDINGS:
        raise ValueError(f"grounding must be one of {', '.join(GROUNDINGS)}, got {kind!r}")
    return None if kind == "none" else EmbeddingGrounder(model, device=device)
