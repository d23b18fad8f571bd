"""Merge human corrections from the newest Label Studio snapshot over the machine's proposals.

Reads data/preannotated.jsonl and annotations/<timestamp>.jsonl, writes data/labeled.jsonl: per
article the final entities and stances (`gold` when a human annotated it, else `silver`), each
annotator's version, the machine's proposals, per-article agreement and a grouped split.

Resolution rule when several annotators labelled one article (documented in the README and card):
1. an annotation a reviewer marked `ground_truth` in Label Studio wins (the latest one if several);
2. otherwise an item (entity = start, end, label; stance = holder span, target span, label) is kept
   when more than half of the annotators have it; on an exact tie the machine's proposal is the
   casting vote (kept if the model proposed it), and every tie is listed in the merge report.
A stance is kept only if both its entities are kept.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.common.contract import SPLITS, article_problem, is_int, is_number, labels_problem, stage_config
from pipeline.common.errors import BadRecords, InputError
from pipeline.common.jsonl import read_jsonl, write_json, write_jsonl
from pipeline.common.provenance import file_digest, sha256_text

STAGE = "merge"
SNAPSHOT_NAME = re.compile(r"^\d{8}T\d{6}Z\.jsonl$")

Span = tuple[int, int]
Linker = Callable[[str, str], str | None]


@dataclass(frozen=True)
class Splits:
    """Share of stories in each split."""

    train: float
    validation: float
    test: float

    def validate(self) -> str | None:
        """Why the shares can't be used (negative, or not summing to 1), or None."""
        shares = (self.train, self.validation, self.test)
        if any(s < 0 for s in shares) or abs(sum(shares) - 1.0) > 1e-9:
            return f"split shares must be >= 0 and sum to 1, got {shares}"
        return None


@dataclass(frozen=True)
class MergeConfig:
    """The `merge:` section of params.yaml, plus the label sets owned by `preannotate:` (one source of truth)."""

    seed: int
    splits: Splits
    max_bad_share: float
    entity_labels: tuple[str, ...]  # from preannotate.entity_labels: the entity labels Label Studio offers
    stance_labels: tuple[str, ...]  # from preannotate.stance_labels: the relation labels Label Studio offers

    def validate(self) -> str | None:
        """Why the section can't be used (bad share or label sets), or None."""
        if not 0 <= self.max_bad_share <= 1:
            return f"max_bad_share must be in [0, 1], got {self.max_bad_share}"
        return labels_problem(self.entity_labels, None, self.stance_labels)


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


@dataclass
class Report:
    """What merge saw and did, written to data/merge_report.json."""

    snapshot: str | None = None
    snapshot_sha256: str | None = None
    tasks: int = 0
    annotations: int = 0
    cancelled: int = 0
    superseded: int = 0
    stale: list[dict[str, str]] = field(default_factory=list)
    ties: list[dict[str, Any]] = field(default_factory=list)
    resolution: Counter[str] = field(default_factory=Counter)
    status: Counter[str] = field(default_factory=Counter)
    splits: Counter[str] = field(default_factory=Counter)

    def stale_task(self, where: str, article_id: str, reason: str) -> None:
        """Record (and report on stderr) a task kept out of the dataset because its text changed."""
        self.stale.append({"where": where, "article_id": article_id, "reason": reason})
        print(f"{STAGE}: stale {where}: article {article_id}: {reason}; kept out of the dataset", file=sys.stderr)

    def as_dict(self, bad: BadRecords) -> dict[str, Any]:
        """The report as written to merge_report.json, with the bad records of the run."""
        return {
            "snapshot": self.snapshot,
            "snapshot_sha256": self.snapshot_sha256,
            "tasks": self.tasks,
            "annotations": self.annotations,
            "cancelled_or_skipped": self.cancelled,
            "superseded": self.superseded,
            "articles": dict(sorted(self.status.items())),
            "splits": {s: self.splits.get(s, 0) for s in SPLITS},
            "resolution": dict(sorted(self.resolution.items())),
            "stale": self.stale,
            "ties": self.ties,
            "bad_records": bad.problems,
        }


def newest_snapshot(folder: Path) -> Path | None:
    """The newest Label Studio snapshot in `folder` (lexicographic max of the timestamped names), or None."""
    if not folder.is_dir():
        raise InputError(f"{folder}: annotations folder not found")
    names = sorted(p for p in folder.glob("*.jsonl") if SNAPSHOT_NAME.match(p.name))
    return names[-1] if names else None


