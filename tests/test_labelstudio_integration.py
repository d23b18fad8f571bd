"""The Label Studio round trip against a real server: push the seeds, annotate through the API, pull, re-push.

One server for the session (tests/conftest.py); the tests of this module run in order and share one project.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.common.errors import BadRecords
from pipeline.common.jsonl import read_jsonl, write_jsonl
from pipeline.labelstudio.api import LabelStudioAPI, LabelStudioError
from pipeline.labelstudio.commands import pull_main, push_main
from pipeline.labelstudio.config import instructions_html, label_config
from pipeline.labelstudio.gold_import import GOLD_ANNOTATOR, import_gold
from pipeline.labelstudio.params import Config, load_config
from pipeline.labelstudio.pull import pull
from pipeline.labelstudio.push import push
from pipeline.labelstudio.tasks import build_tasks, gold_result

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_env_server")]

ROOT = Path(__file__).resolve().parent.parent
GUIDELINES = ROOT / "resources" / "guidelines.md"


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def params(tmp_path_factory) -> Path:
    """The team's params.yaml with a project of this module's own."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["labelstudio"]["project_title"] = "Integration round trip"
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def cfg(params) -> Config:
    return load_config(params)


@pytest.fixture(scope="module")
def seeds(seed_preannotated) -> Path:
    records = [rec for _, rec in read_jsonl(seed_preannotated)]
    assert len(records) == 5 and all(r["entities"] for r in records) and any(r["stances"] for r in records)
    return seed_preannotated


@pytest.fixture(scope="module")
def api(label_studio_server) -> LabelStudioAPI:
    return LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=30, retries=2)




def project_tasks(api: LabelStudioAPI, project_id: int) -> list[dict]:
    return list(api.pages("/api/tasks", what="tasks", page_size=100,
                          params={"project": project_id, "fields": "all"}))


def tasks_of(cfg, path) -> list[dict]:
    bad = BadRecords("push", 0.0, quiet=True)
    return build_tasks(read_jsonl(path, bad), cfg, path, bad)


STATE: dict = {}


# -- push ---------------------------------------------------------------------------------------


def test_push_half_then_all_creates_each_task_once(api, cfg, seeds, env_file, params):
    tasks = tasks_of(cfg, seeds)
    guidelines = GUIDELINES.read_text()
    project, first = push(api, tasks[:2], cfg, guidelines, progress=False)  # a push that "died" halfway
    assert first.created == 2
    report = push_main(seeds, GUIDELINES, params, env_file=env_file)
    assert (report.created, report.unchanged, report.refreshed) == (3, 2, 0)
    again = push_main(seeds, GUIDELINES, params, env_file=env_file)
    assert (again.created, again.unchanged, again.refreshed) == (0, 5, 0)
    stored = project_tasks(api, project["id"])
    assert sorted(t["data"]["article_id"] for t in stored) == sorted(t["data"]["article_id"] for t in tasks)
    by_article = {t["data"]["article_id"]: t for t in stored}
    for task in tasks:  # data and predictions exactly as sent
        got = by_article[task["data"]["article_id"]]
        assert got["data"] == task["data"]
        assert len(got["predictions"]) == 1
        pred = got["predictions"][0]
        assert pred["model_version"] == task["predictions"][0]["model_version"]
        assert pred["score"] == pytest.approx(task["predictions"][0]["score"])
        assert pred["result"] == task["predictions"][0]["result"]
    project = api.get(f"/api/projects/{project['id']}", what="project")
    assert project["label_config"] == label_config(cfg)
    assert project["expert_instruction"] == instructions_html(GUIDELINES.read_text()) and project["show_instruction"]
    STATE.update(project=project, tasks=by_article)


def test_queue_serves_least_confident_first(api, cfg, seeds):
    project = STATE["project"]
    assert project["sampling"] == "Uncertainty sampling"
    first = api.get(f"/api/projects/{project['id']}/next", what="next task")
    scores = {aid: t["predictions"][0]["score"] for aid, t in STATE["tasks"].items()}
    assert scores[first["data"]["article_id"]] == min(scores.values())


# -- annotate through the API as annotators would, then pull ----------------------------------


def _entity(ann_id: str, start: int, end: int, text: str, label: str) -> dict:
    return {"id": ann_id, "from_name": "label", "to_name": "text", "type": "labels",
            "value": {"start": start, "end": end, "text": text[start:end], "labels": [label]}}


def _relation(a: str, b: str, label: str) -> dict:
    return {"from_id": a, "to_id": b, "type": "relation", "direction": "right", "labels": [label]}


