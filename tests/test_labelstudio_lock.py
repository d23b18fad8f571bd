"""Concurrent pushes on a real Label Studio server: the push lock, and duplicate tasks found and removed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.common.errors import BadRecords
from pipeline.common.jsonl import read_jsonl, write_jsonl
from pipeline.common.provenance import sha256_text
from pipeline.labelstudio.api import LabelStudioAPI, LabelStudioError
from pipeline.labelstudio.commands import push_main
from pipeline.labelstudio.duplicates import DuplicateReport, find_duplicates, remove_duplicates
from pipeline.labelstudio.lock import PREFIX, LockHeldError, PushLock
from pipeline.labelstudio.params import load_config
from pipeline.labelstudio.push import ensure_project
from pipeline.labelstudio.tasks import build_tasks

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_env_server")]

ROOT = Path(__file__).resolve().parent.parent
GUIDELINES = ROOT / "resources" / "guidelines.md"
N = 1000

# Imports first, then wait for the start signal, then run the CLI: two of these start within milliseconds.
# The lock's holder keeps it 2 s more: a push of N tasks can end in under a second, before the other
# process (started "together" but on a busy 2-core machine) reaches the lock, and then both rightly succeed.
WAIT_THEN_RUN = """\
import pathlib, sys, time
import pipeline.labelstudio.commands
from pipeline.cli import main
from pipeline.labelstudio.lock import PushLock
_acquire = PushLock.acquire
def acquire(self):
    _acquire(self)
    time.sleep(2)
PushLock.acquire = acquire
print("ready", flush=True)
go = pathlib.Path(sys.argv[1])
while not go.exists():
    time.sleep(0.002)
sys.argv = ["pipeline", *sys.argv[2:]]
main()
"""

HOLD_LOCK = """\
import sys, time
from pipeline.labelstudio.api import LabelStudioAPI, LabelStudioError
from pipeline.labelstudio.lock import PushLock
api = LabelStudioAPI(sys.argv[1], sys.argv[2], timeout_s=30, retries=2)
with PushLock(api, sys.argv[3], float(sys.argv[4])):
    print("held", flush=True)
    time.sleep(120)