def assign_split(story_id: str, cfg: MergeConfig) -> str:
    """Deterministic split of a story: a stable hash of seed and story id, so near-duplicates stay together."""
    digest = hashlib.sha256(f"{cfg.seed}\x00{story_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < cfg.splits.train:
        return "train"
    if u < cfg.splits.train + cfg.splits.validation:
        return "validation"
    return "test"


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
    cfg: MergeConfig,
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
            region = _region(item.get("value"), text, cfg.entity_labels)
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
        if not isinstance(labels, list) or len(labels) != 1 or labels[0] not in cfg.stance_labels:
            bad.add(where, f"relation {rel.get('from_id')}->{rel.get('to_id')}: expected one label of "
                           f"preannotate.stance_labels ({', '.join(cfg.stance_labels)}), got {labels!r:.60}")
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
    start, end, labels = value.get("start"), value.get("end"), value.get("labels")
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


def _keys(version: dict[str, Any]) -> tuple[set[tuple], set[tuple]]:
    """Entity keys (start, end, label) and stance keys (holder span, target span, label) of a version."""
    ents = version["entities"]
    ekeys = {(e["start"], e["end"], e["label"]) for e in ents}
    skeys = {
        ((ents[s["holder"]]["start"], ents[s["holder"]]["end"]), (ents[s["target"]]["start"], ents[s["target"]]["end"]), s["label"])
        for s in version["stances"]
    }
    return ekeys, skeys


def resolve(versions: list[Version], prediction: dict[str, Any]) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """The resolved version of several annotators, the rule used and the ties it broke (see module docstring)."""
    if len(versions) == 1:
        v = versions[0]
        return {"entities": v.entities, "stances": v.stances}, "single", []
    reviewed = [v for v in versions if v.ground_truth]
    if reviewed:
        v = max(reviewed, key=lambda v: (v.updated_at, str(v.annotation_id)))
        return {"entities": v.entities, "stances": v.stances}, "ground_truth", []
    n = len(versions)
    pred_e, pred_s = _keys(prediction)
    votes_e: Counter[tuple] = Counter()
    votes_s: Counter[tuple] = Counter()
    actors: dict[tuple, str | None] = {}
    for v in versions:
        ek, sk = _keys({"entities": v.entities, "stances": v.stances})
        votes_e.update(ek)
        votes_s.update(sk)
        actors.update({(e["start"], e["end"], e["label"]): e["actor"] for e in v.entities})
    ties: list[dict[str, Any]] = []

    def kept(key: tuple, votes: int, predicted: set[tuple], kind: str) -> bool:
        if 2 * votes == n:
            ties.append({"kind": kind, "item": list(key), "votes": votes, "of": n, "kept": key in predicted})
            return key in predicted
        return 2 * votes > n

    # votes in sorted order, so the ties are listed in the same order whatever the hash seed of the process
    ekeys = [k for k, c in sorted(votes_e.items()) if kept(k, c, pred_e, "entity")]
    index = {(s, e): i for i, (s, e, _) in enumerate(ekeys)}
    stances = sorted(
        (index[h], index[t], label)
        for (h, t, label), c in sorted(votes_s.items())
        if kept((h, t, label), c, pred_s, "stance") and h in index and t in index
    )
    if len(index) != len(ekeys):
        # two labels for one span both won (possible only through the casting vote): stances can't tell them apart
        ties.append({"kind": "entity", "item": "same span kept with two labels", "votes": 0, "of": n, "kept": True})
    text_of = {(e["start"], e["end"]): e["text"] for v in versions for e in v.entities}
    entities = [
        {"start": s, "end": e, "label": lab, "text": text_of[(s, e)], "actor": actors[(s, e, lab)]} for s, e, lab in ekeys
    ]
    return (
        {"entities": entities, "stances": [{"holder": h, "target": t, "label": lab} for h, t, lab in stances]},
        "majority",
        ties,
    )


def agreement(versions: list[Version]) -> dict[str, Any] | None:
    """Mean pairwise entity span F1 and stance Cohen's kappa between annotators, via pipeline.scoring."""
    if len(versions) < 2:
        return None
    from pipeline.evaluation import scoring

    result = scoring.agreement([v.record() for v in versions])
    return {"entity_f1": result["entity_f1"], "stance_kappa": result["stance_kappa"], "n_annotators": len(versions)}


def _actor_linker(rules: tuple[Path, Path, Path], stance_labels: tuple[str, ...]) -> Linker:
    """The preannotate stage's actor linking, (span text, label) -> actor id, from its rule files."""
    from pipeline.entities.rules import load_rules

    return load_rules(*rules, stance_labels).actors.link


def collect_tasks(snapshot: Path, bad: BadRecords, report: Report) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Label Studio tasks of a snapshot grouped by article id, each with its FILE:LINE."""
    tasks: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for lineno, task in read_jsonl(snapshot, bad):
        where = f"{snapshot}:{lineno}"
        report.tasks += 1
        data = task.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("article_id"), str):
            bad.add(where, "task has no data.article_id")
            continue
        if not isinstance(task.get("annotations", []), list):
            bad.add(where, "task annotations is not a list")
            continue
        tasks[data["article_id"]].append((where, task))
    return tasks


def merge(
    articles: Iterable[dict[str, Any]],
    tasks: dict[str, list[tuple[str, dict[str, Any]]]],
    cfg: MergeConfig,
    link: Linker,
    bad: BadRecords,
    report: Report,
) -> Iterator[dict[str, Any]]:
    """Labeled records: each article with its resolved entities and stances, provenance and split."""
    seen: set[str] = set()
    for art in articles:
        seen.add(art["id"])
        text_hash = sha256_text(art["text"])
        predicted = {(e["start"], e["end"]): e.get("actor") for e in art["entities"]}
        latest: dict[str, tuple[Version, str]] = {}
        for where, task in tasks.get(art["id"], ()):
            data = task["data"]
            task_hash = data.get("text_hash") or sha256_text(str(data.get("text", "")))
            if task_hash != text_hash:
                report.stale_task(where, art["id"], "text_hash differs from the article's current text")
                continue
            for ann in task.get("annotations") or []:
                report.annotations += 1
                if not isinstance(ann, dict) or ann.get("was_cancelled"):
                    report.cancelled += 1
                    continue
                at = f"{where} annotation {ann.get('id')}"
                version = parse_annotation(ann, art["text"], predicted, link, at, bad, cfg)
                if version is None:
                    continue
                prev = latest.get(version.annotator)
                if prev is not None:
                    report.superseded += 1
                    if (prev[0].updated_at, str(prev[0].annotation_id)) > (version.updated_at, str(version.annotation_id)):
                        continue
                latest[version.annotator] = (version, where)
        versions = [latest[a][0] for a in sorted(latest)]
        prediction = {"entities": art["entities"], "stances": art["stances"]}
        if versions:
            final, rule, ties = resolve(versions, prediction)
            report.ties.extend({"article_id": art["id"], **t} for t in ties)
            status = "gold"
        else:
            final = {
                "entities": [{k: e.get(k) for k in ("start", "end", "label", "text", "actor")}
                             for e in art["entities"]],
                "stances": [{k: s[k] for k in ("holder", "target", "label")} for s in art["stances"]],
            }
            rule, status = "model", "silver"
        split = assign_split(art.get("story_id") or art["id"], cfg)
        report.resolution[rule] += 1
        report.status[status] += 1
        report.splits[split] += 1
        yield {
            **{k: v for k, v in art.items() if k not in ("entities", "stances", "provenance")},
            "split": split,
            "status": status,
            "entities": [{**e, "origin": status} for e in final["entities"]],
            "stances": [{**s, "origin": status} for s in final["stances"]],
            "annotators": [v.annotator for v in versions],
            "annotations": [v.record() for v in versions],
            "predictions": {
                "entities": art["entities"],
                "stances": art["stances"],
                "model_version": art["provenance"].get("model_version"),
            },
            "agreement": agreement(versions),
            "provenance": {
                **art["provenance"],
                "annotation_snapshot": report.snapshot if versions else None,
                "annotation_snapshot_sha256": report.snapshot_sha256 if versions else None,
                "resolution": rule,
            },
        }
    for article_id in sorted(set(tasks) - seen):
        for where, _ in tasks[article_id]:
            report.stale_task(where, article_id, "article is no longer in the pre-annotated data")


def _articles(path: Path, bad: BadRecords, cfg: MergeConfig) -> Iterator[dict[str, Any]]:
    """Pre-annotated articles that keep the record contract; others are reported and skipped."""
    for lineno, art in read_jsonl(path, bad):
        if problem := article_problem(art, entity_labels=cfg.entity_labels, stance_labels=cfg.stance_labels):
            bad.add(f"{path}:{lineno}", problem)
            continue
        yield art


def main(
    preannotated: Path,
    annotations: Path,
    output: Path,
    report: Path,
    params: Path,
    rules: tuple[Path, Path, Path],
) -> None:
    """Merge the newest annotation snapshot over the pre-annotated articles into labeled.jsonl and a report."""
    cfg = stage_config(MergeConfig, STAGE, params)
    bad = BadRecords(STAGE, cfg.max_bad_share)
    rep = Report()
    snapshot = newest_snapshot(annotations)
    tasks = {}
    if snapshot is not None:
        rep.snapshot = snapshot.as_posix()
        rep.snapshot_sha256 = file_digest(snapshot)
        tasks = collect_tasks(snapshot, bad, rep)
    link = _actor_linker(rules, cfg.stance_labels)

    def checked(records: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        yield from records
        # the report is written even when the check fails the stage; the output is renamed into place only after it
        write_json(report, rep.as_dict(bad))
        bad.check()  # articles, tasks and annotation result items: every record read, parsed or not

    n = write_jsonl(output, checked(merge(_articles(preannotated, bad, cfg), tasks, cfg, link, bad, rep)))
    print(
        f"{STAGE}: {n} articles ({rep.status['gold']} gold, {rep.status['silver']} silver) from "
        f"{rep.snapshot or 'no snapshot'}; {len(rep.stale)} stale task(s), {len(bad)} bad record(s)",
        file=sys.stderr,
    )