def test_corrections_round_trip_exactly(api, cfg, params, env_file, seeds, tmp_path, label_studio_server):
    tasks = STATE["tasks"]
    second = api.post("/api/users/", {"email": "annotator2@example.org", "username": "annotator2",
                                      "first_name": "Second", "password": "not-used-123"}, what="creating a user")
    me = api.whoami()
    expected: dict[int, list[tuple[int, list[dict]]]] = {}
    ordered = sorted(tasks.values(), key=lambda t: t["id"])
    for n, task in enumerate(ordered):
        pred = task["predictions"][0]["result"]
        regions = [dict(r) for r in pred if r["type"] == "labels"]
        relations = [dict(r) for r in pred if r["type"] == "relation"]
        text = task["data"]["text"]
        # an annotator's corrections: change a label, delete a span, add a span, add and remove stances
        regions[0] = {**regions[0], "value": {**regions[0]["value"], "labels": ["ORG"]}}
        removed = regions.pop(1)["id"]
        relations = [r for r in relations if removed not in (r["from_id"], r["to_id"])]
        if relations:
            relations.pop()  # a predicted stance the annotator disagreed with
        added = _entity(f"human{n}", 0, 6, text, "PERSON")
        regions.append(added)
        relations.append(_relation(added["id"], regions[0]["id"], "favor"))
        result = regions + relations
        ann = api.post(f"/api/tasks/{task['id']}/annotations", {"result": result, "lead_time": 12.5 + n},
                       what="annotating")
        expected.setdefault(task["id"], []).append((me["id"], result))
        assert ann["completed_by"] == me["id"]
    # a second annotator on the first task, who accepts the prediction as is
    first = ordered[0]
    api.post(f"/api/tasks/{first['id']}/annotations",
             {"result": first["predictions"][0]["result"], "completed_by": second["id"], "lead_time": 3.0},
             what="second annotation")
    expected[first["id"]].append((second["id"], first["predictions"][0]["result"]))
    # a skipped task
    api.post(f"/api/tasks/{ordered[-1]['id']}/annotations", {"result": [], "was_cancelled": True,
                                                            "completed_by": second["id"]}, what="skipping")

    out = tmp_path / "annotations"
    report = pull_main(out, params, env_file=env_file)
    snapshots = sorted(out.glob("*.jsonl"))
    assert len(snapshots) == 1 and snapshots[0].name == Path(report.snapshot).name
    exported = [rec for _, rec in read_jsonl(snapshots[0])]
    assert len(exported) == 5
    by_id = {t["id"]: t for t in exported}
    for task_id, anns in expected.items():
        got = [a for a in by_id[task_id]["annotations"] if not a["was_cancelled"]]
        assert [(a["completed_by"], a["result"]) for a in got] == anns  # every span and relation, exactly
        assert by_id[task_id]["data"] == tasks[by_id[task_id]["data"]["article_id"]]["data"]
        assert by_id[task_id]["predictions"][0]["result"] == tasks[by_id[task_id]["data"]["article_id"]][
            "predictions"][0]["result"]
    cancelled = [a for a in by_id[ordered[-1]["id"]]["annotations"] if a["was_cancelled"]]
    assert len(cancelled) == 1 and cancelled[0]["completed_by"] == second["id"]
    assert report.annotations == 6 and report.cancelled == 1 and len(report.annotators) == 2
    assert report.stale == []
    assert label_studio_server.token not in snapshots[0].read_text()
    STATE.update(snapshot=snapshots[0], annotations_dir=out, exported=by_id)


