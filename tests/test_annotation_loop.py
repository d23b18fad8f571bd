"""The annotation loop as a new user lives it, end to end: a fresh clone, a real Label Studio, two snapshots, dvc repro.

The committed seed gold came from one (throwaway) server; the test server never had it. A correction made
there and pulled must not turn the seed gold into silver (merge reads every snapshot), and re-importing the
earlier human work lets an annotator build on it: their edit of a seed annotation is their own version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.common.jsonl import read_jsonl
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.params import load_config
from pipeline.labelstudio.pull import pull
from pipeline.labelstudio.push import push
from pipeline.labelstudio.reimport import reimport
from pipeline.labelstudio.tasks import read_tasks

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(cmd: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _labeled(clone: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for _, r in read_jsonl(clone / "data" / "labeled.jsonl")}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh clone of the committed HEAD, rebuilt with dvc repro (offline)."""
    base = tmp_path_factory.mktemp("loop")
    env = {k: v for k, v in os.environ.items() if k not in {"PIPELINE_CODE_REVISION", "VIRTUAL_ENV"}}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", DVC_NO_ANALYTICS="1", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", HF_HOME=str(base / "hf-home"))
    target = base / "clone"
    _run(["git", "clone", "--quiet", "--no-hardlinks", ROOT, target], cwd=base, env=env)
    _run([BIN / "dvc", "repro", "--quiet"], cwd=target, env=env)
    return target, env


def test_two_snapshots_from_two_servers_keep_every_gold_article_and_the_correction(
        clone: tuple[Path, dict[str, str]], label_studio_server, tmp_path: Path) -> None:
    target, env = clone
    seed_gold = {k for k, r in _labeled(target).items() if r["status"] == "gold"}
    assert len(seed_gold) == 5
    params = yaml.safe_load((target / "params.yaml").read_text())
    params["labelstudio"]["project_title"] = "Annotation loop"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cfg = load_config(tmp_path / "params.yaml")
    preannotated = target / "data" / "preannotated"  # the shard folder dvc repro wrote
    api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=60)
    project, _ = push(api, list(read_tasks(preannotated, cfg)), cfg, "guidelines",
                      progress=False)
    tasks = list(api.pages("/api/tasks", what="tasks", page_size=100,
                           params={"project": project["id"], "fields": "all"}))
    assert len(tasks) == 5

    # 1. on this server (which never had the seed gold) one annotator corrects one task: the prediction minus a span
    first = min(tasks, key=lambda t: t["data"]["article_id"])
    pred = first["predictions"][0]["result"]
    dropped = next(r for r in pred if r["type"] == "labels" and not any(
        x.get("from_id") == r["id"] or x.get("to_id") == r["id"] for x in pred if x["type"] == "relation"))
    api.post(f"/api/tasks/{first['id']}/annotations",
             {"result": [r for r in pred if r is not dropped], "lead_time": 12.5}, what="a correction")
    pull(api, cfg, target / "annotations", preannotated)
    _run([BIN / "dvc", "repro", "--quiet"], cwd=target, env=env)
    labeled = _labeled(target)
    assert {k for k, r in labeled.items() if r["status"] == "gold"} == seed_gold  # nothing lost: 5 stay gold
    corrected = labeled[first["data"]["article_id"]]
    versions = corrected["annotations"]
    assert any((dropped["value"]["start"], dropped["value"]["end"]) not in {(e["start"], e["end"]) for e in v["entities"]}
               for v in versions)  # the correction is in the dataset
    summary = json.loads((target / "metrics" / "summary.json").read_text())
    assert summary["gold_articles"] == 5
    report = json.loads((target / "data" / "merge_report.json").read_text())
    assert len(report["snapshots"]) == 2
    assert {Path(p).name for s in report["gold_sources"].values() for p in s.values()} == {
        Path(s["path"]).name for s in report["snapshots"]}

    # 2. the earlier human work imported as its annotators' (twice: nothing doubles), then built on
    once = reimport(api, project["id"], target / "annotations", cfg.ls.page_size)
    again = reimport(api, project["id"], target / "annotations", cfg.ls.page_size)
    assert once.imported >= 5 and again.imported == 0 and again.already == once.imported + once.already
    other = max(tasks, key=lambda t: t["data"]["article_id"])
    [mark] = api.get(f"/api/tasks/{other['id']}", what="task")["meta"]["pipeline_annotators"]
    assert mark["annotator"] == "annotator-2"  # the seed gold annotator, stamped by the re-import
    imported = api.get(f"/api/annotations/{mark['annotation']}", what="the imported annotation")
    regions = [r for r in imported["result"] if r["type"] == "labels"]
    linked = {x[k] for x in imported["result"] if x["type"] == "relation" for k in ("from_id", "to_id")}
    gone = next(r for r in regions if r["id"] not in linked)
    api.patch(f"/api/annotations/{imported['id']}", {"result": [r for r in imported["result"] if r is not gone]},
              what="editing the imported annotation")
    pull(api, cfg, target / "annotations", preannotated)
    _run([BIN / "dvc", "repro", "--quiet"], cwd=target, env=env)
    labeled = _labeled(target)
    assert {k for k, r in labeled.items() if r["status"] == "gold"} == seed_gold
    edited = labeled[other["data"]["article_id"]]
    editor = f"annotator-{api.whoami()['id']}"  # who pressed Update: their version, not annotator-2's
    assert edited["annotators"] == sorted(["annotator-2", editor])
    span = (gone["value"]["start"], gone["value"]["end"])
    spans = {v["annotator"]: {(e["start"], e["end"]) for e in v["entities"]} for v in edited["annotations"]}
    assert span not in spans[editor] and span in spans["annotator-2"]
    report = json.loads((target / "data" / "merge_report.json").read_text())
    newest = max(Path(s["path"]).name for s in report["snapshots"])
    assert Path(report["gold_sources"][other["data"]["article_id"]][editor]).name == newest
