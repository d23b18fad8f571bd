"""Annotator identity on a real Label Studio (issue 29 items 3 and 4): a project moved with Label Studio's own
export and import keeps one annotator per person, an edit by another user is the editor's version, and work
pulled from a project is never re-imported into it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from pipeline import merge
from pipeline.common.jsonl import read_jsonl
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.commands import pull_main, push_main
from pipeline.labelstudio.pull import export_snapshot
from pipeline.labelstudio.reimport import reimport

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_env_server")]

ROOT = Path(__file__).resolve().parent.parent
GUIDELINES = ROOT / "resources" / "guidelines.md"
RULES = (ROOT / "resources/entity_patterns.yaml", ROOT / "resources/actors.yaml", ROOT / "resources/stance_cues.yaml")


def join(url: str, invite: str, email: str, password: str) -> str:
    """A user joins through the organisation's invite link and copies their own API token."""
    with requests.Session() as session:
        session.get(f"{url}{invite}", timeout=30).raise_for_status()
        resp = session.post(f"{url}{invite}", timeout=30, allow_redirects=False,
                            data={"email": email, "password": password,
                                  "csrfmiddlewaretoken": session.cookies["csrftoken"]},
                            headers={"Referer": f"{url}{invite}"})
        assert resp.status_code == 302, f"sign-up of {email} failed: {resp.status_code}"
        resp = session.get(f"{url}/api/current-user/token", timeout=30)
        resp.raise_for_status()
        return resp.json()["token"]


def setup(server: Any, tmp: Path, title: str) -> tuple[LabelStudioAPI, Path, Path, dict]:
    """An admin client, params naming the project `title` (and their document) and an .env naming the server."""
    doc = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    doc["labelstudio"]["project_title"] = title
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    env_file = tmp / ".env"
    env_file.write_text(f"LABEL_STUDIO_URL={server.url}\nLABEL_STUDIO_API_KEY={server.token}\n")
    return LabelStudioAPI(server.url, server.token, timeout_s=60, retries=2), params, env_file, doc


def project_of(api: LabelStudioAPI, title: str) -> dict:
    return next(p for p in api.projects(title) if p["title"] == title)


def tasks_of(api: LabelStudioAPI, project_id: int) -> list[dict]:
    return sorted(api.pages("/api/tasks", what="tasks", page_size=100, params={"project": project_id, "fields": "all"}),
                  key=lambda t: t["data"]["article_id"])


def merged(seeds: Path, annotations: Path, params: Path, tmp: Path) -> dict[str, dict]:
    labeled = tmp / "labeled.jsonl"
    merge.main(seeds, annotations, labeled, tmp / "merge_report.json", params, RULES)
    return {r["id"]: r for _, r in read_jsonl(labeled)}


def test_a_project_moved_with_label_studios_own_export_and_import_keeps_its_annotators(
        label_studio_server, seed_preannotated: Path, tmp_path: Path) -> None:
    api, params, env_file, doc = setup(label_studio_server, tmp_path, "Identity: before the move")
    push_main(seed_preannotated, GUIDELINES, params, env_file=env_file)
    source = project_of(api, "Identity: before the move")
    seed = tmp_path / "seed"
    shutil.copytree(ROOT / "annotations", seed)
    assert reimport(api, source["id"], seed, 100).imported == 5  # the seed gold, as annotator-2's (stamped)
    me = api.whoami()["id"]
    tasks = tasks_of(api, source["id"])
    for task in tasks[:2]:  # one user annotates two tasks: Label Studio's import gives them import_ids 1 apart
        api.post(f"/api/tasks/{task['id']}/annotations", {"result": task["predictions"][0]["result"]}, what="annotating")

    export = tmp_path / "export.json"
    export_snapshot(api, source["id"], export, 60)
    moved = api.post("/api/projects", {"title": "Identity: after the move", "label_config": source["label_config"]},
                     what="creating the project")
    api.request("POST", f"/api/projects/{moved['id']}/import", what="Label Studio's own import",
                files={"file": ("export.json", export.read_bytes(), "application/json")})
    anns = [a for t in tasks_of(api, moved["id"]) for a in t["annotations"]]
    assert len(anns) == 7 and all(a["import_id"] for a in anns)  # every annotation carries its old id there
    assert len({a["import_id"] for a in anns if a["completed_by"] == me}) == 2

    doc["labelstudio"]["project_title"] = "Identity: after the move"
    params.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    annotations = tmp_path / "annotations"
    pull_main(annotations, params, env_file=env_file)
    records = merged(seed_preannotated, annotations, params, tmp_path)
    assert {a for r in records.values() for a in r["annotators"]} == {"annotator-2", f"annotator-{me}"}
    mine = [r for r in records.values() if f"annotator-{me}" in r["annotators"]]
    assert sorted(r["id"] for r in mine) == [t["data"]["article_id"] for t in tasks[:2]]
    assert all(r["annotators"] == sorted(["annotator-2", f"annotator-{me}"]) for r in mine)


