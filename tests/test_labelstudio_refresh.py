"""Re-push after a model change, lost answers and the Label Studio benchmark, on a real server.

Each test has a project of its own. A lost answer is a real request that reached the server (which did
the work) whose answer the client then drops, as after a timeout.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from pipeline.bench.labelstudio import bench_label_studio, synthetic_records
from pipeline.common.jsonl import read_jsonl, write_jsonl
from pipeline.common.provenance import sha256_text
from pipeline.labelstudio import index as task_index
from pipeline.labelstudio.api import LabelStudioAPI, LabelStudioError
from pipeline.labelstudio.commands import push_main
from pipeline.labelstudio.index import TaskIndex
from pipeline.labelstudio.params import load_config
from pipeline.labelstudio.push import find_project, push
from pipeline.labelstudio.tasks import read_tasks

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_env_server")]

ROOT = Path(__file__).resolve().parent.parent
GUIDELINES = ROOT / "resources" / "guidelines.md"
N = 12


class LoseAnswer(requests.Session):
    """Send every request for real, but drop the answer of the first POST whose path ends with `suffix`."""

    def __init__(self, suffix: str) -> None:
        super().__init__()
        self.suffix, self.lost = suffix, 0

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        resp = super().request(method, url, *args, **kwargs)
        if method == "POST" and urlsplit(str(url)).path.endswith(self.suffix) and not self.lost:
            self.lost += 1
            raise requests.exceptions.ReadTimeout("the answer was lost")
        return resp



def _setup(tmp_path: Path, server, title: str) -> tuple[Path, Path, Path, Path]:
    """params (batches of 5, pages of 4), an .env for `server`, and the v1 and v2 pre-annotated files."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["labelstudio"].update(project_title=title, import_batch_size=5, page_size=4)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    env = tmp_path / ".env"
    env.write_text(f"LABEL_STUDIO_URL={server.url}\nLABEL_STUDIO_API_KEY={server.token}\n")
    v1, v2 = tmp_path / "v1.jsonl", tmp_path / "v2.jsonl"
    write_jsonl(v1, synthetic_records(N, "1"))
    write_jsonl(v2, synthetic_records(N, "2"))
    return path, env, v1, v2


def _stored(api: LabelStudioAPI, project_id: int) -> list[dict]:
    return list(api.pages("/api/tasks", what="tasks", page_size=100, params={"project": project_id, "fields": "all"}))


def _human_work(api: LabelStudioAPI, tasks: dict[int, dict]) -> dict[int, str]:
    """Annotate the 4th task, skip the 6th, leave a draft on the 8th; {task id: what was done}."""
    ids = sorted(tasks)
    annotated, skipped, drafted = ids[3], ids[5], ids[7]
    api.post(f"/api/tasks/{annotated}/annotations", {"result": tasks[annotated]["predictions"][0]["result"]},
             what="annotating")
    api.post(f"/api/tasks/{skipped}/annotations", {"result": [], "was_cancelled": True}, what="skipping")
    api.post(f"/api/tasks/{drafted}/drafts", {"result": tasks[drafted]["predictions"][0]["result"], "lead_time": 2.0},
             what="saving a draft")
    return {annotated: "annotation", skipped: "skip", drafted: "draft"}


def _trace(api: LabelStudioAPI, task_id: int) -> tuple[list, list, list]:
    """A task's annotations, drafts and predictions as (id, result, updated_at) / (id, model version, result)."""
    task = api.get(f"/api/tasks/{task_id}", what="task")
    drafts = api.get(f"/api/tasks/{task_id}/drafts", what="drafts")
    return ([(a["id"], a["result"], a["was_cancelled"], a["updated_at"]) for a in task["annotations"]],
            [(d["id"], d["result"], d["updated_at"]) for d in drafts],
            [(p["id"], p["model_version"], p["result"]) for p in task["predictions"]])


