"""The built wheel: the light core installs alone and serves a prompt book; shipped configs by name.

Builds a wheelhouse of this checkout (its wheel and the core's dependencies, from a clean copy of the
source, so no stale ``build/`` folder leaks into the wheel), installs the wheel without extras into a
fresh virtual environment from that wheelhouse alone (pip's configuration and indexes switched off:
the README's offline install), and runs the serving path and the CLI there, from a folder outside
the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from promptopt import __version__
from promptopt.export import PromptBook, TemplateScore, UserChoice

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=600, **kwargs)


def _clean_source(dest: Path) -> Path:
    """The checkout's files that git tracks or would track (no build/, .venv, runs/), copied."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    for name in filter(None, listed.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the worktree is not part of the build
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """The project's wheel and its core dependencies' wheels, as the README's offline install builds."""
    source = _clean_source(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("wheelhouse")
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(out), str(source)])
    assert built.returncode == 0, built.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def wheel(wheelhouse) -> Path:
    (path,) = wheelhouse.glob("promptopt-*.whl")
    return path


@pytest.fixture(scope="module")
def light_venv(wheelhouse, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel and its core dependencies only, installed from the wheelhouse
    with no index and no pip configuration (an offline machine)."""
    venv = tmp_path_factory.mktemp("light") / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)])
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    offline = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    offline |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    installed = _run([str(python), "-m", "pip", "install", "-q", "--no-index", "--find-links",
                      str(wheelhouse), "promptopt"], env=offline)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


def _book(synthetic_data) -> PromptBook:
    from promptopt.templates import TemplateCatalog

    catalog = TemplateCatalog.load("movies",
                                   include=["expert.recent5.none.index", "expert.recent10.none.index"])
    ids = catalog.ids
    return PromptBook.build(
        run={"name": "packaging", "seed": 0}, ranker_identity={"backend": "simulated"},
        dataset={"name": synthetic_data.name, "n_users": synthetic_data.n_users,
                 "n_items": synthetic_data.n_items, "n_interactions": synthetic_data.n_interactions},
        split={"n_train": 80, "n_val": 10, "n_test": 30}, reward={"metric": "ndcg@10", "robust_weight": 0.0},
        catalog_name="movies", catalog_slots=catalog.slots,
        templates=[catalog[i] for i in range(len(catalog))],
        global_ranking=[TemplateScore(ids[0], 0.4, 50), TemplateScore(ids[1], 0.5, 50)],
        choices=[UserChoice(user_id=synthetic_data.user_ids[0], template_id=ids[0],
                            probabilities=(0.9, 0.1), prompt=None, split="test")],
    )


def test_wheel_installs_one_import_package_holding_every_module(wheel) -> None:
    """Only ``promptopt`` at the top (no ``envs`` / ``policies`` / ``experiments`` to clash with a
    user's folders), and every module of the four folders under it."""
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"promptopt"}, sorted(top)
    folders = {"promptopt": "promptopt", "envs": "promptopt/envs", "policies": "promptopt/policies",
               "experiments": "promptopt/experiments"}
    expected = {f"{inside}/{p.relative_to(ROOT / folder).as_posix()}"
                for folder, inside in folders.items() for p in (ROOT / folder).rglob("*.py")
                if "__pycache__" not in p.parts}
    assert expected - set(names) == set(), sorted(expected - set(names))[:10]


def test_wheel_holds_the_package_data(wheel) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    # Every data file the packages' folders hold (a new catalog or attribute set included).
    listed = _run(["git", "ls-files", "promptopt", "envs", "policies", "experiments"], cwd=ROOT)
    data = [n for n in listed.stdout.split() if not n.endswith(".py") and (ROOT / n).is_file()]
    inside = [n if n.startswith("promptopt/") else f"promptopt/{n}" for n in data]  # setup.py's mapping
    assert inside and not [n for n in inside if n not in names], [n for n in inside if n not in names]
    assert any(n.endswith("configs/quickstart.yaml") for n in names)
    assert any(n.endswith("sweeps/ppo_bayes.yaml") for n in names)
    assert any(n.endswith("templates/catalogs/movies.yaml") for n in names)
    assert any(n.endswith("export/prompt_book.schema.json") for n in names)


def test_light_core_serves_a_prompt_book_without_torch(light_venv, synthetic_data, tmp_path) -> None:
    python = light_venv / "bin" / "python"
    listed = _run([str(python), "-m", "pip", "list", "--format=json"])
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    heavy = {"torch", "gymnasium", "stable-baselines3", "torch-geometric", "transformers", "wandb",
             "optuna", "openai", "scipy", "matplotlib"}
    assert "promptopt" in installed and not heavy & installed, sorted(heavy & installed)

    path = _book(synthetic_data).save(tmp_path / "prompts.json")
    script = textwrap.dedent(f"""
        import importlib.util, sys
        from promptopt.data import make_synthetic
        from promptopt.export import PromptBook
        from promptopt.tasks import UserContext
        data = make_synthetic(n_users=120, n_items=200, n_genres=10, mean_history=30, seed=7)
        book = PromptBook.load({str(path)!r})
        ctx = UserContext.at(data, 0, data.history_length(0) - 1)
        served = book.prompt_for(ctx, [4, 8, 15], data)
        print(served.template_id, served.fallback, importlib.util.find_spec("torch") is None)
        print(*(importlib.util.find_spec(name) is None for name in ("envs", "policies", "experiments")))
        print(importlib.util.find_spec("promptopt.experiments.cli") is not None)
    """)
    out = _run([str(python), "-c", script], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [book_first_choice(path), "False", "True", "True", "True", "True", "True"]


def book_first_choice(path: Path) -> str:
    return json.loads(path.read_text())["users"][0]["template_id"]


def test_light_cli_resolves_shipped_configs_and_names_the_missing_extra(light_venv, tmp_path) -> None:
    cli = str(light_venv / "bin" / "promptopt")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    version = _run([cli, "--version"], cwd=tmp_path)
    assert version.stdout.strip() == f"promptopt {__version__}"
    # Outside the repository: `quickstart` is the shipped config; estimate needs only the core.
    estimate = _run([cli, "estimate", "quickstart", "--sample", "10"], cwd=tmp_path, env=env)
    assert estimate.returncode == 0, estimate.stderr
    assert "total (shared answers counted once)" in estimate.stdout
    # Training needs the train extra: one line naming it, exit 2, before any work.
    train = _run([cli, "train", "quickstart"], cwd=tmp_path, env=env)
    lines = train.stderr.strip().splitlines()
    assert train.returncode == 2 and len(lines) == 1, train.stderr
    assert lines[0].startswith("promptopt train: error: this command needs the train extra")
    assert "pip install 'promptopt[train]'" in lines[0]
    assert not (tmp_path / "runs").exists()
    unknown = _run([cli, "train", "no_such_config"], cwd=tmp_path)
    assert unknown.returncode == 2 and "shipped config (" in unknown.stderr and "quickstart" in unknown.stderr
