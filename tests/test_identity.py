"""Who an annotation is credited to (pipeline/human/origin.py) and the keyed pseudonyms of e-mail annotators."""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from pipeline.common.errors import BadRecords
from pipeline.human import pseudonym as pseudonyms
from pipeline.human.identity import annotator_id, credit, stamp
from pipeline.human.snapshots import parse_annotation

ROOT = Path(__file__).resolve().parent.parent
RESULT = [{"id": "r1", "type": "labels", "value": {"start": 0, "end": 6, "text": "Russia", "labels": ["GPE"]}}]


def ann(i: int, completed_by: int, updated_by: int | None = None, result: list | None = None,
        created: str = "2026-01-01T10:00:00.000100Z", updated: str = "2026-01-01T10:00:00.000150Z", **more: Any) -> dict:
    return {"id": i, "completed_by": completed_by, "updated_by": completed_by if updated_by is None else updated_by,
            "result": RESULT if result is None else result, "created_at": created, "updated_at": updated, **more}


def task(*stamps: dict, origin: str | None = "P") -> dict[str, Any]:
    return {"meta": {"pipeline_annotators": list(stamps)}, **({"pipeline_origin": {"project": origin}} if origin else {})}


def test_label_studios_import_id_is_never_an_identity() -> None:
    """Label Studio's own import puts the old annotation ids (1, 2) in import_id: one user stays one annotator."""
    one, two = ann(10, 5, import_id=1), ann(11, 5, import_id=2)
    assert credit(one, task()) == credit(two, task()) == ("annotator-5", False)


def test_a_stamp_names_the_annotator_of_that_very_annotation_on_its_project() -> None:
    mark = stamp("annotator-2", 7, "P", RESULT)
    assert credit(ann(7, 9, updated_by=1), task(mark)) == ("annotator-2", True)  # the stand-in (9), made by admin (1)
    # another annotator of the same project who happens to submit the same result is still themself
    assert credit(ann(8, 4), task(mark)) == ("annotator-4", False)


def test_a_stamp_travels_with_the_work_to_another_project() -> None:
    """After Label Studio's own export and import the ids differ, the result and the task meta do not."""
    mark = stamp("annotator-2", 7, "P", RESULT)
    moved = ann(31, 1, updated_by=None, result=json.loads(json.dumps(RESULT[::-1])), import_id=7)
    assert credit(moved, task(mark, origin="Q")) == ("annotator-2", True)
    changed = ann(31, 1, result=[{**RESULT[0], "value": {**RESULT[0]["value"], "labels": ["ORG"]}}])
    assert credit(changed, task(mark, origin="Q")) == ("annotator-1", False)  # a stamp verifies its result


def test_an_edit_of_a_stamped_annotation_is_the_editors_version() -> None:
    mark = stamp("annotator-2", 7, "P", RESULT)
    edited = ann(7, 9, updated_by=3, result=[])  # updated at once: the stamp, not the clock, tells it was edited
    assert credit(edited, task(mark)) == ("annotator-3", False)


@pytest.mark.parametrize(("updated", "credited"), [
    ("2026-01-01T10:00:00.000150Z", "annotator-2"),  # created through the API by user 1 for user 2, in one instant
    ("2026-01-01T10:05:00Z", "annotator-3"),  # user 3 opened it later, edited it and pressed Update
])
def test_an_unstamped_annotation_updated_later_by_another_user_is_the_editors(updated: str, credited: str) -> None:
    assert credit(ann(1, 2, updated_by=3, updated=updated), task()) == (credited, False)
    assert credit(ann(1, 2, updated=updated), task()) == ("annotator-2", False)  # their own later update


def test_the_committed_snapshot_keeps_its_pseudonyms() -> None:
    """The committed seed gold was made through the API by the admin for user 2 (updated_by 1): still annotator-2."""
    [snapshot] = (ROOT / "annotations").glob("*.jsonl")
    lines = [json.loads(line) for line in snapshot.read_text(encoding="utf-8").splitlines()]
    assert {a["updated_by"] for t in lines for a in t["annotations"]} == {1}
    bad = BadRecords("merge", 1.0, quiet=True)
    credited = {parse_annotation(a, t["data"]["text"], {}, lambda *_: None, "x", bad, entity_labels=("GPE",),
                                 stance_labels=("against",), task=t).annotator  # type: ignore[union-attr]
                for t in lines for a in t["annotations"]}
    assert credited == {"annotator-2"}


def test_a_stamped_version_does_not_say_how_the_original_began() -> None:
    bad = BadRecords("merge", 1.0, quiet=True)
    mark = stamp("annotator-2", 7, "P", [])
    version = parse_annotation(ann(7, 9, result=[], parent_prediction=None), "Russia", {}, lambda *_: None, "x", bad,
                               entity_labels=("GPE",), stance_labels=("against",), task=task(mark))
    assert version is not None and version.annotator == "annotator-2" and version.from_prediction is None


def test_the_pseudonym_key_is_made_once_in_a_private_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(pseudonyms.KEY_NAME, raising=False)
    monkeypatch.setattr(pseudonyms, "_cache", {})
    env = tmp_path / ".env"
    env.write_text("LABEL_STUDIO_URL=http://127.0.0.1:1", encoding="utf-8")  # no final newline
    key = pseudonyms.pseudonym_key(env)
    lines = env.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "LABEL_STUDIO_URL=http://127.0.0.1:1" and lines[1] == f"{pseudonyms.KEY_NAME}={key.decode()}"
    said = capsys.readouterr()
    assert len(key) == 64 and key.decode() not in said.out + said.err
    monkeypatch.setattr(pseudonyms, "_cache", {})
    assert pseudonyms.pseudonym_key(env) == key  # read back, not made again
    assert env.read_text(encoding="utf-8").count(pseudonyms.KEY_NAME) == 1
    fresh = tmp_path / "new" / ".env"
    fresh.parent.mkdir()
    other = pseudonyms.pseudonym_key(fresh)
    assert other != key and stat.S_IMODE(fresh.stat().st_mode) == 0o600
    expected = "annotator-" + hmac.new(key, b"ann@example.org", hashlib.sha256).hexdigest()[:12]
    assert pseudonyms.pseudonym(" Ann@Example.org", key) == expected
    assert pseudonyms.pseudonym("ann@example.org", other) != expected


def test_the_environment_key_wins_and_a_dvc_run_makes_the_key_in_the_working_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pseudonyms, "_cache", {})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(pseudonyms.KEY_NAME, "from-the-environment")
    assert annotator_id("a@b.c") == "annotator-" + hmac.new(b"from-the-environment", b"a@b.c",
                                                             hashlib.sha256).hexdigest()[:12]
    assert not (tmp_path / ".env").exists()
    monkeypatch.delenv(pseudonyms.KEY_NAME)
    made = annotator_id({"email": "a@b.c"})
    assert (tmp_path / ".env").is_file() and made != "annotator-" + hashlib.sha256(b"a@b.c").hexdigest()[:12]
    assert annotator_id("A@B.C") == made  # one address, one pseudonym
