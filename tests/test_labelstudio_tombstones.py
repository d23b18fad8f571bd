"""A deletion in Label Studio reaches the dataset: pull, delete an annotation on the real server, pull, merge."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.common.errors import BadRecords
from pipeline.common.jsonl import read_jsonl
from pipeline.human.origin import meta_path, read_origin, server_digest
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.params import load_config
from pipeline.labelstudio.pull import pull
from pipeline.labelstudio.push import push
from pipeline.labelstudio.tasks import build_tasks

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_env_server")]

ROOT = Path(__file__).resolve().parent.parent


def test_an_annotation_deleted_in_label_studio_leaves_the_dataset(label_studio_server, seed_preannotated,
                                                                  tmp_path: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["labelstudio"]["project_title"] = "Deletions"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cfg = load_config(tmp_path / "params.yaml")
    api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=30, retries=2)
    tasks = build_tasks(read_jsonl(seed_preannotated), cfg, seed_preannotated, BadRecords("push", 0.0, quiet=True))
    project, _ = push(api, tasks, cfg, "guidelines", progress=False)
    stored = sorted(api.pages("/api/tasks", what="tasks", page_size=100,
                              params={"project": project["id"], "fields": "all"}), key=lambda t: t["id"])
    kept, doomed = (api.post(f"/api/tasks/{t['id']}/annotations", {"result": t["predictions"][0]["result"]},
                             what="annotating") for t in stored[:2])
    out = tmp_path / "annotations"
    first = Path(pull(api, cfg, out).snapshot)
    origin = read_origin(first)
    assert origin is not None and origin.project_id == project["id"] and origin.project_title == "Deletions"
    assert origin.server == server_digest(label_studio_server.url)
    assert label_studio_server.url.split("//")[1] not in meta_path(first).read_text()  # the address stays private

    api.delete(f"/api/annotations/{doomed['id']}", what="deleting an annotation")
    time.sleep(1.1)  # snapshot names have one-second resolution
    second = Path(pull(api, cfg, out).snapshot)
    assert second != first and read_origin(second) == origin

    cmd = [sys.executable, "-m", "pipeline", "merge", "--preannotated", seed_preannotated, "--annotations", out,
           "--output", tmp_path / "labeled.jsonl", "--report", tmp_path / "merge_report.json",
           "--patterns", ROOT / "resources/entity_patterns.yaml", "--actors", ROOT / "resources/actors.yaml",
           "--lexicon", ROOT / "resources/stance_cues.yaml", "--params", tmp_path / "params.yaml"]
    run = subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    doomed_article, kept_article = stored[1]["data"]["article_id"], stored[0]["data"]["article_id"]
    assert f"deleted in Label Studio: annotation {doomed['id']} by annotator-" in run.stderr
    assert f"of article {doomed_article} (in {first}, not in the later {second}); dropped" in run.stderr
    report = json.loads((tmp_path / "merge_report.json").read_text())
    assert [(d["annotation_id"], d["article_id"]) for d in report["deleted"]] == [(doomed["id"], doomed_article)]
    labeled = {r["id"]: r for _, r in read_jsonl(tmp_path / "labeled.jsonl")}
    assert labeled[doomed_article]["status"] == "silver"
    assert labeled[kept_article]["status"] == "gold"
    assert [v["annotation_id"] for v in labeled[kept_article]["annotations"]] == [kept["id"]]
