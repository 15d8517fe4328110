"""The safe policy: the gate, the rule validated on validation users, the stored rule, the selector."""

from __future__ import annotations

import json

import numpy as np
import pytest

from promptopt.evaluation import bootstrap_interval
from promptopt.fallback import FallbackOrder
from promptopt.safe_policy import (
    GatedSelector,
    GateRule,
    check_thresholds,
    choose_threshold,
    gate_choices,
    needed_templates,
    per_threshold_confidence,
    validate_gate,
)

IDS = ["a", "b", "c"]


def test_the_gate_deviates_only_where_the_margin_passes() -> None:
    probs = np.array([[0.2, 0.8, 0.0], [0.9, 0.1, 0.0], [0.3, 0.7, 0.0]])
    assert gate_choices(probs, 0, 0.5).tolist() == [1, 0, 0]
    assert gate_choices(probs, np.array([0, 0, 1]), 0.3).tolist() == [1, 0, 1]
    assert gate_choices(probs, 0, None).tolist() == [0, 0, 0]
    assert gate_choices(probs, 0, float("inf")).tolist() == [0, 0, 0]


def test_no_threshold_is_accepted_without_a_validated_gain() -> None:
    probs = np.tile([[0.1, 0.9, 0.0]], (40, 1))
    # The policy's choice (1) is worse than the default (0) for every validation user.
    worse = np.tile([[0.6, 0.4, np.nan]], (40, 1))
    checks = check_thresholds(probs, np.zeros(40, dtype=np.int64), worse, [0.1, 0.5], seed=0)
    assert [c.deviations for c in checks] == [40, 40] and not any(c.accepted for c in checks)
    assert choose_threshold(checks) is None
    rule = validate_gate(probs, FallbackOrder([0, 1, 2]), np.ones((40, 3), bool), worse, ids=IDS,
                         users=[str(u) for u in range(40)], thresholds=[0.1, 0.5])
    assert rule.threshold is None and not rule.deviates and (rule.gain, rule.low, rule.high) == (0, 0, 0)
    assert "never deviates" in rule.summary() and "40 val users" in rule.summary()


