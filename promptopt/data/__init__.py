"""Datasets: the in-memory :class:`InteractionData`, file loaders and the synthetic generator."""

from promptopt.data.interactions import InteractionData
from promptopt.data.loaders import DATASET_FORMATS, load_data, load_dataset
from promptopt.data.synthetic import make_synthetic

__all__ = ["DATASET_FORMATS", "InteractionData", "load_data", "load_dataset", "make_synthetic"]
