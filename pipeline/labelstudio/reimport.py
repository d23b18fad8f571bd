"""Human annotations of earlier snapshots submitted again on a (fresh) server, as their original annotators.

Each annotator's latest version of an article (same text) found in `annotations/` becomes an annotation
of a user standing for that annotator, with Label Studio's `import_id` carrying the original identity, so
merge sees one annotator, not two, and a rerun finds it there and submits nothing twice.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.common.contract import is_int
from pipeline.common.errors import BadRecords
from pipeline.common.provenance import sha256_text
from pipeline.human.snapshots import collect_tasks, identity_number, original_annotator, parse_time, snapshots
from pipeline.human.tombstones import drop_deleted
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.index import TaskIndex

Key = tuple[str, str, str]  # article id, text hash, annotator


@dataclass
class ReimportReport:
    """What the re-import of earlier human work did."""

    imported: int = 0
    already: int = 0
    no_task: int = 0  # versions whose article or text is not in the project (not pushed, or the text changed)

    def line(self) -> str:
        """One line for the terminal."""
        return (f"label-studio: earlier human work: {self.imported} annotation(s) imported, {self.already} already "
                f"here, {self.no_task} without a task of the same text")


def latest_versions(folder: Path) -> dict[Key, dict[str, Any]]:
    """Every annotator's latest submitted annotation per article and text, over every snapshot in `folder`."""
    bad = BadRecords("label-studio", 1.0, quiet=True)  # merge reports bad records; here they are only not imported
    found = snapshots(folder)
    tasks, _ = collect_tasks(found, bad)
    drop_deleted(tasks, found, bad)  # an annotation deleted in Label Studio is not brought back
    latest: dict[Key, tuple[datetime, dict[str, Any]]] = {}
    for article_id, items in tasks.items():
        for _, task in items:
            text = task["data"].get("text")
            if not isinstance(text, str):
                continue
            for ann in task.get("annotations") or []:
                if not isinstance(ann, dict) or ann.get("was_cancelled") or not isinstance(ann.get("result"), list):
                    continue
                when = parse_time(ann.get("updated_at") or ann.get("created_at"))
                if when is None:
                    continue  # no usable time: merge reports it, and it is not imported
                key = (article_id, sha256_text(text), original_annotator(ann))
                if key not in latest or latest[key][0] <= when:  # as instants, never as text
                    latest[key] = (when, ann)
    return {key: ann for key, (_, ann) in latest.items()}


def reimport(api: LabelStudioAPI, project_id: int, folder: Path, page_size: int) -> ReimportReport:
    """Submit the human versions of `folder`'s snapshots missing from the project as their original annotators'."""
    report = ReimportReport()
    here = TaskIndex.fetch(api, project_id, page_size)
    users = {u.get("email"): u for u in api.call("listing users", api.sdk.users.with_raw_response.list)}
    present: dict[int, set[int]] = {}
    for (article_id, text_hash, who), ann in sorted(latest_versions(folder).items()):
        number = identity_number(who)
        task = here.get((article_id, text_hash))
        if task is None or number is None:
            report.no_task += task is None
            continue
        tid = task.task_id
        if tid not in present:
            anns = api.call(f"listing the annotations of task {tid}", api.sdk.annotations.with_raw_response.list, tid)
            present[tid] = {a["import_id"] for a in anns if isinstance(a, dict) and is_int(a.get("import_id"))}
        if number in present[tid]:
            report.already += 1
            continue
        email = f"{who}@annotators.local"
        if email not in users:
            users[email] = api.call(f"creating the user standing for {who}", api.sdk.users.with_raw_response.create,
                                    email=email, username=who, first_name=who, password=secrets.token_urlsafe(18))
        body = {"result": ann["result"], "completed_by": users[email]["id"], "import_id": number,
                "ground_truth": ann.get("ground_truth") is True, "lead_time": ann.get("lead_time")}
        api.call(f"importing {who}'s annotation of article {article_id}", api.sdk.annotations.with_raw_response.create,
                 tid, **body)
        present[tid].add(number)
        report.imported += 1
    return report