"""



@pytest.fixture
def api(label_studio_server) -> LabelStudioAPI:
    return LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=60, retries=2)


@pytest.fixture
def env_file(tmp_path, label_studio_server) -> Path:
    path = tmp_path / ".env"
    path.write_text(f"LABEL_STUDIO_URL={label_studio_server.url}\nLABEL_STUDIO_API_KEY={label_studio_server.token}\n")
    return path


def params_for(tmp_path: Path, title: str) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["labelstudio"]["project_title"] = title
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def synthetic(path: Path, n: int) -> Path:
    """n small pre-annotated articles."""
    records = []
    for i in range(n):
        text = f"Article {i}: Russia met NATO in Geneva."
        start = text.index("Russia")
        records.append({
            "id": sha256_text(text)[:16], "title": f"Synthetic {i}", "text": text, "date": "2022-01-10", "url": None,
            "source": "synthetic", "stances": [],
            "entities": [{"start": start, "end": start + 6, "label": "GPE", "text": "Russia", "score": 0.5,
                          "actor": None}],
            "provenance": {"model": "m", "model_version": "1", "rules_version": "r", "code_revision": "c"},
        })
    write_jsonl(path, records)
    return path


def projects_titled(api: LabelStudioAPI, title: str) -> list[dict]:
    return [p for p in api.pages("/api/projects", what="projects", page_size=100, key="results") if p["title"] == title]


def all_tasks(api: LabelStudioAPI, project_id: int) -> list[dict]:
    return list(api.pages("/api/tasks", what="tasks", page_size=500, params={"project": project_id, "fields": "all"}))


def lock_markers(api: LabelStudioAPI, title: str) -> list[dict]:
    return [m for m in api.pages("/api/labels/", what="labels", page_size=100, key="results")
            if m["title"] == PREFIX + title]


# -- two pushes at once ------------------------------------------------------------------------


def test_two_pushes_started_together_make_no_duplicates_and_one_fails_naming_the_other(
        label_studio_server, api, tmp_path, env_file):
    title = "Concurrent pushes"
    params = params_for(tmp_path, title)
    articles = synthetic(tmp_path / "preannotated.jsonl", N)
    go = tmp_path / "go"
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio_server.url, "LABEL_STUDIO_API_KEY": label_studio_server.token}
    args = ["push", "--input", str(articles), "--guidelines", str(GUIDELINES), "--params", str(params)]
    procs = [subprocess.Popen([sys.executable, "-c", WAIT_THEN_RUN, str(go), *args], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        go.touch()  # both start now, on a server that has no such project yet
        outcomes = [(proc.returncode, err) for proc in procs for _, err in [proc.communicate(timeout=600)]]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 5], outcomes
    winner = next(p for p, (code, _) in zip(procs, outcomes, strict=True) if code == 0)
    won, lost = (next(err for code, err in outcomes if code == c) for c in (0, 5))
    assert f"push: {N} new task(s)" in won
    lines = lost.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: project '{title}' on {label_studio_server.url} "
                                                   f"is being pushed by "), lost
    assert f"pid {winner.pid} since " in lines[0] and "--break-lock" in lines[0]

    (project,) = projects_titled(api, title)  # the project both created at once: one left
    tasks = all_tasks(api, project["id"])
    keys = [(t["data"]["article_id"], t["data"]["text_hash"]) for t in tasks]
    assert len(tasks) == len(set(keys)) == N
    assert all(len(t["predictions"]) == 1 for t in tasks)
    assert lock_markers(api, title) == []  # released

    again = push_main(articles, GUIDELINES, params, env_file=env_file)  # the loser's retry finds all done
    assert (again.created, again.unchanged, again.duplicates.extra) == (0, N, 0)


# -- the lock itself ----------------------------------------------------------------------------


def test_a_held_lock_stops_another_at_once_and_is_released_on_success(api, label_studio_server):
    title = "Lock held"
    with PushLock(api, title, 60):
        assert len(lock_markers(api, title)) == 1
        other = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=30, retries=0)
        start = time.monotonic()
        pattern = rf"@\S+ pid {os.getpid()} since \d{{4}}-\d\d-\d\dT"
        with pytest.raises(LockHeldError, match=pattern) as info, PushLock(other, title, 60):
            pass
        assert time.monotonic() - start < 10 and "\n" not in str(info.value) and info.value.exit_code == 5
    assert lock_markers(api, title) == []
    with PushLock(api, title, 60):  # free again
        pass


@pytest.mark.parametrize("raised", [KeyboardInterrupt, RuntimeError])
def test_the_lock_is_released_on_error_and_ctrl_c(api, raised):
    title = "Lock released"
    with pytest.raises(raised), PushLock(api, title, 60):
        raise raised()
    assert lock_markers(api, title) == []


def _holder(label_studio_server, title: str, stale_s: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, label_studio_server.url, label_studio_server.token, title, str(stale_s)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n", proc.stderr.read() if proc.stderr else ""
    return proc


def test_sigterm_releases_the_lock(api, label_studio_server):
    title = "Lock on SIGTERM"
    proc = _holder(label_studio_server, title, 60)
    assert len(lock_markers(api, title)) == 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert lock_markers(api, title) == []


def test_a_killed_push_leaves_a_lock_that_expires(api, label_studio_server, capsys):
    title = "Lock of a dead push"
    stale_s = 2.0
    proc = _holder(label_studio_server, title, stale_s)
    proc.kill()  # no finally runs: the marker stays
    proc.wait(timeout=30)
    with pytest.raises(LockHeldError, match=f"pid {proc.pid} "), PushLock(api, title, stale_s):
        pass
    time.sleep(stale_s + 2.0)  # the server's clock has whole seconds
    with PushLock(api, title, stale_s):
        assert "taking over the push lock of" in capsys.readouterr().err
    assert lock_markers(api, title) == []


def test_break_lock_takes_a_live_lock_and_the_old_holder_leaves_the_new_one(api, label_studio_server, tmp_path,
                                                                            env_file, capsys):
    title = "Lock broken"
    old = PushLock(api, title, 1.0)  # refreshes every 0.2 s
    old.__enter__()
    try:
        report = push_main(synthetic(tmp_path / "few.jsonl", 3), GUIDELINES, params_for(tmp_path, title),
                           env_file=env_file, break_lock=True)
        assert report.created == 3
        assert "(--break-lock)" in capsys.readouterr().err
        breaker = PushLock(api, title, 60, break_lock=True)
        breaker.__enter__()
        time.sleep(1.0)
        assert old.lost  # its heartbeat saw the marker go
    finally:
        old.__exit__(None, None, None)
    assert len(lock_markers(api, title)) == 1  # the old holder did not remove the breaker's lock
    breaker.__exit__(None, None, None)
    assert lock_markers(api, title) == []


# -- duplicates ---------------------------------------------------------------------------------


def _annotate(api: LabelStudioAPI, task: dict) -> None:
    api.post(f"/api/tasks/{task['id']}/annotations", {"result": task["predictions"][0]["result"], "lead_time": 3.0},
             what="annotating")


def test_duplicates_are_reported_then_removed_with_the_flag_keeping_every_annotated_task(
        api, tmp_path, env_file, seed_preannotated):
    title = "Seeded duplicates"
    params = params_for(tmp_path, title)
    cfg = load_config(params)
    first = push_main(seed_preannotated, GUIDELINES, params, env_file=env_file)
    assert first.created == 5 and first.duplicates.extra == 0
    (project,) = projects_titled(api, title)
    pid = project["id"]
    bad = BadRecords("push", 0.0, quiet=True)
    a, b, c, *_ = build_tasks(read_jsonl(seed_preannotated, bad), cfg, seed_preannotated, bad)
    # what two unlocked pushes used to leave: A three times, B again without predictions, C twice
    api.post(f"/api/projects/{pid}/import", [a, a, {"data": b["data"]}, c], what="seeding duplicates")
    by_key: dict[str, list[dict]] = {}
    for task in sorted(all_tasks(api, pid), key=lambda t: t["id"]):
        by_key.setdefault(task["data"]["article_id"], []).append(task)
    ta, tb, tc = (by_key[t["data"]["article_id"]] for t in (a, b, c))
    assert (len(ta), len(tb), len(tc)) == (3, 2, 2) and tb[1]["predictions"] == []
    _annotate(api, ta[1])  # a younger copy of A holds the human work
    _annotate(api, tc[0])  # both copies of C do: a human decides
    _annotate(api, tc[1])

    seen = push_main(seed_preannotated, GUIDELINES, params, env_file=env_file, report_path=tmp_path / "seen.json")
    assert (seen.created, seen.duplicates.extra, seen.duplicates.removed) == (0, 4, [])
    assert len(all_tasks(api, pid)) == 9  # reported only
    listed = json.loads((tmp_path / "seen.json").read_text())
    assert listed["duplicate_tasks"] == 4
    assert {d["article_id"]: d["tasks"] for d in listed["duplicated_articles"]} == {
        a["data"]["article_id"]: [t["id"] for t in ta], b["data"]["article_id"]: [t["id"] for t in tb],
        c["data"]["article_id"]: [t["id"] for t in tc]}

    fixed = push_main(seed_preannotated, GUIDELINES, params, env_file=env_file, remove_duplicates=True,
                      report_path=tmp_path / "fixed.json")
    assert sorted(fixed.duplicates.removed) == sorted([ta[0]["id"], ta[2]["id"], tb[1]["id"]])
    left = {t["id"]: t for t in all_tasks(api, pid)}
    assert set(left) == {t["id"] for t in (ta[1], tb[0], tc[0], tc[1])} | {
        t["id"] for aid, ts in by_key.items() if aid not in {x["data"]["article_id"] for x in (a, b, c)} for t in ts}
    assert sum(t["total_annotations"] for t in left.values()) == 3  # no annotation lost
    assert all(len(t["predictions"]) == 1 for t in left.values())
    assert json.loads((tmp_path / "fixed.json").read_text())["removed"] == fixed.duplicates.removed

    after = push_main(seed_preannotated, GUIDELINES, params, env_file=env_file, remove_duplicates=True)
    (group,) = after.duplicates.groups  # C stays for a human to decide
    assert group.needs_human and group.tasks == (tc[0]["id"], tc[1]["id"]) and after.duplicates.removed == []


def test_removing_duplicates_keeps_the_oldest_and_gives_it_the_predictions_it_lacked(api, tmp_path, env_file):
    title = "Oldest copy without predictions"
    params = params_for(tmp_path, title)
    cfg = load_config(params)
    articles = synthetic(tmp_path / "one.jsonl", 1)
    project = ensure_project(api, cfg, GUIDELINES.read_text())
    bad = BadRecords("push", 0.0, quiet=True)
    (task,) = build_tasks(read_jsonl(articles, bad), cfg, articles, bad)
    api.post(f"/api/projects/{project['id']}/import", [{"data": task["data"]}], what="a copy without predictions")
    api.post(f"/api/projects/{project['id']}/import", [task], what="a copy with predictions")
    oldest, younger = sorted(t["id"] for t in all_tasks(api, project["id"]))
    report = push_main(articles, GUIDELINES, params, env_file=env_file, remove_duplicates=True)
    assert report.duplicates.removed == [younger] and report.refreshed == 1
    (left,) = all_tasks(api, project["id"])
    assert left["id"] == oldest and [p["model_version"] for p in left["predictions"]] == ["m@1+rules.r+code.c"]


def test_a_duplicate_annotated_after_the_listing_is_spared(api, tmp_path, env_file):
    title = "Duplicate annotated meanwhile"
    params = params_for(tmp_path, title)
    articles = synthetic(tmp_path / "one.jsonl", 1)
    push_main(articles, GUIDELINES, params, env_file=env_file)
    (project,) = projects_titled(api, title)
    (task,) = all_tasks(api, project["id"])
    api.post(f"/api/projects/{project['id']}/import", [{"data": task["data"]}], what="seeding a duplicate")
    old, new = sorted(all_tasks(api, project["id"]), key=lambda t: t["id"])
    key = (task["data"]["article_id"], task["data"]["text_hash"])
    report = DuplicateReport(find_duplicates([(old["id"], key, False), (new["id"], key, False)]))  # listed unannotated
    api.post(f"/api/tasks/{new['id']}/drafts", {"result": [], "lead_time": 1.0}, what="a draft")  # then work began
    remove_duplicates(api, project["id"], report)
    assert report.spared == [new["id"]] and report.removed == []
    assert {t["id"] for t in all_tasks(api, project["id"])} == {old["id"], new["id"]}


def test_two_projects_of_one_title_stop_the_push_before_the_lock_is_taken(api, tmp_path, env_file):
    title = "Twice titled"
    for _ in range(2):
        api.post("/api/projects", {"title": title}, what="a project")
    with pytest.raises(LabelStudioError, match=f"2 projects are titled '{title}'; rename all but one"):
        push_main(synthetic(tmp_path / "one.jsonl", 1), GUIDELINES, params_for(tmp_path, title), env_file=env_file)
    assert lock_markers(api, title) == []
