"""Two annotators per task on Label Studio CE, against a real server: the overlap set from params, both annotators
served the same task by the next-task endpoint, both versions through pull and merge, agreement figures out; then
adjudication: the disagreeing task in the Adjudicate tab, a reviewer's ground truth taken by merge.

The tests of this module run in order and share one project.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from pipeline.common.jsonl import read_jsonl
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.commands import adjudicate_main, pull_main, push_main

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_env_server")]

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
def admin(label_studio_server) -> LabelStudioAPI:
    return LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=30, retries=2)


@pytest.fixture(scope="module")
def second(admin, label_studio_server) -> LabelStudioAPI:
    """A second annotator of the organisation, with their own token."""
    invite = admin.get("/api/invite", what="the invite link")["invite_url"]
    token = join(label_studio_server.url, invite, "overlap-annotator@example.org", "second-annotator-pw-1")
    return LabelStudioAPI(label_studio_server.url, token, timeout_s=30, retries=2)



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
    dropped = {e["id"] for e in entities[: len(entities) // 3 + 1]}  # the second annotator rejects a third of them
    theirs = [r for r in regions if not dropped & {r.get("id"), r.get("from_id"), r.get("to_id")}]
    second.post(f"/api/tasks/{first['id']}/annotations", {"result": theirs, "lead_time": 40.0},
                what="second annotator annotates")
    assert admin.get(f"/api/tasks/{first['id']}", what="the task")["is_labeled"] is True
    # done by both: neither is served it again
    assert admin.get(f"/api/projects/{pid}/next", what="admin's next task")["id"] != first["id"]
    assert second.get(f"/api/projects/{pid}/next", what="second's next task")["id"] != first["id"]
    STATE.update(task=first["id"], article=first["data"]["article_id"], dropped=len(regions) - len(theirs))


def build(params: Path, env_file: Path, seeds: Path, tmp: Path) -> tuple[dict, dict, dict]:
    """Pull a snapshot, then merge and evaluate it: labeled articles by id, agreement.json, merge_report.json."""
    annotations = tmp / "annotations"
    pull_main(annotations, params, env_file=env_file)
    data, metrics, plots = tmp / "data", tmp / "metrics", tmp / "plots"
    resources = ROOT / "resources"
    for args in (
        ["merge", "--preannotated", seeds, "--annotations", annotations, "--output",
         data / "labeled.jsonl", "--report", data / "merge_report.json", "--patterns", resources / "entity_patterns.yaml",
         "--actors", resources / "actors.yaml", "--lexicon", resources / "stance_cues.yaml", "--params", params],
        ["evaluate", "--input", data / "labeled.jsonl", "--metrics", metrics, "--plots", plots, "--params", params],
    ):
        proc = subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=ROOT, capture_output=True,
                              text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr
    labeled = {r["id"]: r for _, r in read_jsonl(data / "labeled.jsonl")}
    return (labeled, json.loads((metrics / "agreement.json").read_text()),
            json.loads((data / "merge_report.json").read_text()))


def test_both_versions_reach_merge_and_agreement_has_figures(params, env_file, seed_preannotated, tmp_path):
    labeled, agreement, _ = build(params, env_file, seed_preannotated, tmp_path)
    both = labeled[STATE["article"]]
    assert len(both["annotators"]) == 2 and both["agreement"]["n_annotators"] == 2
    assert both["provenance"]["resolution"] == "majority"
    assert agreement["articles"] == 1 and agreement["adjudicated"] == 0
    assert 0 < agreement["entity_f1"] < 0.9  # a third of the entities apart: figures, not n/a
    STATE["agreement"] = agreement


def test_adjudicate_gathers_the_disagreeing_task_in_a_tab(admin, params, env_file, tmp_path):
    report = adjudicate_main(params, tmp_path / "adjudicate.json", env_file=env_file)
    assert report.tasks_compared == 1 and report.adjudicated == 0
    assert [d.task for d in report.flagged] == [STATE["task"]] and report.flagged[0].entity_f1 < 0.9
    tab = int(report.url.rsplit("tab=", 1)[1])
    listed = list(admin.pages("/api/tasks", what="the tab's tasks", page_size=100,
                              params={"project": STATE["project"], "view": tab}))
    assert [t["id"] for t in listed] == [STATE["task"]]
    assert json.loads((tmp_path / "adjudicate.json").read_text())["flagged"][0]["task"] == STATE["task"]
    # run again: the same tab, updated, not a second one
    assert adjudicate_main(params, env_file=env_file).url == report.url
    STATE["tab"] = tab


def test_the_reviewers_ground_truth_wins_and_agreement_stays_the_annotators(admin, params, env_file,
                                                                             seed_preannotated, tmp_path,
                                                                             label_studio_server):
    invite = admin.get("/api/invite", what="the invite link")["invite_url"]
    reviewer = LabelStudioAPI(label_studio_server.url,
                              join(label_studio_server.url, invite, "reviewer@example.org", "reviewer-pw-12345"),
                              timeout_s=30, retries=2)
    task = reviewer.get(f"/api/tasks/{STATE['task']}", what="the task to adjudicate")
    versions = sorted(task["annotations"], key=lambda a: len(a["result"]))
    final = [r for r in versions[-1]["result"] if r["type"] == "labels"][1:]  # the reviewer's own verdict
    reviewer.post(f"/api/tasks/{STATE['task']}/annotations", {"result": final, "ground_truth": True,
                                                               "lead_time": 20.0}, what="the reviewer's verdict")
    report = adjudicate_main(params, env_file=env_file)
    assert report.flagged == [] and report.adjudicated == 1  # settled: out of the tab
    labeled, agreement, merge_report = build(params, env_file, seed_preannotated, tmp_path)
    settled = labeled[STATE["article"]]
    assert settled["provenance"]["resolution"] == "ground_truth"
    assert [(e["start"], e["end"]) for e in settled["entities"]] == sorted(
        (r["value"]["start"], r["value"]["end"]) for r in final)
    assert len(settled["annotators"]) == 3 and settled["agreement"]["n_annotators"] == 2
    assert agreement["adjudicated"] == 1 and agreement["entity_f1"] == STATE["agreement"]["entity_f1"]
    assert merge_report["resolution"]["ground_truth"] == 1
