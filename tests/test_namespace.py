"""One import package: ``promptopt``, with ``promptopt.envs`` / ``.policies`` / ``.experiments``.

The folders ``envs/``, ``policies/`` and ``experiments/`` stay at the top of the repository, but they
install (setup.py's ``package_dir``) as subpackages of ``promptopt``, so they never clash with a
user's own ``envs`` or ``experiments``. From the repository root the folders are still importable
under their bare names, which would load every module twice (two ``PromptRecEnv`` classes, two
registries): so no file of the project may import them that way, nor name them so in a
``python -m`` line or a dotted string. The dependencies point one way inside the namespace:
``promptopt`` (core) <- ``promptopt.envs`` <- ``promptopt.policies`` <- ``promptopt.experiments``.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MOVED = ("envs", "policies", "experiments")
TEXT = (".py", ".md", ".yaml", ".yml", ".toml", ".cfg", ".txt")
# ``python -m experiments.cli``, ``"experiments.pipeline.train"``, ``envs.prompt_rec:PromptRecEnv``;
# not ``docs/experiments.md`` or ``promptopt.experiments.cli``.
_DOTTED = re.compile(r"(?<![\w./-])(envs|policies|experiments)\.(?=[a-z_])"
                     r"(?!(md|py|yaml|yml|json|jsonl|txt|toml|csv|png|pdf|log)\b)")
FIX = ("write promptopt.envs / promptopt.policies / promptopt.experiments (the folders install under "
       "the promptopt namespace)")


def project_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / name for name in listed
            if (name.endswith(TEXT) or Path(name).name == "Makefile") and (ROOT / name).is_file()]


def top_level_imports(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line imports NAME`` for each import of a bare envs / policies / experiments module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{path.relative_to(root)}:{node.lineno} imports {n}" for n in names
                  if n.split(".")[0] in MOVED]
    return found


def test_no_project_file_imports_the_folders_as_top_level_packages() -> None:
    python = [p for p in project_files() if p.suffix == ".py"]
    assert len(python) > 50
    bad = [line for path in python for line in top_level_imports(path)]
    assert not bad, f"{FIX}:\n" + "\n".join(bad)


def test_no_command_line_or_dotted_name_uses_the_bare_folders() -> None:
    bad = []
    for path in project_files():
        if path == Path(__file__).resolve():
            continue
        for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _DOTTED.search(line):
                bad.append(f"{path.relative_to(ROOT)}:{k}: {line.strip()[:120]}")
    assert not bad, f"{FIX}:\n" + "\n".join(bad)


def test_the_checks_catch_each_form(tmp_path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import envs\nfrom experiments.cli import main\nimport policies.agent as a\n"
                      "from promptopt.envs import ENV_ID\nfrom . import x\n")
    (tmp_path / "x.py").write_text("")
    hits = [h.split(" imports ")[1] for h in top_level_imports(sample, tmp_path)]
    assert hits == ["envs", "experiments.cli", "policies.agent"]
    assert _DOTTED.search("python -m experiments.bench.bench_env")
    assert _DOTTED.search('entry_point="envs.prompt_rec:PromptRecEnv"')
    for fine in ("see docs/experiments.md", "python -m promptopt.experiments.study", "experiments/configs",
                 "vec.envs[0]", "self.policies.append(x)"):
        assert not _DOTTED.search(fine), fine


LAYERS = ("promptopt", "promptopt.envs", "promptopt.policies", "promptopt.experiments")
FOLDERS = {"promptopt": "promptopt", "promptopt.envs": "envs", "promptopt.policies": "policies",
           "promptopt.experiments": "experiments"}


def _layer(module: str) -> int:
    """Index in :data:`LAYERS` of the layer a ``promptopt...`` module name belongs to."""
    return max(k for k, layer in enumerate(LAYERS) if module == layer or module.startswith(layer + "."))


def test_dependencies_point_one_way() -> None:
    """A layer imports only layers below it (a core module never imports promptopt.envs ...)."""
    bad = []
    for layer, folder in FOLDERS.items():
        own = LAYERS.index(layer)
        for path in sorted((ROOT / folder).rglob("*.py")):
            if folder == "promptopt" and path.name == "__main__.py":
                continue  # ``python -m promptopt`` is the CLI's entry point, not the core
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] == "promptopt" and _layer(name) > own:
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno} ({layer}) imports {name}")
    assert not bad, "\n".join(bad)
