"""dvc.yaml is the source of truth for reruns: every stage lists the modules it runs and the params it reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
# The CLI only parses options and calls the stage's `main`; changing its help text must not rerun the DAG.
ENTRY = {"cli", "__main__", "__init__"}


def pipeline_imports(module: str) -> set[str]:
    """The `pipeline.*` modules `module` imports anywhere in its body (also inside functions)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "pipeline":
            found |= {alias.name for alias in node.names if (PACKAGE / f"{alias.name}.py").is_file()}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("pipeline.")}
    return found - ENTRY


def closure(module: str) -> set[str]:
    """`module` and every pipeline module it imports, transitively."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += sorted(pipeline_imports(name))
    return seen


def test_closure_follows_imports_inside_functions() -> None:
    assert "card" in closure("publish")  # publish imports card inside build()
    assert {"stance", "jsonl"} <= closure("merge")  # through preannotate


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_lists_the_modules_it_runs(stage: str) -> None:
    """A change to any module a stage runs reruns that stage, and no unrelated module does."""
    deps = {d.removeprefix("pipeline/").removesuffix(".py") for d in STAGES[stage]["deps"] if d.startswith("pipeline/")}
    assert deps == closure(stage), f"dvc.yaml stages.{stage}.deps"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_command_runs_its_own_module(stage: str) -> None:
    """One stage, one module: `python -m pipeline <stage>` with the params section of the same name."""
    assert STAGES[stage]["cmd"].split()[:4] == ["python", "-m", "pipeline", stage]
    assert (PACKAGE / f"{stage}.py").is_file()
    assert all(str(p).split(".")[0] in (stage, "preannotate") for p in STAGES[stage].get("params", []))
