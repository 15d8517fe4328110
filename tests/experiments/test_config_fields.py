"""Every config field, derived from the config dataclasses (no hand list): bounded, and a bad value of any
of them given on the real CLI is exit 2 with one line naming the key, never a traceback.

The bad values come from each field's annotation: below a lower bound, above an upper bound, nan and
infinities, a value of the wrong type, a choice outside a ``Literal``. A new field without bounds fails
:func:`test_every_numeric_field_declares_its_range`, so the class stays closed as the config grows.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import annotated_types as at
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptopt.config import ExperimentConfig, config_from_dict, config_to_dict
from promptopt.experiments.cli import main
from tests.experiments.conftest import tiny_config_dict


@dataclasses.dataclass(frozen=True)
class Field:
    path: str
    base: Any
    """The annotation without ``None`` and ``Annotated`` (int, float, str, bool, tuple[...], Literal[...])."""
    optional: bool
    bounds: tuple[Any, ...]
    """annotated_types metadata (Ge, Gt, Le, Lt, MinLen, MaxLen)."""


def _unwrap(hint: Any) -> tuple[Any, bool, tuple[Any, ...]]:
    optional = False
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        rest = [a for a in args if a is not type(None)]
        optional = len(rest) < len(args)
        assert len(rest) == 1, hint
        hint = rest[0]
    bounds: tuple[Any, ...] = ()
    if typing.get_origin(hint) is typing.Annotated:
        bounds = tuple(hint.__metadata__)
        hint = typing.get_args(hint)[0]
    return hint, optional, bounds


def config_fields(cls: type = ExperimentConfig, prefix: str = "") -> Iterator[Field]:
    """Every leaf field of the config tree, with its dotted path."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        base, optional, bounds = _unwrap(hints[f.name])
        if dataclasses.is_dataclass(base):
            yield from config_fields(base, f"{prefix}{f.name}.")
        else:
            yield Field(f"{prefix}{f.name}", base, optional, bounds)


FIELDS = list(config_fields())


def _bound(bounds: tuple[Any, ...], kind: type) -> Any:
    for b in bounds:
        if isinstance(b, kind):
            return next(iter(dataclasses.asdict(b).values()))
    return None


def _element(base: Any) -> Any:
    """The element annotation of ``tuple[X, ...]``."""
    return typing.get_args(base)[0]


def test_fields_are_derived_from_the_dataclasses() -> None:
    paths = {f.path for f in FIELDS}
    assert {"ppo.learning_rate", "env.n_envs", "split.n_negatives", "data.synthetic.n_users", "seed",
            "ranker.device", "budget.max_cost"} <= paths
    assert len(paths) == len(FIELDS) > 90


def test_every_numeric_field_declares_its_range() -> None:
    """Every int and float (also inside tuples) has a lower and an upper bound; every str is non-empty."""
    unbounded = []
    for f in FIELDS:
        base, bounds = f.base, f.bounds
        if typing.get_origin(base) is tuple:
            base, _, bounds = _unwrap(_element(base))
        if base in (int, float):
            low = _bound(bounds, at.Ge) if _bound(bounds, at.Ge) is not None else _bound(bounds, at.Gt)
            high = _bound(bounds, at.Le) if _bound(bounds, at.Le) is not None else _bound(bounds, at.Lt)
            if low is None or (high is None and not f.path.startswith("budget.")):
                unbounded.append(f.path)
        elif base is str and _bound(bounds, at.MinLen) is None:
            unbounded.append(f.path)
    assert not unbounded, f"fields without a declared range: {unbounded}"


def _numeric_bad(base: type, bounds: tuple[Any, ...]) -> list[Any]:
    values: list[Any] = ["abc", [1, 2], {"a": 1}]
    if base is float:
        values += [math.nan, math.inf, -math.inf]
    if base is int:
        values += [1.5, math.nan]
    for kind, step in ((at.Ge, -1), (at.Gt, 0), (at.Le, 1), (at.Lt, 0)):
        edge = _bound(bounds, kind)
        if edge is None:
            continue
        if base is int:
            values += [edge + step, edge + 10**6 * step] if step else [edge]
        else:
            values += [edge + step * max(1e-6, abs(edge) * 1e-6), edge + step * 10.0**6] if step else [edge]
    return values


def bad_values(f: Field) -> list[Any]:
    """Values the annotation of ``f`` forbids."""
    base = f.base
    if typing.get_origin(base) is typing.Literal:
        return ["not-a-choice", 7, [1]]
    if base is bool:
        return ["maybe", 2, [True]]
    if base is str:
        return [[1, 2], {"a": 1}] + ([] if f.optional else [None]) + [""]
    if typing.get_origin(base) is tuple:
        element, _, element_bounds = _unwrap(_element(base))
        values: list[Any] = ["x" * 3 if element is not str else 5, {"a": 1}]
        if typing.get_origin(element) is typing.Literal:
            values.append(["not-a-choice"])
        elif element in (int, float):
            values += [[v] for v in _numeric_bad(element, element_bounds) if not isinstance(v, list | dict)]
        elif element is str:
            values += [[""], [[1]]]
        if _bound(f.bounds, at.MinLen):
            values.append([])
        return values
    assert base in (int, float), f.path
    values = _numeric_bad(base, f.bounds)
    return values + ([] if f.optional else [None])