def test_a_model_change_refreshes_only_tasks_without_human_work(label_studio_server, tmp_path, capsys):
    params, env, v1, v2 = _setup(tmp_path, label_studio_server, "Refresh after a model change")
    assert push_main(v1, GUIDELINES, params, env_file=env).created == N
    api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=60, retries=2)
    project = find_project(api, "Refresh after a model change")
    assert project is not None
    before = {t["id"]: t for t in _stored(api, project["id"])}
    human = _human_work(api, before)
    traces = {task_id: _trace(api, task_id) for task_id in human}
    assert all(any(trace) for trace in traces.values())
    capsys.readouterr()

    report = push_main(v2, GUIDELINES, params, env_file=env)
    assert (report.created, report.refreshed, report.kept_annotated, report.unchanged) == (0, N - 3, 3, 0)
    err = capsys.readouterr().err
    assert (f"push: 0 new task(s), {N - 3} with refreshed predictions, 3 left with older predictions because humans "
            f"annotated them, 0 unchanged") in err
    new = {t["data"]["article_id"]: t["predictions"][0] for t in read_tasks(v2, load_config(params))}
    after = {t["id"]: t for t in _stored(api, project["id"])}
    assert sorted(after) == sorted(before)  # no task added or removed
    for task_id in human:  # annotation, skip and draft untouched, and the predictions they were made on
        assert _trace(api, task_id) == traces[task_id], human[task_id]
    for task_id, task in after.items():
        if task_id not in human:
            want = new[task["data"]["article_id"]]
            assert [(p["model_version"], p["result"]) for p in task["predictions"]] == [
                (want["model_version"], want["result"])]
            assert task["predictions"][0]["score"] == pytest.approx(want["score"])
            assert task["total_predictions"] == 1
    project = api.get(f"/api/projects/{project['id']}", what="project")
    assert project["model_version"] == next(iter(new.values()))["model_version"]

    again = push_main(v2, GUIDELINES, params, env_file=env)
    assert (again.created, again.refreshed, again.kept_annotated, again.unchanged) == (0, 0, 3, N - 3)


