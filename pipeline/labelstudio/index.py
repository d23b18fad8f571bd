"""The existing-task index: per task only what keying needs, read from the tasks list with the smallest field set.

Label Studio 1.23's `GET /api/tasks` returns just the fields named in `include` (drf-flex-fields) and leaves
out predictions and annotations unless `fields=all`. `data` cannot be narrowed (it is one JSON column), so
each page carries the article text; only the key is kept. The model versions of a task's predictions are
computed by the server only when a filter or a shown column needs them: a `not_contains` filter on a value
no model version has (`NO_VERSION`) asks for them and matches every task. `draft_exists` (a human's unsubmitted
work) is computed because the query's `hiddenColumns` leaves it shown; every other computed column is hidden.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from pipeline.labelstudio.api import LabelStudioAPI

Key = tuple[str, str]  # (article_id, text_hash)

INCLUDE = ("id,data,total_annotations,cancelled_annotations,total_predictions,predictions_model_versions,"
           "draft_exists")
NO_VERSION = "~no model version is this~"
CHUNK = 200  # task ids per listing request that names its tasks
# The Data Manager's computed columns that the index does not need (hidden, so the server does not compute them).
_HIDDEN = [f"tasks:{c}" for c in ("annotators", "annotations_results", "annotations_ids", "predictions_score",
                                  "predictions_results", "file_upload", "storage_filename", "avg_lead_time",
                                  "completed_at", "updated_by")]


@dataclass(frozen=True, slots=True)
class IndexedTask:
    """One task as the index holds it."""

    task_id: int
    key: Key
    model_versions: frozenset[str]
    annotated: bool  # a human submitted, skipped or drafted it (their work is never touched, nor its predictions)
    predictions: int


def list_query(after_id: int, ids: Iterable[int] | None) -> str:
    """The Data Manager query: every task (or the given ids), with model versions computed, in id order."""
    items: list[dict[str, Any]] = [{"filter": "filter:tasks:predictions_model_versions", "operator": "not_contains",
                                    "type": "List", "value": [NO_VERSION]}]
    if after_id:
        items.append({"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": after_id})
    selected: dict[str, Any] = {"all": True, "excluded": []} if ids is None else {"all": False, "included": list(ids)}
    return json.dumps({"filters": {"conjunction": "and", "items": items}, "selectedItems": selected,
                       "ordering": ["tasks:id"], "hiddenColumns": {"explore": _HIDDEN, "labeling": _HIDDEN}})


def _entry(task: dict[str, Any]) -> IndexedTask:
    data = task.get("data") or {}
    versions = task.get("predictions_model_versions") or ""
    return IndexedTask(
        task_id=int(task["id"]),
        key=(str(data.get("article_id")), str(data.get("text_hash"))),
        model_versions=frozenset(v.strip() for v in str(versions).split(",") if v.strip()),
        annotated=bool(task.get("total_annotations") or task.get("cancelled_annotations") or task.get("draft_exists")),
        predictions=int(task.get("total_predictions") or 0),
    )


def without_predictions(api: LabelStudioAPI, project_id: int, ids: Iterable[int], page_size: int) -> set[int]:
    """The tasks among `ids` that hold no prediction, read from the tasks themselves rather than their counter.

    Label Studio 1.23's `total_predictions` counter can claim predictions a task no longer has: its delete action
    lowers a task's counter by one per deleted prediction, each computed before any is gone, so a task that had
    two counts one after the delete, and its recount afterwards selects the tasks through the predictions it has
    just deleted. Only a predictions import recounts such a task."""
    todo, empty = sorted(ids), set()
    for start in range(0, len(todo), CHUNK):  # the ids travel in the URL
        query = json.dumps({"selectedItems": {"all": False, "included": todo[start:start + CHUNK]},
                            "ordering": ["tasks:id"], "hiddenColumns": {"explore": _HIDDEN, "labeling": _HIDDEN}})
        for task in api.pages("/api/tasks", what="reading the predictions of tasks", page_size=page_size,
                              params={"project": project_id, "fields": "all", "resolve_uri": "false", "query": query}):
            if task.get("predictions") == []:  # no list at all is not "none": the caller cannot tell
                empty.add(int(task["id"]))
    return empty


class TaskIndex:
    """Every task of a project by key (the first, lowest id, when a key has several), one page in memory at a time."""

    def __init__(self, entries: Iterable[IndexedTask] = ()) -> None:
        self.entries: list[IndexedTask] = []
        self._by_key: dict[Key, IndexedTask] = {}
        self._by_article: dict[str, list[int]] = {}
        for entry in entries:
            self.add(entry)

    @classmethod
    def fetch(cls, api: LabelStudioAPI, project_id: int, page_size: int, *, after_id: int = 0,
              ids: Iterable[int] | None = None) -> TaskIndex:
        """The index of the project's tasks (only those with id > `after_id`, or only `ids`, when given)."""
        return cls(_entry(t) for t in api.pages(
            "/api/tasks", what="listing tasks", page_size=page_size,
            params={"project": project_id, "include": INCLUDE, "resolve_uri": "false", "query": list_query(after_id, ids)},
        ))

    def recounted(self, empty: Iterable[int]) -> TaskIndex:
        """This index with the tasks `empty` counted as holding no prediction."""
        gone = set(empty)
        return TaskIndex(replace(e, predictions=0) if e.task_id in gone else e for e in self.entries)

    def add(self, entry: IndexedTask) -> None:
        """Index one more task."""
        self.entries.append(entry)
        self._by_key.setdefault(entry.key, entry)
        self._by_article.setdefault(entry.key[0], []).append(entry.task_id)

    def get(self, key: Key) -> IndexedTask | None:
        """The task of this key, or None."""
        return self._by_key.get(key)

    def task_ids_of_article(self, article_id: str) -> list[int]:
        """Ids of every task of this article, whatever its text."""
        return self._by_article.get(article_id, [])

    @property
    def max_id(self) -> int:
        """The highest task id (0 for an empty project)."""
        return max((e.task_id for e in self.entries), default=0)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[IndexedTask]:
        """Every task, duplicates of a key included, in id order."""
        return iter(self.entries)