def test_the_accepted_threshold_has_the_largest_validated_gain() -> None:
    rng = np.random.default_rng(0)
    n = 60
    # Half the users are confidently better off with template 1, the rest are unsure and worse off.
    sure = np.arange(n) < n // 2
    probs = np.where(sure[:, None], [0.05, 0.95, 0.0], [0.35, 0.65, 0.0])
    scores = np.stack([np.full(n, 0.5), np.where(sure, 0.8, 0.2) + rng.normal(0, 0.01, n),
                       np.full(n, np.nan)], axis=1)
    checks = check_thresholds(probs, np.zeros(n, dtype=np.int64), scores, [0.2, 0.5], seed=0)
    assert [c.deviations for c in checks] == [n, n // 2]
    assert checks[1].accepted and checks[1].low > 0 and checks[1].gain == pytest.approx(0.15, abs=0.01)
    assert choose_threshold(checks).threshold == 0.5
    rule = validate_gate(probs, FallbackOrder([0, 1, 2]), np.ones((n, 3), bool), scores, ids=IDS,
                         users=[f"u{u}" for u in range(n)], thresholds=[0.2, 0.5], metric="ndcg@10")
    assert rule.threshold == 0.5 and rule.low > 0 and rule.default == "a"
    assert "deviates where the policy's margin >= 0.5" in rule.summary()


def test_the_rule_reads_only_the_default_and_greedy_scores() -> None:
    probs = np.array([[0.1, 0.2, 0.7], [0.6, 0.4, 0.0]])
    masks = np.array([[True, True, True], [False, True, True]])
    need = needed_templates(probs, FallbackOrder([0, 1, 2]), masks)
    # User 0: default a, greedy c; user 1 cannot fill a: default b, and greedy a is unfillable.
    assert need.tolist() == [[True, False, True], [False, True, False]]


def test_the_stored_rule_round_trips_and_a_damaged_one_fails_in_one_line() -> None:
    probs = np.tile([[0.05, 0.95, 0.0]], (30, 1))
    scores = np.tile([[0.4, 0.6, np.nan]], (30, 1))
    rule = validate_gate(probs, FallbackOrder([0, 1, 2]), np.ones((30, 3), bool), scores, ids=IDS,
                         users=[str(u) for u in range(30)], thresholds=[0.1], scan={"n_users": 7})
    assert rule.threshold == 0.1
    payload = json.loads(json.dumps(rule.to_json()))
    assert payload["split"] == "val" and payload["n_users"] == 30 and payload["scan"] == {"n_users": 7}
    assert GateRule.from_json(payload) == rule
    never = GateRule(order=("a", "b"), threshold=None, metric="reward", split="val", users=("1",))
    assert GateRule.from_json(json.loads(json.dumps(never.to_json()))) == never
    del payload["order"]
    with pytest.raises(ValueError, match=r"^metrics\.json: not a valid gate rule \(KeyError: 'order'\)$"):
        GateRule.from_json(payload, source="metrics.json")


def test_the_gated_selector_falls_back_for_short_histories_and_explains_each_user() -> None:
    class Policy:
        def action_probabilities(self, users: np.ndarray) -> np.ndarray:
            # Every user: the policy prefers c with a large margin, except user 2 (unsure).
            rows = {0: [0.0, 0.1, 0.9], 1: [0.2, 0.0, 0.8], 2: [0.45, 0.0, 0.55], 3: [0.0, 1.0, 0.0]}
            return np.array([rows[int(u)] for u in users])

    # Template b (the scan's best) needs a long history: users 1 and 2 cannot fill it; user 3 can
    # fill only b; user 4 can fill nothing.
    masks = {0: [True, True, True], 1: [True, False, True], 2: [True, False, True], 3: [False, True, False]}
    rule = GateRule(order=("b", "a", "c"), threshold=0.3, metric="reward", split="val", users=("9",),
                    gain=0.02, low=0.01, high=0.03)
    selector = GatedSelector.from_rule(Policy(), rule, IDS, lambda u: np.array(masks[int(u)]))
    decision = selector.decide(np.array([0, 1, 2, 3]))
    assert decision.defaults.tolist() == [1, 0, 0, 1]  # b, else the next fillable: a
    assert decision.choices.tolist() == [2, 2, 0, 1]
    assert decision.deviates.tolist() == [True, True, False, False]
    assert selector.select(np.array([2])).tolist() == [0]
    assert "deviates from 'b' to the policy's 'c'" in rule.reason(True, 0.8, "b", "c")
    assert "margin 0.100 < 0.3" in rule.reason(False, 0.1, "a", "c")
    never = GatedSelector.from_rule(Policy(), GateRule(order=("b", "a", "c"), threshold=None, metric="reward",
                                                       split="val", users=()), IDS,
                                    lambda u: np.array(masks[int(u)]))
    assert never.select(np.array([0, 1, 2, 3])).tolist() == [1, 0, 0, 1]


def test_each_threshold_is_tested_at_the_family_wise_level() -> None:
    # 15 validation users, every one sent to template 1 by every margin: the gain is the same for
    # each threshold, and strong enough for one test at 95% but not for the best of five.
    z = np.linspace(-1.0, 1.0, 15)
    gain = 0.028 + 0.05 * (z - z.mean()) / z.std()
    probs = np.tile([[0.0, 1.0, 0.0]], (15, 1))
    scores = np.stack([np.full(15, 0.5), 0.5 + gain, np.full(15, np.nan)], axis=1)
    defaults = np.zeros(15, dtype=np.int64)
    one = check_thresholds(probs, defaults, scores, [0.5], seed=0)
    five = check_thresholds(probs, defaults, scores, [0.5, 0.6, 0.7, 0.8, 0.9], seed=0)
    assert per_threshold_confidence(0.95, 5) == pytest.approx(0.99)
    assert one[0].low == pytest.approx(bootstrap_interval(gain, confidence=0.95, seed=0).low)
    assert five[0].low == pytest.approx(bootstrap_interval(gain, confidence=0.99, seed=0).low)
    assert one[0].accepted and one[0].low > 0
    assert not any(c.accepted for c in five) and choose_threshold(five) is None
    rule = validate_gate(probs, FallbackOrder([0, 1, 2]), np.ones((15, 3), bool), scores, ids=IDS,
                         users=[str(u) for u in range(15)], thresholds=[0.5, 0.6, 0.7, 0.8, 0.9])
    assert not rule.deviates and "family-wise over 5 margins" in rule.summary()
