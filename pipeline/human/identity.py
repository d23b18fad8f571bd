"""Who made an annotation, by a rule the pipeline owns, and which Label Studio project a snapshot task came from.

Origin: `pull` adds `pipeline_origin: {"project": FINGERPRINT}` to every task line it writes, the fingerprint
of the Label Studio project (its id and creation instant, hashed: the same on every pull of one project of one
server, another for any other project or server). `label-studio` never re-imports work whose latest version
came from the project it imports into.

Stamps: when the pipeline submits an annotation on someone's behalf (label-studio's re-import of earlier
work), it records in the task's `meta.pipeline_annotators` a stamp {annotator, annotation id, project
fingerprint, sha256 of the result}. Label Studio keeps task meta and results through its own export and
import, so the stamp travels with the work.

The identity rule (README, docs/annotating.md), for each annotation of a snapshot task:
1. stamped: a stamp whose result hash equals the annotation's, made for this very annotation (same project
   and id) or made on another project (the work migrated with Label Studio's own export and import), names
   the annotator;
2. edited: Label Studio's `updated_by` names a user other than `completed_by`, and the pipeline stamped this
   annotation (same project and id) but its result changed since, or it was updated more than EDIT_GAP_S
   after it was created: the annotation is the editor's version (`updated_by`). The original annotator keeps
   their version of the earlier snapshots;
3. otherwise `completed_by`.
Label Studio's `import_id` (after its own import, the old annotation id) is never read as an identity.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pipeline.common.contract import is_int
from pipeline.human.instants import parse_time
from pipeline.human.pseudonym import pseudonym

ORIGIN_KEY = "pipeline_origin"  # in each task line pull writes
STAMPS_KEY = "pipeline_annotators"  # in a task's meta
# Label Studio sets updated_by to whoever creates an annotation (through the API, also for another user), with
# updated_at in the same instant as created_at; a later update by someone else is an edit.
EDIT_GAP_S = 1.0


def project_fingerprint(project: Mapping[str, Any]) -> str:
    """The fingerprint of a Label Studio project: its id and creation instant, hashed (16 hex digits)."""
    return hashlib.sha256(f"label-studio project {project.get('id')} {project.get('created_at')}".encode()).hexdigest()[:16]


def task_origin(task: Mapping[str, Any]) -> str | None:
    """The project fingerprint a snapshot task line came from, or None (not pulled by this pipeline)."""
    origin = task.get(ORIGIN_KEY)
    project = origin.get("project") if isinstance(origin, Mapping) else None
    return project if isinstance(project, str) else None


def result_digest(result: Any) -> str:
    """sha256 of an annotation's result in canonical JSON (key order and spacing do not count)."""
    return hashlib.sha256(json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def stamp(annotator: str, annotation_id: int, project: str, result: Any) -> dict[str, Any]:
    """The stamp recording that the pipeline submitted `result` as annotation `annotation_id` for `annotator`."""
    return {"annotator": annotator, "annotation": annotation_id, "project": project, "result_sha256": result_digest(result)}


def stamps(task: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The well-formed stamps in a task's meta (others are ignored: they verify nothing)."""
    meta = task.get("meta")
    found = meta.get(STAMPS_KEY) if isinstance(meta, Mapping) else None
    return [s for s in found if isinstance(s, dict) and isinstance(s.get("annotator"), str)
            and isinstance(s.get("result_sha256"), str)] if isinstance(found, list) else []


def annotator_id(completed_by: Any) -> str:
    """A pseudonymous annotator id from a Label Studio user: its numeric id, else a keyed hash (never an e-mail)."""
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("id", completed_by.get("email"))
    if isinstance(completed_by, bool) or completed_by is None or completed_by == "":
        return "annotator-unknown"
    if isinstance(completed_by, int) or (isinstance(completed_by, str) and completed_by.isascii()
                                         and completed_by.isdigit()):
        return f"annotator-{int(completed_by)}"
    return pseudonym(str(completed_by))


def _user(value: Any) -> Any:
    """A user id of the export (`completed_by`, `updated_by`: an id, or an object with one)."""
    return value.get("id", value.get("email")) if isinstance(value, dict) else value


def credit(ann: Mapping[str, Any], task: Mapping[str, Any]) -> tuple[str, bool]:
    """Who an annotation of a snapshot task is credited to (module docstring), and whether a stamp named them."""
    origin = task_origin(task)
    digest = result_digest(ann.get("result"))
    own = [s for s in stamps(task) if origin is not None and s.get("project") == origin
           and s.get("annotation") == ann.get("id")]
    for s in stamps(task):
        if s["result_sha256"] == digest and (s in own or s.get("project") != origin):
            return s["annotator"], True
    author, editor = _user(ann.get("completed_by")), _user(ann.get("updated_by"))
    if editor is not None and editor != "" and editor != author:
        created, updated = parse_time(ann.get("created_at")), parse_time(ann.get("updated_at"))
        late = created is not None and updated is not None and updated - created > timedelta(seconds=EDIT_GAP_S)
        if own or late:
            return annotator_id(editor), False
    return annotator_id(ann.get("completed_by")), False


def was_imported(ann: Mapping[str, Any], stamped: bool) -> bool:
    """Whether an annotation was submitted by an import (the pipeline's stamp, or Label Studio's `import_id`)."""
    number: Any = ann.get("import_id")
    return stamped or (is_int(number) and number > 0)
