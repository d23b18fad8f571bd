"""Human annotations read from Label Studio export snapshots (annotations/<timestamp>.jsonl).

The newest snapshot, its tasks grouped by article, and each annotation turned into one annotator's
version of an article: sorted entities (linked to actors) and stances. A bad task, region or relation
is reported and skipped, and counts towards the merge stage's share of bad records.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.common.contract import is_int, is_number
from pipeline.common.errors import BadRecords, InputError
from pipeline.common.jsonl import read_jsonl

SNAPSHOT_NAME = re.compile(r"^\d{8}T\d{6}Z\.jsonl$")

Span = tuple[int, int]
Linker = Callable[[str, str], str | None]
# Label Studio tasks by article id, each with its FILE:LINE
Tasks = dict[str, list[tuple[str, dict[str, Any]]]]


@dataclass
class Version:
    """One annotator's entities and stances for one article."""

    annotator: str
    annotation_id: Any
    entities: list[dict[str, Any]]
    stances: list[dict[str, Any]]
    lead_time: float | None
    ground_truth: bool
    updated_at: str

    def record(self) -> dict[str, Any]:
        """The version as stored in labeled.jsonl `annotations`."""
        return {
            "annotator": self.annotator,
            "entities": self.entities,
            "stances": self.stances,
            "lead_time": self.lead_time,
            "annotation_id": self.annotation_id,
        }


def newest_snapshot(folder: Path) -> Path | None:
    """The newest Label Studio snapshot in `folder` (lexicographic max of the timestamped names), or None."""
    if not folder.is_dir():
        raise InputError(f"{folder}: annotations folder not found")
    names = sorted(p for p in folder.glob("*.jsonl") if SNAPSHOT_NAME.match(p.name))
    return names[-1] if names else None


def annotator_id(completed_by: Any) -> str:
    """A pseudonymous annotator id from Label Studio's `completed_by` (never an e-mail address)."""
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("id")
    if isinstance(completed_by, bool) or completed_by is None:
        return "annotator-unknown"
    return f"annotator-{completed_by}"


def parse_annotation(
    ann: dict[str, Any],
    text: str,
    predicted: dict[Span, str | None],
    link: Linker,
    where: str,
    bad: BadRecords,
    *,
    entity_labels: tuple[str, ...],
    stance_labels: tuple[str, ...],
) -> Version | None:
    """Turn one Label Studio annotation into sorted entities and stances; bad regions are reported and skipped.

    Each result item counts as a record for the bad share; an annotation whose result is not a list is
    reported and skipped (None).
    """
    result = ann.get("result")
    if not isinstance(result, list | None):
        bad.seen += 1
        bad.add(where, f"result must be a list, got {type(result).__name__} {result!r:.40}")
        return None
    bad.seen += len(result or [])
    regions: dict[str, tuple[int, int, str]] = {}
    relations = []
    for item in result or []:
        if not isinstance(item, dict):
            bad.add(where, f"result item is not an object: {item!r:.60}")
            continue
        kind = item.get("type")
        if kind == "relation":
            relations.append(item)
        elif kind == "labels":
            rid = item.get("id")
            region = _region(item.get("value"), text, entity_labels)
            if isinstance(region, str):
                bad.add(where, f"region {rid}: {region}")
            else:
                regions[str(rid)] = region
        # other result types (e.g. per-region notes) carry no entity or stance
    spans = sorted(set(regions.values()))
    index = {e: i for i, e in enumerate(spans)}
    entities = [
        {
            "start": s,
            "end": e,
            "label": label,
            "text": text[s:e],
            "actor": predicted[(s, e)] if (s, e) in predicted else link(text[s:e], label),
        }
        for s, e, label in spans
    ]
    stances = set()
    for rel in relations:
        ends = [regions.get(str(rel.get(k))) for k in ("from_id", "to_id")]
        if None in ends:
            missing = [str(rel.get(k)) for k, r in zip(("from_id", "to_id"), ends, strict=True) if r is None]
            bad.add(where, f"relation refers to unknown or skipped region id(s) {', '.join(missing)}")
            continue
        labels = rel.get("labels") or []
        if not isinstance(labels, list) or len(labels) != 1 or labels[0] not in stance_labels:
            bad.add(where, f"relation {rel.get('from_id')}->{rel.get('to_id')}: expected one label of "
                           f"preannotate.stance_labels ({', '.join(stance_labels)}), got {labels!r:.60}")
            continue
        a, b = index[ends[0]], index[ends[1]]  # type: ignore[index]
        if a == b:
            bad.add(where, f"relation {rel.get('from_id')}->{rel.get('to_id')} links an entity to itself")
            continue
        direction = rel.get("direction", "right")
        if direction == "left":
            a, b = b, a
        if direction == "bi":  # a mutual stance: both hold it towards each other
            stances.add((b, a, labels[0]))
        elif direction not in ("right", "left"):
            bad.add(where, f"relation {rel.get('from_id')}->{rel.get('to_id')}: unknown direction {direction!r}")
            continue
        stances.add((a, b, labels[0]))
    return Version(
        annotator=annotator_id(ann.get("completed_by")),
        annotation_id=ann.get("id"),
        entities=entities,
        stances=[{"holder": h, "target": t, "label": lab} for h, t, lab in sorted(stances)],
        lead_time=float(ann["lead_time"]) if is_number(ann.get("lead_time")) else None,
        ground_truth=bool(ann.get("ground_truth")),
        updated_at=str(ann.get("updated_at") or ann.get("created_at") or ""),
    )


def _region(value: Any, text: str, entity_labels: tuple[str, ...]) -> tuple[int, int, str] | str:
    """(start, end, label) of an entity region, or why it is unusable."""
    if not isinstance(value, dict):
        return "no value"
    # untyped JSON until is_int has checked the offsets
    start: Any = value.get("start")
    end: Any = value.get("end")
    labels = value.get("labels")
    if not (is_int(start) and is_int(end)):
        return f"offsets are not integers: {start!r}, {end!r}"
    if not 0 <= start < end <= len(text):
        return f"offsets {start}-{end} out of range for a text of {len(text)} characters"
    if "text" in value and value["text"] != text[start:end]:
        return f"span text {value['text']!r:.40} does not match the text at {start}-{end}"
    if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
        return f"expected exactly one label, got {labels!r}"
    if labels[0] not in entity_labels:
        return f"label {labels[0]!r} is not in preannotate.entity_labels"
    return start, end, labels[0]


def collect_tasks(snapshot: Path, bad: BadRecords) -> tuple[Tasks, int]:
    """Label Studio tasks of a snapshot grouped by article id, each with its FILE:LINE, and how many tasks were read."""
    tasks: Tasks = defaultdict(list)
    read = 0
    for lineno, task in read_jsonl(snapshot, bad):
        where = f"{snapshot}:{lineno}"
        read += 1
        data = task.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("article_id"), str):
            bad.add(where, "task has no data.article_id")
            continue
        if not isinstance(task.get("annotations", []), list):
            bad.add(where, "task annotations is not a list")
            continue
        tasks[data["article_id"]].append((where, task))
    return tasks, read
