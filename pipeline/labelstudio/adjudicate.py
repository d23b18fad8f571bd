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
    annotators: list[Any]
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


def version(result: list[dict[str, Any]]) -> dict[str, Any]:
    """Entities (start, end, label) and stances (entity indices, label) of a Label Studio annotation result."""
    regions = {r["id"]: r["value"] for r in result if r.get("type") == "labels" and r.get("value", {}).get("labels")}
    order = sorted(regions, key=lambda rid: (regions[rid]["start"], regions[rid]["end"], regions[rid]["labels"][0]))
    index = {rid: i for i, rid in enumerate(order)}
    entities = [{"start": regions[r]["start"], "end": regions[r]["end"], "label": regions[r]["labels"][0]}
                for r in order]
    stances = [{"holder": index[r["from_id"]], "target": index[r["to_id"]], "label": (r.get("labels") or ["none"])[0]}
               for r in result
               if r.get("type") == "relation" and r.get("from_id") in index and r.get("to_id") in index]
    return {"entities": entities, "stances": stances}


def disagreement(task: dict[str, Any], below_f1: float) -> Disagreement | None:
    """The task's disagreement if its annotators (latest version each) differ enough; None otherwise."""
    latest: dict[Any, dict[str, Any]] = {}
    for ann in sorted(task.get("annotations") or [], key=lambda a: (a.get("updated_at") or "", a.get("id") or 0)):
        if not ann.get("was_cancelled"):
            latest[ann.get("completed_by")] = ann
    if len(latest) < 2:
        return None
    docs = [version(a.get("result") or []) for a in latest.values()]
    f1 = min(scoring.span_f1(a["entities"], b["entities"], match="exact") for a, b in combinations(docs, 2))
    differ = sum(x != y for a, b in combinations(docs, 2) for x, y in scoring.stance_pairs(a, b))
    if f1 >= below_f1 and not differ:
        return None
    return Disagreement(task["id"], str(task.get("data", {}).get("article_id", "")), sorted(latest, key=str), f1,
                        differ)


def find_disagreements(tasks: Iterable[dict[str, Any]], below_f1: float, report: AdjudicationReport) -> None:
    """Add the tasks to adjudicate to the report; count those compared and those already adjudicated."""
    for task in tasks:
        anns = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if len({a.get("completed_by") for a in anns}) < 2:
            continue
        report.tasks_compared += 1
        if any(a.get("ground_truth") for a in anns):
            report.adjudicated += 1
        elif found := disagreement(task, below_f1):
            report.flagged.append(found)


def tab_filters(task_ids: list[int]) -> dict[str, Any]:
    """A Data Manager filter matching exactly these task ids (none: a filter that matches no task)."""
    ids = task_ids or [0]
    return {"conjunction": "or",
            "items": [{"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": i} for i in ids]}


def adjudicate(api: LabelStudioAPI, cfg: Config) -> AdjudicationReport:
    """Find the tasks to adjudicate and put them, least agreement first, in the project's Adjudicate tab."""
    project = find_project(api, cfg.ls.project_title)
    if project is None:
        raise LookupError(f"no Label Studio project titled {cfg.ls.project_title!r}; push first")
    pid = project["id"]
    report = AdjudicationReport(pid)
    # only tasks with two or more annotations (submitted or skipped) come with their annotations
    several = {"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 1}
    query = json.dumps({"filters": {"conjunction": "and", "items": [several]}, "ordering": ["tasks:id"]})
    tasks = api.pages("/api/tasks", what="listing annotated tasks", page_size=cfg.ls.page_size,
                      params={"project": pid, "fields": "all", "query": query})
    find_disagreements(tasks, cfg.ls.adjudicate_below_f1, report)
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
