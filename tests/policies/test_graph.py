"""The interaction graph: training interactions only, bipartite layout, normalised adjacency."""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.data import InteractionData
from promptopt.policies.graph import InteractionGraph, build_graph, holdout_last_edges
from promptopt.splits import target_rows, time_cut_at_quantile, training_mask


def test_graph_holds_no_test_target_and_nothing_after_the_drift_cut(synthetic_data, synthetic_split):
    data = synthetic_data
    cut = time_cut_at_quantile(data, 0.8)
    mask = training_mask(data, n_targets=3, time_cut=cut)
    graph = build_graph(data, mask)
    assert graph.n_edges > 0
    # Every edge comes from an allowed row, strictly before the cut.
    assert mask[graph.rows].all()
    assert (data.timestamps[graph.rows] < cut).all()
    # No (user, target item) pair of any user, test users included, is an edge.
    target_users, target_items, late_users, late_items = [], [], [], []
    for user in range(data.n_users):
        rows = data.user_rows(user)
        for row in target_rows(data, user, 3):
            target_users.append(user)
            target_items.append(int(data.items[rows.start + row]))
        after = np.flatnonzero(data.timestamps[rows] >= cut)
        late_users += [user] * after.size
        late_items += [int(x) for x in data.items[rows][after]]
    assert not graph.has_edges(np.array(target_users), np.array(target_items)).any()
    assert late_users, "the synthetic data should have interactions after the cut"
    assert not graph.has_edges(np.array(late_users), np.array(late_items)).any()
    # Test users keep their earlier history (the policy needs their embeddings) but no target.
    test_user = int(synthetic_split.test[0])
    assert graph.user_degree[test_user] > 0


def test_graph_edges_equal_the_masked_pairs(synthetic_data):
    mask = training_mask(synthetic_data, n_targets=2)
    graph = build_graph(synthetic_data, mask)
    expected = {(int(u), int(i)) for u, i in zip(synthetic_data.users[mask], synthetic_data.items[mask])}
    assert set(zip(graph.users.tolist(), graph.items.tolist())) == expected
    assert graph.n_edges == len(expected)
    assert graph.n_nodes == synthetic_data.n_users + synthetic_data.n_items


def test_edge_index_is_symmetric_and_bipartite(synthetic_data):
    graph = build_graph(synthetic_data, training_mask(synthetic_data))
    edge_index = graph.edge_index().numpy()
    assert edge_index.shape == (2, 2 * graph.n_edges)
    src, dst = edge_index
    users = src < graph.n_users
    # Each edge joins a user node to an item node, in both directions.
    assert ((dst >= graph.n_users) == users).all()
    pairs = set(zip(src.tolist(), dst.tolist()))
    assert all((d, s) in pairs for s, d in pairs)


def test_normalized_adjacency_is_symmetric_degree_normalisation(synthetic_data):
    graph = build_graph(synthetic_data, training_mask(synthetic_data))
    dense = graph.normalized_adjacency().to_dense().numpy()
    a = np.zeros((graph.n_nodes, graph.n_nodes))
    a[graph.users, graph.items + graph.n_users] = 1.0
    a += a.T
    deg = a.sum(1)
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1)), 0.0)
    np.testing.assert_allclose(dense, inv[:, None] * a * inv[None, :], rtol=1e-6, atol=1e-7)


def _tiny_data() -> InteractionData:
    items = [(str(i), f"Item {i}", ("Drama",), 2000) for i in range(4)]
    rows = [("u1", "0", 4.0, 10), ("u1", "1", 3.0, 20), ("u1", "0", 5.0, 30), ("u1", "2", 2.0, 40),
            ("u2", "3", 4.0, 15), ("u2", "1", 4.0, 25)]
    return InteractionData.from_raw("tiny", items=items, interactions=rows)


def test_repeated_pair_is_one_edge_at_its_latest_occurrence():
    data = _tiny_data()
    graph = build_graph(data, np.ones(data.n_interactions, dtype=bool))
    assert graph.n_edges == 5
    user0 = graph.users == 0
    # u1's edges in order of their latest interaction: item 1 (t=20), item 0 (t=30), item 2 (t=40).
    assert graph.items[user0].tolist() == [1, 0, 2]
    assert data.timestamps[graph.rows[user0]].tolist() == [20, 30, 40]


def test_holdout_last_edges_takes_each_users_latest_edge():
    data = _tiny_data()
    graph = build_graph(data, np.ones(data.n_interactions, dtype=bool))
    fit, held = holdout_last_edges(graph)
    assert set(zip(graph.users[held].tolist(), graph.items[held].tolist())) == {(0, 2), (1, 1)}
    assert fit.n_edges == graph.n_edges - 2
    assert not fit.has_edges(graph.users[held], graph.items[held]).any()


def test_bad_masks_fail_with_a_clear_error(synthetic_data):
    with pytest.raises(ValueError, match="bool array of shape"):
        build_graph(synthetic_data, np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="bool array"):
        build_graph(synthetic_data, np.ones(synthetic_data.n_interactions, dtype=int))
    with pytest.raises(ValueError, match="selects no interaction"):
        build_graph(synthetic_data, np.zeros(synthetic_data.n_interactions, dtype=bool))


def test_graph_rejects_out_of_range_nodes():
    with pytest.raises(ValueError, match="item index"):
        InteractionGraph(2, 2, np.array([0]), np.array([5]), np.array([-1]))


def test_problem_train_mask_graph_holds_no_episode_or_evaluation_target(small_problem):
    problem = small_problem
    data = problem.data
    graph = build_graph(data, problem.train_mask)
    users, items = [], []
    for user in np.concatenate([problem.split.train, problem.split.val, problem.split.test]):
        user = int(user)
        rows = data.user_rows(user)
        targets = {problem.target_row(user), problem.target_row(user, final=True),
                   problem.target_row(user, period="source"), problem.target_row(user, period="target")}
        for row in targets - {None}:
            users.append(user)
            items.append(int(data.items[rows.start + row]))
    assert len(users) > len(problem.split.train)
    assert not graph.has_edges(np.array(users), np.array(items)).any()
    assert (data.timestamps[graph.rows] < problem.time_cut).all()
