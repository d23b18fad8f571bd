"""Push: create or update the project and add the tasks it lacks, idempotently, even after a push that died."""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from pipeline.labelstudio.api import LabelStudioAPI, LabelStudioError
from pipeline.labelstudio.config import instructions_html, label_config
from pipeline.labelstudio.duplicates import DuplicateReport, Entry, check_duplicates, has_human_work
from pipeline.labelstudio.params import Config

SAMPLING = {"least_confident_first": "Uncertainty sampling", "input_order": "Sequential sampling"}


@dataclass
class PushReport:
    """What a push did."""

    created: int = 0
    refreshed: int = 0
    unchanged: int = 0
    text_changed: list[tuple[str, int]] = field(default_factory=list)  # (article id, old task id)
    duplicates: DuplicateReport = field(default_factory=DuplicateReport)

    def line(self) -> str:
        """One summary line."""
        changed = len(self.text_changed)
        return (
            f"push: {self.created} new task(s), {self.refreshed} with refreshed predictions, "
            f"{self.unchanged} unchanged, {changed} article(s) whose text changed (new task, old one kept)"
        ) + (f"; {dups}" if (dups := self.duplicates.line()) else "")


def find_project(api: LabelStudioAPI, title: str) -> dict[str, Any] | None:
    """The project with this title (None if there is none; an error if several)."""
    found = [
        p for p in api.pages("/api/projects", what="listing projects", page_size=100, key="results",
                             params={"title": title})
        if p.get("title") == title
    ]
    if len(found) > 1:
        raise LabelStudioError(f"{len(found)} projects are titled {title!r}; rename all but one")
    return found[0] if found else None


def ensure_project(api: LabelStudioAPI, cfg: Config, guidelines: str,
                   project: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create the project (unless given, e.g. by the push lock), or bring its config, instructions and queue order
    up to date."""
    settings = {
        "title": cfg.ls.project_title,
        "label_config": label_config(cfg),
        "expert_instruction": instructions_html(guidelines),
        "show_instruction": True,
        "sampling": SAMPLING[cfg.ls.queue_order],
        "show_collab_predictions": True,
    }
    project = project or find_project(api, cfg.ls.project_title)
    if project is None:
        return api.post("/api/projects", settings, what=f"creating project {cfg.ls.project_title!r}")
    changed = {k: v for k, v in settings.items() if project.get(k) != v}
    if changed:
        project = api.patch(f"/api/projects/{project['id']}", changed, what=f"updating project {cfg.ls.project_title!r}")
    return project


def existing_tasks(api: LabelStudioAPI, project_id: int, page_size: int,
                   entries: list[Entry] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """(article_id, text_hash) -> {id, model_versions, predictions} of the first task of each key, paged; every
    task's (id, key, has human work) is appended to `entries` (duplicate detection)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    include = "id,data,predictions" + (",total_annotations,cancelled_annotations,drafts" if entries is not None else "")
    for task in api.pages(
        "/api/tasks", what="listing tasks", page_size=page_size,
        params={"project": project_id, "fields": "all", "include": include},
    ):
        data = task.get("data") or {}
        key = (str(data.get("article_id")), str(data.get("text_hash")))
        if entries is not None:
            entries.append((task["id"], key, has_human_work(task)))
        versions = {p.get("model_version") for p in task.get("predictions") or [] if isinstance(p, dict)}
        preds = [p for p in task.get("predictions") or [] if isinstance(p, dict)]
        found.setdefault(key, {"id": task["id"], "model_versions": versions, "predictions": preds})
    return found


def _import_batch(api: LabelStudioAPI, project_id: int, batch: list[dict[str, Any]], page_size: int) -> int:
    """Import one batch; after a failure that may have half-landed, import only what is still missing."""
    for attempt in range(1 + api.retries):
        try:
            answer = api.post(
                f"/api/projects/{project_id}/import", batch, what="importing tasks",
                timeout_s=max(api.timeout_s, 120.0),
            )
            return int(answer.get("task_count", len(batch)))
        except LabelStudioError as exc:
            if (exc.status is not None and exc.status < 500) or attempt == api.retries:
                raise  # the server refused the batch: retrying will not help
            time.sleep(min(api.backoff_s * 2**attempt, 10.0))
            have = existing_tasks(api, project_id, page_size)
            batch = [t for t in batch if (t["data"]["article_id"], t["data"]["text_hash"]) not in have]
            if not batch:
                return 0
    return 0


def push(api: LabelStudioAPI, tasks: list[dict[str, Any]], cfg: Config, guidelines: str,
         progress: bool = True, remove_duplicates: bool = False,
         project: dict[str, Any] | None = None) -> tuple[dict[str, Any], PushReport]:
    """Create/update the project and add the tasks it lacks; refresh predictions of an older model version;
    report tasks that share a key (and, with `remove_duplicates`, delete those without human work)."""
    project = ensure_project(api, cfg, guidelines, project)
    entries: list[Entry] = []
    have = existing_tasks(api, project["id"], cfg.ls.page_size, entries)
    duplicates = check_duplicates(api, project["id"], entries, remove=remove_duplicates)
    if duplicates.removed:  # index the task kept for each key
        have = existing_tasks(api, project["id"], cfg.ls.page_size)
    by_article: dict[str, list[int]] = {}
    for (aid, _), info in have.items():
        by_article.setdefault(aid, []).append(info["id"])
    report = PushReport(duplicates=duplicates)
    new, refresh = [], []
    seen = set()
    for task in tasks:
        key = (task["data"]["article_id"], task["data"]["text_hash"])
        if key in seen:  # the same article twice in the input: one task
            continue
        seen.add(key)
        if key not in have:
            new.append(task)
            for old_id in by_article.get(key[0], []):
                report.text_changed.append((key[0], old_id))
        elif have[key]["model_versions"] != {task["predictions"][0]["model_version"]}:
            refresh.append((have[key], task))  # also finishes a refresh that died between add and delete
        else:
            report.unchanged += 1
    batches = [new[i:i + cfg.ls.import_batch_size] for i in range(0, len(new), cfg.ls.import_batch_size)]
    bar = tqdm(total=len(new), desc="push", unit="task", disable=not progress or len(new) < 200, file=sys.stderr)
    for batch in batches:
        report.created += _import_batch(api, project["id"], batch, cfg.ls.page_size)
        bar.update(len(batch))
    bar.close()
    for info, task in tqdm(refresh, desc="refresh", unit="task", disable=not progress or len(refresh) < 200,
                           file=sys.stderr):
        pred = task["predictions"][0]
        if pred["model_version"] not in info["model_versions"]:
            api.post("/api/predictions", {**pred, "task": info["id"]}, what=f"adding predictions to task {info['id']}")
        for old in info["predictions"]:
            if old.get("model_version") != pred["model_version"]:
                api.delete(f"/api/predictions/{old['id']}", what=f"removing old predictions of task {info['id']}")
        report.refreshed += 1
    # The project's model version selects the predictions shown and the ones uncertainty sampling orders
    # by; Label Studio accepts only a version that some prediction already has, hence after the import.
    versions = Counter(t["predictions"][0]["model_version"] for t in tasks)
    if versions and project.get("model_version") != (current := versions.most_common(1)[0][0]):
        project = api.patch(f"/api/projects/{project['id']}", {"model_version": current},
                            what="setting the project's model version")
    return project, report

