"""RequestCache: requests show the task's candidates; one rendering per (episode, template), bounded."""

from __future__ import annotations

import pytest

from promptopt.llm.types import RequestIds
from promptopt.request_cache import RequestCache


def test_requests_show_the_task_candidates(robust_problem, synthetic_data, synthetic_split) -> None:
    problem = robust_problem
    user = int(synthetic_split.test[2])
    tasks = problem.tasks(user)
    requests = problem.requests(tasks, 2, sample_id=3)
    for task, request in zip(tasks, requests):
        assert request.candidate_ids == task.candidates
        assert request.candidate_texts == tuple(synthetic_data.item_text(c) for c in task.candidates)
        assert request.output_format == "title" and request.sample_id == 3
        assert request.ids == RequestIds(user=synthetic_data.user_ids[user], template="liked",
                                         task=task.task_id, view=task.view)
    recent = problem.requests(tasks, 0)
    assert recent[0].prompt != recent[2].prompt  # dropout view: another history
    assert recent[0].prompt.split("Rank:")[0] == recent[4].prompt.split("Rank:")[0]  # copy: same history
    assert recent[0].candidate_ids != recent[4].candidate_ids


def test_one_rendering_per_episode_and_template_serves_every_sample(
    robust_problem, five_templates, synthetic_data, synthetic_split, monkeypatch
) -> None:
    problem = robust_problem
    cache = RequestCache(five_templates, synthetic_data, problem.hints, size=8)
    renders: list[int] = []
    original = cache.render
    monkeypatch.setattr(cache, "render", lambda tasks, t, **kw: renders.append(t) or original(tasks, t, **kw))
    user = int(synthetic_split.train[0])
    key, tasks = problem.key(user), problem.tasks(user)
    first = cache.get(key, tasks, 1)
    assert cache.get(key, tasks, 1) is first  # shared, not rendered again
    sampled = cache.get(key, tasks, 1, sample_id=5)
    assert renders == [1] and len(cache) == 1  # sample ids reuse the rendering and are not stored
    assert sampled == original(tasks, 1, sample_id=5)  # exactly what rendering with that id gives
    assert [r.sample_id for r in sampled] == [5] * len(tasks)


def test_the_least_recently_used_list_is_dropped(robust_problem, five_templates, synthetic_data,
                                                  synthetic_split) -> None:
    problem = robust_problem
    cache = RequestCache(five_templates, synthetic_data, problem.hints, size=2)
    user = int(synthetic_split.train[1])
    key, tasks = problem.key(user), problem.tasks(user)
    zero, one = cache.get(key, tasks, 0), cache.get(key, tasks, 1)
    assert cache.get(key, tasks, 0) is zero  # now the most recently used
    cache.get(key, tasks, 2)  # evicts template 1
    assert len(cache) == 2
    assert cache.get(key, tasks, 0) is zero
    assert cache.get(key, tasks, 1) is not one and cache.get(key, tasks, 1) == one
    with pytest.raises(ValueError, match="size must be >= 0, got -1"):
        RequestCache(five_templates, synthetic_data, None, size=-1)
