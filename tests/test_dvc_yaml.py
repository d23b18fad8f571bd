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
ENTRY = {"pipeline/cli.py", "pipeline/__main__.py", "pipeline/__init__.py"}


def module_file(dotted: str) -> Path | None:
    """The file of a `pipeline.*` module (a package's `__init__.py`), or None when there is none."""
    parts = dotted.split(".")
    if parts[0] != "pipeline":
        return None
    base = ROOT.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def pipeline_imports(path: Path) -> set[str]:
    """The `pipeline` files a module imports anywhere in its body (also inside functions), as repo paths."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pipeline":
            for alias in node.names:  # `from pipeline.pkg import module` imports a module, else a name
                target = module_file(f"{node.module}.{alias.name}") or module_file(node.module)
                if target:
                    found.add(_rel(target))
        elif isinstance(node, ast.Import):
            found |= {_rel(t) for a in node.names if (t := module_file(a.name))}
    return found - ENTRY


def closure(stage_module: str) -> set[str]:
    """The stage's module and every pipeline file it imports, transitively (package `__init__`s are docstrings)."""
    seen: set[str] = set()
    todo = [f"pipeline/{stage_module}.py"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += sorted(pipeline_imports(ROOT / name))
    return {n for n in seen if not n.endswith("/__init__.py")}


def test_closure_follows_imports_inside_functions() -> None:
    assert "pipeline/dataset/card.py" in closure("publish")  # publish imports card inside build()
    assert {"pipeline/stance/finder.py", "pipeline/common/jsonl.py"} <= closure("merge")  # through preannotate


def test_subpackage_inits_hold_only_a_docstring() -> None:
    """Importing a subpackage runs nothing, so leaving `__init__.py` out of the deps loses no rerun."""
    inits = sorted(PACKAGE.glob("*/**/__init__.py"))
    assert inits, "no subpackages found"
    for init in inits:
        body = ast.parse(init.read_text(encoding="utf-8")).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), init


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_lists_the_modules_it_runs(stage: str) -> None:
    """A change to any module a stage runs reruns that stage, and no unrelated module does."""
    deps = {d for d in STAGES[stage]["deps"] if d.startswith("pipeline/")}
    assert deps == closure(stage), f"dvc.yaml stages.{stage}.deps: missing {closure(stage) - deps}, extra {deps - closure(stage)}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_command_runs_its_own_module(stage: str) -> None:
    """One stage, one module: `python -m pipeline <stage>` with the params section of the same name."""
    assert STAGES[stage]["cmd"].split()[:4] == ["python", "-m", "pipeline", stage]
    assert (PACKAGE / f"{stage}.py").is_file()
    assert all(str(p).split(".")[0] in (stage, "preannotate") for p in STAGES[stage].get("params", []))


if __name__ == "__main__":  # print each stage's code deps, to paste into dvc.yaml
    for name in STAGES:
        print(name, *sorted(closure(name)), sep="\n  - ")
