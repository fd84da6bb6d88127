"""The package layout: every module under ``pipelines/`` imports, and no two import each other.

Why: import circles are what kept the model wrapper and the model spec in one tangle; a circle
works only while the import order happens to suit it. The scan reads module-level imports with
``ast`` (including ones under ``if``/``try`` at module level, and ``if TYPE_CHECKING:`` blocks,
which mypy resolves). Imports inside function and method bodies are left out on purpose: they
run when called, after every module has loaded, and are how a module defers a heavy or optional
dependency (MLflow in the model package, Ray Serve in the serving package).

An import of ``a.b.c`` depends on ``a.b.c`` and on the packages ``a.b`` and ``a`` whose
``__init__`` runs first, except the packages that enclose the importing module itself (they are
already being imported when it runs): a package ``__init__`` re-exports its submodules, and its
submodules import each other by full module path, never through their own package.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import pipelines

ROOT = Path(pipelines.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = ["pipelines", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _module_level_imports(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """Module names imported by statements outside function bodies."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        todo.extend(ast.iter_child_nodes(node))
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        imported = _module_level_imports(ast.parse(path.read_text()), name,
                                         path.name == "__init__.py")
        enclosing = {name.rsplit(".", i)[0] for i in range(name.count(".") + 1)}
        edges: set[str] = set()
        for target in imported:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                dep = ".".join(parts[:i])
                if dep in MODULES and dep not in enclosing:
                    edges.add(dep)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("module", sorted(set(MODULES) - {"pipelines.__main__"}))  # runs the CLI
def test_every_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_no_import_cycles_between_modules() -> None:
    assert _cycles(_graph()) == []


def test_the_scan_sees_a_cycle() -> None:
    # The check above is only worth something if it can fail.
    graph = _graph()
    graph["pipelines.cache"] = {*graph["pipelines.cache"], "pipelines.runner"}
    assert any("pipelines.cache" in c and "pipelines.runner" in c for c in _cycles(graph))
