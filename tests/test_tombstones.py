"""Deletions in Label Studio: an annotation missing from a later snapshot of the same server and project is dropped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline import merge as stage
from pipeline.common.errors import InputError
from pipeline.common.jsonl import read_jsonl
from pipeline.human.origin import Origin, meta_path, origin_record, read_origin, server_digest, server_name
from pipeline.human.snapshots import snapshots
from pipeline.labelstudio.reimport import latest_versions

FIXTURES = Path(__file__).parent / "fixtures" / "publish"
OLD, NEW = "20220112T093000Z.jsonl", "20220113T093000Z.jsonl"
RULES = (Path("resources/entity_patterns.yaml"), Path("resources/actors.yaml"), Path("resources/stance_cues.yaml"))
HERE = Origin(server_digest("http://127.0.0.1:8080"), 3, "2022-01-01T10:00:00.123456Z", "Geopolitics")
RUSSIA, MOSCOW = "2e98a7da2aa6cc38", "5c99feb575b4f99c"


def fixture_tasks() -> list[dict[str, Any]]:
    """The fixture snapshot's tasks: Russia (annotations 101, 102 and a skip, 103), Talks (a skip, 104),
    Blinken (105), Moscow (106)."""
    return [json.loads(line) for line in (FIXTURES / "annotations" / OLD).read_text().splitlines()]


def later_tasks() -> list[dict[str, Any]]:
    """The same project later: annotation 102 deleted, and Moscow's task (with annotation 106) deleted."""
    tasks = [t for t in fixture_tasks() if t["data"]["article_id"] != MOSCOW]
    tasks[0]["annotations"] = [a for a in tasks[0]["annotations"] if a["id"] != 102]
    return tasks


def write_snapshot(folder: Path, name: str, tasks: list[dict[str, Any]], origin: Origin | None) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    if origin is not None:
        meta_path(path).write_text(json.dumps(origin_record(path, origin)))
    return path


def run_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, dict], dict]:
    """merge.main over tmp_path/annotations; the output records by article id, and the report."""
    monkeypatch.setattr(stage, "_actor_linker", lambda *args: lambda text, label: None)
    params = tmp_path / "params.yaml"
    params.write_text("preannotate:\n  entity_labels: [PERSON, NORP, ORG, GPE, LOC]\n  stance_labels: [against, favor]\n"
                      "merge:\n  seed: 7\n  splits: {train: 0.6, validation: 0.2, test: 0.2}\n  max_bad_share: 0.5\n")
    out, rep = tmp_path / "labeled.jsonl", tmp_path / "merge_report.json"
    stage.main(FIXTURES / "preannotated.jsonl", tmp_path / "annotations", out, rep, params, RULES)
    return {r["id"]: r for _, r in read_jsonl(out)}, json.loads(rep.read_text())


def test_an_annotation_missing_from_a_later_snapshot_of_its_project_is_dropped_and_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    write_snapshot(tmp_path / "annotations", OLD, fixture_tasks(), HERE)
    write_snapshot(tmp_path / "annotations", NEW, later_tasks(), HERE)
    out, report = run_merge(tmp_path, monkeypatch)
    assert out[RUSSIA]["annotators"] == ["annotator-1"]  # annotator-2's deleted version is gone
    assert [v["annotation_id"] for v in out[RUSSIA]["annotations"]] == [101]
    assert out[MOSCOW]["status"] == "silver"  # its task was deleted, and with it its only annotation
    assert [(d["annotation_id"], d["article_id"], d["annotator"], Path(d["missing_from"]).name) for d in
            report["deleted"]] == [(102, RUSSIA, "annotator-2", NEW), (106, MOSCOW, "annotator-4", NEW)]
    assert all(Path(d["last_held_by"]).name == OLD for d in report["deleted"])
    err = capsys.readouterr().err
    assert "merge: deleted in Label Studio: annotation 102 by annotator-2 of article 2e98a7da2aa6cc38" in err
    assert "2 annotation(s) deleted in Label Studio dropped" in err
    assert not any("meta.json" in p["where"] for p in report["bad_records"])  # the sidecars are no snapshots
    assert [Path(s["path"]).name for s in report["snapshots"]] == [OLD, NEW]


