"""Modules small enough to own: every pipeline module at most 400 lines, every class at most 150, no import cycle."""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 150
MODULES = sorted(p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py"))

Graph = dict[str, set[str]]


def module_file(dotted: str) -> str | None:
    """The repo path of a `pipeline.*` module (a package's `__init__.py`), or None when there is none."""
    parts = dotted.split(".")
    if parts[0] != "pipeline":
        return None
    base = ROOT.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path.relative_to(ROOT).as_posix()
    return None


def imports(module: str) -> set[str]:
    """The pipeline modules a module imports anywhere in its body, also inside functions (those are cycles too)."""
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
    package = module.removesuffix(".py").split("/")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                base = ".".join([*package[: len(package) - node.level + 1], *filter(None, [node.module])])
            for alias in node.names:  # `from pipeline.pkg import module` imports a module, else a name
                if target := module_file(f"{base}.{alias.name}") or module_file(base):
                    found.add(target)
        elif isinstance(node, ast.Import):
            found |= {t for a in node.names if (t := module_file(a.name))}
    return found - {module}


def import_graph() -> Graph:
    """Every pipeline module and the pipeline modules it imports."""
    return {m: imports(m) for m in MODULES}


def cycle_through(module: str, graph: Graph) -> list[str] | None:
    """A shortest import path from `module` back to itself, or None when it is in no cycle."""
    came_from: dict[str, str] = {}
    todo = deque(sorted(graph.get(module, ())))
    for first in todo:
        came_from[first] = module
    while todo:
        node = todo.popleft()
        if node == module:
            path = [module]
            while (node := came_from[node]) != module:
                path.append(node)
            return [module, *reversed(path[1:]), module]
        for nxt in sorted(graph.get(node, ())):
            if nxt not in came_from:
                came_from[nxt] = node
                todo.append(nxt)
    return None


GRAPH = import_graph()


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b", "x"}, "b": {"c"}, "c": {"a"}, "x": {"x"}}, ["a", "b", "c", "a"]),
        ({"a": {"x"}, "x": {"y"}, "y": {"x"}}, None),  # a cycle below `a` does not pass through it
        ({"a": {"a"}}, ["a", "a"]),
    ],
)
def test_cycle_through_finds_a_path_back_to_the_module(graph: Graph, expected: list[str] | None) -> None:
    assert cycle_through("a", graph) == expected


def test_the_graph_has_imports_inside_functions() -> None:
    assert "pipeline/preannotate.py" in GRAPH["pipeline/merge.py"]  # merge imports preannotate inside a function
    assert "pipeline/common/errors.py" in GRAPH["pipeline/merge.py"]


@pytest.mark.parametrize("module", MODULES)
def test_module_is_in_no_import_cycle(module: str) -> None:
    cycle = cycle_through(module, GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


@pytest.mark.parametrize("module", MODULES)
def test_module_is_small_enough_to_own(module: str) -> None:
    lines = len((ROOT / module).read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module}: {lines} lines, more than {MAX_MODULE_LINES}"


@pytest.mark.parametrize("module", MODULES)
def test_every_class_is_small_enough_to_own(module: str) -> None:
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
    sizes = {node.name: (node.end_lineno or node.lineno) - node.lineno + 1
             for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    big = {name: n for name, n in sizes.items() if n > MAX_CLASS_LINES}
    assert not big, f"{module}: classes over {MAX_CLASS_LINES} lines: {big}"
