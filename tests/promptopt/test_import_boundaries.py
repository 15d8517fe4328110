"""The core package must import without gymnasium, stable_baselines3, torch_geometric or wandb."""

from __future__ import annotations

import subprocess
import sys

BLOCKED = ("gymnasium", "stable_baselines3", "sb3_contrib", "torch_geometric", "wandb")

_SCRIPT = """
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ImportError('blocked in this test: ' + name)
sys.meta_path.insert(0, Block())
import promptopt
names = [m.name for m in pkgutil.walk_packages(promptopt.__path__, 'promptopt.')
         if m.name != 'promptopt.__main__']
for name in names:
    importlib.import_module(name)
heavy = sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules)
print(len(names), ','.join(heavy))
"""


def test_core_imports_without_rl_graph_or_tracking_libraries() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(blocked=BLOCKED)],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, out.stderr
    count, heavy = out.stdout.strip().split(" ", 1) if " " in out.stdout.strip() else (out.stdout.strip(), "")
    assert int(count) >= 5
    # Importing the core must not import torch or transformers either (lazy heavy imports).
    assert heavy == "", f"importing promptopt modules imported {heavy}"


def test_cli_help_does_not_import_heavy_libraries() -> None:
    script = (
        "import sys; from promptopt.experiments.cli import build_parser; build_parser();"
        "print(','.join(sorted(m for m in ('torch','transformers','gymnasium','wandb',"
        "'stable_baselines3','torch_geometric','sentence_transformers') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
