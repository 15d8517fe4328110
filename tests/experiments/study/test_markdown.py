"""Markdown helpers and sections of RESULTS.md."""

from __future__ import annotations

from promptopt.experiments.study.markdown import attempts_section, format_interval, markdown_table


def test_attempts_are_appended() -> None:
    rows = attempts_section(
        [
            {
                "when": "t",
                "note": "first",
                "seeds": [0],
                "templates": 4,
                "ppo_steps": 64,
                "t1": {"accuracy/policy": [0.01, -0.02, 0.03]},
                "t4": {},
                "t5": {},
                "minutes": 1.0,
            }
        ]
    )
    assert "first" in rows[-2] and "+0.0100 [-0.0200, +0.0300]" in rows[-2]


def test_intervals_and_tables() -> None:
    assert format_interval((0.5, 0.25, 0.75)) == "0.5000 [0.2500, 0.7500]"
    assert format_interval((-0.01, -0.02, 0.0), signed=True) == "-0.0100 [-0.0200, +0.0000]"
    assert format_interval((float("nan"),) * 3) == "n/a"
    assert markdown_table(["a", "b"], [["1", "2"]]).splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]


def test_old_attempt_lines_fill_the_same_columns_as_new_ones() -> None:
    common = {"when": "t", "note": "n", "seeds": [0], "templates": 4, "ppo_steps": 64, "t5": {},
              "minutes": 1.0}
    gated, raw, drift = [0.01, 0.0, 0.02], [-0.05, -0.06, -0.04], [0.003, -0.001, 0.007]
    old = {**common, "t1": {"accuracy/policy_safe": gated, "accuracy/policy": raw},
           "t4": {"policy_safe": drift}}
    new = {**common, "t1": {"accuracy/policy": gated, "accuracy/policy_raw": raw}, "t4": {"policy": drift}}
    table = attempts_section([old, new])[-2].splitlines()
    assert table[-2] == table[-1]
    # The drift columns: the target-period gain (n/a: these lines predate it), then the change's.
    assert "| -0.0500 [-0.0600, -0.0400] | +0.0100 [+0.0000, +0.0200] | n/a | +0.0030" in table[-1]
