"""``promptopt cache stats|export|clear`` on a cache filled through the real OpenAI backend."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from promptopt.experiments.cli import main
from promptopt.llm.cache import CachedRanker, CacheStore
from promptopt.llm.openai_backend import OpenAIRanker
from promptopt.llm.types import RankRequest
from promptopt.testing import LocalOpenAIServer

REPO = Path(__file__).resolve().parents[2]
FAKE_KEY = "sk-cli-cache-FAKE-41b7aa09"


def _requests(n: int) -> list[RankRequest]:
    return [
        RankRequest.from_prompt(f"user {i}\n1. Alien (1979)\n2. Heat (1995)\n3. Ran (1985)",
                                [3 * i, 3 * i + 1, 3 * i + 2], ["Alien (1979)", "Heat (1995)", "Ran (1985)"])
        for i in range(n)
    ]


@pytest.fixture
def filled_cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("CLI_CACHE_TEST_KEY", FAKE_KEY)
    path = tmp_path / "cache.sqlite"
    with LocalOpenAIServer() as server:
        backend = OpenAIRanker("local-test", base_url=server.base_url, api_key_env="CLI_CACHE_TEST_KEY",
                               price_prompt_per_1m=1000.0)
        with CachedRanker(backend, path) as ranker:
            ranker.rank(_requests(6))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "promptopt.experiments.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def test_stats_table_and_json(filled_cache: Path, capsys) -> None:
    assert main(["cache", "stats", str(filled_cache), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entries"] == 6
    assert stats["prompt_tokens"] == sum(len(r.prompt.split()) for r in _requests(6))
    assert stats["cost"] == pytest.approx(stats["prompt_tokens"] * 1000.0 / 1e6)
    assert stats["rankers"][0]["identity"]["backend"] == "openai"
    assert stats["rankers"][0]["entries"] == 6
    assert main(["cache", "stats", str(filled_cache)]) == 0
    table = capsys.readouterr().out
    assert "entries" in table and "     6  openai: base_url=http://127.0.0.1:" in table


def test_export_writes_every_prompt_and_answer_without_the_key(filled_cache: Path, tmp_path: Path,
                                                               capsys) -> None:
    assert main(["cache", "export", str(filled_cache)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {line["request"]["messages"][0][1] for line in lines} == {r.prompt for r in _requests(6)}
    assert all(sorted(line["response"]["ranking"]) == sorted(line["request"]["candidate_ids"])
               for line in lines)
    out = tmp_path / "audit.jsonl"
    assert main(["cache", "export", str(filled_cache), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert len(text.splitlines()) == 6
    assert FAKE_KEY not in text


def test_clear_needs_yes(filled_cache: Path, capsys) -> None:
    assert main(["cache", "clear", str(filled_cache)]) == 2
    err = capsys.readouterr().err
    assert "refusing to delete the 6 answers" in err and "--yes" in err
    assert len(CacheStore(filled_cache, create=False)) == 6
    assert main(["cache", "clear", str(filled_cache), "--yes"]) == 0
    assert len(CacheStore(filled_cache, create=False)) == 0


@pytest.mark.parametrize("content", [None, b"not a database at all" * 50])
def test_bad_paths_are_one_line_errors_without_traceback(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "cache.sqlite"
    if content is not None:
        path.write_bytes(content)
    for action in ("stats", "export", "clear"):
        result = _cli("cache", action, str(path))
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("promptopt cache: error:")]
        assert len(errors) == 1 and str(path) in errors[0]
    assert path.exists() == (content is not None)  # nothing was created
