"""Evaluation: bootstrap intervals, per-user metrics in one ranker call, period split, paired differences."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from promptopt.config import RewardConfig, SplitConfig
from promptopt.evaluation import (
    REWARD_KEYS,
    bootstrap_interval,
    evaluate_selector,
    paired_difference,
)
from promptopt.llm.types import RankRequest, RankResponse, TokenUsage
from promptopt.metrics import METRIC_NAMES
from promptopt.problem import RecProblem
from promptopt.selectors import FixedSelector
from promptopt.templates import TemplateCatalog

CATALOG = {
    "name": "eval-test",
    "templates": [
        {"id": "recent5", "text": "I watched {recent_titles:5}.\nRank:\n{candidates}"},
        {"id": "genres", "text": "My taste: {genre_profile}.\nRank:\n{candidates}"},
    ],
}


class ShownOrderRanker:
    """Answers with the shown order, except that template ``genres`` puts the target first.

    So the metrics of a user are known in advance: from the target's shown position for
    ``recent5``, perfect for ``genres``.
    """

    def __init__(self, targets: dict[str, int]) -> None:
        self.identity = {"backend": "shown-order"}
        self.targets = targets
        self.calls = 0

    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        self.calls += 1
        out = []
        for r in requests:
            ranking = list(r.candidate_ids)
            if r.ids.template == "genres":
                target = self.targets[r.ids.task]
                ranking.remove(target)
                ranking.insert(0, target)
            out.append(RankResponse(ranking=tuple(ranking), usage=TokenUsage(7, 3)))
        return out


@pytest.fixture(scope="module")
def problem(synthetic_data, synthetic_split):
    catalog = TemplateCatalog.from_dict(CATALOG)
    return RecProblem.build(synthetic_data, synthetic_split, catalog, RewardConfig(), SplitConfig(),
                            seed=4, fit_hints=False)


@pytest.fixture(scope="module")
def ranker(problem, synthetic_data):
    targets = {}
    for user in range(synthetic_data.n_users):
        for kwargs in ({}, {"period": "source"}, {"period": "target"}):
            for task in problem.tasks(user, **kwargs):
                targets[task.task_id] = task.target
    return ShownOrderRanker(targets)


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    small = bootstrap_interval(rng.normal(0.3, 1.0, 50), seed=1)
    large = bootstrap_interval(rng.normal(0.3, 1.0, 5000), seed=1)
    assert small.low < small.mean < small.high and small.n == 50
    assert large.low < 0.3 < large.high
    assert (large.high - large.low) < (small.high - small.low) / 5
    # Width of a 95% interval of a mean: about 2 * 1.96 * sigma / sqrt(n).
    assert large.high - large.low == pytest.approx(2 * 1.96 / math.sqrt(5000), rel=0.15)
    again = bootstrap_interval(np.arange(10.0), seed=3)
    assert again == bootstrap_interval(np.arange(10.0), seed=3)
    narrow = bootstrap_interval(np.arange(10.0), seed=3, confidence=0.5)
    assert again.low < narrow.low < narrow.high < again.high


def test_bootstrap_interval_edge_cases() -> None:
    empty = bootstrap_interval([])
    assert empty.n == 0 and math.isnan(empty.mean)
    const = bootstrap_interval([0.25] * 7)
    assert const.low == const.mean == const.high == 0.25
    with pytest.raises(ValueError, match="confidence must be in"):
        bootstrap_interval([1.0], confidence=1.0)
    with pytest.raises(ValueError, match="n_bootstrap must be >= 1, got 0"):
        bootstrap_interval([1.0], n_bootstrap=0)


def test_evaluate_selector_per_user_metrics_in_one_call(problem, ranker, synthetic_split) -> None:
    users = synthetic_split.test
    ranker.calls = 0
    ev = evaluate_selector(FixedSelector(0, name="recent"), problem, ranker, users, n_bootstrap=200)
    assert ranker.calls == 1
    assert ev.name == "recent" and ev.users.tolist() == users.tolist()
    assert set(ev.per_user) == set(METRIC_NAMES) | set(REWARD_KEYS)
    positions = np.array([problem.tasks(int(u))[0].target_position for u in users])
    np.testing.assert_allclose(ev.per_user["ndcg@10"],
                               np.where(positions < 10, 1 / np.log2(positions + 2), 0.0))
    np.testing.assert_allclose(ev.per_user["hit@5"], (positions < 5).astype(float))
    np.testing.assert_allclose(ev.per_user["mrr"], 1 / (positions + 1))
    np.testing.assert_allclose(ev.per_user["reward"], ev.per_user["ndcg@10"])  # w = 0
    assert ev.summary["mrr"].mean == pytest.approx(np.mean(1 / (positions + 1)))
    assert ev.spend.calls == users.size and ev.spend.tokens == 10 * users.size
    assert ev.template_usage() == {0: users.size}
    assert ev.selection_spend is not None and ev.selection_spend.calls == 0
    perfect = evaluate_selector(FixedSelector(1, name="genres"), problem, ranker, users, n_bootstrap=200)
    assert perfect.summary["ndcg@1"].mean == 1.0 == perfect.summary["ndcg@1"].low


def test_periods_split_the_users(problem, ranker, synthetic_split) -> None:
    users = synthetic_split.test
    ev = evaluate_selector(FixedSelector(0), problem, ranker, users, n_bootstrap=100)
    expected = np.array([problem.tasks(int(u))[0].period for u in users])
    np.testing.assert_array_equal(ev.periods, expected)
    assert sum(m["ndcg@10"].n for m in ev.by_period.values()) == users.size
    for period, summary in ev.by_period.items():
        assert summary["ndcg@10"].mean == pytest.approx(ev.per_user["ndcg@10"][expected == period].mean())
    # period="target": only users with a target-period interaction, each on that one.
    later = evaluate_selector(FixedSelector(0), problem, ranker, users, n_bootstrap=100, period="target")
    has = [int(u) for u in users if problem.target_row(int(u), period="target") is not None]
    assert later.users.tolist() == has and set(later.periods) == {"target"}
    as_json = later.to_json()
    assert as_json["n_users"] == len(has) and "ndcg@10" in as_json["by_period"]["target"]


def test_paired_difference(problem, ranker, synthetic_split) -> None:
    users = synthetic_split.test
    a = evaluate_selector(FixedSelector(1, name="genres"), problem, ranker, users, n_bootstrap=100)
    b = evaluate_selector(FixedSelector(0, name="recent"), problem, ranker, users, n_bootstrap=100)
    diff = paired_difference(a, b, "ndcg@10", n_bootstrap=500)
    expected = a.per_user["ndcg@10"] - b.per_user["ndcg@10"]
    assert diff.interval.mean == pytest.approx(expected.mean())
    assert 0 < diff.interval.low < diff.interval.mean < diff.interval.high
    assert diff.share_positive == 1.0 and diff.a == "genres" and diff.b == "recent"
    same = paired_difference(b, b, "mrr")
    assert same.interval.low == same.interval.high == 0.0 and same.share_positive == 0.0
    # Pairs by user, not by position: a subset evaluated in another order gives the same pairs.
    sub = evaluate_selector(FixedSelector(0, name="recent"), problem, ranker, users[::-1][:10],
                            n_bootstrap=100)
    part = paired_difference(a, sub, "ndcg@10")
    picked = [list(users).index(u) for u in sub.users]
    assert part.interval.n == 10
    assert part.interval.mean == pytest.approx(expected[sorted(picked)].mean())
    with pytest.raises(ValueError, match="unknown metric 'ndcg@3'"):
        paired_difference(a, b, "ndcg@3")


def test_selector_with_wrong_output_size_fails(problem, ranker, synthetic_split) -> None:
    class Broken:
        name = "broken"

        def select(self, users: np.ndarray) -> np.ndarray:
            return np.zeros(len(users) - 1, dtype=np.int64)

    with pytest.raises(ValueError, match="returned 23 choices for 24 users"):
        evaluate_selector(Broken(), problem, ranker, synthetic_split.test)


def _reference_percentile(x: np.ndarray, n_bootstrap: int, confidence: float,
                          seed: int) -> tuple[float, float]:
    """The hand-written percentile bootstrap scipy replaced (resample with replacement, quantiles)."""
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_bootstrap, x.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def test_scipy_percentile_interval_agrees_with_the_hand_written_one_within_monte_carlo_error() -> None:
    rng = np.random.default_rng(4)
    x = rng.binomial(1, 0.3, 200) * rng.uniform(0.3, 1.0, 200)  # NDCG-like: many zeros
    ours = bootstrap_interval(x, n_bootstrap=20000, seed=1)
    ref = [_reference_percentile(x, 20000, 0.95, seed) for seed in range(3)]
    half_width = (ours.high - ours.low) / 2
    for low, high in ref:  # different resamples: agreement up to Monte-Carlo error (~1% of the width)
        assert abs(ours.low - low) < 0.03 * half_width and abs(ours.high - high) < 0.03 * half_width


def test_bca_corrects_for_skew_where_the_percentile_interval_does_not() -> None:
    rng = np.random.default_rng(0)
    x = rng.exponential(1.0, 40)  # right-skewed: the mean's sampling distribution is skewed too
    pct = bootstrap_interval(x, n_bootstrap=20000, seed=2)
    bca = bootstrap_interval(x, n_bootstrap=20000, seed=2, method="bca")
    assert bca.mean == pct.mean and bca.n == pct.n == 40
    assert bca.low > pct.low and bca.high > pct.high  # BCa moves both bounds towards the long tail
    sym = rng.normal(0.0, 1.0, 400)  # symmetric data: the two agree
    a, b = bootstrap_interval(sym, n_bootstrap=20000, seed=2), bootstrap_interval(sym, n_bootstrap=20000,
                                                                                   seed=2, method="bca")
    assert abs(a.low - b.low) < 0.02 and abs(a.high - b.high) < 0.02
    const = bootstrap_interval([0.5] * 9, method="bca")
    assert const.low == const.high == 0.5
    with pytest.raises(ValueError, match="method must be one of percentile, bca"):
        bootstrap_interval(x, method="studentized")


def test_paired_share_positive_comes_from_the_intervals_resamples() -> None:
    from promptopt.evaluation import _bootstrap

    diff = np.random.default_rng(1).normal(0.05, 0.2, 60)
    low, high, means = _bootstrap(diff, n_bootstrap=5000, confidence=0.9, seed=3, method="percentile")
    assert means.shape == (5000,)
    assert np.quantile(means, 0.05) == pytest.approx(low, abs=1e-9)
    assert np.quantile(means, 0.95) == pytest.approx(high, abs=1e-9)
