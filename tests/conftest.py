"""Shared fixtures: small seeded data every test package can use (offline, fast)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def synthetic_data():
    """A small synthetic dataset (120 users, 200 items), the same in every test session."""
    from promptopt.data import make_synthetic

    return make_synthetic(n_users=120, n_items=200, n_genres=10, mean_history=30, seed=7)


@pytest.fixture(scope="session")
def synthetic_split(synthetic_data):
    from promptopt.splits import split_users

    return split_users(synthetic_data, seed=0)