class DraftBeforeDelete(requests.Session):
    """Before the first bulk delete of predictions reaches the server, a human saves a draft on task `victim`."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__()
        self.url, self.token, self.victim, self.done = url, token, 0, False

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if (method == "POST" and urlsplit(str(url)).path == "/api/dm/actions" and not self.done
                and "delete_tasks_predictions" in str(kwargs.get("params"))):
            self.done = True
            self.victim = kwargs["json"]["selectedItems"]["included"][0]
            requests.post(f"{self.url}/api/tasks/{self.victim}/drafts", json={"result": [], "lead_time": 1.0},
                          headers={"Authorization": f"Token {self.token}"}, timeout=60).raise_for_status()
        return super().request(method, url, *args, **kwargs)


def test_a_task_a_human_starts_on_during_the_refresh_keeps_its_predictions(label_studio_server, tmp_path):
    params, _, v1, v2 = _setup(tmp_path, label_studio_server, "Draft during refresh")
    cfg = load_config(params)
    api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=60, retries=2)
    project, _ = push(api, read_tasks(v1, cfg), cfg, "guidelines", progress=False)
    session = DraftBeforeDelete(label_studio_server.url, label_studio_server.token)
    racing = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=60, retries=2,
                            session=session)
    before = {t["id"]: [(p["id"], p["model_version"], p["result"]) for p in t["predictions"]]
              for t in _stored(api, project["id"])}
    _, report = push(racing, read_tasks(v2, cfg), cfg, "guidelines", progress=False)
    assert session.done and session.victim
    assert (report.refreshed, report.kept_annotated) == (N - 1, 1)
    _, drafts, predictions = _trace(api, session.victim)
    assert predictions == before[session.victim] and len(drafts) == 1  # the old prediction stays, beside the new draft
    versions = {t["id"]: [p["model_version"] for p in t["predictions"]] for t in _stored(api, project["id"])}
    assert all(v == ["bench@2+rules.r+code.c"] for task_id, v in versions.items() if task_id != session.victim)


def test_a_lost_import_answer_is_counted_from_what_the_server_holds(label_studio_server, tmp_path):
    params, _, v1, _ = _setup(tmp_path, label_studio_server, "Lost import answer")
    cfg = load_config(params)
    session = LoseAnswer("/import")
    api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=60, retries=2,
                         backoff_s=0.01, session=session)
    project, report = push(api, read_tasks(v1, cfg), cfg, "guidelines", progress=False)
    assert session.lost == 1
    assert report.created == N  # the batch whose answer was lost counts too
    index = TaskIndex.fetch(api, project["id"], page_size=4)
    assert len(index) == len(index.entries) == N  # no duplicate
    _, again = push(api, read_tasks(v1, cfg), cfg, "guidelines", progress=False)
    assert (again.created, again.unchanged) == (0, N)


def test_a_lost_predictions_answer_adds_no_second_prediction(label_studio_server, tmp_path):
    params, _, v1, v2 = _setup(tmp_path, label_studio_server, "Lost predictions answer")
    cfg = load_config(params)
    api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=60, retries=2)
    project, _ = push(api, read_tasks(v1, cfg), cfg, "guidelines", progress=False)
    session = LoseAnswer("/import/predictions")
    lossy = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=60, retries=2,
                           backoff_s=0.01, session=session)
    _, report = push(lossy, read_tasks(v2, cfg), cfg, "guidelines", progress=False)
    assert session.lost == 1 and report.refreshed == N
    stored = _stored(api, project["id"])
    assert len(stored) == N
    assert all([p["model_version"] for p in t["predictions"]] == ["bench@2+rules.r+code.c"] for t in stored)


class KilledAt(requests.Session):
    """Send every request for real until the first POST whose path ends with `suffix`: there the push dies (Ctrl-C)."""

    def __init__(self, suffix: str) -> None:
        super().__init__()
        self.suffix, self.killed = suffix, False

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if method == "POST" and urlsplit(str(url)).path.endswith(self.suffix):
            self.killed = True
            raise KeyboardInterrupt
        return super().request(method, url, *args, **kwargs)


def _second_predictions(api: LabelStudioAPI, project_id: int, version: str) -> None:
    """Give every task of the project one more prediction set (as an ML backend would), through the real API."""
    api.call("adding predictions", api.sdk.projects.with_raw_response.import_predictions, project_id,
             request=[{"task": t["id"], "model_version": version, "result": [], "score": 0.5}
                      for t in _stored(api, project_id)])


def test_a_push_killed_during_a_refresh_is_repaired_by_the_next_push(label_studio_server, tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr(task_index, "CHUNK", 2)  # the broken tasks are read back in several requests
    params, env, v1, v2 = _setup(tmp_path, label_studio_server, "Killed refresh")
    cfg = load_config(params)
    api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=60, retries=2)
    project, _ = push(api, read_tasks(v1, cfg), cfg, "guidelines", progress=False)
    _second_predictions(api, project["id"], "backend@0")
    session = KilledAt("/import/predictions")
    killed = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=60, retries=2,
                            session=session)
    with pytest.raises(KeyboardInterrupt):  # killed between the first batch's delete and its import
        push(killed, read_tasks(v2, cfg), cfg, "guidelines", progress=False)
    assert session.killed
    # what Label Studio 1.23 leaves: tasks without predictions whose counter still says they have one
    broken = sorted(t["id"] for t in _stored(api, project["id"]) if not t["predictions"])
    assert len(broken) == 5 and all(t["total_predictions"] == 1 for t in _stored(api, project["id"])
                                    if t["id"] in broken)
    human = broken[0]  # an annotator works on one of them before the next push
    api.post(f"/api/tasks/{human}/annotations", {"result": []}, what="annotating")
    capsys.readouterr()

    report = push_main(v2, GUIDELINES, params, env_file=env)
    assert (report.created, report.refreshed, report.kept_annotated, report.unchanged) == (0, N - 1, 1, 0)
    assert report.miscounted == broken
    assert "5 task(s) counted predictions they had lost (an interrupted refresh), refreshed like" in capsys.readouterr().err
    for task in _stored(api, project["id"]):
        if task["id"] == human:  # human work: its (lost) predictions are left as they are
            assert task["predictions"] == [] and len(task["annotations"]) == 1
        else:  # exactly one prediction set, the current one, and a counter that says so
            assert [p["model_version"] for p in task["predictions"]] == ["bench@2+rules.r+code.c"]
            assert task["total_predictions"] == 1
    again = push_main(v2, GUIDELINES, params, env_file=env)
    assert (again.refreshed, again.kept_annotated, again.unchanged, again.miscounted) == (0, 1, N - 1, [human])


def test_predictions_without_a_model_version_still_stop_the_push(label_studio_server, tmp_path):
    params, _, v1, _ = _setup(tmp_path, label_studio_server, "Unversioned predictions")
    cfg = load_config(params)
    api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=60, retries=2)
    project, _ = push(api, read_tasks(v1, cfg), cfg, "guidelines", progress=False)
    first = min(t["id"] for t in _stored(api, project["id"]))
    api.post("/api/dm/actions", {"selectedItems": {"all": False, "included": [first]}}, what="deleting",
             params={"id": "delete_tasks_predictions", "project": project["id"]})
    api.call("adding a prediction", api.sdk.projects.with_raw_response.import_predictions, project["id"],
             request=[{"task": first, "model_version": "", "result": [], "score": 0.5}])
    with pytest.raises(LabelStudioError, match=f"did not report the model version of task {first}'s predictions"):
        push(api, read_tasks(v1, cfg), cfg, "guidelines", progress=False)


def test_an_edited_article_is_a_new_task_and_its_old_task_is_reported_not_in_the_input(label_studio_server, tmp_path,
                                                                                         capsys):
    params, env, _, _ = _setup(tmp_path, label_studio_server, "Edited article")
    records = [rec for _, rec in read_jsonl(tmp_path / "v1.jsonl")]
    for rec in records:  # ids as ingest makes them, from the text
        rec["id"] = sha256_text(rec["text"])[:16]
    before, after = tmp_path / "before.jsonl", tmp_path / "after.jsonl"
    write_jsonl(before, records)
    first = push_main(before, GUIDELINES, params, env_file=env)
    assert (first.created, first.not_in_input) == (N, [])
    api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=60, retries=2)
    project = find_project(api, "Edited article")
    assert project is not None
    old = {t["data"]["article_id"]: t["id"] for t in _stored(api, project["id"])}
    edited = records[2]
    old_task = old[edited["id"]]
    edited["text"] += " A correction was appended."
    edited["id"] = sha256_text(edited["text"])[:16]
    write_jsonl(after, records)
    capsys.readouterr()

    report = push_main(after, GUIDELINES, params, env_file=env, report_path=tmp_path / "push.json")
    assert (report.created, report.unchanged, report.text_changed, report.not_in_input) == (1, N - 1, [], [old_task])
    err = capsys.readouterr().err
    assert "1 task(s) of articles not in this input, left as they are" in err
    assert "whose text changed" not in err and "text changed" not in err
    assert f"push: tasks not in this input (an edited article, or one no longer in the corpus): {old_task}\n" in err
    assert json.loads((tmp_path / "push.json").read_text())["not_in_input"] == [old_task]
    assert len(_stored(api, project["id"])) == N + 1  # the old task stays


def test_bench_label_studio_prints_every_mode_beside_the_bare_api(label_studio_server):
    out = io.StringIO()
    rows = bench_label_studio(20, ROOT / "params.yaml", label_studio_server.url, label_studio_server.token, out=out,
                              title="Bench check", repeat=2, pool_size=6)
    assert [r["mode"] for r in rows] == ["push", "no-op push", "refresh", "pull"]
    summaries = [r["summary"] for r in rows]
    assert "push: 20 new task(s)" in summaries[0]
    assert "0 new task(s)" in summaries[1] and "20 unchanged" in summaries[1]
    assert "20 with refreshed predictions" in summaries[2]
    assert ": 20 task(s)" in summaries[3]
    text = out.getvalue()
    assert "ratio min/med/max" in text and "tree MB" in text and "ru_maxrss" in text and "2 turn(s)" in text
    assert text.count("refresh, bare API, per batch of 250: delete action ") == 2  # once a turn
    # real-size tasks: pre-annotated seed-like articles, not 1.6 KiB synthetic ones
    kib = re.search(r"\(([\d.]+) KiB of pre-annotated JSON, ([\d.]+) KiB of task JSON each\)", text)
    assert kib is not None and float(kib[1]) >= 8 and float(kib[2]) >= 8 and rows[0]["task_kib"] >= 8
    for row in rows:
        assert row["pipeline_s"] > 0 and row["bare_s"] > 0
        assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
        assert row["client_mb"] >= row["client_largest_mb"] > 30  # a Python process with the client loaded
        assert any(line.startswith(row["mode"] + " ") for line in text.splitlines())
