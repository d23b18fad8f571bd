"""Adjudication on Label Studio CE: tasks whose annotators disagree, gathered in a Data Manager tab for a reviewer.

A task is flagged when two annotators' entity spans agree below `labelstudio.adjudicate_below_f1` (span F1, exact
spans and labels) or when they label any holder/target pair differently (`none` where one drew no stance), and
no annotation of it is marked ground truth yet. The reviewer compares the versions, submits the final one and marks
it ground truth; merge takes a ground-truth annotation over every other version (docs/annotating.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from pipeline.common.errors import BadRecords, InputError
from pipeline.human.snapshots import Version, parse_annotation
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.params import Config
from pipeline.labelstudio.push import find_project
from pipeline.quality import scoring

TAB_TITLE = "Adjudicate"


@dataclass(frozen=True)
class Disagreement:
    """One task to adjudicate and why."""

    task: int
    article_id: str
    annotators: list[str]
    entity_f1: float
    stances_differ: int  # holder/target pairs labelled differently, summed over annotator pairs

    def as_dict(self) -> dict[str, Any]:
        """As written to the report."""
        return {"task": self.task, "article_id": self.article_id, "annotators": self.annotators,
                "entity_f1": round(self.entity_f1, 4), "stances_differ": self.stances_differ}


@dataclass
class AdjudicationReport:
    """What `adjudicate` found and where the reviewer finds it."""

    project: int
    tasks_compared: int = 0
    adjudicated: int = 0  # tasks with two or more annotators and a ground-truth annotation
    flagged: list[Disagreement] = field(default_factory=list)
    url: str = ""

    def line(self) -> str:
        """The one-line summary."""
        return (f"adjudicate: {len(self.flagged)} of {self.tasks_compared} task(s) with two or more annotators "
                f"disagree ({self.adjudicated} already adjudicated) -> {self.url}")

    def as_dict(self) -> dict[str, Any]:
        """As written to the report file."""
        return {"project": self.project, "tasks_compared": self.tasks_compared, "adjudicated": self.adjudicated,
                "flagged": [d.as_dict() for d in self.flagged], "url": self.url}


def _no_actor(text: str, label: str) -> str | None:
    """Actor links play no part in agreement."""
    return None


def latest_versions(task: dict[str, Any], cfg: Config) -> list[Version]:
    """Each annotator's latest submitted version of the task, parsed as merge parses it."""
    text = str((task.get("data") or {}).get("text") or "")
    bad = BadRecords("adjudicate", 1.0, quiet=True)  # merge reports bad regions; here they only do not count
    latest: dict[str, Version] = {}
    for ann in task.get("annotations") or []:
        if not isinstance(ann, dict) or ann.get("was_cancelled"):
            continue
        found = parse_annotation(ann, text, {}, _no_actor, f"task {task.get('id')}", bad,
                                 entity_labels=cfg.entity_labels, stance_labels=cfg.stance_labels, task=task)
        if found and (found.annotator not in latest or latest[found.annotator].time <= found.time):
            latest[found.annotator] = found
    return list(latest.values())


def find_disagreements(tasks: Iterable[dict[str, Any]], cfg: Config, report: AdjudicationReport) -> None:
    """Add the tasks to adjudicate to the report; count those compared and those already adjudicated."""
    for task in tasks:
        versions = latest_versions(task, cfg)
        if len(versions) < 2:
            continue
        report.tasks_compared += 1
        if any(v.ground_truth for v in versions):
            report.adjudicated += 1
            continue
        docs = [v.record() for v in versions]
        f1 = min(scoring.span_f1(a["entities"], b["entities"], match="exact") for a, b in combinations(docs, 2))
        differ = sum(x != y for a, b in combinations(docs, 2) for x, y in scoring.stance_pairs(a, b))
        if f1 < cfg.ls.adjudicate_below_f1 or differ:
            report.flagged.append(Disagreement(task["id"], str(task["data"].get("article_id", "")),
                                               sorted(v.annotator for v in versions), f1, differ))


def tab_filters(task_ids: list[int]) -> dict[str, Any]:
    """A Data Manager filter matching exactly these task ids (none: a filter that matches no task)."""
    ids = task_ids or [0]
    return {"conjunction": "or",
            "items": [{"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": i} for i in ids]}


def adjudicate(api: LabelStudioAPI, cfg: Config) -> AdjudicationReport:
    """Find the tasks to adjudicate and put them, least agreement first, in the project's Adjudicate tab."""
    project = find_project(api, cfg.ls.project_title)
    if project is None:
        raise InputError(f"no Label Studio project titled {cfg.ls.project_title!r}; push first")
    pid = project["id"]
    report = AdjudicationReport(pid)
    # only tasks with two or more annotations (submitted or skipped) come with their annotations
    several = {"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 1}
    query = json.dumps({"filters": {"conjunction": "and", "items": [several]}, "ordering": ["tasks:id"]})
    tasks = api.pages("/api/tasks", what="listing annotated tasks", page_size=cfg.ls.page_size,
                      params={"project": pid, "fields": "all", "query": query})
    find_disagreements(tasks, cfg, report)
    report.flagged.sort(key=lambda d: (d.entity_f1, -d.stances_differ, d.task))
    data = {"title": TAB_TITLE, "filters": tab_filters([d.task for d in report.flagged]),
            "ordering": ["tasks:id"]}
    views = api.get(f"/api/dm/views?project={pid}", what="Data Manager tabs")
    tab = next((v for v in views if v.get("data", {}).get("title") == TAB_TITLE), None)
    if tab is None:
        tab = api.post("/api/dm/views", {"project": pid, "data": data}, what="creating the Adjudicate tab")
    else:
        tab = api.patch(f"/api/dm/views/{tab['id']}", {"project": pid, "data": data},
                        what="updating the Adjudicate tab")
    report.url = f"{api.url}/projects/{pid}/data?tab={tab['id']}"
    return report
