"""The package is layered: no import cycle between the modules of ``adasym_jax``.

Every ``import`` and ``from ... import`` counts, at module level or inside a function (a
lazy import only hides a cycle from the interpreter, not from the reader), and so do
``importlib.import_module("adasym_jax....")`` calls and registries of module names such as
``cli.EXTENSIONS`` (a string constant that names a module of the package). A package
``__init__`` is a module of its own. ``adasym_jax/__init__.py`` re-exports the public API, so
edges into it are left out of the graph, and a separate test checks that no submodule imports
the top-level package.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Optional

import pytest

PACKAGE = "adasym_jax"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def module_files(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``root`` (``__init__`` files
    name their package)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package, *parts])] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> Optional[str]:
    """The module of the package that importing ``name`` loads last: the longest dotted prefix
    of ``name`` that is a module (``adasym_jax.sbi.run.x`` -> ``adasym_jax.sbi.run``)."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        candidate = ".".join(parts[:k])
        if candidate in modules:
            return candidate
    return None


def _base_of_relative(module: str, is_package: bool, level: int, name: Optional[str]) -> str:
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]  # a module's package
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([name] if name else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """Intra-package modules that ``module`` imports anywhere in its file -> first line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: dict[str, int] = {}

    def add(target: Optional[str], line: int) -> None:
        if target is not None and target != module:
            found.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(_resolve(alias.name, modules), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _base_of_relative(module, is_package, node.level, node.module)
            else:
                base = node.module or ""
            if not base.split(".")[0] == PACKAGE:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                # `from pkg import submodule` loads the submodule; `from pkg import name` the package
                add(sub if sub in modules else _resolve(base, modules), node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # importlib.import_module("adasym_jax.x") and registries of module names
            if node.value in modules and node.value != PACKAGE:
                add(node.value, getattr(node, "lineno", 0))
    return found


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, dict[str, int]]:
    """module -> {imported module of the package -> line}, edges into the top-level
    ``__init__`` left out."""
    modules = module_files(root, package)
    graph = {}
    for name, path in modules.items():
        edges = imports_of(name, path, modules)
        edges.pop(package, None)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> Optional[list[str]]:
    """One cycle ``[a, b, ..., a]`` of the directed graph, or ``None``."""
    color = {m: 0 for m in graph}  # 0 new, 1 on the stack, 2 done
    stack: list[str] = []

    def visit(m: str) -> Optional[list[str]]:
        color[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if color.get(t, 0) == 1:
                return stack[stack.index(t):] + [t]
            if color.get(t, 0) == 0:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        color[m] = 2
        return None

    for m in sorted(graph):
        if color[m] == 0:
            found = visit(m)
            if found:
                return found
    return None


def _describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    modules = module_files()
    steps = []
    for a, b in zip(cycle, cycle[1:]):
        rel = modules[a].relative_to(ROOT.parent)
        steps.append(f"{a} -> {b} ({rel}:{graph[a][b]})")
    return "import cycle: " + "; ".join(steps)


def test_graph_sees_the_known_edges():
    """The parser resolves absolute, relative, aliased, lazy and registry imports."""
    graph = import_graph()
    assert "adasym_jax.sbi" in graph and "adasym_jax.latent" in graph  # subpackage inits are modules
    assert "adasym_jax.objective" in graph["adasym_jax.train"]  # from adasym_jax import objective as obj
    assert "adasym_jax.sbi.run" in graph["adasym_jax.sbi"]  # a subpackage init re-exports
    assert "adasym_jax.sbi_cli" in graph["adasym_jax.cli"]  # cli.EXTENSIONS, loaded by importlib
    assert "adasym_jax.results" in graph["adasym_jax.plotting"]  # a function-level import
    assert "adasym_jax.jit" in graph["adasym_jax.runner"]


def test_the_cycle_finder_reports_cycles(tmp_path):
    """A package with a lazy cycle a -> b -> a (and a relative import) is caught."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from adasym_jax.a import f\n")
    (pkg / "a.py").write_text("from .sub import b\n\ndef f():\n    pass\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def g():\n    from ..a import f\n    return f\n")
    graph = import_graph(pkg, PACKAGE)
    assert graph["adasym_jax.a"] == {"adasym_jax.sub.b": 1}
    assert graph["adasym_jax.sub.b"] == {"adasym_jax.a": 2}
    assert find_cycle(graph) == ["adasym_jax.a", "adasym_jax.sub.b", "adasym_jax.a"]
    (pkg / "sub" / "b.py").write_text("def g():\n    return 1\n")
    assert find_cycle(import_graph(pkg, PACKAGE)) is None


def test_no_import_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, _describe(cycle, graph)


def test_no_submodule_imports_the_top_level_package():
    """``adasym_jax/__init__`` imports (almost) every module, so a module importing it back
    would close a cycle that the graph above leaves out."""
    modules = module_files()
    offenders = []
    for name, path in modules.items():
        if name == PACKAGE:
            continue
        edges = imports_of(name, path, modules)
        if PACKAGE in edges:
            offenders.append(f"{path.relative_to(ROOT.parent)}:{edges[PACKAGE]}")
    assert not offenders, "imports the top-level adasym_jax package: " + ", ".join(offenders)


@pytest.mark.parametrize("module", ["adasym_jax.jit", "adasym_jax._version"])
def test_leaf_modules_import_nothing_of_the_package(module):
    modules = module_files()
    assert imports_of(module, modules[module], modules) == {}
