"""The package's import graph has no cycles, counting imports inside functions too: a cycle held
apart only by a late import breaks as soon as someone moves the import to the top. And its two sides
stay apart (issue #22): the report side (`analysis`, `reports`) reads what a results file records and
imports neither `methods` nor `engines`, so a file renders where they are not installed; the measuring side
(sweep, race, settle, measure, engines) decides from `estimates` and imports neither `analysis` nor `reports`.
Imports under `if TYPE_CHECKING:` never run and are not counted."""

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mlxdraft"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str], module_level: bool = False) -> set[str]:
    """mlxdraft modules that `path` imports anywhere in its body (`module_level`: outside functions only)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            node.body = []  # never run
        if module_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names} & modules  # `from . import x`
            found.update(submodules)
            if len(submodules) < len(node.names):  # names defined in `target` itself
                found.add(target)
    return {m for m in found if m in modules and m != name}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_is_acyclic():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_relative_imports_name_modules_of_the_package():
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    unresolved = []
    for path in paths:
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                if target not in modules:
                    unresolved.append(f"{name}: {target}")
    assert unresolved == []


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def reachable(graph: dict[str, set[str]], start: str, packages: dict[str, set[str]] | None = None) -> set[str]:
    """Every module that importing `start` may run: its imports (inside its functions too), theirs, ..., and each
    one's parent packages (importing a.b.c runs a/__init__ and a/b/__init__ first), of which only the imports
    at module level (`packages`: package -> those; default: all of its imports) run by being a parent."""
    packages = graph if packages is None else packages
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for parent in (".".join(parts[:i]) for i in range(1, len(parts))):
            for name in packages.get(parent, ()):
                if name not in seen:
                    seen.add(name)
                    todo.append(name)
        for name in graph.get(module, ()):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen - {start}


def package_imports() -> dict[str, set[str]]:
    """Each package's module-level imports: what importing a module inside it runs first."""
    paths = sorted(PACKAGE.rglob("__init__.py"))
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {module_name(p): imports_of(p, modules, module_level=True) for p in paths}


def _within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


REPORT_SIDE = ["mlxdraft.analysis", "mlxdraft.crossengine"]  # with every mlxdraft.reports module, found below
MEASURING_SIDE = ["mlxdraft.sweep", "mlxdraft.race", "mlxdraft.settle", "mlxdraft.measure", "mlxdraft.estimates",
                  "mlxdraft.recording"]  # with every mlxdraft.engines module


def test_the_report_side_imports_neither_methods_nor_engines():
    graph = import_graph()
    report_side = REPORT_SIDE + sorted(m for m in graph if _within(m, "mlxdraft.reports"))
    assert len(report_side) > 3
    packages = package_imports()
    wrong = {module: sorted(m for m in reachable(graph, module, packages)
                            if _within(m, "mlxdraft.methods", "mlxdraft.engines")) for module in report_side}
    assert {module: found for module, found in wrong.items() if found} == {}


def test_the_measuring_side_imports_neither_analysis_nor_reports():
    graph = import_graph()
    measuring = MEASURING_SIDE + sorted(m for m in graph if _within(m, "mlxdraft.engines"))
    assert all(module in graph for module in measuring) and len(measuring) > 8
    packages = package_imports()
    wrong = {module: sorted(m for m in reachable(graph, module, packages)
                            if _within(m, "mlxdraft.analysis", "mlxdraft.reports")) for module in measuring}
    assert {module: found for module, found in wrong.items() if found} == {}


def test_the_layering_test_sees_imports_inside_functions_and_packages_but_not_type_checking():
    graph = {"a": {"b.c"}, "b": {"d", "e"}, "b.c": set(), "d": set(), "e": set()}
    assert reachable(graph, "a") == {"b.c", "d", "e"}
    assert reachable(graph, "a", {"b": {"d"}}) == {"b.c", "d"}  # b's import of e is inside a function
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .methods import Method\n"
              "def f():\n    from .engines import get_engine\n")
    path = PACKAGE / "_layering_probe.py"
    try:
        path.write_text(source, encoding="utf-8")
        found = imports_of(path, {"mlxdraft.methods", "mlxdraft.engines"})
        at_module_level = imports_of(path, {"mlxdraft.methods", "mlxdraft.engines"}, module_level=True)
    finally:
        path.unlink()
    assert found == {"mlxdraft.engines"} and at_module_level == set()


def _loaded_after(imports: str) -> set[str]:
    """The modules loaded in a fresh interpreter after `imports`."""
    code = f"import sys\n{imports}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)}, timeout=120)
    return set(out.stdout.split())


def test_in_a_fresh_process_the_sides_load_apart():
    reports = _loaded_after("import mlxdraft.analysis, mlxdraft.crossengine, mlxdraft.reports")
    assert "mlxdraft.reports.html" in reports
    assert sorted(m for m in reports if _within(m, "mlxdraft.methods", "mlxdraft.engines", "mlx", "mlx_lm")) == []
    measuring = _loaded_after("import mlxdraft.sweep, mlxdraft.race, mlxdraft.settle, mlxdraft.engines")
    assert "mlxdraft.estimates" in measuring
    assert sorted(m for m in measuring if _within(m, "mlxdraft.analysis", "mlxdraft.reports")) == []
