"""No two modules of the project import each other, directly or through others.

Every ``import`` statement counts: at module level, inside a function, and under ``if TYPE_CHECKING:``
(a function-level import that dodges a cycle at run time still ties the two modules together). A
package's ``__init__`` counts as a module: it may re-export its submodules, so a submodule that
imports its own package by name is a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"promptopt": "promptopt", "envs": "promptopt.envs", "policies": "promptopt.policies",
            "experiments": "promptopt.experiments"}
"""Folder -> the package it installs as (setup.py's ``package_dir``)."""

def project_modules(root: Path = ROOT) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``) for every module of :data:`PACKAGES`."""
    modules: dict[str, tuple[Path, bool]] = {}
    for folder, package in PACKAGES.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = [package, *path.relative_to(root / folder).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            modules[".".join(parts)] = (path, is_package)
    return modules


def import_graph(modules: dict[str, tuple[Path, bool]]) -> dict[str, dict[str, int]]:
    """Module -> {project module it imports: line of the first such import}."""

    def resolve(name: str) -> str | None:  # ``a.b.C`` (a name inside module a.b) -> ``a.b``
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {}
    for module, (path, is_package) in modules.items():
        package = module if is_package else module.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in names:
                target = resolve(name)
                if target is not None and target != module:
                    edges.setdefault(target, node.lineno)
        graph[module] = edges
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (iterative, sorted)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def describe(
    component: list[str], graph: dict[str, dict[str, int]], modules: dict[str, tuple[Path, bool]]
) -> str:
    """Each import that keeps the component together, as ``file:line -> module``."""
    members = set(component)
    lines = [f"import cycle among {', '.join(component)}:"]
    for module in component:
        path = modules[module][0].relative_to(ROOT)
        for target, line in sorted(graph[module].items()):
            if target in members:
                lines.append(f"  {path}:{line} imports {target}")
    return "\n".join(lines)


def test_no_module_of_the_project_is_part_of_an_import_cycle() -> None:
    modules = project_modules()
    graph = import_graph(modules)
    cycles = strongly_connected(graph)
    assert not cycles, "\n".join(describe(c, graph, modules) for c in cycles)


def test_the_cycle_check_finds_cycles_through_function_level_and_type_only_imports(tmp_path: Path) -> None:
    for package, files in {
        "promptopt": {"__init__.py": "", "a.py": "from promptopt import b\n",
                      "b.py": "def f():\n    from promptopt.c import x\n",
                      "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import promptopt.a\n",
                      "d.py": "import promptopt.c\n"},
        "envs": {"__init__.py": "from .e import E\n", "e.py": "from . import f\n", "f.py": "import numpy\n"},
    }.items():
        (tmp_path / package).mkdir()
        for name, text in files.items():
            (tmp_path / package / name).write_text(text)
    for folder in list(PACKAGES)[2:]:
        (tmp_path / folder).mkdir()
    modules = project_modules(tmp_path)
    graph = import_graph(modules)
    assert graph["promptopt.envs"] == {"promptopt.envs.e": 1}
    assert graph["promptopt.envs.e"] == {"promptopt.envs": 1, "promptopt.envs.f": 1}
    assert strongly_connected(graph) == [["promptopt.a", "promptopt.b", "promptopt.c"],
                                         ["promptopt.envs", "promptopt.envs.e"]]
    # `from promptopt import b` is the submodule b, not the package's __init__ alone.
    assert set(graph["promptopt.a"]) == {"promptopt", "promptopt.b"}
