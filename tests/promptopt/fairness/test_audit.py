"""The counterfactual audit on the simulator: a planted attribute bias is flagged, and only it.

The simulator never reads prompt text, so :class:`PlantedBiasRanker` adds what a language model
would do: every different prompt moves the ranking a little (jitter hashed from the text, blind to
what the text says), and the planted bias rotates the ranking whenever one attribute value's
sentence appears. The audit must flag exactly that attribute, and, without the bias, none, even
though every attribute's SNSR is then above zero (the jitter): the noise level is what decides.
"""

from __future__ import annotations

import numpy as np
import pytest

from promptopt.config import FairnessConfig, RewardConfig, SplitConfig
from promptopt.fairness.attributes import load_attribute_set
from promptopt.fairness.audit import fairness_audit, selector_gaps
from promptopt.fairness.rankings import plan_requests, run_counterfactuals
from promptopt.llm.simulated import SimulatedRanker
from promptopt.testing.planted_bias import PlantedBiasRanker

INCLUDE = ("expert.recent10.none.index", "expert.profile.none.index", "expert.attributes.none.index",
           "expert.recent5.none.index")


@pytest.fixture(scope="module")
def problem(synthetic_data, synthetic_split):
    from promptopt.problem import RecProblem
    from promptopt.templates import TemplateCatalog

    catalog = TemplateCatalog.load("movies", include=INCLUDE)
    return RecProblem.build(synthetic_data, synthetic_split, catalog, RewardConfig(), SplitConfig(), seed=3)


@pytest.fixture(scope="module")
def attributes():
    return load_attribute_set("fairllm").limited(3)


def pairs_of(problem) -> list[tuple[int, int]]:
    return [(int(u), int(t)) for u in problem.pool("test")
            for t in np.flatnonzero(problem.action_mask(int(u)))]


def ranker(problem, triggers=()):
    return PlantedBiasRanker(SimulatedRanker(problem.data, problem.catalog, seed=1, profile=problem.profile),
                             triggers=triggers, shift=6, jitter=8, seed=5)


SETTINGS = FairnessConfig(n_permutations=500, k=10)


def test_copies_keep_the_neutral_candidates_and_order_and_differ_by_one_sentence(problem, attributes) -> None:
    pairs = pairs_of(problem)[:3]
    kept, requests = plan_requests(problem, pairs, attributes)
    per_pair = 1 + attributes.n_values
    assert len(requests) == len(kept) * per_pair
    cells = attributes.cells()
    for p in range(len(kept)):
        neutral, copies = requests[p * per_pair], requests[p * per_pair + 1:(p + 1) * per_pair]
        # The neutral request is the evaluation's own (same object fields as problem.requests).
        user, template, _ = kept[p]
        assert neutral == problem.requests(problem.tasks(user)[:1], template)[0]
        for (_, _, sentence), copy in zip(cells, copies):
            assert copy.candidate_ids == neutral.candidate_ids
            assert copy.candidate_texts == neutral.candidate_texts
            assert copy.ids == neutral.ids and copy.output_format == neutral.output_format
            assert copy.prompt == f"{sentence}\n{neutral.prompt}"


def test_a_planted_bias_is_flagged_and_nothing_else(problem, attributes) -> None:
    biased = ranker(problem, triggers=[attributes["gender"].sentence_for("female")])
    audit = fairness_audit(problem, biased, pairs_of(problem), attributes, SETTINGS, seed=0)
    assert audit.flagged == ["gender"]
    assert biased.triggered == len(audit.rankings)  # one biased copy per pair
    gender = next(a for a in audit.partitions["all"].attributes if a.name == "gender")
    female = gender.values.index("female")
    others = [j for j in range(len(gender.values)) if j != female]
    # The biased value's copies moved away from the neutral ranking and lost accuracy; the others did not.
    for metric in ("jaccard", "serp", "prag"):
        assert all(gender.similarity[metric][female].high < gender.similarity[metric][j].low for j in others)
    assert gender.ndcg_change[female].high < 0
    assert all(gender.ndcg_change[j].low <= 0 <= gender.ndcg_change[j].high for j in others)


def test_without_a_bias_no_attribute_rises_above_its_noise_level(problem, attributes) -> None:
    audit = fairness_audit(problem, ranker(problem), pairs_of(problem), attributes, SETTINGS, seed=0)
    assert audit.flagged == []
    for summary in audit.partitions["all"].attributes:
        d = summary.dispersion["serp"]
        assert d.snsr > 0  # the jitter moves every copy: only the noise level keeps it unflagged
        assert d.snsr <= d.noise


def test_attribute_templates_are_reported_separately(problem, attributes) -> None:
    audit = fairness_audit(problem, ranker(problem), pairs_of(problem), attributes, SETTINGS, seed=0)
    parts = audit.partitions
    assert set(parts) == {"all", "uses_attributes", "no_attributes"}
    assert set(parts["uses_attributes"].templates) == {"expert.attributes.none.index"}
    assert "expert.attributes.none.index" not in parts["no_attributes"].templates
    assert parts["uses_attributes"].n_pairs + parts["no_attributes"].n_pairs == parts["all"].n_pairs
    as_json = audit.to_json()
    assert as_json["spend"]["requests"] == len(audit.rankings) * (1 + attributes.n_values)


def test_copies_go_through_the_cache_and_a_rerun_pays_nothing(problem, attributes, tmp_path) -> None:
    from promptopt.llm.cache import CachedRanker

    pairs = pairs_of(problem)[:4]
    with CachedRanker(ranker(problem), tmp_path / "cache.sqlite") as cached:
        first = run_counterfactuals(problem, cached, pairs, attributes, batch=7)
        second = run_counterfactuals(problem, cached, pairs, attributes, batch=50)
    assert first.spend.cached == 0 and first.spend.calls == 4 * (1 + attributes.n_values)
    assert second.spend.cached == second.spend.calls
    assert second.neutral == first.neutral and second.copies == first.copies


def test_group_gaps_use_the_datasets_attributes(problem) -> None:
    from promptopt.evaluation import evaluate_selector
    from promptopt.selectors import FixedSelector, RandomSelector

    sim = SimulatedRanker(problem.data, problem.catalog, seed=1, profile=problem.profile)
    users = problem.pool("test")
    random = RandomSelector(problem.n_templates, seed=0, masks=problem.action_mask)
    fixed = FixedSelector(0, masks=problem.action_mask)
    evaluations = {"random": evaluate_selector(random, problem, sim, users),
                   "best_fixed": evaluate_selector(fixed, problem, sim, users)}
    gaps = selector_gaps(problem, evaluations, min_group_users=3, n_bootstrap=200)
    assert [g.attribute for g in gaps] == ["age", "gender", "occupation"]
    gender = gaps[1]
    assert set(gender.sizes) <= {"F", "M"} and sum(gender.sizes.values()) <= users.size
    row = gender.selectors["random"]
    assert row.gap.low <= row.gap.mean <= row.gap.high
    with pytest.raises(ValueError, match="no user attribute 'zip'"):
        selector_gaps(problem, evaluations, ["zip"])
