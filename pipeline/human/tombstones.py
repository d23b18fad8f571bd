"""Deletions in Label Studio: an annotation that a later snapshot of the same server and project lacks was deleted.

Snapshots are compared only within one origin (pipeline/human/origin.py): the newest complete snapshot of an
origin (every task line of it readable) holds every annotation still alive there; an annotation of an older
snapshot of that origin that neither it nor a newer one holds is a tombstone, removed from every snapshot of
the origin before anything reads the versions. A deleted task takes its annotations with it. Snapshots without
an origin (older pulls, exports downloaded from the UI) neither tombstone anything nor lose anything here,
with one exception: a deleted re-import (an annotation the pipeline stamped or Label Studio imported,
pipeline/human/identity.py) stood for its annotator's version of the article, so that annotator's versions of the same
article and text no newer than it are dropped too, from any snapshot (else they would count, and be imported
again).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.common.errors import BadRecords
from pipeline.common.provenance import sha256_text
from pipeline.human.identity import credit, was_imported
from pipeline.human.origin import read_origin
from pipeline.human.snapshots import Tasks, parse_time, snapshot_of

Key = tuple[str, str, str]  # article id, sha256 of the text, annotator
SHOWN = 20  # tombstones printed one a line; the rest are counted (all are in the merge report)


@dataclass(frozen=True)
class Tombstone:
    """One annotation deleted in Label Studio: the last snapshot that held it, and the later one that lacks it."""

    annotation_id: int | str | None
    article_id: str
    annotator: str
    held_by: str
    deleted_by: str
    cancelled: bool
    reimported_as: int | str | None = None  # a version retracted with the deleted re-import that stood for it

    def record(self) -> dict[str, Any]:
        """Plain data for the merge report."""
        return {"annotation_id": self.annotation_id, "article_id": self.article_id, "annotator": self.annotator,
                "last_held_by": self.held_by, "missing_from": self.deleted_by, "cancelled": self.cancelled,
                "reimported_as": self.reimported_as}

    def line(self, stage: str) -> str:
        """One line for stderr."""
        what = "skipped task" if self.cancelled else "annotation"
        why = (f"re-imported as annotation {self.reimported_as}, which {self.deleted_by} lacks"
               if self.reimported_as is not None else f"in {self.held_by}, not in the later {self.deleted_by}")
        return (f"{stage}: deleted in Label Studio: {what} {self.annotation_id} by {self.annotator} of article "
                f"{self.article_id} ({why}); dropped")


def _id(ann: Any) -> int | str | None:
    """An annotation's Label Studio id (unique on its server), or None if it has none usable."""
    aid = ann.get("id") if isinstance(ann, dict) else None
    return aid if isinstance(aid, int | str) and not isinstance(aid, bool) else None


def _complete(path: Path, bad: BadRecords) -> bool:
    """Whether every task line of a snapshot was read (no line of it reported so far): a line that could not be
    read may hold any annotation, so an incomplete snapshot is no evidence of a deletion."""
    name = str(path)
    return not any(p["where"] == name or p["where"].startswith(f"{name}:") for p in bad.problems)


def drop_deleted(tasks: Tasks, found: Sequence[Path], bad: BadRecords) -> list[Tombstone]:
    """Remove the annotations deleted in Label Studio from `tasks` (as `collect_tasks` read `found`, oldest first,
    with `bad` holding only what it reported); return them, one per annotation."""
    held: dict[str, dict[int | str, tuple[str, dict[str, Any], dict[str, Any]]]] = defaultdict(dict)
    for article_id, items in tasks.items():
        for where, task in items:
            for ann in task.get("annotations") or []:
                if (aid := _id(ann)) is not None:
                    held[snapshot_of(where)][aid] = (article_id, task, ann)
    by_origin: dict[tuple[str, int, str], list[Path]] = defaultdict(list)
    for path in found:
        if (origin := read_origin(path)) is not None:
            by_origin[origin.key].append(path)
    gone: dict[str, set[int | str]] = {}  # snapshot -> ids to drop from it
    tombstones: list[Tombstone] = []
    retracted: dict[Key, tuple[datetime, Tombstone]] = {}  # versions that a deleted re-import stood for
    for paths in by_origin.values():
        complete = [i for i, p in enumerate(paths) if _complete(p, bad)]
        if not complete:
            continue
        newest = complete[-1]
        alive = {aid for p in paths[newest:] for aid in held[str(p)]}
        last = {aid: (str(path), *item) for path in paths[:newest] for aid, item in held[str(path)].items()
                if aid not in alive}
        for path in paths:
            gone[str(path)] = set(last)
        for aid, (where, article_id, task, ann) in sorted(last.items(), key=lambda kv: (kv[1][1], str(kv[0]))):
            annotator, stamped = credit(ann, task)
            tomb = Tombstone(aid, article_id, annotator, where, str(paths[newest]), ann.get("was_cancelled") is True)
            tombstones.append(tomb)
            key, when = _version_key(article_id, task, ann), _time(ann)
            if was_imported(ann, stamped) and key and when and not tomb.cancelled:
                retracted[key] = max(retracted.get(key, (when, tomb)), (when, tomb), key=lambda x: x[0])
    older: dict[tuple[Any, Key], Tombstone] = {}
    if not any(gone.values()) and not retracted:
        return tombstones
    for article_id, items in tasks.items():
        for where, task in items:
            ids = gone.get(snapshot_of(where), set())
            keep = []
            for ann in task.get("annotations") or []:
                if _id(ann) in ids:
                    continue
                key = _version_key(article_id, task, ann) if retracted else None
                when = _time(ann) if key in retracted else None
                if key in retracted and when is not None and when <= retracted[key][0] and not ann.get("was_cancelled"):
                    copy = retracted[key][1]
                    older[(_id(ann), key)] = Tombstone(_id(ann), article_id, key[2], snapshot_of(where),
                                                       copy.deleted_by, False, reimported_as=copy.annotation_id)
                    continue
                keep.append(ann)
            if len(keep) != len(task.get("annotations") or []):
                task["annotations"] = keep
    return tombstones + sorted(older.values(), key=lambda t: (t.article_id, t.annotator, str(t.annotation_id)))


def _version_key(article_id: str, task: dict[str, Any], ann: Any) -> Key | None:
    """(article id, sha256 of the task's text, annotator): what one re-imported annotation stands for."""
    data = task.get("data")
    text = data.get("text") if isinstance(data, dict) else None
    return (article_id, sha256_text(text), credit(ann, task)[0]) if isinstance(text, str) and isinstance(ann, dict) \
        else None


def _time(ann: Any) -> datetime | None:
    """When an annotation was last updated, or None if it does not say."""
    stamp = (ann.get("updated_at") or ann.get("created_at")) if isinstance(ann, dict) else None
    return parse_time(stamp) if stamp else None


def report_deleted(tombstones: Sequence[Tombstone], stage: str) -> None:
    """Print the tombstones on stderr, one a line up to SHOWN, then how many more."""
    for tomb in tombstones[:SHOWN]:
        print(tomb.line(stage), file=sys.stderr)
    if len(tombstones) > SHOWN:
        print(f"{stage}: deleted in Label Studio: {len(tombstones) - SHOWN} more (merge report, deleted)",
              file=sys.stderr)
