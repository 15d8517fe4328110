"""Features extractors: shapes, computed features_dim, embeddings from the file, bad user indices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from promptopt.policies.extractor import LightGCNExtractor, ProfileExtractor
from promptopt.policies.graph import build_graph
from promptopt.policies.lightgcn import pretrain_lightgcn
from promptopt.profile import PROFILE_FEATURES
from promptopt.splits import training_mask

OBS_DIM = 1 + len(PROFILE_FEATURES)


@pytest.fixture(scope="module")
def embeddings_file(synthetic_data, tmp_path_factory):
    graph = build_graph(synthetic_data, training_mask(synthetic_data, n_targets=2))
    result = pretrain_lightgcn(graph, embedding_dim=16, n_layers=2, epochs=3, batch_size=1024, seed=0)
    return result, str(result.save(tmp_path_factory.mktemp("emb") / "lightgcn.pt"))


def _space() -> spaces.Box:
    return spaces.Box(low=0.0, high=np.inf, shape=(OBS_DIM,), dtype=np.float32)


def _obs(users: list[int], seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    obs = rng.random((len(users), OBS_DIM)).astype(np.float32)
    obs[:, 0] = users
    return torch.from_numpy(obs)


def test_lightgcn_extractor_shapes_and_features_dim(embeddings_file, synthetic_data):
    result, path = embeddings_file
    ext = LightGCNExtractor(_space(), n_users=synthetic_data.n_users, embedding_dim=16,
                            hidden=(32, 24), embeddings_path=path)
    assert ext.features_dim == 24
    out = ext(_obs([0, 5, 119]))
    assert out.shape == (3, 24)
    assert torch.equal(ext.user_embeddings, result.user_embeddings)
    assert "user_embeddings" in ext.state_dict()
    assert not any(p is ext.user_embeddings for p in ext.parameters())
    # With no hidden layer the features are the standardised embedding ++ profile statistics.
    bare = LightGCNExtractor(_space(), n_users=synthetic_data.n_users, embedding_dim=16, hidden=(),
                             embeddings_path=path)
    assert bare.features_dim == 16 + len(PROFILE_FEATURES)
    obs = _obs([7])
    torch.testing.assert_close(bare(obs)[0, 16:], obs[0, 1:])  # no profile moments given: identity
    table = result.user_embeddings
    torch.testing.assert_close(bare(obs)[0, :16], (table[7] - table.mean(0)) / table.std(0))
    # Profile moments standardise the statistics.
    mean, std = [0.5] * len(PROFILE_FEATURES), [0.25] * len(PROFILE_FEATURES)
    scaled = LightGCNExtractor(_space(), n_users=synthetic_data.n_users, embedding_dim=16, hidden=(),
                               embeddings_path=path, profile_mean=mean, profile_std=std)
    torch.testing.assert_close(scaled(obs)[0, 16:], (obs[0, 1:] - 0.5) / 0.25)


def test_features_depend_on_the_user_embedding_not_only_the_profile(embeddings_file, synthetic_data):
    _, path = embeddings_file
    ext = LightGCNExtractor(_space(), n_users=synthetic_data.n_users, embedding_dim=16,
                            embeddings_path=path)
    obs = _obs([1, 2])
    obs[1, 1:] = obs[0, 1:]  # same profile, different users
    out = ext(obs)
    assert not torch.allclose(out[0], out[1])


def test_profile_extractor_ignores_the_user_index():
    ext = ProfileExtractor(_space(), hidden=(8,))
    assert ext.features_dim == 8
    obs = _obs([1, 2])
    obs[1, 1:] = obs[0, 1:]
    out = ext(obs)
    assert out.shape == (2, 8)
    torch.testing.assert_close(out[0], out[1])


def test_finetune_extractor_propagates_the_live_graph_and_gets_gradients(embeddings_file, synthetic_data):
    result, path = embeddings_file
    ext = LightGCNExtractor(_space(), n_users=synthetic_data.n_users, embedding_dim=16, hidden=(8,),
                            embeddings_path=path, finetune_graph=True, n_items=result.n_items,
                            n_layers=2, n_edges=int(result.edges.shape[1]))
    users = torch.tensor([3, 4])
    torch.testing.assert_close(ext.user_vectors(users), result.user_embeddings[users])
    ext(_obs([3, 4])).sum().backward()
    grad = ext.gcn.embedding.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert "edges" in ext.state_dict() and "user_embeddings" not in ext.state_dict()


def test_state_dict_restores_an_extractor_built_without_the_file(embeddings_file, synthetic_data):
    _, path = embeddings_file
    trained = LightGCNExtractor(_space(), n_users=synthetic_data.n_users, embedding_dim=16,
                                embeddings_path=path)
    restored = LightGCNExtractor(_space(), n_users=synthetic_data.n_users, embedding_dim=16,
                                 embeddings_path=path + ".moved")
    assert restored.user_embeddings.abs().sum() == 0
    restored.load_state_dict(trained.state_dict())
    obs = _obs([0, 9, 33])
    torch.testing.assert_close(restored(obs), trained(obs))


def test_errors_name_the_problem(embeddings_file, synthetic_data):
    _, path = embeddings_file
    with pytest.raises(ValueError, match="holds sizes"):
        LightGCNExtractor(_space(), n_users=synthetic_data.n_users + 1, embedding_dim=16,
                          embeddings_path=path)
    ext = LightGCNExtractor(_space(), n_users=synthetic_data.n_users, embedding_dim=16,
                            embeddings_path=path)
    with pytest.raises(ValueError, match="user index 120"):
        ext(_obs([0, synthetic_data.n_users]))
    with pytest.raises(ValueError, match="flat Box"):
        ProfileExtractor(spaces.Discrete(3))
    with pytest.raises(ValueError, match="hidden layer sizes"):
        ProfileExtractor(_space(), hidden=(0,))