def test_an_edit_by_another_user_is_theirs_and_a_rerun_reimports_nothing_of_this_project(
        label_studio_server, seed_preannotated: Path, tmp_path: Path) -> None:
    api, params, env_file, _ = setup(label_studio_server, tmp_path, "Identity: edits")
    push_main(seed_preannotated, GUIDELINES, params, env_file=env_file)
    project = project_of(api, "Identity: edits")
    annotations = tmp_path / "annotations"
    shutil.copytree(ROOT / "annotations", annotations)
    assert reimport(api, project["id"], annotations, 100).imported == 5
    me = api.whoami()["id"]
    tasks = tasks_of(api, project["id"])
    api.post(f"/api/tasks/{tasks[1]['id']}/annotations", {"result": tasks[1]["predictions"][0]["result"]},
             what="the admin's own annotation")

    invite = api.get("/api/invite", what="the invite link")["invite_url"]
    editor = LabelStudioAPI(label_studio_server.url, join(label_studio_server.url, invite, "identity-editor@example.org",
                                                          "identity-editor-pw-1"), timeout_s=60, retries=2)
    editor_id = editor.whoami()["id"]
    [seeded] = tasks[0]["annotations"]
    regions = [r for r in seeded["result"] if r["type"] == "labels"]
    linked = {x[k] for x in seeded["result"] if x["type"] == "relation" for k in ("from_id", "to_id")}
    gone = next(r for r in regions if r["id"] not in linked)
    editor.patch(f"/api/annotations/{seeded['id']}", {"result": [r for r in seeded["result"] if r is not gone]},
                 what="the editor's change")  # the update keeps completed_by: the stand-in of annotator-2
    assert api.get(f"/api/annotations/{seeded['id']}", what="annotation")["updated_by"] == editor_id

    pull_main(annotations, params, env_file=env_file)
    record = merged(seed_preannotated, annotations, params, tmp_path)[tasks[0]["data"]["article_id"]]
    assert record["annotators"] == sorted(["annotator-2", f"annotator-{editor_id}"])
    span = (gone["value"]["start"], gone["value"]["end"])
    spans = {v["annotator"]: {(e["start"], e["end"]) for e in v["entities"]} for v in record["annotations"]}
    assert span in spans["annotator-2"] and span not in spans[f"annotator-{editor_id}"]

    users = {u["email"] for u in api.get("/api/users", what="users")}
    again = reimport(api, project["id"], annotations, 100)  # `label-studio` run again after the pull
    # from here: annotator-2's four untouched, the admin's, the editor's; annotator-2's edited one was stamped once
    assert (again.imported, again.from_here, again.already) == (0, 6, 1)
    assert {u["email"] for u in api.get("/api/users", what="users")} == users
    assert f"annotator-{me}@annotators.local" not in users
    assert [len(t["annotations"]) for t in tasks_of(api, project["id"])] == [1, 2, 1, 1, 1]