CASES = [(f.path, v) for f in FIELDS for v in bad_values(f)]


def _flag(path: str, value: Any) -> str:
    text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()
    if text.endswith("\n...") or text.endswith("..."):
        text = text.removesuffix("...").strip()
    if value is None:
        text = "null"
    if isinstance(value, float) and math.isnan(value):
        text = "nan"
    elif isinstance(value, float) and math.isinf(value):
        text = "inf" if value > 0 else "-inf"
    return f"--{path}={text}"


def _error_lines(err: str) -> list[str]:
    logs = ("INFO ", "DEBUG ", "WARNING ")
    return [line for line in err.splitlines() if line.strip() and not line.startswith(logs)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fields")
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(folder)), encoding="utf-8")
    return path


def test_every_field_has_bad_values() -> None:
    assert {path for path, _ in CASES} == {f.path for f in FIELDS}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(CASES))
def test_a_bad_value_of_any_field_is_exit_2_and_one_line(case: tuple[str, Any], tiny: Path, capsys,
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    """``promptopt train`` and ``promptopt estimate`` reject it at load, naming the key, no run left."""
    from hypothesis import assume

    from promptopt.config import parse_scalar

    path, value = case
    flag = _flag(path, value)
    optional = next(f.optional for f in FIELDS if f.path == path)
    assume(not (optional and parse_scalar(flag.partition("=")[2]) is None))  # `--x=` means null there
    out = tmp_path_factory.mktemp("out") / "run"
    for argv in (["train", str(tiny), "--output-dir", str(out), flag], ["estimate", str(tiny), flag]):
        capsys.readouterr()
        code = main(argv)
        err = capsys.readouterr().err
        lines = _error_lines(err)
        assert code == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith(f"promptopt {argv[0]}: error: "), (argv, err)
        assert "Traceback" not in err
        assert path in lines[0] or path.rsplit(".", 1)[-1] in lines[0], (argv, lines[0])
        assert not out.exists(), "an error found at load must leave no run directory"


@pytest.mark.parametrize("path,value", CASES, ids=[f"{p}={v!r}"[:60] for p, v in CASES])
def test_each_bad_value_is_a_config_error_at_load(path: str, value: Any) -> None:
    """Exhaustively at the library level: the same values are refused by ``config_from_dict``."""
    from promptopt.errors import ConfigError

    raw = config_to_dict(ExperimentConfig())
    node = raw
    *parents, leaf = path.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    with pytest.raises(ConfigError, match=leaf):
        config_from_dict(raw, source="c.yaml")


def _edges(f: Field) -> list[Any]:
    """The smallest value ``f`` accepts, and its largest when a run at it stays small."""
    if f.base not in (int, float):
        return []
    low = _bound(f.bounds, at.Ge)
    if low is None and (above := _bound(f.bounds, at.Gt)) is not None:
        low = above + 1 if f.base is int else above + 1e-3
    high = _bound(f.bounds, at.Le)
    if high is None and (below := _bound(f.bounds, at.Lt)) is not None:
        high = below - 1 if f.base is int else below - 1e-3
    edges = [low]
    if high is not None and (high <= 1000 if f.base is float else high <= 64):
        edges.append(high)
    return edges


EDGES = [(f.path, v) for f in FIELDS for v in _edges(f)]


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(EDGES))
def test_a_value_at_any_bound_runs_or_is_one_line(case: tuple[str, Any], capsys,
                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    """The other half of the ranges: a value the config accepts never ends in a traceback.

    A sample of the fields at their bounds runs a whole tiny ``promptopt train`` (LightGCN for the
    bandit baseline, PPO, evaluation, export): it finishes, or stops with exit 2 and one line (a
    budget of 0, no test users). An exploration of every field at its bounds found the synthetic
    generator's own limits that the config had not declared (now declared).
    """
    path, value = case
    folder = tmp_path_factory.mktemp("edge")
    raw = tiny_config_dict(folder, policy={"kind": "mlp", "hidden": [16], "pi": [16], "vf": [16]},
                           ppo={"total_timesteps": 64, "n_steps": 8, "batch_size": 32, "n_epochs": 2,
                                "checkpoint_every": 32},
                           eval={"selectors": ["random", "best_fixed", "epsilon_greedy", "policy"],
                                 "n_bootstrap": 50, "bandit_steps": 32})
    config = folder / "c.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    capsys.readouterr()
    code = main(["train", str(config), "--output-dir", str(folder / "run"), f"--{path}={value}"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code in (0, 2), err
    if code == 2:
        lines = _error_lines(err)
        assert len(lines) == 1 and lines[0].startswith("promptopt train: error: "), err
