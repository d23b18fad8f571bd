"""Human annotations read from Label Studio export snapshots (annotations/<timestamp>.jsonl).

Every snapshot (whatever server it came from), its tasks grouped by article, and each annotation turned
into one annotator's version of an article: sorted entities (linked to actors) and stances. A bad task,
region or relation is reported and skipped, and makes its task line count as one bad record towards the
merge stage's share of bad task lines.

Which files are snapshots: every file of annotations/ is read or reported, never silently passed over.
Hidden files (a name starting with '.'), README* and the origin sidecars pull writes beside its snapshots
(`<timestamp>.meta.json`, pipeline/human/origin.py) are skipped by rule; every other file must end in
`.jsonl` or `.json` (any case), else it is a one-line InputError naming it (exit 3), as is a subfolder
other than `review/` (the stance review queue's snapshots, read by pipeline/human/pairs.py).
A file whose first character is `[` is Label Studio's JSON export (a JSON array of tasks, as the UI's
Export button downloads it; its tasks are named `FILE:task N`); any other is JSON Lines, one task a line
(`FILE:LINE`), as `pull` writes it.

Order (oldest first; on a tie of `updated_at` the version read later wins, and the last one is the
"newest snapshot" of the merge report): first the timestamped names `<UTC YYYYMMDDTHHMMSSZ>.jsonl` that
pull writes (or `.json`, for an export renamed so), by that timestamp; then every other name (`export.json`,
`X (1).jsonl`), after all of them, by name (code point order). Rename a downloaded export to its UTC
time to place it among the pulls.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.common.contract import is_int, is_number
from pipeline.common.errors import BadRecords, InputError
from pipeline.common.jsonl import JSONLineError, loads, open_input, read_jsonl
from pipeline.human.identity import annotator_id, credit, was_imported
from pipeline.human.instants import EARLIEST, parse_time

__all__ = ["EARLIEST", "annotator_id", "parse_time"]  # kept importable from here
from pipeline.human.origin import is_sidecar

SNAPSHOT_NAME = re.compile(r"^\d{8}T\d{6}Z\.jsonl$")  # the name pull gives a new snapshot
TIMESTAMPED = re.compile(r"^\d{8}T\d{6}Z\.jsonl?$", re.IGNORECASE)  # ordered by its time (module docstring)
SNAPSHOT_SUFFIXES = (".jsonl", ".json")
REVIEW_DIR = "review"  # annotations/review/: the stance review queue's snapshots (pipeline/human/pairs.py reads them)

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
    # started from a prediction (Label Studio's `parent_prediction`); None: the snapshot does not say (a re-import)
    from_prediction: bool | None = None
    dropped_relations: list[str] = field(default_factory=list)  # relations skipped for their labels, why
    seen: dict[str, Any] | None = None  # the predictions in the task when it was annotated (entities, stances, model_version)

    @property
    def time(self) -> datetime:
        """When the version was last updated, to compare versions by (`updated_at` parsed, see `parse_time`)."""
        return parse_time(self.updated_at) or EARLIEST

    def record(self) -> dict[str, Any]:
        """The version as stored in labeled.jsonl `annotations`."""
        return {
            "annotator": self.annotator,
            "entities": self.entities,
            "stances": self.stances,
            "lead_time": self.lead_time,
            "annotation_id": self.annotation_id,
            "ground_truth": self.ground_truth,
            "from_prediction": self.from_prediction,
            "seen_predictions": self.seen,
        }


def newest_snapshot(folder: Path) -> Path | None:
    """The newest Label Studio snapshot in `folder` (the last in the order of `snapshots`), or None."""
    names = snapshots(folder)
    return names[-1] if names else None


def skipped_by_rule(name: str) -> bool:
    """Whether a file of annotations/ is no snapshot by rule: a hidden file (.gitignore, .DS_Store) or a README."""
    return name.startswith(".") or name.upper().startswith("README")


def snapshots(folder: Path) -> list[Path]:
    """Every Label Studio snapshot in `folder`, oldest first (module docstring); any other file is an InputError."""
    if not folder.is_dir():
        raise InputError(f"{folder}: annotations folder not found")
    timed: list[Path] = []
    named: list[Path] = []
    for path in sorted(folder.iterdir()):
        if skipped_by_rule(path.name) or is_sidecar(path) or (path.name == REVIEW_DIR and path.is_dir()):
            continue
        if not path.is_file():
            raise InputError(f"{path}: not a file; {folder} holds Label Studio snapshots only (move it out)")
        if path.suffix.lower() not in SNAPSHOT_SUFFIXES:
            raise InputError(f"{path}: not a Label Studio snapshot (a .jsonl snapshot or Label Studio's .json "
                             f"export); move it out of {folder} or rename it")
        (timed if TIMESTAMPED.match(path.name) else named).append(path)
    timed.sort(key=lambda p: (p.name[:16].upper(), p.name))
    return timed + sorted(named, key=lambda p: p.name)


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
    task: Mapping[str, Any] | None = None,
) -> Version | None:
    """Turn one Label Studio annotation into sorted entities and stances; bad regions are reported and skipped.

    The annotator is credited by the identity rule of pipeline/human/identity.py, from the annotation and its
    snapshot `task` (its stamps and origin).

    Each result item counts as a record for the bad share; an annotation whose result is missing or not a
    list is reported and skipped (None): it is no evidence that the article has no entities.
    """
    result = ann.get("result")
    if not isinstance(result, list):
        bad.seen += 1
        bad.add(where, f"result must be a list, got {type(result).__name__} {result!r:.40}")
        return None
    bad.seen += len(result)
    stamp = ann.get("updated_at") or ann.get("created_at") or ""
    if parse_time(stamp) is None:  # which version is the latest would be a guess
        bad.add(where, f"updated_at {stamp!r:.60} is not an ISO-8601 timestamp; annotation skipped")
        return None
    annotator, stamped = credit(ann, task or {})
    regions: dict[str, tuple[int, int, str]] = {}
    duplicated: set[str] = set()
    relations = []
    dropped: list[str] = []
    for item in result:
        if not isinstance(item, dict):
            bad.add(where, f"result item is not an object: {item!r:.60}")
            continue
        kind = item.get("type")
        if kind == "relation":
            relations.append(item)
        elif kind == "labels":
            rid = item.get("id")
            region = _region(item.get("value"), text, entity_labels)
            if str(rid) in regions or str(rid) in duplicated:  # which one a relation means is unknowable
                bad.add(where, f"region id {rid} is used by more than one region; all of them skipped")
                regions.pop(str(rid), None)
                duplicated.add(str(rid))
            elif isinstance(region, str):
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
            why = (f"relation {rel.get('from_id')}->{rel.get('to_id')} by {annotator}: expected one label of "
                   f"preannotate.stance_labels ({', '.join(stance_labels)}), got {labels!r:.60}")
            bad.add(where, why)
            dropped.append(why)
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
        annotator=annotator,
        annotation_id=ann.get("id"),
        entities=entities,
        stances=[{"holder": h, "target": t, "label": lab} for h, t, lab in sorted(stances)],
        lead_time=float(ann["lead_time"]) if is_number(ann.get("lead_time")) else None,
        ground_truth=ann.get("ground_truth") is True,  # a string "false" is not a yes
        updated_at=str(ann.get("updated_at") or ann.get("created_at") or ""),
        from_prediction=None if was_imported(ann, stamped) else started_from_prediction(ann),
        dropped_relations=dropped,
    )


def started_from_prediction(ann: dict[str, Any]) -> bool | None:
    """Whether the annotator started from the task's prediction (`parent_prediction`), or None when not known.

    An imported annotation (see `identity.was_imported`) was created on this server by an import, so its empty
    `parent_prediction` says nothing about how the annotator began.
    """
    if "parent_prediction" not in ann or was_imported(ann, False):
        return None
    return ann["parent_prediction"] is not None


def seen_predictions(ann: dict[str, Any], task: dict[str, Any], text: str, link: Linker, *,
                     entity_labels: tuple[str, ...], stance_labels: tuple[str, ...]) -> dict[str, Any] | None:
    """The predictions an annotator saw, from the snapshot: the annotation's own `prediction`, else the task's only one.

    Parsed like an annotation (entities, stances) with the full Label Studio model_version; None when the
    snapshot does not hold them (or they do not parse).
    """
    pred = ann.get("prediction")
    if not (isinstance(pred, dict) and isinstance(pred.get("result"), list)):
        preds = [p for p in task.get("predictions") or [] if isinstance(p, dict) and isinstance(p.get("result"), list)]
        pred = preds[0] if len(preds) == 1 else None
    if pred is None:
        return None
    quiet = BadRecords("merge", 1.0, quiet=True)  # a prediction's bad region is no human record for the bad share
    version = parse_annotation({"result": pred["result"]}, text, {}, link, "prediction", quiet,
                               entity_labels=entity_labels, stance_labels=stance_labels)
    if version is None or quiet.problems:
        return None
    return {"entities": version.entities, "stances": version.stances, "model_version": str(pred.get("model_version"))}


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


def collect_tasks(snapshot: Path | Sequence[Path], bad: BadRecords) -> tuple[Tasks, int]:
    """Label Studio tasks of one or more snapshots grouped by article id, each with its FILE:LINE, and how many
    task lines (or tasks of a JSON export) the snapshots hold, readable or not (each also counted in `bad.seen`).

    Tasks keep the order of the snapshots given (oldest first), so a later version wins a tie of timestamps.
    """
    tasks: Tasks = defaultdict(list)
    read = 0
    for path in [snapshot] if isinstance(snapshot, Path) else snapshot:
        read += _collect(path, tasks, bad)
    return tasks, read


def snapshot_of(where: str) -> str:
    """The snapshot path of a task's FILE:LINE (or FILE:task N)."""
    return where.rsplit(":", 1)[0]


