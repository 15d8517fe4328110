"""The ``promptopt`` CLI: light ``--help``, and every user error exits 2 with one line, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from promptopt.experiments.cli import main

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "experiments" / "configs" / "quickstart.yaml")
HEAVY = ("torch", "transformers", "sentence_transformers", "gymnasium", "stable_baselines3", "sb3_contrib",
         "torch_geometric", "wandb", "optuna", "matplotlib", "pydantic", "jsonschema")
COMMANDS = ("train", "evaluate", "export", "sweep", "estimate")


def test_help_of_every_command_imports_nothing_heavy() -> None:
    script = (
        "import sys, contextlib, io\n"
        "from promptopt.experiments.cli import main\n"
        f"for argv in [['--help'], *[[c, '--help'] for c in {COMMANDS!r}]]:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as exc:\n"
        "            assert exc.code == 0, (argv, exc.code)\n"
        "    assert 'usage:' in out.getvalue(), argv\n"
        f"print(','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_train_help_documents_overrides(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--ppo.learning_rate=3e-4" in text and "--resume" in text and "--output-dir" in text


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    broken_yaml = tmp_path / "broken.yaml"
    broken_yaml.write_text("ppo: [unclosed\n")
    bad_sweep = tmp_path / "sweep.yaml"
    bad_sweep.write_text("method: annealing\nmetric: {name: val/ndcg@10}\nparameters: {seed: {value: 1}}\n")
    grid_sweep = tmp_path / "grid.yaml"
    grid_sweep.write_text("method: grid\nmetric: {name: val/ndcg@10}\n"
                          "parameters: {ppo.learning_rate: {min: 0.1, max: 0.2}}\n")
    bad_book = tmp_path / "prompts.json"
    bad_book.write_text(json.dumps({"schema_version": "1.0"}))
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "config.yaml").write_text("name: existing\n")
    return {"tmp": str(tmp_path), "broken_yaml": str(broken_yaml), "bad_sweep": str(bad_sweep),
            "grid_sweep": str(grid_sweep), "bad_book": str(bad_book), "existing": str(existing)}


CASES = [
    (["train", "{tmp}/missing.yaml"], "does not exist"),
    (["train", "{broken_yaml}"], "not valid YAML"),
    (["train", QUICKSTART, "--ppo.learning_rat=1e-3"], "did you mean 'ppo.learning_rate'"),
    (["train", QUICKSTART, "--ppo.n_steps=many"], "ppo.n_steps"),
    (["train", QUICKSTART, "--eval.selectors=[random, magic]"], "unknown selector 'magic'"),
    (["train", QUICKSTART, "--data.format=movielens-100k", "--data.path={tmp}/nowhere"], "nowhere"),
    (["train", QUICKSTART, "--templates.catalog=nosuchcatalog"], "nosuchcatalog"),
    (["train", QUICKSTART, "--output-dir", "{existing}"], "already holds a run"),
    (["train"], "give a config file"),
    (["train", QUICKSTART, "--resume", "{tmp}"], "not both"),
    (["train", "--resume", "{tmp}/nowhere"], "does not exist"),
    (["train", QUICKSTART, "--bogus-flag"], "unrecognized arguments: --bogus-flag"),
    (["evaluate", "{tmp}/nowhere"], "does not exist"),
    (["evaluate", "{tmp}"], "no config.yaml"),
    (["export", "{tmp}"], "no config.yaml"),
    (["export"], "give a run directory"),
    (["export", "--check", "{bad_book}"], "is a required property"),
    (["export", "--check", "{tmp}/missing.json"], "does not exist"),
    (["sweep", "{tmp}/missing.yaml"], "does not exist"),
    (["sweep", "{bad_sweep}"], "method must be one of grid, random, bayes"),
    (["sweep", "{grid_sweep}"], "grid search needs a values list for parameters.ppo.learning_rate"),
    (["sweep", "{bad_sweep}", "--count", "lots"], "invalid int value"),
    (["estimate", "{tmp}/missing.yaml"], "does not exist"),
    (["estimate", QUICKSTART, "--reward.metric=ndcg@zero"], "reward.metric"),
    (["evaluate", "{tmp}", "--ppo.learning_rate=1"], "unrecognized arguments: --ppo.learning_rate=1"),
    (["no-such-command"], "invalid choice"),
]


@pytest.mark.parametrize(("argv", "expected"), CASES,
                         ids=[" ".join(c[0][:2]) + f" #{i}" for i, c in enumerate(CASES)])
def test_user_errors_exit_2_with_one_line(argv, expected, files, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may land in the repository (runs/, caches)
    argv = [a.format(**files) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert expected in lines[0]
    assert not (tmp_path / "runs").exists(), "a failed command must not leave a run directory"


def test_a_real_process_exits_2_without_traceback(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "promptopt", "train", QUICKSTART, "--ppo.total_timestep=5"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert "unknown key 'ppo.total_timestep' (did you mean 'ppo.total_timesteps'?)" in out.stderr


def test_version(capsys) -> None:
    from promptopt import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"promptopt {__version__}"


def test_shipped_configs_resolve_by_name_outside_the_repository(tmp_path, monkeypatch, capsys) -> None:
    from promptopt.experiments.shipped import resolve, shipped_names

    monkeypatch.chdir(tmp_path)
    assert {"quickstart", "ml100k_embedding"} <= set(shipped_names("config"))
    assert Path(resolve("quickstart")).samefile(QUICKSTART)
    assert Path(resolve("quickstart.yaml")).samefile(QUICKSTART)
    assert Path(resolve("ppo_bayes", "sweep")).samefile(ROOT / "experiments" / "sweeps" / "ppo_bayes.yaml")
    (tmp_path / "quickstart").write_text("name: mine\n")  # a file of that name wins over the shipped one
    assert resolve("quickstart") == "quickstart"
    assert main(["estimate", "ml100k_embedding", "--sample", "5", "--data.format=synthetic"]) == 0
    assert "total (shared answers counted once)" in capsys.readouterr().out


def test_a_command_without_its_extra_says_which_to_install(tmp_path, monkeypatch, capsys) -> None:
    from promptopt import extras

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(extras.EXTRA_OF_MODULE, "no_such_library_xyz", "train")
    assert main(["train", "quickstart"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["promptopt train: error: this command needs the train extra (no_such_library_xyz not "
                     "installed): pip install 'promptopt[train]' (or 'promptopt[all]')"]
    assert not (tmp_path / "runs").exists()
    # A library of an extra missing mid-command (e.g. a backend's) is one line too.
    hint = extras.missing_extra_hint(ModuleNotFoundError("No module named 'openai'", name="openai"))
    assert hint is not None and "pip install 'promptopt[openai]'" in hint
    assert extras.missing_extra_hint(ModuleNotFoundError("x", name="another_unknown_lib.sub")) is None