def test_repush_after_a_model_change_keeps_annotated_tasks_as_they_are(api, cfg, params, env_file, seeds, tmp_path):
    records = [rec for _, rec in read_jsonl(seeds)]
    old_rules = records[0]["provenance"]["rules_version"]
    for rec in records:
        rec["provenance"] = {**rec["provenance"], "rules_version": "next"}
    changed = records[0]
    changed["text"] = changed["text"] + "\nCorrection appended."  # the article's text changed: a new task
    newer = tmp_path / "preannotated.jsonl"
    write_jsonl(newer, records)
    report = push_main(newer, GUIDELINES, params, env_file=env_file)
    # every other task was annotated: its predictions are what the annotators corrected, left alone
    assert (report.created, report.refreshed, report.kept_annotated, report.unchanged) == (1, 0, 4, 0)
    assert [aid for aid, _ in report.text_changed] == [changed["id"]]
    stored = project_tasks(api, STATE["project"]["id"])
    assert len(stored) == 6
    keys = [(t["data"]["article_id"], t["data"]["text_hash"]) for t in stored]
    assert len(set(keys)) == 6  # no duplicate task
    before = STATE["exported"]
    for task in stored:
        if task["id"] in before:  # annotations and predictions untouched, byte for byte
            assert [(a["id"], a["result"], a["updated_at"]) for a in task["annotations"]] == [
                (a["id"], a["result"], a["updated_at"]) for a in before[task["id"]]["annotations"]]
            assert [(p["id"], p["model_version"]) for p in task["predictions"]] == [
                (p["id"], p["model_version"]) for p in before[task["id"]]["predictions"]]
            assert f"rules.{old_rules}+" in task["predictions"][0]["model_version"]

    # a refresh that died after deleting some predictions, or left an older one, is finished on an
    # unannotated task; an article listed twice in the input is still one task
    victim = next(t for t in stored if t["id"] not in before)
    api.post("/api/predictions", {"task": victim["id"], "model_version": "older", "score": 0.1, "result": []},
             what="a leftover prediction")
    write_jsonl(newer, records + records[1:2])
    again = push_main(newer, GUIDELINES, params, env_file=env_file)
    assert (again.created, again.refreshed, again.kept_annotated, again.unchanged) == (0, 1, 4, 0)
    victim_now = api.get(f"/api/tasks/{victim['id']}", what="task")
    assert [p["model_version"] for p in victim_now["predictions"]] == [
        p["model_version"] for p in victim["predictions"]]
    assert victim_now["predictions"][0]["result"] == victim["predictions"][0]["result"]
    assert len(project_tasks(api, STATE["project"]["id"])) == 6

    # a later pull is a new snapshot; the older one is kept; stale annotations are flagged
    articles = tmp_path / "articles.jsonl"
    write_jsonl(articles, [{"id": r["id"], "text": r["text"]} for r in records])
    old = STATE["snapshot"]
    old_bytes = old.read_bytes()
    import time

    time.sleep(1.1)  # snapshot names have one-second resolution
    later = pull_main(STATE["annotations_dir"], params, articles=articles, env_file=env_file)
    assert old.read_bytes() == old_bytes
    assert len(list(STATE["annotations_dir"].glob("*.jsonl"))) == 2
    assert [s["article_id"] for s in later.stale] == [changed["id"]]


# -- errors: one line, no traceback --------------------------------------------------------------


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", **env}, timeout=120, check=False)


@pytest.mark.parametrize(
    "case, message",
    [
        ("wrong token", "rejected the API token"),
        ("closed port", "cannot connect to Label Studio"),
        ("missing project", "no project titled"),
    ],
)
def test_errors_are_one_line(case, message, params, label_studio_server, tmp_path):
    from pipeline.labelstudio.server import free_port

    url, token = label_studio_server.url, label_studio_server.token
    p = yaml.safe_load(params.read_text())
    p["labelstudio"]["retries"] = 1
    if case == "wrong token":
        token = "0" * 40
    elif case == "closed port":
        url = f"http://127.0.0.1:{free_port()}"
    else:
        p["labelstudio"]["project_title"] = "No such project"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    out = _cli("pull", "--output", str(tmp_path / "ann"), "--params", str(path),
               env={"LABEL_STUDIO_URL": url, "LABEL_STUDIO_API_KEY": token})
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert token not in out.stderr  # the wrong and the right token alike
    assert not (tmp_path / "ann").exists() or not list((tmp_path / "ann").glob("*.jsonl"))


def test_server_fixture_repr_shows_no_secret(label_studio_server):
    shown = repr(label_studio_server)
    assert label_studio_server.url in shown
    assert label_studio_server.token not in shown and label_studio_server.password not in shown


def test_personal_access_token_works(api, label_studio_server):
    """The other way to authenticate: a personal access token (JWT refresh token), as a team server would use."""
    try:
        token = api.post("/api/token/", {}, what="creating a personal access token")["token"]
    except LabelStudioError as exc:
        pytest.fail(f"could not create a personal access token: {exc}")
    pat = LabelStudioAPI(label_studio_server.url, token, timeout_s=30, retries=1)
    assert pat.whoami()["email"] == label_studio_server.email


def test_gold_round_trips_as_ground_truth(api, params, seeds, tmp_path):
    """ls-import-gold's core: the seed gold submitted by the gold annotator comes back exactly in a pull."""
    from pipeline.gold import files as gold_module

    p = yaml.safe_load(params.read_text())
    p["labelstudio"]["project_title"] = "Gold round trip"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    cfg = load_config(path)
    articles = seeds.parent / "articles.jsonl"
    gold = list(gold_module.load_gold(ROOT / "gold", (a for _, a in read_jsonl(articles))))
    project, _ = push(api, tasks_of(cfg, seeds), cfg, GUIDELINES.read_text(), progress=False)
    assert import_gold(api, project["id"], gold, cfg.ls.page_size) == len(gold) == 5
    report = pull(api, cfg, tmp_path / "annotations", articles)
    exported = {t["data"]["article_id"]: t for _, t in read_jsonl(Path(report.snapshot))}
    user = next(u for u in api.get("/api/users/", what="users") if u["email"] == GOLD_ANNOTATOR)
    for record in gold:
        (ann,) = exported[record["id"]]["annotations"]
        assert ann["result"] == gold_result(record)
        assert ann["completed_by"] == user["id"] and ann["ground_truth"] and not ann["was_cancelled"]
    assert report.stale == []
