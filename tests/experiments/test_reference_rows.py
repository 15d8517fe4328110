"""Reference rows of the evaluation table: popularity and the run's LightGCN, on the selectors' tasks."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from promptopt.config import load_config
from promptopt.experiments import assembly
from promptopt.experiments.reference_rows import (
    evaluate_reference,
    rank_by_scores,
    reference_rows,
    reference_scorers,
)
from promptopt.experiments.report import headline_table
from tests.experiments.conftest import tiny_config_dict


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tmp, ranker={"backend": "simulated"})))
    config = load_config(path)
    return config, assembly.build_problem(config)[3]


def test_ties_keep_the_shown_order() -> None:
    assert rank_by_scores([7, 3, 9, 4], [1.0, 2.0, 1.0, 2.0]) == (3, 4, 7, 9)


def test_popularity_row_ranks_the_base_task_by_training_popularity(tiny) -> None:
    _, problem = tiny
    users = problem.pool("test")
    row = evaluate_reference(reference_scorers(problem, None)["popularity"], problem, users,
                             n_bootstrap=50)
    assert row["calls"] == 0 and row["n_users"] == sum(1 for u in users if problem.tasks(int(u)))
    # The same value, computed by hand for one user.
    user = next(int(u) for u in users if problem.tasks(int(u)))
    task = problem.tasks(user)[0]
    by_hand = sorted(task.candidates, key=lambda c: (-problem.popularity[c], task.candidates.index(c)))
    alone = evaluate_reference(reference_scorers(problem, None)["popularity"], problem, [user], n_bootstrap=1)
    rank = by_hand.index(task.target) + 1
    assert alone["metrics"]["mrr"]["mean"] == pytest.approx(1.0 / rank)
    assert 0.0 <= row["metrics"]["ndcg@10"]["mean"] <= 1.0


def test_a_scorer_that_knows_the_target_scores_one(tiny) -> None:
    _, problem = tiny
    users = problem.pool("test")

    def oracle(user: int, candidates: np.ndarray) -> np.ndarray:
        return (candidates == problem.tasks(user)[0].target).astype(float)

    row = evaluate_reference(oracle, problem, users, n_bootstrap=10)
    assert row["metrics"]["ndcg@10"]["mean"] == pytest.approx(1.0)
    assert row["metrics"]["hit@1"]["mean"] == pytest.approx(1.0)


def test_lightgcn_row_reads_the_runs_embeddings_and_the_table_shows_both(tiny, tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from promptopt.policies.lightgcn import LightGCNEmbeddings

    config, problem = tiny
    n_users, n_items, d = problem.data.n_users, problem.data.n_items, 4
    gen = torch.Generator().manual_seed(0)
    users, items = torch.randn(n_users, d, generator=gen), torch.randn(n_items, d, generator=gen)
    LightGCNEmbeddings(n_users=n_users, n_items=n_items, embedding_dim=d, n_layers=1,
                       node_weights=torch.cat([users, items]), user_embeddings=users,
                       item_embeddings=items, edges=torch.zeros((2, 0), dtype=torch.long),
                       ).save(tmp_path / "l.pt")
    rows = reference_rows(config, problem, tmp_path / "l.pt")
    assert set(rows) == {"popularity", "lightgcn"}
    user = next(int(u) for u in problem.pool(config.eval.split) if problem.tasks(int(u)))
    cands = np.asarray(problem.tasks(user)[0].candidates)
    scores = reference_scorers(problem, tmp_path / "l.pt")["lightgcn"](user, cands)
    assert scores == pytest.approx((items[cands] @ users[user]).double().numpy())
    table = headline_table({"methods": {}, "reference": rows, "n_users": 3})
    assert "ref: popularity" in table and "ref: lightgcn" in table and "0 (no LLM)" in table
    assert set(reference_rows(config, problem, tmp_path / "missing.pt")) == {"popularity"}
