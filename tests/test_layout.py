"""Modules small enough to own: every pipeline module at most 400 lines, every class at most 150, no import cycle."""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import pytest

from pipeline.common.provenance import imported_files

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 150
MODULES = sorted(p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py"))

Graph = dict[str, set[str]]


def import_graph() -> Graph:
    """Every pipeline module and the pipeline modules it imports (the CLI entry points import every stage)."""
    return {m: {f"pipeline/{t}" for t in imported_files(m.removeprefix("pipeline/"))} - {m} for m in MODULES}


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
    assert "pipeline/entities/rules.py" in GRAPH["pipeline/merge.py"]  # merge imports the rules inside a function
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


# Floors, lowest first: a module imports only from its own floor or lower ones (farm-studio's rule).
STAGE_MODULES = frozenset(f"pipeline/{s}.py" for s in ("ingest", "train", "preannotate", "merge", "evaluate", "publish"))
PARTS = ("cleaning", "entities", "stance", "quality", "human", "dataset", "gold", "labelstudio")
TOOLS = ("bench", "research")


def floor(module: str) -> int:
    """0 plumbing, 1 parts, 2 stages, 3 tools (benchmarks, research), 4 the CLI."""
    parts = module.split("/")
    if parts[1] == "common":
        return 0
    if parts[1] in PARTS:
        return 1
    if module in STAGE_MODULES:
        return 2
    if parts[1] in TOOLS:
        return 3
    assert module in {"pipeline/cli.py", "pipeline/cli_options.py", "pipeline/cli_research.py", "pipeline/__main__.py",
                      "pipeline/__init__.py"} or module.endswith(
        "__init__.py"), f"{module}: on no floor; add its folder to PARTS or TOOLS"
    return 4


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_no_higher_floor(module: str) -> None:
    up = sorted(t for t in GRAPH[module] if floor(t) > floor(module))
    assert not up, f"{module} (floor {floor(module)}) imports a higher floor: {up}"


@pytest.mark.parametrize("module", sorted(STAGE_MODULES))
def test_no_stage_imports_another_stage(module: str) -> None:
    """What two stages share lives in a part, so a change to one stage reruns only what it affects."""
    others = sorted(GRAPH[module] & (STAGE_MODULES - {module}))
    assert not others, f"{module} imports stage modules {others}; move what they share into a part"


def test_floor_rule_catches_an_upward_import() -> None:
    assert floor("pipeline/human/resolve.py") < floor("pipeline/merge.py") < floor("pipeline/research/seesaw.py")
    assert floor("pipeline/cli.py") == 4
