"""Push: create or update the project and add the tasks it lacks, idempotently, even after a push that died."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Sized
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from pipeline.labelstudio.api import LabelStudioAPI, LabelStudioError
from pipeline.labelstudio.config import instructions_html, label_config
from pipeline.labelstudio.duplicates import NO_HUMAN_WORK, DuplicateReport, check_duplicates
from pipeline.labelstudio.index import IndexedTask, TaskIndex, without_predictions
from pipeline.labelstudio.params import Config

SAMPLING = {"least_confident_first": "Uncertainty sampling", "input_order": "Sequential sampling"}


@dataclass
class PushReport:
    """What a push did."""

    created: int = 0
    refreshed: int = 0
    unchanged: int = 0
    kept_annotated: int = 0  # a newer model version, but humans annotated the task: its predictions left as they are
    miscounted: list[int] = field(default_factory=list)  # tasks whose counter claims predictions they do not hold
    text_changed: list[tuple[str, int]] = field(default_factory=list)  # (article id, old task id): ids not from text
    # Tasks whose (article id, text hash) this input lacks. Ingest derives an article's id from its text, so an
    # edited article arrives as a new task, and its old task (with any human work) is one of these.
    not_in_input: list[int] = field(default_factory=list)
    duplicates: DuplicateReport = field(default_factory=DuplicateReport)

    def line(self) -> str:
        """One summary line."""
        return (
            f"push: {self.created} new task(s), {self.refreshed} with refreshed predictions, "
            f"{self.kept_annotated} left with older predictions because humans annotated them, "
            f"{self.unchanged} unchanged, {len(self.not_in_input)} task(s) of articles not in this input, left as "
            f"they are (an edited article has a new id, so a new task)"
        ) + (f"; {n} article(s) with a new text under the same id (new task, old one kept)"
             if (n := len(self.text_changed)) else "") + (f"; {dups}" if (dups := self.duplicates.line()) else "") + (
            f"; {len(self.miscounted)} task(s) counted predictions they had lost (an interrupted refresh), "
            f"refreshed like any out-of-date task" if self.miscounted else "")


def find_project(api: LabelStudioAPI, title: str) -> dict[str, Any] | None:
    """The project with this title (None if there is none; an error if several)."""
    found = [p for p in api.projects(title) if p.get("title") == title]
    if len(found) > 1:
        raise LabelStudioError(f"{len(found)} projects are titled {title!r}; rename all but one")
    return found[0] if found else None


def ensure_project(api: LabelStudioAPI, cfg: Config, guidelines: str,
                   project: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create the project (unless given, e.g. by the push lock), or bring its config, instructions and queue order
    up to date."""
    settings: dict[str, Any] = {
        "title": cfg.ls.project_title,
        "label_config": label_config(cfg),
        "expert_instruction": instructions_html(guidelines),
        "show_instruction": True,
        "sampling": SAMPLING[cfg.ls.queue_order],
        "show_collab_predictions": True,
        # the overlap: Label Studio CE hands a task to this many annotators before it counts as labelled
        "maximum_annotations": cfg.ls.annotations_per_task,
    }
    project = project or find_project(api, cfg.ls.project_title)
    if project is None:
        return api.call(f"creating project {cfg.ls.project_title!r}", api.sdk.projects.with_raw_response.create,
                        **settings)
    changed = {k: v for k, v in settings.items() if project.get(k) != v}
    if changed:
        project = api.call(f"updating project {cfg.ls.project_title!r}", api.sdk.projects.with_raw_response.update,
                           project["id"], **changed)
    return project


def _slow(api: LabelStudioAPI) -> dict[str, Any]:
    """SDK request options for a bulk write: at least two minutes to answer."""
    return {"timeout_in_seconds": max(api.timeout_s, 120.0)}


def _import_batch(api: LabelStudioAPI, project_id: int, batch: list[dict[str, Any]], index: TaskIndex,
                  page_size: int) -> int:
    """Import one batch and return how many of its tasks the server now holds that it did not before.

    After a failure that may have landed (a timeout, a lost answer, a 5xx), the tasks created since the
    last known one are read back: those of the batch count as created and only the rest is sent again."""
    known = index.max_id
    created = 0
    for attempt in range(1, api.policy.attempts + 1):
        try:
            answer = api.call("importing tasks", api.sdk.projects.with_raw_response.import_tasks, project_id,
                              request=batch, request_options=_slow(api))
            return created + int((answer or {}).get("task_count", len(batch)))
        except LabelStudioError as exc:
            if not api.policy.wait_to_retry(exc.status, attempt):
                raise  # the server refused the batch (retrying will not help), or the attempts are spent
            landed = TaskIndex.fetch(api, project_id, page_size, after_id=known)
            keys = {(t["data"]["article_id"], t["data"]["text_hash"]) for t in batch}
            for entry in landed:
                index.add(entry)
                known = max(known, entry.task_id)
                created += entry.key in keys
            batch = [t for t in batch if (t["data"]["article_id"], t["data"]["text_hash"]) not in landed]
            if not batch:
                return created
    return created


