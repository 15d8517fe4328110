"""LightGCN: CSR and edge_index paths agree, BPR pretraining learns, stops early, saves and loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.nn.models import LightGCN

from promptopt.policies.graph import build_graph, holdout_last_edges
from promptopt.policies.lightgcn import (
    EmbeddingsFileError,
    LightGCNEmbeddings,
    make_lightgcn,
    pretrain_lightgcn,
    recall_at_k,
)
from promptopt.splits import training_mask


@pytest.fixture(scope="module")
def graph(synthetic_data):
    return build_graph(synthetic_data, training_mask(synthetic_data, n_targets=2))


@pytest.fixture(scope="module")
def pretrained(graph):
    return pretrain_lightgcn(graph, embedding_dim=32, n_layers=2, epochs=40, patience=5,
                             batch_size=512, lr=0.01, seed=3)


def test_csr_with_normalize_false_equals_edge_index_with_normalize_true(graph):
    torch.manual_seed(0)
    reference = LightGCN(graph.n_nodes, 16, num_layers=3)  # LGConv(normalize=True)
    fast = make_lightgcn(graph.n_nodes, 16, 3)
    fast.load_state_dict(reference.state_dict())
    assert all(not conv.normalize for conv in fast.convs)
    expected = reference.get_embedding(graph.edge_index())
    got = fast.get_embedding(graph.normalized_adjacency())
    assert got.shape == (graph.n_nodes, 16)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # The gradients agree too (fine-tuning back-propagates through the CSR path).
    expected.pow(2).sum().backward()
    got.pow(2).sum().backward()
    torch.testing.assert_close(fast.embedding.weight.grad, reference.embedding.weight.grad,
                               rtol=1e-4, atol=1e-6)


def test_bpr_lowers_the_loss_and_beats_random_recall(graph, pretrained):
    losses = [h.loss for h in pretrained.history]
    assert losses[-1] < 0.8 * losses[0]
    fit, held = holdout_last_edges(graph)
    unseen = graph.n_items - fit.user_degree[graph.users[held]].mean()
    random_recall = 20 / unseen
    assert pretrained.best_recall > 2.0 * random_recall
    # The recorded best recall is what the kept weights score on the validation edges.
    emb = pretrained.model().get_embedding(fit.normalized_adjacency()).detach()
    again = recall_at_k(emb[:graph.n_users], emb[graph.n_users:], fit, graph.users[held],
                        graph.items[held], 20)
    assert again == pytest.approx(pretrained.best_recall)


def test_frozen_embeddings_are_the_kept_weights_propagated_over_the_full_graph(graph, pretrained):
    assert pretrained.user_embeddings.shape == (graph.n_users, 32)
    assert pretrained.item_embeddings.shape == (graph.n_items, 32)
    with torch.no_grad():
        full = pretrained.model().get_embedding(graph.normalized_adjacency())
    torch.testing.assert_close(pretrained.user_embeddings, full[: graph.n_users])
    assert not pretrained.user_embeddings.requires_grad


def test_early_stopping_keeps_the_best_epoch(graph):
    result = pretrain_lightgcn(graph, embedding_dim=16, epochs=500, patience=2, batch_size=256,
                               lr=0.05, seed=0)
    assert result.stopped_early
    assert len(result.history) < 500
    assert result.history[-1].epoch == result.best_epoch + 2
    best = max(h.recall for h in result.history)
    assert result.best_recall >= best


def test_pretraining_is_seeded_and_leaves_global_rng_alone(graph):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = pretrain_lightgcn(graph, embedding_dim=8, epochs=2, batch_size=1024, seed=5)
    after = torch.rand(1)
    b = pretrain_lightgcn(graph, embedding_dim=8, epochs=2, batch_size=1024, seed=5)
    c = pretrain_lightgcn(graph, embedding_dim=8, epochs=2, batch_size=1024, seed=6)
    assert torch.equal(before, after)
    torch.testing.assert_close(a.user_embeddings, b.user_embeddings)
    assert not torch.allclose(a.user_embeddings, c.user_embeddings)


def test_save_load_round_trip(tmp_path, graph, pretrained):
    path = pretrained.save(tmp_path / "run" / "lightgcn.pt")
    loaded = LightGCNEmbeddings.load(path)
    for name in ("node_weights", "user_embeddings", "item_embeddings", "edges"):
        assert torch.equal(getattr(loaded, name), getattr(pretrained, name)), name
    assert (loaded.n_users, loaded.n_items, loaded.embedding_dim, loaded.n_layers) == (
        graph.n_users, graph.n_items, 32, 2)
    assert loaded.history == pretrained.history
    assert loaded.best_epoch == pretrained.best_epoch
    back = loaded.graph()
    assert np.array_equal(back.users, graph.users) and np.array_equal(back.items, graph.items)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(EmbeddingsFileError, match="does not exist"):
        LightGCNEmbeddings.load(tmp_path / "missing.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(EmbeddingsFileError, match="not a promptopt LightGCN"):
        LightGCNEmbeddings.load(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_text("not torch")
    with pytest.raises(EmbeddingsFileError, match="cannot read"):
        LightGCNEmbeddings.load(tmp_path / "junk.pt")


def test_bad_arguments_fail(graph):
    with pytest.raises(ValueError, match="batch_size"):
        pretrain_lightgcn(graph, batch_size=0)
    with pytest.raises(ValueError, match="epochs"):
        pretrain_lightgcn(graph, epochs=-1)


def test_without_validation_edges_all_epochs_run_and_the_last_is_kept():
    from promptopt.policies.graph import InteractionGraph

    # Every user has a single edge: nothing can be held out.
    graph = InteractionGraph(6, 6, np.arange(6), (np.arange(6) + 1) % 6, np.full(6, -1))
    result = pretrain_lightgcn(graph, embedding_dim=4, epochs=4, batch_size=2, seed=0)
    assert [h.epoch for h in result.history] == [1, 2, 3, 4]
    assert result.best_epoch == 4 and not result.stopped_early


def test_pretraining_is_bitwise_reproducible_with_several_threads():
    """Issue 13, section 5: the same seed gives the same embeddings, also when torch runs 2 threads.

    BPR batches of 8192 edges are large enough that CPU kernels split their work across threads;
    with ``emb[u]`` indexing, whose backward accumulates rows in a thread-dependent order, repeated
    runs differed in the 6th digit (on ML-100K: 751 of 943 users' embeddings, after 5 epochs), and
    PPO, reading those embeddings, then chose differently.
    """
    from promptopt.data import make_synthetic

    data = make_synthetic(n_users=500, n_items=300, n_genres=10, mean_history=30, seed=11)
    graph = build_graph(data, training_mask(data, n_targets=2))
    assert graph.n_edges > 8192
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = [pretrain_lightgcn(graph, embedding_dim=16, n_layers=2, epochs=3, patience=5,
                                  batch_size=8192, lr=0.05, seed=5) for _ in range(4)]
    finally:
        torch.set_num_threads(threads)
    for other in runs[1:]:
        assert torch.equal(other.node_weights, runs[0].node_weights)
        assert torch.equal(other.user_embeddings, runs[0].user_embeddings)
