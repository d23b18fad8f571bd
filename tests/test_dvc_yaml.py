"""dvc.yaml is the source of truth for reruns: every stage lists the modules it runs and the params it reads."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest
import yaml

from pipeline.common.provenance import code_files

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def closure(stage_module: str) -> set[str]:
    """The stage's module and every pipeline file it imports, transitively, as repository paths."""
    return {f"pipeline/{name}" for name in code_files(f"{stage_module}.py")}


def test_closure_follows_imports_inside_functions() -> None:
    assert "pipeline/entities/rules.py" in closure("merge")  # merge imports the rule loader inside a function
    assert "pipeline/dataset/card.py" in closure("publish")
    assert {"pipeline/stance/lexicon.py", "pipeline/common/jsonl.py"} <= closure("merge")  # through entities/rules


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
    deps = {d for d in STAGES[stage]["deps"] if d.startswith("pipeline/") and d.endswith(".py")}
    assert deps == closure(stage), f"dvc.yaml stages.{stage}.deps: missing {closure(stage) - deps}, extra {deps - closure(stage)}"


def test_the_publish_stage_lists_the_card_template() -> None:
    """Editing the card's text reruns publish: the templates are deps like the modules that read them."""
    templates = {p.relative_to(ROOT).as_posix() for p in PACKAGE.glob("**/templates/*") if p.is_file()}
    assert templates, "no templates found"
    assert templates <= set(STAGES["publish"]["deps"]), templates - set(STAGES["publish"]["deps"])


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_command_runs_its_own_module(stage: str) -> None:
    """One stage, one module: `python -m pipeline <stage>` with the params section of the same name."""
    assert STAGES[stage]["cmd"].split()[:4] == ["python", "-m", "pipeline", stage]
    assert (PACKAGE / f"{stage}.py").is_file()
    # train learns from the train split only, so it reads merge's split params (the split function is merge's)
    shared = ("preannotate", "merge") if stage == "train" else ("preannotate",)
    assert all(str(p).split(".")[0] in (stage, *shared) for p in STAGES[stage].get("params", []))


def test_committed_lock_matches_every_file_dependency() -> None:
    """A code or input change without a fresh `dvc repro` leaves dvc.lock stale; catch it here, not in the slow DAG test."""
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    stale = sorted(
        f"{stage}: {dep['path']}"
        for stage, entry in lock.items()
        for dep in entry.get("deps", [])
        if not str(dep.get("md5", "")).endswith(".dir") and (ROOT / dep["path"]).is_file()
        and hashlib.md5((ROOT / dep["path"]).read_bytes()).hexdigest() != dep.get("md5")
    )
    assert not stale, f"dvc.lock is stale (run `dvc repro` and commit it): {stale}"


if __name__ == "__main__":  # print each stage's code deps, to paste into dvc.yaml
    for name in STAGES:
        print(name, *sorted(closure(name)), sep="\n  - ")
