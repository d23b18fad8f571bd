"""Duplicate tasks: several tasks of one key (article id, text hash) in a project, found and, on request, removed.

Detection is a function over (task id, key, annotated) entries, so it runs on any task index. Removal deletes
only tasks without human work (no submitted or skipped annotation, no draft), checked by the server in the
request that deletes them; where several tasks of one key hold human work, all are kept and reported for a human
to decide.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.labelstudio.api import LabelStudioAPI

Key = tuple[str, str]
Entry = tuple[int, Key, bool]  # (task id, (article_id, text_hash), has human work)


@dataclass(frozen=True)
class Duplicates:
    """The tasks of one key, oldest (lowest id) first, and which of them hold human work."""

    key: Key
    tasks: tuple[int, ...]
    annotated: tuple[int, ...]

    @property
    def keep(self) -> tuple[int, ...]:
        """Every task with human work; failing any, the oldest."""
        return self.annotated or self.tasks[:1]

    @property
    def removable(self) -> tuple[int, ...]:
        """The tasks `--remove-duplicates` deletes: the others, none of which holds human work."""
        return tuple(t for t in self.tasks if t not in self.keep)

    @property
    def needs_human(self) -> bool:
        """Several tasks of this key hold annotations: which one counts is a human decision."""
        return len(self.annotated) > 1


def find_duplicates(entries: Iterable[Entry]) -> list[Duplicates]:
    """The keys that more than one task has, in key order."""
    by_key: dict[Key, list[tuple[int, bool]]] = {}
    for task_id, key, annotated in entries:
        by_key.setdefault(key, []).append((task_id, annotated))
    groups = []
    for key in sorted(k for k, v in by_key.items() if len(v) > 1):
        items = sorted(by_key[key])
        groups.append(Duplicates(key, tuple(t for t, _ in items), tuple(t for t, a in items if a)))
    return groups


def has_human_work(task: Mapping[str, Any]) -> bool:
    """True when a Label Studio task has a submitted or skipped annotation or a draft."""
    return bool(task.get("total_annotations") or task.get("cancelled_annotations") or task.get("drafts")
                or task.get("annotations"))


@dataclass
class DuplicateReport:
    """What a push found (and removed) among the project's duplicate tasks."""

    groups: list[Duplicates] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    spared: list[int] = field(default_factory=list)  # removable when listed, annotated by the time of the delete

    @property
    def extra(self) -> int:
        """Tasks beyond the first of their key."""
        return sum(len(g.tasks) - 1 for g in self.groups)

    def line(self) -> str:
        """One summary clause ('' when the project has no duplicates)."""
        if not self.groups:
            return ""
        human = sum(g.needs_human for g in self.groups)
        left = self.extra - len(self.removed)
        return (f"{self.extra} duplicate task(s) of {len(self.groups)} article(s), {len(self.removed)} removed, "
                f"{left} left ({human} article(s) with annotations on several tasks: a human decides)")

    def details(self, removing: bool) -> list[str]:
        """One line per duplicated article: its task ids and what happens to them."""
        lines = []
        for g in self.groups:
            ids = ", ".join(map(str, g.tasks))
            if g.needs_human:
                what = f"tasks {', '.join(map(str, g.annotated))} all have annotations: a human decides which counts"
            elif removing:
                what = f"kept {g.keep[0]}" + (" (annotated)" if g.annotated else " (oldest)")
            else:
                what = f"{len(g.removable)} without annotations; --remove-duplicates deletes them"
            lines.append(f"push: duplicate: article {g.key[0]} (text {g.key[1][:12]}): tasks {ids}; {what}")
        if self.spared:
            lines.append(f"push: duplicate: tasks {', '.join(map(str, self.spared))} were annotated meanwhile: kept")
        return lines

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the push report."""
        return {
            "duplicate_tasks": self.extra,
            "duplicated_articles": [
                {"article_id": g.key[0], "text_hash": g.key[1], "tasks": list(g.tasks), "annotated": list(g.annotated),
                 "keep": list(g.keep), "needs_human": g.needs_human}
                for g in self.groups
            ],
            "removed": self.removed,
            "spared": self.spared,
        }


# Label Studio's Data Manager filter for "no human work": applied by the server at the moment it deletes
NO_HUMAN_WORK = {"conjunction": "and", "items": [
    {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0},
    {"filter": "filter:tasks:cancelled_annotations", "operator": "equal", "type": "Number", "value": 0},
    {"filter": "filter:tasks:draft_exists", "operator": "equal", "type": "Boolean", "value": False},
]}
DELETE_BATCH = 200  # task ids per delete request (they travel in the query string of the check that follows)


def remove_duplicates(api: LabelStudioAPI, project_id: int, report: DuplicateReport) -> None:
    """Delete the removable duplicates of `report.groups`, a batch per request.

    The server deletes only the selected tasks that still have no human work (its Data Manager filter is
    evaluated in the same request as the delete). A task that gained an annotation or a draft since the
    listing survives and is reported as spared."""
    ids = [t for g in report.groups for t in g.removable]
    for i in range(0, len(ids), DELETE_BATCH):
        batch = ids[i:i + DELETE_BATCH]
        selected = {"all": False, "included": batch}
        api.post("/api/dm/actions", {"selectedItems": selected, "filters": NO_HUMAN_WORK},
                 what=f"deleting {len(batch)} duplicate task(s)", idempotent=True,  # a repeat deletes nothing more
                 params={"id": "delete_tasks", "project": project_id}, timeout_s=max(api.timeout_s, 120.0))
        left = {t["id"] for t in api.pages(
            "/api/tasks", what="checking the deleted duplicates", page_size=DELETE_BATCH,
            params={"project": project_id, "fields": "all", "include": "id",
                    "query": json.dumps({"selectedItems": selected})},
        )}
        report.removed += [t for t in batch if t not in left]
        report.spared += [t for t in batch if t in left]


def check_duplicates(api: LabelStudioAPI, project_id: int, entries: Iterable[Entry], remove: bool) -> DuplicateReport:
    """Find the project's duplicate tasks and, with `remove`, delete those without human work."""
    report = DuplicateReport(find_duplicates(entries))
    if remove:
        remove_duplicates(api, project_id, report)
    return report
