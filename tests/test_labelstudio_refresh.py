"""Re-push after a model change, lost answers and the Label Studio benchmark, on a real server.

Each test has a project of its own. A lost answer is a real request that reached the server (which did
the work) whose answer the client then drops, as after a timeout.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from pipeline.common.jsonl import write_jsonl
from pipeline.evaluation.ls_bench import bench_label_studio, synthetic_records
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.commands import push_main
from pipeline.labelstudio.index import TaskIndex
from pipeline.labelstudio.params import load_config
from pipeline.labelstudio.push import find_project, push
from pipeline.labelstudio.tasks import read_tasks

pytestmark = pytest.mark.integration

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


@pytest.fixture(autouse=True)
def _no_env_server(monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)


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


def test_a_model_change_refreshes_only_tasks_nobody_annotated(label_studio_server, tmp_path, capsys):
    params, env, v1, v2 = _setup(tmp_path, label_studio_server, "Refresh after a model change")
    assert push_main(v1, GUIDELINES, params, env_file=env).created == N
    api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=60, retries=2)
    project = find_project(api, "Refresh after a model change")
    assert project is not None
    before = {t["id"]: t for t in _stored(api, project["id"])}
    annotated = sorted(before)[3]
    api.post(f"/api/tasks/{annotated}/annotations", {"result": before[annotated]["predictions"][0]["result"]},
             what="annotating")
    before[annotated] = api.get(f"/api/tasks/{annotated}", what="task")
    capsys.readouterr()

    report = push_main(v2, GUIDELINES, params, env_file=env)
    assert (report.created, report.refreshed, report.kept_annotated, report.unchanged) == (0, N - 1, 1, 0)
    err = capsys.readouterr().err
    assert (f"push: 0 new task(s), {N - 1} with refreshed predictions, 1 left with older predictions because humans "
            f"annotated them, 0 unchanged") in err
    new = {t["data"]["article_id"]: t["predictions"][0] for t in read_tasks(v2, load_config(params))}
    after = {t["id"]: t for t in _stored(api, project["id"])}
    assert sorted(after) == sorted(before)  # no task added or removed
    kept = after[annotated]
    assert [(a["id"], a["result"], a["updated_at"]) for a in kept["annotations"]] == [
        (a["id"], a["result"], a["updated_at"]) for a in before[annotated]["annotations"]]
    assert [(p["id"], p["model_version"], p["result"]) for p in kept["predictions"]] == [
        (p["id"], p["model_version"], p["result"]) for p in before[annotated]["predictions"]]
    for task_id, task in after.items():
        if task_id != annotated:
            want = new[task["data"]["article_id"]]
            assert [(p["model_version"], p["result"]) for p in task["predictions"]] == [
                (want["model_version"], want["result"])]
            assert task["predictions"][0]["score"] == pytest.approx(want["score"])
    project = api.get(f"/api/projects/{project['id']}", what="project")
    assert project["model_version"] == new[before[annotated]["data"]["article_id"]]["model_version"]

    again = push_main(v2, GUIDELINES, params, env_file=env)
    assert (again.created, again.refreshed, again.kept_annotated, again.unchanged) == (0, 0, 1, N - 1)


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


def test_bench_label_studio_prints_every_mode_beside_the_bare_api(label_studio_server):
    out = io.StringIO()
    rows = bench_label_studio(20, ROOT / "params.yaml", label_studio_server.url, label_studio_server.token, out=out,
                              title="Bench check")
    assert [r["mode"] for r in rows] == ["push", "no-op push", "refresh", "pull"]
    summaries = [r["summary"] for r in rows]
    assert "push: 20 new task(s)" in summaries[0]
    assert "0 new task(s)" in summaries[1] and "20 unchanged" in summaries[1]
    assert "20 with refreshed predictions" in summaries[2]
    assert ": 20 task(s)" in summaries[3]
    text = out.getvalue()
    assert "ratio" in text and "client MB" in text and "ru_maxrss" in text
    for row in rows:
        assert row["pipeline_s"] > 0 and row["bare_s"] > 0 and row["client_mb"] > 0
        assert any(line.startswith(row["mode"] + " ") for line in text.splitlines())