def _refresh_batch(api: LabelStudioAPI, project_id: int, batch: list[tuple[IndexedTask, dict[str, Any]]],
                   page_size: int) -> tuple[int, int]:
    """Replace the predictions of tasks without human work in bulk; return (refreshed, kept by a human since).

    One delete action, one predictions import. The server deletes only the predictions of tasks that still
    have no annotation, skip or draft (the filter is evaluated in the delete request itself); when it deleted
    fewer than the index counted, the batch is read back and the tasks with human work now keep their
    predictions as they are. Deleting first is safe: a push that dies in between leaves tasks without
    predictions, which the next push sees as out of date and refreshes. A lost import answer is checked by
    reading the tasks back."""
    ids = [have.task_id for have, _ in batch]
    answer = api.post("/api/dm/actions", {"selectedItems": {"all": False, "included": ids}, "filters": NO_HUMAN_WORK},
                      idempotent=True, what=f"removing the old predictions of {len(ids)} task(s)",
                      params={"id": "delete_tasks_predictions", "project": project_id},
                      timeout_s=max(api.timeout_s, 120.0))
    todo = [{**pred, "task": have.task_id} for have, pred in batch]
    if (answer or {}).get("processed_items") != sum(have.predictions for have, _ in batch):
        untouched = {e.task_id for e in TaskIndex.fetch(api, project_id, page_size, ids=ids) if not e.annotated}
        todo = [p for p in todo if p["task"] in untouched]
    refreshed = len(todo)
    for attempt in range(1, api.policy.attempts + 1):
        if not todo:
            break
        try:
            api.call(f"importing the predictions of {len(todo)} task(s)",
                     api.sdk.projects.with_raw_response.import_predictions, project_id, request=todo,
                     request_options=_slow(api))
            break
        except LabelStudioError as exc:
            if not api.policy.wait_to_retry(exc.status, attempt):
                raise
            now = {e.task_id: e.model_versions for e in TaskIndex.fetch(api, project_id, page_size, ids=ids)}
            todo = [p for p in todo if p["model_version"] not in now.get(p["task"], frozenset())]
    return refreshed, len(batch) - refreshed


@dataclass
class _Batches:
    """Tasks waiting to be sent: new ones to import, unannotated ones whose predictions to refresh."""

    size: int
    new: list[dict[str, Any]] = field(default_factory=list)
    refresh: list[tuple[IndexedTask, dict[str, Any]]] = field(default_factory=list)


def push(api: LabelStudioAPI, tasks: Iterable[dict[str, Any]], cfg: Config, guidelines: str,
         progress: bool = True, remove_duplicates: bool = False,
         project: dict[str, Any] | None = None) -> tuple[dict[str, Any], PushReport]:
    """Create/update the project and add the tasks it lacks; refresh predictions of an older model version;
    report tasks that share a key (and, with `remove_duplicates`, delete those without human work).

    Tasks are read once and sent in batches of `import_batch_size`, so memory holds the task index and one
    batch. Only tasks nobody annotated get new predictions; human annotations are never touched."""
    project = ensure_project(api, cfg, guidelines, project)
    pid, page_size = project["id"], cfg.ls.page_size
    index = TaskIndex.fetch(api, pid, page_size)
    duplicates = check_duplicates(api, pid, ((e.task_id, e.key, e.annotated) for e in index), remove=remove_duplicates)
    if duplicates.removed:  # index the task kept for each key
        index = TaskIndex.fetch(api, pid, page_size)
    report = PushReport(duplicates=duplicates)
    if silent := [e.task_id for e in index if e.predictions and not e.model_versions]:
        # a refresh that died between its delete and its import leaves such tasks (see without_predictions);
        # refreshed like any task without the current predictions, the import recounts them
        report.miscounted = sorted(without_predictions(api, pid, silent, page_size))
        if unknown := sorted(set(silent) - set(report.miscounted)):
            raise LabelStudioError(f"Label Studio at {api.url} did not report the model version of task "
                                   f"{unknown[0]}'s predictions (none was set where they were imported, or an API "
                                   f"change); push cannot tell which predictions are current: delete them (Data "
                                   f"Manager, Actions, Delete predictions) and push again")
        index = index.recounted(report.miscounted)
    pending = _Batches(cfg.ls.import_batch_size)
    versions: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    total = len(tasks) if isinstance(tasks, Sized) else None
    bar = tqdm(total=total, desc="push", unit="task", disable=not progress or (total or 0) < 200, file=sys.stderr)

    def flush(final: bool = False) -> None:
        if pending.new and (final or len(pending.new) >= pending.size):
            report.created += _import_batch(api, pid, pending.new, index, page_size)
            pending.new = []
        if pending.refresh and (final or len(pending.refresh) >= pending.size):
            refreshed, kept = _refresh_batch(api, pid, pending.refresh, page_size)
            report.refreshed += refreshed
            report.kept_annotated += kept
            pending.refresh = []

    for task in tasks:
        bar.update(1)
        key = (task["data"]["article_id"], task["data"]["text_hash"])
        if key in seen:  # the same article twice in the input: one task
            continue
        seen.add(key)
        pred = task["predictions"][0]
        versions[pred["model_version"]] += 1
        have = index.get(key)
        if have is None:
            pending.new.append(task)
            report.text_changed.extend((key[0], old) for old in index.task_ids_of_article(key[0]))
        elif have.model_versions == {pred["model_version"]}:
            report.unchanged += 1
        elif have.annotated:
            report.kept_annotated += 1  # a human worked on these predictions: they stay as they were
        else:
            pending.refresh.append((have, pred))  # also finishes a refresh that died halfway
        flush()
    flush(final=True)
    bar.close()
    report.not_in_input = [e.task_id for e in index if e.key not in seen]
    # The project's model version selects the predictions shown and the ones uncertainty sampling orders
    # by; Label Studio accepts only a version that some prediction already has, hence after the import.
    if versions and project.get("model_version") != (current := versions.most_common(1)[0][0]):
        project = api.call("setting the project's model version", api.sdk.projects.with_raw_response.update, pid,
                           model_version=current)
    return project, report
