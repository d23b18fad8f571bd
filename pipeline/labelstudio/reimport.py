"""Human annotations of earlier snapshots submitted again on a (fresh) server, as their original annotators.

Each annotator's latest version of an article (same text) found in `annotations/` becomes an annotation of a
user standing for that annotator (`annotator-<id>@annotators.local`), and the task's meta gets the pipeline's
stamp naming the annotator (pipeline/human/origin.py), so merge credits the original annotator, not the
stand-in. Work whose latest version came from this very project is never re-imported (it is here, or was
edited or deleted here), and a stamped version is submitted once, so a rerun submits nothing twice.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.common.errors import BadRecords
from pipeline.common.provenance import sha256_text
from pipeline.human.identity import STAMPS_KEY, credit, result_digest, stamp, stamps, task_origin
from pipeline.human.snapshots import collect_tasks, parse_time, snapshots
from pipeline.human.tombstones import drop_deleted
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.index import TaskIndex
from pipeline.labelstudio.pull import fingerprint_of

Key = tuple[str, str, str]  # article id, text hash, annotator


@dataclass
class ReimportReport:
    """What the re-import of earlier human work did."""

    imported: int = 0
    already: int = 0
    from_here: int = 0  # versions pulled from this very project: never re-imported
    no_task: int = 0  # versions whose article or text is not in the project (not pushed, or the text changed)

    def line(self) -> str:
        """One line for the terminal."""
        return (f"label-studio: earlier human work: {self.imported} annotation(s) imported, {self.already} already "
                f"here, {self.from_here} pulled from this project, {self.no_task} without a task of the same text")


def _latest(folder: Path) -> dict[Key, tuple[datetime, dict[str, Any], str | None]]:
    """Every annotator's latest submitted annotation per article and text, with its time and origin."""
    bad = BadRecords("label-studio", 1.0, quiet=True)  # merge reports bad records; here they are only not imported
    found = snapshots(folder)
    tasks, _ = collect_tasks(found, bad)
    drop_deleted(tasks, found, bad)  # an annotation deleted in Label Studio is not brought back
    latest: dict[Key, tuple[datetime, dict[str, Any], str | None]] = {}
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
                key = (article_id, sha256_text(text), credit(ann, task)[0])
                if key not in latest or latest[key][0] <= when:  # as instants, never as text
                    latest[key] = (when, ann, task_origin(task))
    return latest


def latest_versions(folder: Path, here: str | None = None) -> dict[Key, dict[str, Any]]:
    """Every annotator's latest submitted annotation per article and text over every snapshot in `folder`, less
    those whose latest version came from the project fingerprinted `here`."""
    return {key: ann for key, (_, ann, origin) in _latest(folder).items() if here is None or origin != here}


def reimport(api: LabelStudioAPI, project_id: int, folder: Path, page_size: int) -> ReimportReport:
    """Submit the human versions of `folder`'s snapshots missing from the project as their original annotators'."""
    report = ReimportReport()
    here = fingerprint_of(api, project_id)
    index = TaskIndex.fetch(api, project_id, page_size)
    users = {u.get("email"): u for u in api.call("listing users", api.sdk.users.with_raw_response.list)}
    metas: dict[int, dict[str, Any]] = {}
    for (article_id, text_hash, who), (_, ann, origin) in sorted(_latest(folder).items()):
        if origin == here:
            report.from_here += 1
            continue
        task = index.get((article_id, text_hash))
        if task is None:
            report.no_task += 1
            continue
        tid = task.task_id
        if tid not in metas:
            meta = api.get(f"/api/tasks/{tid}", what=f"reading task {tid}").get("meta")
            metas[tid] = meta if isinstance(meta, dict) else {}
        digest = result_digest(ann["result"])
        if any(s["annotator"] == who and s["result_sha256"] == digest for s in stamps({"meta": metas[tid]})):
            report.already += 1
            continue
        email = f"{who}@annotators.local"
        if email not in users:
            users[email] = api.call(f"creating the user standing for {who}", api.sdk.users.with_raw_response.create,
                                    email=email, username=who, first_name=who, password=secrets.token_urlsafe(18))
        body = {"result": ann["result"], "completed_by": users[email]["id"],
                "ground_truth": ann.get("ground_truth") is True, "lead_time": ann.get("lead_time")}
        made = api.post(f"/api/tasks/{tid}/annotations", body, what=f"importing {who}'s annotation of article {article_id}")
        stamped = [*stamps({"meta": metas[tid]}), stamp(who, made["id"], here, ann["result"])]
        metas[tid] = {**metas[tid], STAMPS_KEY: stamped}
        api.patch(f"/api/tasks/{tid}", {"meta": metas[tid]}, what=f"stamping {who}'s annotation of task {tid}")
        report.imported += 1
    return report