def _collect(snapshot: Path, tasks: Tasks, bad: BadRecords) -> int:
    """Add the tasks of one snapshot to `tasks`; return how many task lines it holds, readable or not."""
    before = bad.seen
    for where, task in _snapshot_tasks(snapshot, bad):
        data = task.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("article_id"), str):
            bad.add(where, "task has no data.article_id")
            continue
        if not isinstance(task.get("annotations", []), list):
            bad.add(where, "task annotations is not a list")
            continue
        tasks[data["article_id"]].append((where, task))
    return bad.seen - before


def _snapshot_tasks(snapshot: Path, bad: BadRecords) -> Iterator[tuple[str, dict[str, Any]]]:
    """(FILE:LINE, task) of a JSON Lines snapshot, or (FILE:task N, task) of Label Studio's JSON export;
    every task line is counted in `bad.seen` and an unreadable one reported to `bad`."""
    with open_input(snapshot) as handle:
        head = handle.read(1 << 16).removeprefix(b"\xef\xbb\xbf").lstrip()
    if not head.startswith(b"["):
        for lineno, task in read_jsonl(snapshot, bad):
            yield f"{snapshot}:{lineno}", task
        return
    for number, task in enumerate(_json_document(snapshot), start=1):  # it starts with '[': an array
        bad.seen += 1
        if not isinstance(task, dict):
            bad.add(f"{snapshot}:task {number}", f"expected a task object, got {type(task).__name__}")
            continue
        yield f"{snapshot}:task {number}", task


def _json_document(path: Path) -> Any:
    """One strict JSON document (Label Studio's JSON export); unreadable, it is a one-line InputError naming it."""
    with open_input(path) as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start + 1})") from None
    try:
        return loads(text)
    except JSONLineError as exc:
        line = ""
        try:
            json.loads(text)  # only to say on which line the syntax error is
        except json.JSONDecodeError as located:
            line = f":{located.lineno}"
        except (ValueError, RecursionError):
            pass
        raise InputError(f"{path}{line}: {exc} (a Label Studio JSON export is one JSON array of tasks; "
                         f"download it again?)") from None
