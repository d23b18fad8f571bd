"""Which tasks go to adjudication, decided on annotations parsed as merge parses them (no server needed)."""

from __future__ import annotations

from pathlib import Path

from pipeline.labelstudio.adjudicate import AdjudicationReport, find_disagreements
from pipeline.labelstudio.params import load_config

GOLDEN = Path(__file__).resolve().parent / "golden"
TEXT = "Russia warned NATO."


def region(rid: str, start: int, end: int, label: str) -> dict:
    return {"id": rid, "from_name": "label", "to_name": "text", "type": "labels",
            "value": {"start": start, "end": end, "text": TEXT[start:end], "labels": [label]}}


def annotation(user: int, relation: dict, stamp: str = "2026-12-01T10:00:00Z", **extra) -> dict:
    regions = [region("a", 0, 6, "GPE"), region("b", 14, 18, "ORG")]
    return {"id": user, "completed_by": user, "updated_at": stamp, "result": [*regions, relation], **extra}


def task(*annotations: dict) -> dict:
    return {"id": 7, "data": {"text": TEXT, "article_id": "art"}, "annotations": list(annotations)}


def relation(src: str, dst: str, label: str, direction: str = "right") -> dict:
    return {"from_id": src, "to_id": dst, "type": "relation", "direction": direction, "labels": [label]}


def flagged(*tasks: dict) -> AdjudicationReport:
    report = AdjudicationReport(1)
    find_disagreements(tasks, load_config(GOLDEN / "params.yaml"), report)
    return report


def test_the_same_stance_drawn_either_way_round_is_agreement():
    same = task(annotation(1, relation("a", "b", "against")), annotation(2, relation("b", "a", "against", "left")))
    report = flagged(same)
    assert report.tasks_compared == 1 and report.flagged == []


def test_a_different_label_is_flagged_with_pseudonymous_annotators():
    apart = task(annotation(1, relation("a", "b", "against")), annotation(2, relation("a", "b", "favor")))
    (found,) = flagged(apart).flagged
    assert found.task == 7 and found.stances_differ > 0 and found.entity_f1 == 1.0
    assert found.annotators == ["annotator-1", "annotator-2"]


def test_each_annotators_latest_version_counts_by_instant_not_by_text():
    early = annotation(2, relation("a", "b", "favor"), "2026-12-01T11:00:00+02:00")  # 09:00 UTC
    late = annotation(2, relation("a", "b", "against"), "2026-12-01T10:00:00Z")
    assert flagged(task(annotation(1, relation("a", "b", "against")), early, late)).flagged == []


def test_a_ground_truth_version_settles_the_task():
    settled = task(annotation(1, relation("a", "b", "against")), annotation(2, relation("a", "b", "favor")),
                   annotation(3, relation("a", "b", "favor"), ground_truth=True))
    report = flagged(settled)
    assert report.adjudicated == 1 and report.flagged == []
