"""Deletions in Label Studio: an annotation that a later snapshot of the same server and project lacks was deleted.

Snapshots are compared only within one origin (pipeline/human/origin.py): the newest complete snapshot of an
origin (every task line of it readable) holds every annotation still alive there; an annotation of an older
snapshot of that origin that neither it nor a newer one holds is a tombstone, removed from every snapshot of
the origin before anything reads the versions. A deleted task takes its annotations with it. Snapshots without
an origin (older pulls, exports downloaded from the UI) neither tombstone anything nor lose anything here.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.common.errors import BadRecords
from pipeline.human.origin import read_origin
from pipeline.human.snapshots import Tasks, original_annotator, snapshot_of

SHOWN = 20  # tombstones printed one a line; the rest are counted (all are in the merge report)


@dataclass(frozen=True)
class Tombstone:
    """One annotation deleted in Label Studio: the last snapshot that held it, and the later one that lacks it."""

    annotation_id: int | str
    article_id: str
    annotator: str
    held_by: str
    deleted_by: str
    cancelled: bool

    def record(self) -> dict[str, Any]:
        """Plain data for the merge report."""
        return {"annotation_id": self.annotation_id, "article_id": self.article_id, "annotator": self.annotator,
                "last_held_by": self.held_by, "missing_from": self.deleted_by, "cancelled": self.cancelled}

    def line(self, stage: str) -> str:
        """One line for stderr."""
        what = "skipped task" if self.cancelled else "annotation"
        return (f"{stage}: deleted in Label Studio: {what} {self.annotation_id} by {self.annotator} of article "
                f"{self.article_id} (in {self.held_by}, not in the later {self.deleted_by}); dropped")


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
    held: dict[str, dict[int | str, tuple[str, dict[str, Any]]]] = defaultdict(dict)  # snapshot -> id -> article, ann
    for article_id, items in tasks.items():
        for where, task in items:
            for ann in task.get("annotations") or []:
                if (aid := _id(ann)) is not None:
                    held[snapshot_of(where)][aid] = (article_id, ann)
    by_origin: dict[tuple[str, int, str], list[Path]] = defaultdict(list)
    for path in found:
        if (origin := read_origin(path)) is not None:
            by_origin[origin.key].append(path)
    gone: dict[str, set[int | str]] = {}  # snapshot -> ids to drop from it
    tombstones: list[Tombstone] = []
    for paths in by_origin.values():
        complete = [i for i, p in enumerate(paths) if _complete(p, bad)]
        if not complete:
            continue
        newest = complete[-1]
        alive = {aid for p in paths[newest:] for aid in held[str(p)]}
        last: dict[int | str, tuple[str, str, dict[str, Any]]] = {}
        for path in paths[:newest]:
            for aid, (article_id, ann) in held[str(path)].items():
                if aid not in alive:
                    last[aid] = (str(path), article_id, ann)
        for path in paths:
            gone[str(path)] = set(last)
        tombstones += [Tombstone(aid, article_id, original_annotator(ann), where, str(paths[newest]),
                                 ann.get("was_cancelled") is True)
                       for aid, (where, article_id, ann) in sorted(last.items(), key=lambda kv: (kv[1][1], str(kv[0])))]
    for items in tasks.values():
        for where, task in items:
            if ids := gone.get(snapshot_of(where)):
                task["annotations"] = [a for a in task.get("annotations") or []
                                       if _id(a) not in ids]
    return tombstones


def report_deleted(tombstones: Sequence[Tombstone], stage: str) -> None:
    """Print the tombstones on stderr, one a line up to SHOWN, then how many more."""
    for tomb in tombstones[:SHOWN]:
        print(tomb.line(stage), file=sys.stderr)
    if len(tombstones) > SHOWN:
        print(f"{stage}: deleted in Label Studio: {len(tombstones) - SHOWN} more (merge report, deleted)",
              file=sys.stderr)
