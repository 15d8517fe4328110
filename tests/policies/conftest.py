"""Policy test fixtures: a small problem on the shared synthetic data, the simulator, embeddings."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def movies_catalog():
    from promptopt.templates import TemplateCatalog

    return TemplateCatalog.load("movies")


@pytest.fixture(scope="session")
def small_problem(synthetic_data, synthetic_split, movies_catalog):
    from promptopt.config import RewardConfig, SplitConfig
    from promptopt.problem import RecProblem

    return RecProblem.build(synthetic_data, synthetic_split, movies_catalog, RewardConfig(), SplitConfig(),
                            seed=0)


@pytest.fixture(scope="session")
def simulated_ranker(synthetic_data, movies_catalog):
    from promptopt.llm.simulated import SimulatedRanker

    return SimulatedRanker(synthetic_data, movies_catalog, seed=0)


@pytest.fixture(scope="session")
def small_embeddings(small_problem, tmp_path_factory):
    """LightGCN embeddings of the small problem's training graph (a few epochs), saved to a file."""
    from promptopt.policies.graph import build_graph
    from promptopt.policies.lightgcn import pretrain_lightgcn

    graph = build_graph(small_problem.data, small_problem.train_mask)
    result = pretrain_lightgcn(graph, embedding_dim=16, n_layers=2, epochs=3, batch_size=1024, seed=0)
    return result.save(tmp_path_factory.mktemp("policy") / "lightgcn.pt")
