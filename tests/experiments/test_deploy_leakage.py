"""split.protocol=deploy: no learning path touches an interaction from the time cut on.

The dataset is poisoned: every interaction from the cut on is moved to a copy of its item that
occurs nowhere before the cut (id ``poison-*``, title ``POISON ...``). Whatever learns under
``deploy`` — the LightGCN graph, the collaborative hints, popularity, every training episode the
env can draw (all its target rows, every drift view), the validation users' episodes the gate
scores and the best-fixed scan's requests (prompt text, hints included, and candidates) — must
hold none of them. The same checks run with ``leave_last`` and must find poison there: they can
fail.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from promptopt.config import ExperimentConfig, RewardConfig, SplitConfig
from promptopt.data import make_synthetic
from promptopt.data.interactions import InteractionData
from promptopt.experiments.safe_run import validation_scores
from promptopt.llm.simulated import SimulatedRanker
from promptopt.policies.graph import build_graph
from promptopt.problem import RecProblem
from promptopt.selectors import best_fixed
from promptopt.splits import split_for, time_cut_at_quantile
from promptopt.templates import TemplateCatalog

ALL_VIEWS = ("temporal", "dropout", "truncate", "popular_negatives", "new_items")
MARK = "POISON"


def poisoned(quantile: float) -> tuple[InteractionData, int]:
    """Synthetic data whose interactions from the cut on all use items unseen before it."""
    data = make_synthetic(n_users=150, n_items=150, n_genres=8, mean_history=30, seed=11)
    cut = time_cut_at_quantile(data, quantile)
    n = data.n_items
    after = data.timestamps >= cut
    items = np.where(after, data.items + n, data.items)
    out = replace(
        data,
        item_ids=data.item_ids + tuple(f"poison-{i}" for i in data.item_ids),
        item_titles=data.item_titles + tuple(f"{MARK} {t}" for t in data.item_titles),
        item_genres=data.item_genres * 2,
        item_years=data.item_years * 2,
        item_extra={k: tuple(v) * 2 for k, v in data.item_extra.items()},
        users=data.users, items=items, ratings=data.ratings, timestamps=data.timestamps,
    )
    assert time_cut_at_quantile(out, quantile) == cut  # same timestamps, same cut
    return out, n


class Recorder:
    """The simulated ranker, keeping every request it is sent."""

    def __init__(self, inner: SimulatedRanker) -> None:
        self.inner = inner
        self.requests: list = []

    @property
    def identity(self):
        return self.inner.identity

    def rank(self, requests):
        self.requests.extend(requests)
        return self.inner.rank(requests)


def leaks(protocol: str) -> dict[str, int]:
    """How many poisoned items each learning path holds."""
    split_config = SplitConfig(protocol=protocol, n_negatives=9, drift_quantile=0.7)
    data, first_poison = poisoned(split_config.drift_quantile)
    reward = RewardConfig(robust_weight=0.5, views=ALL_VIEWS)
    split = split_for(data, split_config, seed=0)
    catalog = TemplateCatalog.load("movies")
    problem = RecProblem.build(data, split, catalog, reward, split_config, seed=0)

    def bad(items) -> int:
        return int((np.asarray(list(items), dtype=np.int64) >= first_poison).sum())

    found: dict[str, int] = {}
    found["train_mask"] = bad(data.items[problem.train_mask])
    graph = build_graph(data, problem.train_mask)
    found["graph"] = bad(graph.items)
    found["popularity"] = int(problem.popularity[first_poison:].sum())
    hints = problem.hints
    assert hints is not None
    found["hints"] = int(hints.item_popularity[first_poison:].sum())
    for user in np.concatenate([split.train, split.val]):
        ctx = problem.context(int(user))
        assert ctx is not None
        found["hints"] += bad(hints.similar_users_items(ctx, 50)) + bad(hints.co_consumed(ctx, 50))

    def task_items(tasks) -> dict[str, int]:
        out: dict[str, int] = {}
        for task in tasks:
            n = bad(task.context.items) + bad([task.target]) + bad(task.candidates)
            out[task.view] = out.get(task.view, 0) + n
        return out

    views = dict.fromkeys(("base", *ALL_VIEWS), 0)
    for user in split.train:
        for row in problem.training_rows(int(user), count=split_config.n_targets + 5):
            for view, n in task_items(problem.tasks(int(user), row=row)).items():
                views[view] += n
    for user in split.val:
        for view, n in task_items(problem.tasks(int(user))).items():
            views[view] += n
    found.update({f"episodes/{view}": n for view, n in views.items()})

    recorder = Recorder(SimulatedRanker(data, catalog, noise=0.0, seed=0, profile=problem.profile))
    best_fixed(problem, recorder, split.train, metric="reward")
    need = np.ones((len(split.val), problem.n_templates), dtype=bool)
    need &= np.stack([problem.action_mask(int(u)) for u in split.val])
    validation_scores(problem, recorder, split.val, need, "reward")
    assert recorder.requests
    found["requests"] = sum(
        bad(r.candidate_ids) + sum(MARK in text for _, text in r.messages) for r in recorder.requests
    )
    return found


def test_deploy_learns_nothing_from_the_cut_on() -> None:
    found = leaks("deploy")
    assert found == dict.fromkeys(found, 0), {k: v for k, v in found.items() if v}


def test_the_same_checks_find_the_leaks_of_leave_last() -> None:
    found = leaks("leave_last")
    # leave_last targets training users' second-to-last interaction whatever its date, and draws
    # negatives from the whole catalogue: episodes, their views and the scan see the poison.
    for path in ("episodes/base", "episodes/temporal", "episodes/new_items", "requests"):
        assert found[path] > 0, path


def deploy_problem(data: InteractionData, split_config: SplitConfig) -> RecProblem:
    """The hint-free problem of ``data`` split under ``split_config`` (movies catalog)."""
    return RecProblem.build(data, split_for(data, split_config, seed=0), TemplateCatalog.load("movies"),
                            RewardConfig(), split_config, seed=0, fit_hints=False)


def test_deploy_split_gives_each_part_its_targets() -> None:
    split_config = SplitConfig(protocol="deploy", drift_quantile=0.7)
    data, _ = poisoned(split_config.drift_quantile)
    problem = deploy_problem(data, split_config)
    split = problem.split
    cut = problem.time_cut
    for user in np.concatenate([split.train, split.val]):
        rows = data.user_rows(int(user))
        row = problem.target_row(int(user))
        assert row is not None and data.timestamps[rows.start + row] < cut
        # the latest (val) or second-to-last (train) interaction before the cut
        n_before = int((data.timestamps[rows] < cut).sum())
        assert row == (n_before - 2 if int(user) in set(split.train.tolist()) else n_before - 1)
    for user in split.test:
        rows = data.user_rows(int(user))
        times = data.timestamps[rows]
        row = problem.target_row(int(user))
        # the first interaction from the cut on with min_history - 1 before it
        first = max(split_config.min_history - 1, int(np.argmax(times >= cut)))
        assert row == first and times[row] >= cut
        assert problem.target_row(int(user), period="target") == row
        assert problem.target_row(int(user), final=True) == len(times) - 1
    # Each user is dealt among the parts it can join, in proportion to their shares.
    from promptopt.episodes import source_lengths

    before = source_lengths(data, cut)
    after = data.history_lengths - before
    test_only = np.flatnonzero((before < split_config.min_history) & (after >= 1)
                               & (data.history_lengths >= split_config.min_history))
    learn_only = np.flatnonzero((before >= split_config.min_history) & (after == 0))
    assert test_only.size > 0 and learn_only.size > 0
    assert set(test_only.tolist()) <= set(split.test.tolist())
    assert not set(learn_only.tolist()) & set(split.test.tolist())
    val_share = split_config.val_fraction / (1 - split_config.test_fraction)
    assert abs(np.isin(learn_only, split.val).mean() - val_share) < 0.05
    leave_last_split = split_for(data, replace(split_config, protocol="leave_last"), seed=0)
    with pytest.raises(ValueError, match=r"split\.protocol=deploy: \d+ (train|val|test) user"):
        RecProblem.build(data, leave_last_split, TemplateCatalog.load("movies"), RewardConfig(),
                         split_config, seed=0, fit_hints=False)


def demanding_problem() -> tuple[RecProblem, SplitConfig]:
    """A deploy problem whose templates need 8 and 12 history items (min_history 3)."""
    split_config = SplitConfig(protocol="deploy", drift_quantile=0.7, min_history=3)
    data, _ = poisoned(split_config.drift_quantile)
    catalog = TemplateCatalog.from_dict({"name": "demanding", "templates": [
        {"id": "eight", "text": "Recent: {recent_titles:8}\n{candidates}\nAnswer with numbers."},
        {"id": "twelve", "text": "Recent: {recent_titles:12}\n{candidates}\nAnswer with numbers."},
    ]})
    problem = RecProblem.build(data, split_for(data, split_config, seed=0), catalog, RewardConfig(),
                               split_config, seed=0, fit_hints=False)
    return problem, split_config


def test_evaluate_counts_and_warns_about_unservable_test_users(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from promptopt.config import config_from_dict
    from promptopt.experiments.evaluate_run import run_protocol
    from promptopt.selectors import FixedSelector

    problem, _ = demanding_problem()
    never = problem.targets.unservable(problem.split.test)
    assert never
    config = config_from_dict({"eval": {"selectors": ["best_fixed"], "n_bootstrap": 50, "periods": False}})

    def factory(name, period):
        return FixedSelector(0, fallback=[1], masks=problem.action_mask, name=name)

    ranker = SimulatedRanker(problem.data, problem.catalog)
    with caplog.at_level(logging.WARNING, logger="promptopt.experiments.evaluate_run"):
        evaluation, results = run_protocol(config, problem, ranker, factory)
    assert evaluation["unservable"] == len(never)
    assert results["best_fixed"].users.size == problem.split.test.size - len(never)  # left out
    warning = next(r.getMessage() for r in caplog.records if "left out of every score" in r.getMessage())
    assert warning.startswith(f"{len(never)} test user(s) have no target from the time cut on")


def test_deploy_test_targets_leave_a_history_some_template_fills() -> None:
    """Users who arrived after the cut are scored once their history fills a template, not before
    (a target no template can fill scores 0 for every selector), and users it never does are
    counted apart: the study reports them, every score leaves them out."""
    from promptopt.experiments.study.protocol import fill_counts

    problem, split_config = demanding_problem()
    data, catalog = problem.data, problem.catalog
    cut, moved, never = problem.time_cut, 0, []
    for user in map(int, problem.split.test):
        times = data.timestamps[data.user_rows(user)]
        first = max(split_config.min_history - 1, int(np.argmax(times >= cut)))
        row = problem.target_row(user)
        fills = [problem.action_mask(user, row=r).any() for r in range(first, len(times))]
        if row is None:
            assert not any(fills)
            never.append(user)
            continue
        assert times[row] >= cut and problem.action_mask(user).any()
        assert fills.index(True) == row - first  # the first such row from the cut on
        moved += row > first
    assert moved > 0 and never  # the rule decided something on this data, both ways
    assert problem.targets.unservable(problem.split.test) == never
    counts = fill_counts(problem, problem.split.test)
    assert counts["no_target"] == counts["unservable"] == len(never) and counts["fill_none"] == 0
    # leave_last has no period rule to apply: nobody is unservable there.
    leave_last = replace(split_config, protocol="leave_last")
    other = RecProblem.build(data, split_for(data, leave_last, seed=0), catalog, RewardConfig(), leave_last,
                             seed=0, fit_hints=False)
    assert other.targets.unservable(other.split.test) == []


def test_protocol_is_a_checked_config_value() -> None:
    from promptopt.config import config_from_dict
    from promptopt.errors import ConfigError

    assert ExperimentConfig().split.protocol == "leave_last"
    assert config_from_dict({"split": {"protocol": "deploy"}}).split.protocol == "deploy"
    with pytest.raises(ConfigError) as err:
        config_from_dict({"split": {"protocol": "deplyo"}})
    message = str(err.value)
    assert "\n" not in message and "split.protocol" in message and "did you mean 'deploy'?" in message


def test_deploy_popular_negatives_follow_the_recent_source_popularity() -> None:
    split_config = SplitConfig(protocol="deploy", drift_quantile=0.7)
    data, first_poison = poisoned(split_config.drift_quantile)
    problem = deploy_problem(data, split_config)
    assert problem.pseudo_cut is not None and problem.pseudo_cut < problem.time_cut
    recent = problem.train_mask & (data.timestamps >= problem.pseudo_cut)
    assert 0 < recent.sum() < problem.train_mask.sum()
    np.testing.assert_array_equal(problem.drift_popularity,
                                  np.bincount(data.items[recent], minlength=data.n_items))
    assert not problem.drift_popularity[first_poison:].any()
    assert problem.describe()["pseudo_cut"] == problem.pseudo_cut
    leave_last = RecProblem.build(data, split_for(data, replace(split_config, protocol="leave_last"), seed=0),
                                  TemplateCatalog.load("movies"), RewardConfig(),
                                  replace(split_config, protocol="leave_last"), seed=0, fit_hints=False)
    assert leave_last.pseudo_cut is None and leave_last.drift_popularity is leave_last.popularity


def test_a_deploy_problem_pickles_for_subprocess_workers() -> None:
    import cloudpickle  # what SubprocVecEnv sends its env factories with

    split_config = SplitConfig(protocol="deploy", drift_quantile=0.7, n_negatives=9)
    data, _ = poisoned(split_config.drift_quantile)
    split = split_for(data, split_config, seed=0)
    catalog = TemplateCatalog.load("movies", include=("expert.recent5.none.index",))
    problem = RecProblem.build(data, split, catalog, RewardConfig(robust_weight=0.5, views=ALL_VIEWS),
                               split_config, seed=0, fit_hints=False)
    user = int(split.train[0])
    before = problem.tasks(user)
    copy = cloudpickle.loads(cloudpickle.dumps(problem))
    after = copy.tasks(user)
    assert [(t.task_id, t.candidates) for t in after] == [(t.task_id, t.candidates) for t in before]
