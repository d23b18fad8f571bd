"""Two annotators per task on Label Studio CE, against a real server: the overlap set from params, both annotators
served the same task by the next-task endpoint, both versions through pull and merge, agreement figures out.

The tests of this module run in order and share one project.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from pipeline.common.jsonl import read_jsonl
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.commands import pull_main, push_main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
STATE: dict = {}


def join(url: str, invite: str, email: str, password: str) -> str:
    """An annotator joins through the organisation's invite link and copies their own API token."""
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


@pytest.fixture(scope="module")
def params(tmp_path_factory) -> Path:
    """The team's params.yaml with two annotators per task and a project of this module's own."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["labelstudio"].update(project_title="Two annotators per task", annotations_per_task=2)
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def env_file(tmp_path_factory, label_studio_server) -> Path:
    path = tmp_path_factory.mktemp("env") / ".env"
    path.write_text(f"LABEL_STUDIO_URL={label_studio_server.url}\nLABEL_STUDIO_API_KEY={label_studio_server.token}\n")
    return path


@pytest.fixture(scope="module")
def admin(label_studio_server) -> LabelStudioAPI:
    return LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=30, retries=2)


@pytest.fixture(scope="module")
def second(admin, label_studio_server) -> LabelStudioAPI:
    """A second annotator of the organisation, with their own token."""
    invite = admin.get("/api/invite", what="the invite link")["invite_url"]
    token = join(label_studio_server.url, invite, "overlap-annotator@example.org", "second-annotator-pw-1")
    return LabelStudioAPI(label_studio_server.url, token, timeout_s=30, retries=2)


@pytest.fixture(autouse=True)
def _no_env_server(monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)


def test_push_sets_the_overlap_on_project_and_tasks(admin, params, env_file, seed_preannotated):
    push_main(seed_preannotated, ROOT / "resources" / "guidelines.md", params, env_file=env_file)
    project = next(p for p in admin.pages("/api/projects", what="projects", page_size=100)
                   if p["title"] == "Two annotators per task")
    assert project["maximum_annotations"] == 2
    tasks = list(admin.pages("/api/tasks", what="tasks", page_size=100, params={"project": project["id"]}))
    assert len(tasks) == 5 and {t["overlap"] for t in tasks} == {2}
    STATE["project"] = project["id"]


def test_both_annotators_are_served_the_same_task_and_each_annotates_it(admin, second):
    pid = STATE["project"]
    first = admin.get(f"/api/projects/{pid}/next", what="admin's next task")
    regions = first["predictions"][0]["result"]
    admin.post(f"/api/tasks/{first['id']}/annotations", {"result": regions, "lead_time": 30.0},
               what="admin annotates")
    # one annotation of two: the task is not labelled yet, so the next annotator gets it too
    again = second.get(f"/api/projects/{pid}/next", what="second annotator's next task")
    assert again["id"] == first["id"]
    entities = [r for r in regions if r["type"] == "labels"]
    dropped = entities[0]["id"]  # the second annotator disagrees with one entity (and its stances)
    theirs = [r for r in regions if dropped not in (r.get("id"), r.get("from_id"), r.get("to_id"))]
    second.post(f"/api/tasks/{first['id']}/annotations", {"result": theirs, "lead_time": 40.0},
                what="second annotator annotates")
    assert admin.get(f"/api/tasks/{first['id']}", what="the task")["is_labeled"] is True
    # done by both: neither is served it again
    assert admin.get(f"/api/projects/{pid}/next", what="admin's next task")["id"] != first["id"]
    assert second.get(f"/api/projects/{pid}/next", what="second's next task")["id"] != first["id"]
    STATE.update(task=first["id"], article=first["data"]["article_id"], dropped=len(regions) - len(theirs))


def test_both_versions_reach_merge_and_agreement_has_figures(params, env_file, seed_preannotated, tmp_path):
    annotations = tmp_path / "annotations"
    report = pull_main(annotations, params, env_file=env_file)
    assert report.annotations == 2 and len(report.annotators) == 2
    data, metrics, plots = tmp_path / "data", tmp_path / "metrics", tmp_path / "plots"
    resources = ROOT / "resources"
    for args in (
        ["merge", "--preannotated", seed_preannotated, "--annotations", annotations, "--output",
         data / "labeled.jsonl", "--report", data / "merge_report.json", "--patterns", resources / "entity_patterns.yaml",
         "--actors", resources / "actors.yaml", "--lexicon", resources / "stance_cues.yaml", "--params", params],
        ["evaluate", "--input", data / "labeled.jsonl", "--metrics", metrics, "--plots", plots, "--params", params],
    ):
        proc = subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=ROOT, capture_output=True,
                              text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr
    labeled = {r["id"]: r for _, r in read_jsonl(data / "labeled.jsonl")}
    both = labeled[STATE["article"]]
    assert len(both["annotators"]) == 2 and both["agreement"]["n_annotators"] == 2
    agreement = json.loads((metrics / "agreement.json").read_text())
    assert agreement["articles"] == 1
    assert 0 < agreement["entity_f1"] < 1  # one entity apart: figures, not n/a
    assert re.search(r"\d", json.dumps(agreement["entity_f1"]))
