"""End-to-end: a fresh clone of the committed repository rebuilds every output byte for byte, and a param change reruns only what depends on it.

This is the project's one test of the whole DAG. It clones the committed HEAD (never the working
tree), so it checks what a newcomer gets from `git clone` + `dvc repro`, not the developer's files.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DVC = BIN / "dvc"
REPRO_TIMEOUT = 40 * 60

RAN = re.compile(r"^Running stage '([^']+)'", re.MULTILINE)
SKIPPED = re.compile(r"^Stage '([^']+)' (?:didn't change, skipping|is cached - skipping)", re.MULTILINE)
EDGE = re.compile(r'^"([^"]+)" -> "([^"]+)";$', re.MULTILINE)


def _run(cmd: list[str | Path], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    """Run a command, failing the test with its output if it exits non-zero; return stdout + stderr."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"`{' '.join(map(str, cmd))}` exited {proc.returncode} in {cwd}:\n{output[-6000:]}")
    return output


def _outs(lock: dict[str, Any]) -> dict[str, str]:
    """Map every output path in a dvc.lock to its recorded hash."""
    return {
        out["path"]: out.get("md5") or out.get("hash", "")
        for stage in lock.get("stages", {}).values()
        for out in stage.get("outs", [])
    }


def _downstream(dot: str, start: str) -> set[str]:
    """Stages that depend, directly or not, on `start`, from `dvc dag --dot` (edges point downstream)."""
    children: dict[str, set[str]] = {}
    for upstream, downstream in EDGE.findall(dot):
        children.setdefault(upstream, set()).add(downstream)
    seen: set[str] = set()
    todo = [start]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def _change_a_stance_param(params_path: Path) -> str:
    """Edit one stance param of preannotate so that the stance proposals change; return its dotted key."""
    params = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    section = params.get("preannotate") or {}
    numeric = [k for k, v in sorted(section.items()) if "stance" in k and isinstance(v, float) and 0 < v < 1]
    if section.get("stance_model") is False:  # the rules alone: the learned model's proposals replace theirs
        key = "stance_model"
        section[key] = True
    elif numeric:  # a stance score threshold (read with the model on): raising it near 1 drops (almost) every proposal
        key = numeric[0]
        section[key] = 0.999
    elif isinstance(section.get("stance_ends"), list) and len(section["stance_ends"]) > 1:
        key = "stance_ends"  # stances only between entities of the first label: most proposals go
        section[key] = section[key][:1]
    else:
        pytest.fail(f"{params_path}: no stance param in the preannotate section to change: {sorted(section)}")
    params_path.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return f"preannotate.{key}"


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh clone of the committed HEAD and an environment that runs the project venv's tools offline."""
    if subprocess.run(["git", "-C", ROOT, "cat-file", "-e", "HEAD:dvc.lock"], capture_output=True, check=False).returncode != 0:
        pytest.fail(
            "dvc.lock is not committed: a byte-identical rebuild needs the committed hashes. "
            "Run `dvc repro` and commit dvc.lock together with metrics/ and plots/."
        )
    base = tmp_path_factory.mktemp("repro")
    target = base / "clone"
    env = {k: v for k, v in os.environ.items() if k not in {"PIPELINE_CODE_REVISION", "VIRTUAL_ENV"}}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        HF_HOME=str(base / "hf-home"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
    )
    _run(["git", "clone", "--quiet", "--no-hardlinks", ROOT, target], cwd=base, env=env)
    return target, env


def test_fresh_clone_rebuilds_committed_outputs_byte_for_byte(clone: tuple[Path, dict[str, str]]) -> None:
    target, env = clone
    committed = yaml.safe_load((target / "dvc.lock").read_text(encoding="utf-8"))
    _run([DVC, "repro"], cwd=target, env=env, timeout=REPRO_TIMEOUT)

    rebuilt = yaml.safe_load((target / "dvc.lock").read_text(encoding="utf-8"))
    before, after = _outs(committed), _outs(rebuilt)
    differing = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert not differing, f"outputs differ from the committed dvc.lock: {differing}"
    # Every stage of dvc.yaml is in the committed lock, with the same deps, params and outs.
    assert rebuilt == committed, "dvc.lock changed on rebuild: " + _run(["git", "diff", "HEAD", "--", "dvc.lock"], target, env)
    # Git-tracked outputs (metrics/, plots/) and the rest of the tree are unchanged too.
    status = _run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=target, env=env)
    assert status.strip() == "", f"the rebuild changed tracked or created untracked files:\n{status}"
    assert "up to date" in _run([DVC, "status"], cwd=target, env=env)


def test_stance_param_change_reruns_only_downstream_stages(clone: tuple[Path, dict[str, str]]) -> None:
    target, env = clone
    # Runs after the rebuild test in the same clone; repro again first in case it runs alone (-k).
    _run([DVC, "repro"], cwd=target, env=env, timeout=REPRO_TIMEOUT)
    before = _outs(yaml.safe_load((target / "dvc.lock").read_text(encoding="utf-8")))

    key = _change_a_stance_param(target / "params.yaml")
    log = _run([DVC, "repro"], cwd=target, env=env, timeout=REPRO_TIMEOUT)
    ran, skipped = set(RAN.findall(log)), set(SKIPPED.findall(log))
    expected = {"preannotate"} | _downstream(_run([DVC, "dag", "--dot"], cwd=target, env=env), "preannotate")
    stages = set(yaml.safe_load((target / "dvc.yaml").read_text(encoding="utf-8"))["stages"])

    assert "ingest" in skipped, f"ingest reran after changing {key}:\n{log}"
    assert ran == expected, f"after changing {key}, ran {sorted(ran)}; expected {sorted(expected)}:\n{log}"
    assert skipped == stages - expected, f"skipped {sorted(skipped)}; expected {sorted(stages - expected)}:\n{log}"
    after = _outs(yaml.safe_load((target / "dvc.lock").read_text(encoding="utf-8")))
    assert after["data/preannotated"] != before["data/preannotated"], f"changing {key} changed nothing"
    assert "up to date" in _run([DVC, "status"], cwd=target, env=env)
