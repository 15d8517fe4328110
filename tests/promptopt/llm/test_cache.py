"""The SQLite answer cache: hits and misses, keys, JSON rows, partial batches, concurrent writers, kills."""

from __future__ import annotations

import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptopt.errors import RankerError
from promptopt.llm.cache import (
    CachedRanker,
    CacheError,
    CacheStore,
    PartialBatchError,
    cache_key,
    check_identity,
)
from promptopt.llm.parsing import parse_ranking
from promptopt.llm.types import RankRequest, RankResponse, RequestIds, TokenUsage

REPO = Path(__file__).resolve().parents[3]


class CountingRanker:
    """A deterministic black box (reverses the shown order) that records every batch it gets."""

    def __init__(self, identity: Mapping[str, Any] | None = None, *, fail: set[str] = frozenset()) -> None:
        self._identity = dict(identity or {"backend": "counting", "model": "reverse", "temperature": 0.0})
        self.batches: list[list[RankRequest]] = []
        self.fail = set(fail)

    @property
    def identity(self) -> Mapping[str, Any]:
        return self._identity

    def rank(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        self.batches.append(list(requests))
        out: dict[int, RankResponse] = {}
        for i, request in enumerate(requests):
            if any(f in request.prompt for f in self.fail):
                continue
            text = ", ".join(str(n) for n in range(len(request.candidate_ids), 0, -1))
            ranking, parse, unparsed = parse_ranking(text, request)
            out[i] = RankResponse(ranking=ranking, raw_text=text, parse=parse, unparsed=unparsed,
                                  usage=TokenUsage(len(request.prompt.split()), len(request.candidate_ids)),
                                  latency_s=0.01)
        if len(out) < len(requests):
            failed = {i: "HTTP 500" for i in range(len(requests)) if i not in out}
            raise PartialBatchError(f"{len(failed)} requests failed", out, failed)
        return [out[i] for i in range(len(requests))]

    @property
    def sent(self) -> int:
        return sum(len(b) for b in self.batches)


def _requests(n: int, *, tag: str = "q", sample_id: int = 0) -> list[RankRequest]:
    return [
        RankRequest.from_prompt(f"{tag} {i}: rank\n1. a\n2. b\n3. c", [i, i + 1000, i + 2000],
                                ["a", "b", "c"], sample_id=sample_id)
        for i in range(n)
    ]


def test_misses_go_to_the_backend_once_then_hit(tmp_path: Path) -> None:
    backend = CountingRanker()
    ranker = CachedRanker(backend, tmp_path / "c.sqlite")
    first = ranker.rank(_requests(5))
    assert len(backend.batches) == 1 and backend.sent == 5
    assert not any(r.cached for r in first)
    second = ranker.rank(_requests(5))
    assert len(backend.batches) == 1  # nothing sent
    assert all(r.cached for r in second)
    assert [r.ranking for r in second] == [r.ranking for r in first]
    assert [r.raw_text for r in second] == [r.raw_text for r in first]
    assert [r.usage for r in second] == [r.usage for r in first]
    stats = ranker.stats
    assert (stats.hits, stats.misses, stats.calls) == (5, 5, 5)
    assert stats.tokens == sum(r.usage.total_tokens for r in first)
    assert ranker.identity == backend.identity


def test_only_misses_are_sent_in_one_batch_and_order_is_kept(tmp_path: Path) -> None:
    backend = CountingRanker()
    ranker = CachedRanker(backend, tmp_path / "c.sqlite")
    requests = _requests(6)
    ranker.rank(requests[::2])
    out = ranker.rank(requests)
    assert [len(b) for b in backend.batches] == [3, 3]
    assert backend.batches[1] == requests[1::2]
    assert [r.ranking[0] for r in out] == [req.candidate_ids[-1] for req in requests]
    assert [r.cached for r in out] == [True, False] * 3


def test_duplicate_requests_in_a_batch_are_sent_once(tmp_path: Path) -> None:
    backend = CountingRanker()
    ranker = CachedRanker(backend, tmp_path / "c.sqlite")
    request = _requests(1)[0]
    out = ranker.rank([request, request, request])
    assert backend.sent == 1
    assert len(out) == 3 and len({r.ranking for r in out}) == 1


def test_key_separates_sample_ids_identities_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    backend = CountingRanker()
    with CachedRanker(backend, path) as ranker:
        ranker.rank(_requests(2))
        ranker.rank(_requests(2, sample_id=1))  # another sample: another answer
        assert backend.sent == 4
    reopened_backend = CountingRanker()
    with CachedRanker(reopened_backend, path) as reopened:
        assert all(r.cached for r in reopened.rank(_requests(2) + _requests(2, sample_id=1)))
    assert reopened_backend.sent == 0
    other = CountingRanker({"backend": "counting", "model": "reverse", "temperature": 0.7})
    CachedRanker(other, path).rank(_requests(2))
    assert other.sent == 2
    request = _requests(1)[0]
    assert cache_key({"a": 1, "b": 2}, request) == cache_key({"b": 2, "a": 1}, request)
    assert cache_key({"a": 1}, request) != cache_key({"a": 1}, _requests(1, sample_id=3)[0])


_texts = st.text(alphabet=st.sampled_from("ab|,0\x00[]'\"é"), max_size=6)
_request_strategy = st.builds(
    lambda msgs, cands, fmt, base, sample, ids: RankRequest(
        messages=tuple(msgs), candidate_ids=tuple(range(len(cands))), candidate_texts=tuple(cands),
        output_format=fmt, index_base=base, sample_id=sample, ids=ids),
    st.lists(st.tuples(st.sampled_from(["system", "user"]), _texts), min_size=1, max_size=3),
    st.lists(_texts, max_size=3),
    st.sampled_from(["index", "title", "json"]),
    st.sampled_from([0, 1]),
    st.integers(0, 2),
    st.one_of(st.none(), st.builds(RequestIds, _texts, _texts, _texts)),
)


@settings(max_examples=400, deadline=None)
@given(a=_request_strategy, b=_request_strategy)
def test_keys_are_equal_exactly_when_the_requests_are(a: RankRequest, b: RankRequest) -> None:
    identity = {"backend": "x", "model": "m"}
    same = json.dumps(a.to_json(), sort_keys=True) == json.dumps(b.to_json(), sort_keys=True)
    assert (cache_key(identity, a) == cache_key(identity, b)) == same


def test_requests_of_templates_keep_the_keys_they_had_before_their_ids_were_typed() -> None:
    """Answers already cached (and paid for) must stay reachable: these keys were computed by the code
    that carried the identifiers as free-form ``meta`` pairs (commit 7a0be50)."""
    from promptopt.candidates import CandidateSampler
    from promptopt.data import make_synthetic
    from promptopt.splits import TaskBuilder
    from promptopt.templates import TemplateCatalog

    data = make_synthetic(n_users=30, n_items=60, seed=2)
    template = TemplateCatalog.load("movies")[5]
    builder = TaskBuilder(data, CandidateSampler(data.n_items, 9), seed=4)
    row = data.history_length(3) - 1
    identity = {"backend": "x", "model": "m"}
    base, dropout = builder.task(3, row), builder.task(3, row, view="dropout")
    assert (base.task_id, dropout.task_id) == ("4/29/base", "4/29/dropout")
    assert cache_key(identity, template.request(base, data)) == (
        "25dc67835339458608a2f6bc68f8c91019906f47f19b7ffe6148f10bba1b5979")
    assert cache_key(identity, template.request(dropout, data)) == (
        "8b074b0c614e55088d9d6abbce5ef25ca71d62883cc47b98ac09e92e995c2d7e")


def test_keys_cannot_be_forged_by_moving_text_between_fields() -> None:
    identity = {"backend": "x"}

    def req(messages, texts, **kw) -> RankRequest:
        return RankRequest(messages=messages, candidate_ids=tuple(range(len(texts))),
                           candidate_texts=tuple(texts), **kw)

    pairs = [
        (req((("user", "p"),), ["a\x00b", "c"]), req((("user", "p"),), ["a", "b\x00c"])),
        (req((("user", "p\x00user\x00q"),), ["c"]), req((("user", "p"), ("user", "q")), ["c"])),
        (req((("user", "p"),), ["a"], ids=RequestIds("a", "b", "c")),
         req((("user", "p"),), ["a"], ids=RequestIds("a", "bc", ""))),
        (req((("user", "p"),), ["a"], ids=RequestIds("", "", "")), req((("user", "p"),), ["a"])),
        (req((("user", "p"),), ["a"], sample_id=1), req((("user", "p"),), ["a"])),
    ]
    for a, b in pairs:
        assert cache_key(identity, a) != cache_key(identity, b)


def test_rows_are_json_with_request_answer_usage_and_time(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    ranker = CachedRanker(CountingRanker(), path)
    out = ranker.rank(_requests(3))
    ranker.close()
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT key, identity, request, response, cost, created FROM answers").fetchall()
    assert len(rows) == 3
    by_prompt = {}
    for key, identity, request, response, cost, created in rows:
        assert len(key) == 64 and int(key, 16) >= 0
        assert json.loads(identity)["backend"] == "counting"
        payload = json.loads(response)
        assert set(payload) >= {"ranking", "raw_text", "usage", "latency_s", "parse"}
        assert created > 1.6e9 and cost == 0.0
        by_prompt[json.loads(request)["messages"][0][1]] = payload
    for req, resp in zip(_requests(3), out):
        assert by_prompt[req.prompt]["ranking"] == list(resp.ranking)
        assert by_prompt[req.prompt]["raw_text"] == resp.raw_text
    assert b"\x80\x04" not in path.read_bytes()  # no pickles


def test_partial_batch_is_saved_before_the_error(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    backend = CountingRanker(fail={"q 2:"})
    ranker = CachedRanker(backend, path)
    with pytest.raises(RankerError, match=r"3 of 4 answers of this batch were saved") as info:
        ranker.rank(_requests(4))
    assert not isinstance(info.value, PartialBatchError)  # the cache reports it as a plain RankerError
    assert ranker.stats.failures == 1 and ranker.stats.calls == 4
    backend.fail.clear()
    out = ranker.rank(_requests(4))
    assert [r.cached for r in out] == [True, True, False, True]
    assert backend.batches[-1] == [_requests(4)[2]]


def test_memory_layer_serves_repeats_without_the_file_and_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    backend = CountingRanker()
    ranker = CachedRanker(backend, path, memory_entries=2)
    a, b, c = _requests(3)
    ranker.rank([a, b, c])
    CacheStore(path).clear()  # the file forgets; this process still remembers the two latest answers
    assert [r.cached for r in ranker.rank([b, c])] == [True, True]
    assert backend.sent == 3
    assert ranker.rank([a])[0].cached is False  # evicted from memory and gone from the file
    assert backend.sent == 4
    plain = CachedRanker(CountingRanker(), path, memory_entries=0)
    plain.rank([b])
    CacheStore(path).clear()
    assert plain.rank([b])[0].cached is False
    with pytest.raises(ValueError, match="memory_entries"):
        CachedRanker(CountingRanker(), path, memory_entries=-1)


def test_backend_returning_the_wrong_number_of_answers_is_an_error(tmp_path: Path) -> None:
    class Short(CountingRanker):
        def rank(self, requests):
            return super().rank(requests)[:-1]

    with pytest.raises(RankerError, match="returned 1 answers for 2 requests"):
        CachedRanker(Short(), tmp_path / "c.sqlite").rank(_requests(2))


def test_empty_batch_touches_nothing(tmp_path: Path) -> None:
    backend = CountingRanker()
    assert CachedRanker(backend, tmp_path / "c.sqlite").rank([]) == []
    assert backend.batches == []


@pytest.mark.parametrize("identity", [
    {"backend": "x", "api_key": "abc"},
    {"backend": "x", "headers": {"Authorization": "Bearer abc"}},
    {"backend": "x", "base_url": "https://user:pw@example.com/v1"},
    {"backend": "x", "model": object()},
])
def test_identities_with_secrets_or_non_json_are_refused(tmp_path: Path, identity) -> None:
    with pytest.raises(RankerError, match="identity"):
        CachedRanker(CountingRanker(identity), tmp_path / "c.sqlite")


def test_identity_holding_a_secret_environment_value_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("SOME_SERVICE_API_KEY", "sk-very-secret-value-123")
    with pytest.raises(RankerError, match="credentials"):
        check_identity({"backend": "x", "model": "m-sk-very-secret-value-123"})
    assert json.loads(check_identity({"backend": "x", "max_tokens": 5})) == {"backend": "x", "max_tokens": 5}


def test_pickled_ranker_opens_its_own_connection(tmp_path: Path) -> None:
    ranker = CachedRanker(CountingRanker(), tmp_path / "c.sqlite")
    ranker.rank(_requests(2))
    clone = pickle.loads(pickle.dumps(ranker))
    assert all(r.cached for r in clone.rank(_requests(2)))
    assert clone.backend.sent == 2  # the copy's backend was never asked


# -- the store and its inspection helpers ---------------------------------------------------------


def test_store_summary_export_clear_and_integrity(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    ranker = CachedRanker(CountingRanker(), path)
    out = ranker.rank(_requests(4))
    ranker.close()
    store = CacheStore(path, create=False)
    summary = store.summary()
    assert summary.entries == 4 == len(store)
    assert summary.prompt_tokens == sum(r.usage.prompt_tokens for r in out)
    assert summary.by_identity[0][1] == 4 and "counting" in summary.by_identity[0][0]
    assert summary.size_bytes > 0
    export = tmp_path / "out.jsonl"
    with export.open("w", encoding="utf-8") as fh:
        assert store.export_jsonl(fh) == 4
    lines = [json.loads(line) for line in export.read_text(encoding="utf-8").splitlines()]
    assert {line["request"]["messages"][0][1] for line in lines} == {r.prompt for r in _requests(4)}
    assert all(line["response"]["raw_text"] for line in lines)
    assert store.integrity_check() == "ok"
    assert store.clear() == 4
    assert len(store) == 0


def test_store_refuses_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="no cache file"):
        CacheStore(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CacheError, match="cannot open cache"):
        CacheStore(garbage, create=False)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(CacheError, match="not a promptopt answer cache"):
        CacheStore(other, create=False)


# -- several processes, and kills -----------------------------------------------------------------

_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_cache import CountingRanker, _requests
    from promptopt.llm.cache import CachedRanker
    worker, n_batches, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    ranker = CachedRanker(CountingRanker(), sys.argv[4])
    shared = _requests(n_batches * batch, tag="shared")
    own = _requests(n_batches * batch, tag=f"own{{worker}}")
    for b in range(n_batches):
        part = shared[b * batch:(b + 1) * batch] + own[b * batch:(b + 1) * batch]
        out = ranker.rank(part)
        assert [r.ranking[0] for r in out] == [q.candidate_ids[-1] for q in part]
        print(b, flush=True)
    s = ranker.stats
    print("stats", s.hits, s.misses, s.calls, flush=True)
""")


def test_four_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    script = _WRITER.format(tests=str(Path(__file__).parent))
    n_batches, batch = 15, 8
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(w), str(n_batches), str(batch), str(path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for w in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    store = CacheStore(path, create=False)
    # Every worker's own requests plus one copy of each shared request.
    assert len(store) == 4 * n_batches * batch + n_batches * batch
    assert store.integrity_check() == "ok"
    for row in store.rows():
        assert row["response"]["ranking"][0] == row["request"]["candidate_ids"][-1]
    total_calls = sum(int(out.strip().splitlines()[-1].split()[3]) for out, _ in outputs)
    assert total_calls >= len(store)  # a shared answer may be fetched twice, never lost


_KILLED = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_cache import CountingRanker, _requests
    from promptopt.llm.cache import CachedRanker
    ranker = CachedRanker(CountingRanker(), sys.argv[1])
    for b in range(100000):
        ranker.rank(_requests(20, tag=f"batch{{b}}"))
        print(b, flush=True)
""")


def test_sigkill_mid_run_leaves_a_sound_cache(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED.format(tests=str(Path(__file__).parent)), str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    committed = -1
    for line in proc.stdout:  # each line is printed after its batch was committed
        committed = int(line)
        if committed >= 10:
            break
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert committed >= 10, err
    store = CacheStore(path, create=False)
    assert store.integrity_check() == "ok"
    assert len(store) >= 20 * (committed + 1)
    assert len(store) % 20 == 0  # one transaction per batch: never half a batch
    backend = CountingRanker()
    CachedRanker(backend, path).rank(_requests(20, tag="batch3"))
    assert backend.sent == 0
