"""The simulated black box: deterministic, calibrated, with a learnable per-user best template."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

from promptopt.candidates import CandidateSampler
from promptopt.data import make_synthetic
from promptopt.errors import RankerError
from promptopt.llm.simulated import SimulatedRanker, random_ranking_ndcg
from promptopt.llm.types import RankRequest
from promptopt.metrics import ndcg_at_k
from promptopt.profile import ProfileEncoder
from promptopt.splits import TaskBuilder
from promptopt.tasks import UserContext
from promptopt.templates import CollaborativeHints, TemplateCatalog


@pytest.fixture(scope="module")
def catalog() -> TemplateCatalog:
    return TemplateCatalog.load("movies")


@pytest.fixture(scope="module")
def sim(synthetic_data, catalog) -> SimulatedRanker:
    return SimulatedRanker(synthetic_data, catalog, noise=0.05, seed=0)


@pytest.fixture(scope="module")
def hints(synthetic_data) -> CollaborativeHints:
    return CollaborativeHints.fit(synthetic_data, np.ones(synthetic_data.n_interactions, dtype=bool))


@pytest.fixture(scope="module")
def tasks(synthetic_data):
    builder = TaskBuilder(synthetic_data, CandidateSampler(synthetic_data.n_items, 19), seed=0)
    return [builder.task(u, synthetic_data.history_length(u) - 1) for u in range(synthetic_data.n_users)]


def _valid(data, catalog, user: int) -> np.ndarray:
    return catalog.valid_mask(UserContext.at(data, user, data.history_length(user) - 1))


def _ndcg(responses, tasks) -> np.ndarray:
    return np.array([ndcg_at_k(r.ranking, t.target, 10) for r, t in zip(responses, tasks)])


def test_responses_are_deterministic_and_independent_of_batching(synthetic_data, catalog, hints,
                                                                  tasks) -> None:
    requests = [catalog[k % len(catalog)].request(t, synthetic_data, hints) for k, t in enumerate(tasks[:40])]
    a = SimulatedRanker(synthetic_data, catalog, seed=3).rank(requests)
    b = SimulatedRanker(synthetic_data, catalog, seed=3)
    one_by_one = [b.rank([r])[0] for r in requests]
    assert [r.ranking for r in a] == [r.ranking for r in one_by_one]
    assert [r.ranking for r in a] == [r.ranking for r in b.rank(requests)]
    other_seed = SimulatedRanker(synthetic_data, catalog, seed=4).rank(requests)
    assert [r.ranking for r in a] != [r.ranking for r in other_seed]
    # A new sample id is a new draw of the same quality.
    resampled = b.rank([RankRequest(**{**r.__dict__, "sample_id": 1}) for r in requests])
    assert [r.ranking for r in resampled] != [r.ranking for r in a]


def test_rankings_are_permutations_with_the_target_placed_among_negatives(sim, synthetic_data, catalog, hints,
                                                                          tasks) -> None:
    requests = [catalog[0].request(t, synthetic_data, hints) for t in tasks[:30]]
    prior = np.asarray(sim._prior)
    for task, response in zip(tasks, sim.rank(requests)):
        assert sorted(response.ranking) == sorted(task.candidates)
        negatives = [c for c in response.ranking if c != task.target]
        # Negatives keep the simulator's fixed item order, whatever the shown order.
        assert list(prior[negatives]) == sorted(prior[negatives])
        assert response.parse.complete and response.usage.prompt_tokens > 10


def test_best_template_is_the_argmax_of_expected_quality_and_fillable(sim, synthetic_data, catalog) -> None:
    for user in range(synthetic_data.n_users):
        qualities = [sim.expected_quality(user, t) for t in range(len(catalog))]
        best = sim.best_template(user)
        assert best == int(np.argmax(qualities))
        assert _valid(synthetic_data, catalog, user)[best]
        assert sim.expected_quality(user, best) == pytest.approx(0.85, abs=0.06)
        assert all(random_ranking_ndcg(20) - 1e-9 <= q <= 1.0 for q in qualities)
    # Templates the user cannot fill are no better than a random ranking.
    short = next(u for u in range(synthetic_data.n_users) if not _valid(synthetic_data, catalog, u).all())
    invalid = np.flatnonzero(~_valid(synthetic_data, catalog, short))
    assert all(sim.expected_quality(short, int(t)) == pytest.approx(random_ranking_ndcg(20)) for t in invalid)


def test_best_templates_are_spread_over_several_templates(sim, synthetic_data) -> None:
    best = Counter(sim.best_template(u) for u in range(synthetic_data.n_users))
    assert len(best) >= 8
    assert best.most_common(1)[0][1] <= 0.3 * synthetic_data.n_users


def test_oracle_beats_best_fixed_beats_random_on_real_rank_calls(sim, synthetic_data, catalog, hints,
                                                                 tasks) -> None:
    users = [t.user for t in tasks]
    per_template = np.zeros((len(tasks), len(catalog)))
    for k in range(len(catalog)):
        responses = sim.rank([catalog[k].request(t, synthetic_data, hints) for t in tasks])
        per_template[:, k] = _ndcg(responses, tasks)
    valid = np.array([_valid(synthetic_data, catalog, u) for u in users])
    oracle = per_template[np.arange(len(users)), [sim.best_template(u) for u in users]].mean()
    means = np.where(valid, per_template, np.nan)
    order = np.argsort(-np.nanmean(means, axis=0))
    fixed = np.mean([per_template[i, next(t for t in order if valid[i, t])] for i in range(len(users))])
    random = np.mean([per_template[i, valid[i]].mean() for i in range(len(users))])
    print(f"oracle {oracle:.3f} best fixed {fixed:.3f} random {random:.3f}")
    assert oracle > 0.78
    assert oracle - fixed > 0.12
    assert fixed - random > 0.03
    assert random > random_ranking_ndcg(20) + 0.1
    # The empirical NDCG@10 matches the advertised expectation.
    expected = np.array([[sim.expected_quality(u, k) for k in range(len(catalog))] for u in users])
    assert per_template.mean() == pytest.approx(expected.mean(), abs=0.02)


def test_expected_quality_is_the_mean_ndcg_at_10(synthetic_data, catalog, hints) -> None:
    sim = SimulatedRanker(synthetic_data, catalog, noise=0.05)
    builder = TaskBuilder(synthetic_data, CandidateSampler(synthetic_data.n_items, 19), seed=1)
    user = max(range(synthetic_data.n_users), key=synthetic_data.history_length)
    tasks = [builder.task(user, synthetic_data.history_length(user) - 1, repeat=r) for r in range(800)]
    for template in (sim.best_template(user), 0, 9):
        got = _ndcg(sim.rank([catalog[template].request(t, synthetic_data, hints) for t in tasks]), tasks)
        assert got.mean() == pytest.approx(sim.expected_quality(user, template), abs=0.025)


def test_noise_knob_widens_the_spread_of_outcomes(synthetic_data, catalog, hints) -> None:
    builder = TaskBuilder(synthetic_data, CandidateSampler(synthetic_data.n_items, 19), seed=2)
    user = max(range(synthetic_data.n_users), key=synthetic_data.history_length)
    tasks = [builder.task(user, synthetic_data.history_length(user) - 1, repeat=r) for r in range(600)]
    quiet = SimulatedRanker(synthetic_data, catalog, noise=0.0)
    loud = SimulatedRanker(synthetic_data, catalog, noise=0.3)
    template = 5
    requests = [catalog[template].request(t, synthetic_data, hints) for t in tasks]
    a, b = _ndcg(quiet.rank(requests), tasks), _ndcg(loud.rank(requests), tasks)
    # Without noise the target only dithers between the two ranks around the expected NDCG.
    assert len(np.unique(a)) <= 3
    assert len(np.unique(b)) > 5 and b.std() > a.std()
    assert quiet.expected_quality(user, template) == loud.expected_quality(user, template)
    with pytest.raises(ValueError, match="noise"):
        SimulatedRanker(synthetic_data, catalog, noise=-0.1)


def test_drift_views_cost_fragile_templates_more(sim, synthetic_data, catalog) -> None:
    fragile = catalog.index_of("expert.recent5.none.index")
    sturdy = catalog.index_of("expert.profile.none.index")
    user = int(np.argmax([sim.expected_quality(u, fragile) for u in range(synthetic_data.n_users)]))
    assert sim.expected_quality(user, fragile, view="dropout") < sim.expected_quality(user, fragile) - 0.1
    assert sim.expected_quality(user, sturdy, view="dropout") == sim.expected_quality(user, sturdy)
    builder = TaskBuilder(synthetic_data, CandidateSampler(synthetic_data.n_items, 19), seed=0)
    row = synthetic_data.history_length(user) - 1
    base = [builder.task(user, row, repeat=r) for r in range(300)]
    drift = [builder.task(user, row, view="dropout", repeat=r) for r in range(300)]
    hints = None
    got_base = _ndcg(sim.rank([catalog[fragile].request(t, synthetic_data, hints) for t in base]), base)
    got_drift = _ndcg(sim.rank([catalog[fragile].request(t, synthetic_data, hints) for t in drift]), drift)
    assert got_base.mean() - got_drift.mean() > 0.05


def test_the_mapping_from_observed_profile_to_best_template_is_learnable() -> None:
    data = make_synthetic(n_users=400, n_items=300, seed=1)
    catalog = TemplateCatalog.load("movies")
    sim = SimulatedRanker(data, catalog)
    encoder = ProfileEncoder(data, data.item_popularity)
    # What a policy observes: profile statistics of the history before an earlier target.
    features = np.array([encoder.encode(UserContext.at(data, u, data.history_length(u) - 2))
                         for u in range(data.n_users)])
    valid = np.array([_valid(data, catalog, u) for u in range(data.n_users)])
    train, test = np.arange(0, 300), np.arange(300, 400)
    scaled = (features - features[train].mean(0)) / (features[train].std(0) + 1e-9)
    dist = ((scaled[test][:, None] - scaled[train][None]) ** 2).sum(-1)
    neighbours = np.argsort(dist, axis=1)[:, :15]
    predicted = sim.quality[train][neighbours].mean(axis=1)
    picks = np.where(valid[test], predicted, -1.0).argmax(axis=1)
    learned = sim.quality[test, picks].mean()
    oracle = sim.quality[test].max(axis=1).mean()
    fixed = sim.quality[train].mean(axis=0).argmax()
    assert learned > 0.85 * oracle
    assert learned > sim.quality[test, fixed].mean() + 0.1


def test_listed_catalogs_work_too(synthetic_data, tasks) -> None:
    catalog = TemplateCatalog.from_dict({
        "name": "two",
        "templates": [
            {"id": "short", "text": "Recent: {recent_titles:5}\n{candidates}\nAnswer with numbers."},
            {"id": "long", "text": "History: {recent_titles:8}\n{candidates}\nAnswer with numbers."},
        ],
    })
    sim = SimulatedRanker(synthetic_data, catalog)
    best = Counter(sim.best_template(u) for u in range(synthetic_data.n_users))
    assert set(best) <= {0, 1}
    responses = sim.rank([catalog[1].request(t, synthetic_data) for t in tasks[:5]])
    assert all(sorted(r.ranking) == sorted(t.candidates) for r, t in zip(responses, tasks))


def test_bad_requests_are_clear_errors(sim, synthetic_data, catalog, tasks) -> None:
    task = tasks[0]
    good = catalog[0].request(task, synthetic_data, None)
    with pytest.raises(RankerError, match="a request has no ids"):
        sim.rank([RankRequest.from_prompt("x", task.candidates, good.candidate_texts)])
    with pytest.raises(RankerError, match="unknown user 'nobody'"):
        sim.rank([dataclasses.replace(good, ids=dataclasses.replace(good.ids, user="nobody"))])
    with pytest.raises(RankerError, match="unknown template 'nope'"):
        sim.rank([dataclasses.replace(good, ids=dataclasses.replace(good.ids, template="nope"))])
    seen = set(synthetic_data.items[synthetic_data.user_rows(task.user)].tolist())
    unseen = [i for i in range(synthetic_data.n_items) if i not in seen][:3]
    with pytest.raises(RankerError, match="lists no item the user interacted with"):
        sim.rank([RankRequest(**{**good.__dict__, "candidate_ids": tuple(unseen),
                                 "candidate_texts": ("a", "b", "c")})])


def test_identity_is_json_and_tracks_what_changes_answers(sim, synthetic_data, catalog) -> None:
    import json

    again = SimulatedRanker(synthetic_data, catalog, noise=0.05, seed=0)
    assert json.loads(json.dumps(dict(sim.identity))) == dict(again.identity)
    assert sim.identity["backend"] == "simulated"
    assert SimulatedRanker(synthetic_data, catalog, noise=0.1).identity != sim.identity
    assert SimulatedRanker(synthetic_data, catalog, seed=1).identity != sim.identity
    other = TemplateCatalog.load("movies", include=["expert.*.none.index"])
    assert SimulatedRanker(synthetic_data, other).identity != sim.identity


# ---------------------------------------------------------------------- planted drift
@pytest.fixture(scope="module")
def drift_data():
    return make_synthetic(n_users=1500, n_items=300, n_genres=10, mean_history=20, seed=3, start_days=60)


@pytest.fixture(scope="module")
def drift_cut(drift_data) -> int:
    from promptopt.splits import time_cut_at_quantile

    return time_cut_at_quantile(drift_data, 0.5)


def _changed(sim: SimulatedRanker, n_users: int) -> np.ndarray:
    return np.array([sim.best_template(u) != sim.best_template(u, period="target") for u in range(n_users)])


@pytest.mark.parametrize("share", [0.2, 0.6])
def test_planted_drift_changes_the_best_template_for_the_planted_share(drift_data, drift_cut, catalog,
                                                                       share) -> None:
    sim = SimulatedRanker(drift_data, catalog, drift_share=share, drift_strength=2.0, time_cut=drift_cut)
    n = drift_data.n_users
    changed = _changed(sim, n)
    # Each user drifts with probability `share`: the changed share is Binomial(n, share) / n.
    assert abs(changed.mean() - share) < 4 * np.sqrt(share * (1 - share) / n), changed.mean()
    drifted = np.zeros(n, dtype=bool)
    drifted[sim.drifted_users] = True
    assert not changed[~drifted].any()  # nobody else's preferences move
    multi = np.array([_valid(drift_data, catalog, u).sum() >= 2 for u in range(n)])
    assert (changed == (drifted & multi)).all()
    # In the target period sturdier templates lose less: every other template loses kappa x fragility.
    for u in sim.drifted_users[:50]:
        best = sim.best_template(int(u))
        for t in np.flatnonzero(_valid(drift_data, catalog, int(u))):
            if t == best:
                new_best = sim.best_template(int(u), period="target")
                assert sim.target_quality[u, t] < sim.target_quality[u, new_best]
                continue
            loss = sim.quality[u, t] - sim.target_quality[u, t]
            expected = min(2.0 * sim.template_fragility[t], sim.quality[u, t] - random_ranking_ndcg(20))
            assert loss == pytest.approx(expected, abs=1e-9)


def test_no_drift_share_means_the_same_preferences_and_answers_in_both_periods(drift_data, drift_cut,
                                                                               catalog) -> None:
    plain = SimulatedRanker(drift_data, catalog, seed=1)
    none = SimulatedRanker(drift_data, catalog, seed=1, drift_share=0.0, drift_strength=5.0,
                           time_cut=drift_cut)
    assert not _changed(none, drift_data.n_users).any()
    assert np.array_equal(none.target_quality, none.quality)
    assert none.identity == plain.identity  # the same cache keys as before the knob existed
    builder = TaskBuilder(drift_data, CandidateSampler(drift_data.n_items, 19), seed=0)
    late = [u for u in range(200) if drift_data.timestamps[drift_data.user_rows(u)][-1] >= drift_cut]
    tasks = [builder.task(u, drift_data.history_length(u) - 1) for u in late]
    plain_templates = [k for k in range(len(catalog)) if not catalog[k].hint_kinds]
    requests = [catalog[plain_templates[k % len(plain_templates)]].request(t, drift_data, None)
                for k, t in enumerate(tasks)]
    assert len(requests) > 20
    assert [r.ranking for r in none.rank(requests)] == [r.ranking for r in plain.rank(requests)]


def test_target_period_requests_of_drifted_users_are_answered_with_the_drifted_quality(
        drift_data, drift_cut, catalog) -> None:
    sim = SimulatedRanker(drift_data, catalog, drift_share=1.0, drift_strength=3.0, time_cut=drift_cut)
    builder = TaskBuilder(drift_data, CandidateSampler(drift_data.n_items, 19), seed=4)
    lengths = drift_data.history_lengths
    user = next(u for u in np.argsort(-lengths)
                if drift_data.timestamps[drift_data.user_rows(int(u))][1] < drift_cut
                <= drift_data.timestamps[drift_data.user_rows(int(u))][-1])
    user = int(user)
    times = drift_data.timestamps[drift_data.user_rows(user)]
    before, after = int(np.flatnonzero(times < drift_cut)[-1]), len(times) - 1
    assert before >= 1
    template = sim.best_template(user)  # the source-period best: it falls in the target period
    for row, period in ((before, "source"), (after, "target")):
        tasks = [builder.task(user, row, repeat=r) for r in range(600)]
        got = _ndcg(sim.rank([catalog[template].request(t, drift_data, None) for t in tasks]), tasks)
        assert got.mean() == pytest.approx(sim.expected_quality(user, template, period=period), abs=0.03)
    assert sim.expected_quality(user, template, period="target") < sim.expected_quality(user, template) - 0.05


def test_planted_drift_settings_are_range_checked_and_change_the_identity(drift_data, drift_cut,
                                                                          catalog) -> None:
    for kwargs, message in (({"drift_share": 1.5, "time_cut": drift_cut}, "drift_share must be in"),
                            ({"drift_share": -0.1, "time_cut": drift_cut}, "drift_share must be in"),
                            ({"drift_share": 0.5, "drift_strength": -1.0, "time_cut": drift_cut},
                             "drift_strength must be"),
                            ({"drift_share": 0.5}, "needs the drift time cut")):
        with pytest.raises(ValueError, match=message):
            SimulatedRanker(drift_data, catalog, **kwargs)
    a = SimulatedRanker(drift_data, catalog, drift_share=0.5, time_cut=drift_cut).identity
    b = SimulatedRanker(drift_data, catalog, drift_share=0.5, drift_strength=2.0, time_cut=drift_cut).identity
    assert a != b and a["drift_share"] == 0.5