@pytest.mark.parametrize("other", [
    Origin(HERE.server, 4, HERE.project_created_at),  # another project of the same server
    Origin(HERE.server, 3, "2022-03-01T10:00:00.000000Z"),  # project 3 deleted and created again
    Origin(server_digest("http://127.0.0.1:8081"), 3, HERE.project_created_at),  # another server
])
def test_a_snapshot_of_another_project_does_not_tombstone(
        other: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_snapshot(tmp_path / "annotations", OLD, fixture_tasks(), HERE)
    write_snapshot(tmp_path / "annotations", NEW, later_tasks(), other)
    out, report = run_merge(tmp_path, monkeypatch)
    assert report["deleted"] == []
    assert out[RUSSIA]["annotators"] == ["annotator-1", "annotator-2"] and out[MOSCOW]["status"] == "gold"


@pytest.mark.parametrize(("old", "new"), [(None, HERE), (HERE, None)])
def test_a_snapshot_without_origin_neither_tombstones_nor_is_tombstoned(
        old: Origin | None, new: Origin | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_snapshot(tmp_path / "annotations", OLD, fixture_tasks(), old)
    write_snapshot(tmp_path / "annotations", NEW, later_tasks(), new)
    out, report = run_merge(tmp_path, monkeypatch)
    assert report["deleted"] == []
    assert out[RUSSIA]["annotators"] == ["annotator-1", "annotator-2"] and out[MOSCOW]["status"] == "gold"


def test_a_later_snapshot_with_an_unreadable_line_tombstones_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A line that could not be read may hold the annotation: no evidence of a deletion."""
    write_snapshot(tmp_path / "annotations", OLD, fixture_tasks(), HERE)
    newer = write_snapshot(tmp_path / "annotations", NEW, later_tasks(), HERE)
    newer.write_text(newer.read_text() + '{"id": 4, "data": {"article_id": "5c99feb575b4f99c"\n')
    out, report = run_merge(tmp_path, monkeypatch)
    assert report["deleted"] == [] and out[MOSCOW]["status"] == "gold"
    assert f"{newer}:4" in report["bad_task_lines"]


def test_only_the_newest_readable_snapshot_of_an_origin_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An annotation held by the newest readable snapshot is alive, whatever an older one lacked; a newer unreadable
    one adds nothing."""
    write_snapshot(tmp_path / "annotations", "20220111T093000Z.jsonl", later_tasks(), HERE)  # before 102 and 105
    write_snapshot(tmp_path / "annotations", OLD, fixture_tasks(), HERE)
    (tmp_path / "annotations" / NEW).write_text("{not json\n")
    meta_path(tmp_path / "annotations" / NEW).write_text(json.dumps(origin_record(tmp_path / "annotations" / NEW, HERE)))
    out, report = run_merge(tmp_path, monkeypatch)
    assert report["deleted"] == []
    assert out[RUSSIA]["annotators"] == ["annotator-1", "annotator-2"]


def test_lost_gold_names_the_deletion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_snapshot(tmp_path / "annotations", OLD, fixture_tasks(), HERE)
    run_merge(tmp_path, monkeypatch)
    write_snapshot(tmp_path / "annotations", NEW, later_tasks(), HERE)
    _, report = run_merge(tmp_path, monkeypatch)
    assert report["lost_gold"] == [{"article_id": MOSCOW, "now": "silver",
                                    "reason": "its human annotation was deleted in Label Studio"}]


def test_a_deleted_annotation_is_not_imported_again(tmp_path: Path) -> None:
    write_snapshot(tmp_path / "annotations", OLD, fixture_tasks(), HERE)
    assert {a["id"] for a in latest_versions(tmp_path / "annotations").values()} == {101, 102, 105, 106}
    write_snapshot(tmp_path / "annotations", NEW, later_tasks(), HERE)
    assert {a["id"] for a in latest_versions(tmp_path / "annotations").values()} == {101, 105}


def test_a_sidecar_without_its_snapshot_is_an_error(tmp_path: Path) -> None:
    snapshot = write_snapshot(tmp_path / "annotations", OLD, fixture_tasks(), HERE)
    snapshot.unlink()
    with pytest.raises(InputError, match=r"20220112T093000Z\.meta\.json: the origin of snapshot 20220112T093000Z"):
        snapshots(tmp_path / "annotations")


@pytest.mark.parametrize(("content", "message"), [
    ("{", "not a JSON object"),
    ("[]", "not a JSON object"),
    ('{"snapshot": "20220101T000000Z.jsonl"}', "key 'snapshot'"),
    (json.dumps({**origin_record(Path(OLD), HERE), "project_id": "3"}), "key 'project_id'"),
])
def test_a_bad_sidecar_is_one_error_naming_it(content: str, message: str, tmp_path: Path) -> None:
    snapshot = write_snapshot(tmp_path / "annotations", OLD, fixture_tasks(), None)
    meta_path(snapshot).write_text(content)
    with pytest.raises(InputError, match=f"meta.json: {message}"):
        read_origin(snapshot)


def test_a_server_has_one_spelling() -> None:
    assert server_name("HTTP://LocalHost/") == server_name("http://localhost:80") == "http://localhost:80"
    assert server_name("https://ls.example.org/label-studio/") == "https://ls.example.org:443/label-studio"
    assert server_digest("HTTP://LocalHost/") == server_digest("http://localhost:80") != server_digest("http://localhost:81")
    assert "localhost" not in server_digest("http://localhost")


def test_a_deleted_reimport_takes_the_version_it_stood_for_with_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The re-imported copy of annotator-2's version (import_id 2) is deleted on the new server: the older
    version it stood for goes too; a plain annotation of user 2 there (another person: ids are per server) does not."""
    old = fixture_tasks()
    write_snapshot(tmp_path / "annotations", "20220101T000000Z.jsonl", old, None)  # e.g. the committed seed
    russia, blinken = json.loads(json.dumps(old[0])), json.loads(json.dumps(old[2]))
    copy = {**old[0]["annotations"][1], "id": 501, "completed_by": 77, "import_id": 2,
            "updated_at": "2022-02-01T00:00:00Z"}
    russia["annotations"], blinken["annotations"] = [copy], [{**old[2]["annotations"][0], "id": 503,
                                                             "updated_at": "2022-02-01T00:00:00Z"}]
    write_snapshot(tmp_path / "annotations", OLD, [russia, blinken], HERE)
    assert {(a["id"]) for a in latest_versions(tmp_path / "annotations").values()} == {101, 501, 503, 106}
    russia["annotations"], blinken["annotations"] = [], []
    write_snapshot(tmp_path / "annotations", NEW, [russia, blinken], HERE)
    out, report = run_merge(tmp_path, monkeypatch)
    assert out[RUSSIA]["annotators"] == ["annotator-1"]
    assert [(d["annotation_id"], d["annotator"], Path(d["last_held_by"]).name, d["reimported_as"])
            for d in report["deleted"]] == [(501, "annotator-2", OLD, None), (503, "annotator-2", OLD, None),
                                            (102, "annotator-2", "20220101T000000Z.jsonl", 501)]
    assert {a["id"] for a in latest_versions(tmp_path / "annotations").values()} == {101, 105, 106}
