"""A task whose text an annotator edited inside a real Label Studio: pull flags it stale, merge keeps it out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline import merge
from pipeline.common.jsonl import read_jsonl
from pipeline.common.provenance import file_digest
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.commands import pull_main, push_main

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_env_server")]

ROOT = Path(__file__).resolve().parent.parent
GUIDELINES = ROOT / "resources" / "guidelines.md"
RULES = (ROOT / "resources/entity_patterns.yaml", ROOT / "resources/actors.yaml", ROOT / "resources/stance_cues.yaml")



def test_a_text_edited_in_label_studio_is_flagged_by_pull_and_kept_out_by_merge(
    label_studio_server, seed_preannotated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params_doc = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params_doc["labelstudio"]["project_title"] = "Edited text"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(params_doc, sort_keys=False), encoding="utf-8")
    env_file = tmp_path / ".env"
    env_file.write_text(f"LABEL_STUDIO_URL={label_studio_server.url}\nLABEL_STUDIO_API_KEY={label_studio_server.token}\n")
    api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=30, retries=2)

    assert push_main(seed_preannotated, GUIDELINES, params, env_file=env_file).created == 5
    project = next(p for p in api.pages("/api/projects", what="projects", page_size=100)
                   if p["title"] == "Edited text")
    tasks = sorted(api.pages("/api/tasks", what="tasks", page_size=100, params={"project": project["id"], "fields": "all"}),
                   key=lambda t: t["id"])
    edited, kept = tasks[0], tasks[1]
    for task in (edited, kept):  # both accepted as predicted by an annotator
        api.post(f"/api/tasks/{task['id']}/annotations", {"result": task["predictions"][0]["result"], "lead_time": 5.0},
                 what="annotating")
    # The annotator then edits the text in Label Studio's data manager; text_hash stays as push wrote it.
    new_text = edited["data"]["text"].replace(" ", "  ", 1)
    api.patch(f"/api/tasks/{edited['id']}", {"data": {**edited["data"], "text": new_text}}, what="editing the text")
    assert api.get(f"/api/tasks/{edited['id']}", what="task")["data"]["text"] == new_text

    annotations = tmp_path / "annotations"
    articles = seed_preannotated.parent / "articles.jsonl"
    pulled = pull_main(annotations, params, articles=articles, report_path=tmp_path / "pull.json", env_file=env_file)
    assert [(s["task"], s["article_id"], s["reason"]) for s in pulled.stale] == [
        (edited["id"], edited["data"]["article_id"], "text_hash does not match the task's text")]
    assert json.loads((tmp_path / "pull.json").read_text(encoding="utf-8"))["stale"] == pulled.stale
    [snapshot] = annotations.glob("*.jsonl")
    before = file_digest(snapshot)
    capsys.readouterr()

    labeled, report = tmp_path / "labeled.jsonl", tmp_path / "merge_report.json"
    merge.main(seed_preannotated, annotations, labeled, report, params, RULES)
    err = capsys.readouterr().err
    by_id = {r["id"]: r for _, r in read_jsonl(labeled)}
    out = by_id[edited["data"]["article_id"]]
    original = {r["id"]: r["text"] for _, r in read_jsonl(seed_preannotated)}
    assert out["status"] == "silver" and out["annotations"] == [] and out["text"] == original[out["id"]] != new_text
    assert by_id[kept["data"]["article_id"]]["status"] == "gold"
    stale = json.loads(report.read_text(encoding="utf-8"))["stale"]
    assert [(s["article_id"], s["reason"]) for s in stale] == [
        (edited["data"]["article_id"], "the task's text differs from the article's current text")]
    assert f"article {edited['data']['article_id']}: the task's text differs" in err and "kept out of the dataset" in err
    assert file_digest(snapshot) == before
