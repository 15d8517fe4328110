"""Secrets: an API key used by a whole run reaches no file, no log line and no output.

A recognisable fake key is put in the environment; the real CLI runs train -> evaluate -> export ->
``cache stats`` / ``cache export`` against a local OpenAI-compatible server with wandb offline and
debug logging on. Afterwards every file under the test folder (run directory, answer cache, wandb's
files, the cache export, the home folder wandb may write to) and everything the commands printed is
searched for the key and for recognisable pieces of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from promptopt.testing import LocalOpenAIServer
from tests.experiments.conftest import tiny_config_dict

FAKE_KEY = "sk-test-SECRET-1234567890abcdef"
KEY_ENV = "PROMPTOPT_SECRETS_TEST_KEY"
PIECES = (FAKE_KEY, "SECRET-1234567890", "1234567890abcdef", FAKE_KEY[::-1])


def _promptopt(*argv: str, cwd: Path, env: dict[str, str],
               code: int = 0) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run([sys.executable, "-m", "promptopt", "-v", *argv], cwd=cwd, env=env,
                            capture_output=True, timeout=600, check=False)
    assert result.returncode == code, (argv, result.stderr.decode(errors="replace")[-3000:])
    return result


@pytest.mark.slow
def test_the_api_key_reaches_no_file_log_or_output(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, KEY_ENV: FAKE_KEY, "HOME": str(home), "WANDB_MODE": "offline",
           "WANDB_CONFIG_DIR": str(home / ".config" / "wandb"), "WANDB_CACHE_DIR": str(home / ".cache"),
           "WANDB_DATA_DIR": str(home / ".data")}
    env.pop("WANDB_API_KEY", None)
    with LocalOpenAIServer() as server:
        raw = tiny_config_dict(
            tmp_path,
            ranker={"backend": "openai", "model": "local-test", "base_url": server.base_url,
                    "api_key_env": KEY_ENV, "concurrency": 4},
            policy={"kind": "mlp"},
            ppo={"total_timesteps": 64, "n_steps": 8, "checkpoint_every": 32},
            eval={"selectors": ["random", "best_fixed", "policy", "oracle"], "n_bootstrap": 50},
            tracking={"wandb": True, "mode": "offline", "project": "promptopt-secrets"},
        )
        config = tmp_path / "secret.yaml"
        config.write_text(yaml.safe_dump(raw), encoding="utf-8")
        cache = str(tmp_path / "cache.sqlite")
        outputs = [
            _promptopt("train", str(config), "--output-dir", "run", "--no-eval", cwd=tmp_path, env=env),
            _promptopt("evaluate", "run", cwd=tmp_path, env=env),
            _promptopt("export", "run", cwd=tmp_path, env=env),
            _promptopt("cache", "stats", cache, "--json", cwd=tmp_path, env=env),
            _promptopt("cache", "export", cache, "-o", "answers.jsonl", cwd=tmp_path, env=env),
            _promptopt("cache", "export", cache, cwd=tmp_path, env=env),
        ]
        assert server.last_authorization == f"Bearer {FAKE_KEY}", "the run really used the key"
        assert server.stats().succeeded > 0

    run = tmp_path / "run"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    # The run really wrote what is searched: run files, wandb's offline run, the cache, the export.
    for name in ("config.yaml", "metrics.json", "prompts.json", "report.md", "train.log"):
        assert (run / name).is_file(), name
    assert any(p.suffix == ".wandb" for p in files), "wandb wrote its offline run"
    assert (tmp_path / "answers.jsonl").stat().st_size > 0
    assert b'"raw_text"' in outputs[-1].stdout  # the audit export printed every answer
    assert b"DEBUG" in outputs[0].stderr  # debug logging was on
    leaks = [
        f"{path.relative_to(tmp_path)}: {piece!r}"
        for path in files for piece in PIECES if piece.encode() in path.read_bytes()
    ]
    leaks += [
        f"output of command {k} ({stream}): {piece!r}"
        for k, result in enumerate(outputs) for stream, text in (("stdout", result.stdout),
                                                                 ("stderr", result.stderr))
        for piece in PIECES if piece.encode() in text
    ]
    assert leaks == []
    # The config names the variable, never the value.
    assert yaml.safe_load((run / "config.yaml").read_text())["ranker"]["api_key_env"] == KEY_ENV


def test_a_key_pasted_into_api_key_env_is_refused_without_echoing_it(tmp_path: Path) -> None:
    raw = tiny_config_dict(tmp_path, ranker={"backend": "openai", "model": "m", "api_key_env": FAKE_KEY})
    config = tmp_path / "pasted.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "promptopt", "train", str(config)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"promptopt train: error: {config}: ranker.api_key_env must be the name of an environment variable "
        "(letters, digits and '_', e.g. OPENAI_API_KEY), not the key itself; the value given is not shown"
    )
    assert not any(piece in result.stdout + result.stderr for piece in PIECES)
    assert not (tmp_path / "runs").exists()


URL_KEY = "urlsecret-9f8e7d6c5b4a"


@pytest.mark.slow
@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_a_key_inside_the_server_url_reaches_no_file_log_or_output(tmp_path: Path, form: str) -> None:
    """``http://user:KEY@host/v1`` or ``...?api-key=KEY``: config.yaml, logs, wandb (its recorded
    command line and config), metrics, report and prompt book hold the URL redacted.

    The official client cannot send requests to a base URL with a query (it appends the path after
    it), so that run fails in its preflight episode, before it starts: its error line and spend
    ledger are searched all the same.
    """
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, KEY_ENV: FAKE_KEY, "HOME": str(home), "WANDB_MODE": "offline",
           "WANDB_CONFIG_DIR": str(home / ".config" / "wandb"), "WANDB_CACHE_DIR": str(home / ".cache"),
           "WANDB_DATA_DIR": str(home / ".data")}
    env.pop("WANDB_API_KEY", None)
    with LocalOpenAIServer() as server:
        host = server.base_url.split("://", 1)[1]
        url = (f"http://someone:{URL_KEY}@{host}" if form == "userinfo"
               else f"{server.base_url}?api-version=2024&api-key={URL_KEY}")
        raw = tiny_config_dict(
            tmp_path,
            ranker={"backend": "openai", "model": "local-test", "base_url": url, "api_key_env": KEY_ENV,
                    "concurrency": 4},
            policy={"kind": "mlp"},
            ppo={"total_timesteps": 64, "n_steps": 8, "checkpoint_every": 32},
            eval={"selectors": ["random", "best_fixed", "policy"], "n_bootstrap": 50},
            tracking={"wandb": True, "mode": "offline", "project": "promptopt-secrets"},
        )
        config = tmp_path / "url.yaml"
        config.write_text(yaml.safe_dump(raw), encoding="utf-8")
        # The URL also on the command line, as a sweep or a user would pass it (wandb records argv).
        result = _promptopt("train", str(config), "--output-dir", "run", f"--ranker.base_url={url}",
                            cwd=tmp_path, env=env, code=0 if form == "userinfo" else 2)
        if form == "userinfo":
            assert server.stats().succeeded > 0, "the run really used the server"
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != config]
    if form == "userinfo":
        assert any(p.suffix == ".wandb" for p in files) and (tmp_path / "run" / "train.log").is_file()
        assert (tmp_path / "run" / "prompts.json").is_file()
    else:  # the preflight episode fails before the run starts: its error line and ledger are searched
        assert b"promptopt train: error: preflight: " in result.stderr
        assert (tmp_path / "run" / "budget.json").is_file()
    leaks = [str(p.relative_to(tmp_path)) for p in files if URL_KEY.encode() in p.read_bytes()]
    leaks += [stream for stream, text in (("stdout", result.stdout), ("stderr", result.stderr))
              if URL_KEY.encode() in text]
    assert leaks == []
    if form == "userinfo":
        stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["ranker"]["base_url"]
        assert "***" in stored and host.split(":")[0] in stored
