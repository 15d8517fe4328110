"""Datasets: the in-memory :class:`InteractionData`, file loaders and the synthetic generator."""

from promptopt.data.interactions import InteractionData
from promptopt.data.synthetic import make_synthetic

__all__ = ["InteractionData", "make_synthetic"]
