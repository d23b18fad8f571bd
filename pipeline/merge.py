"""merge stage: human corrections from every Label Studio snapshot over the machine's proposals.

Reads data/preannotated/ and every annotations/<timestamp>.jsonl (whatever server each came from;
per article, text and annotator the latest submitted version wins), writes data/labeled.jsonl: per
article the final entities and stances (`gold` when a human annotated it, else `silver`), each
annotator's version, the machine's proposals, per-article agreement and a grouped split.
Snapshots are read by pipeline/human/snapshots.py; several annotators' versions are resolved by the
rule of pipeline/human/resolve.py. The bad share is counted per unit: task lines of the snapshots (a line
with any problem, unreadable or one bad region, is one bad task line) and pre-annotated article records;
either past `merge.max_bad_share` fails the stage (exit 4), naming the bad lines. A gold article of the
previous output that is not gold now is listed under `lost_gold` in the report and printed on stderr.
An annotation deleted in Label Studio (missing from a later snapshot of the same server and project,
pipeline/human/tombstones.py) is dropped, listed under `deleted` and printed on stderr.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.common.contract import SPLITS, article_problem, stage_config
from pipeline.common.errors import BadRecords, BadShareError, InputError, one_line
from pipeline.common.jsonl import read_jsonl, write_json, write_jsonl
from pipeline.common.provenance import file_digest, sha256_text
from pipeline.common.shards import read_records
from pipeline.human.pairs import Decisions, apply_decisions, read_decisions
from pipeline.human.resolve import agreement, resolve
from pipeline.human.snapshots import (
    REVIEW_DIR,
    Linker,
    Tasks,
    Version,
    collect_tasks,
    parse_annotation,
    seen_predictions,
    snapshot_of,
    snapshots,
)
from pipeline.human.splits import MergeConfig, assign_split
from pipeline.human.tombstones import drop_deleted, report_deleted

STAGE = "merge"


@dataclass
class Report:
    """What merge saw and did, written to data/merge_report.json."""

    snapshot: str | None = None  # the newest snapshot
    snapshot_sha256: str | None = None
    snapshots: dict[str, str] = field(default_factory=dict)  # every snapshot read, oldest first: path -> sha256
    tasks: int = 0
    annotations: int = 0
    cancelled: int = 0
    superseded: int = 0
    stale: list[dict[str, str]] = field(default_factory=list)
    dropped_relations: list[dict[str, str]] = field(default_factory=list)
    gold_sources: dict[str, dict[str, str]] = field(default_factory=dict)  # article -> annotator -> snapshot
    ties: list[dict[str, Any]] = field(default_factory=list)
    resolution: Counter[str] = field(default_factory=Counter)
    status: Counter[str] = field(default_factory=Counter)
    splits: Counter[str] = field(default_factory=Counter)
    bad_task_lines: list[str] = field(default_factory=list)  # FILE:LINE (or FILE:task N) of each bad task line
    lost_gold: list[dict[str, str]] = field(default_factory=list)  # gold in the previous output, not gold now
    deleted: list[dict[str, Any]] = field(default_factory=list)  # annotations deleted in Label Studio, dropped
    review: Counter[str] = field(default_factory=Counter)  # stance review decisions by outcome (human/pairs.py)

    def stale_task(self, where: str, article_id: str, reason: str) -> None:
        """Record (and report on stderr) a task kept out of the dataset because its text changed."""
        self.stale.append({"where": where, "article_id": article_id, "reason": reason})
        print(f"{STAGE}: stale {where}: article {article_id}: {reason}; kept out of the dataset", file=sys.stderr)

    def as_dict(self, bad: BadRecords, articles: BadRecords | None = None) -> dict[str, Any]:
        """The report as written to merge_report.json, with the bad records of the run (articles', then tasks')."""
        return {
            "snapshot": self.snapshot,
            "snapshot_sha256": self.snapshot_sha256,
            "snapshots": [{"path": p, "sha256": h} for p, h in self.snapshots.items()],
            "tasks": self.tasks,
            "annotations": self.annotations,
            "cancelled_or_skipped": self.cancelled,
            "superseded": self.superseded,
            "articles": dict(sorted(self.status.items())),
            "splits": {s: self.splits.get(s, 0) for s in SPLITS},
            "resolution": dict(sorted(self.resolution.items())),
            "review_decisions": dict(sorted(self.review.items())),
            "stale": self.stale,
            "dropped_relations": self.dropped_relations,
            "gold_sources": dict(sorted(self.gold_sources.items())),
            "ties": self.ties,
            "lost_gold": self.lost_gold,
            "deleted": self.deleted,
            "bad_task_lines": self.bad_task_lines,
            "bad_records": [*(articles.problems if articles is not None else []), *bad.problems],
        }


def _actor_linker(rules: tuple[Path, Path, Path], stance_labels: tuple[str, ...]) -> Linker:
    """The preannotate stage's actor linking, (span text, label) -> actor id, from its rule files."""
    from pipeline.entities.rules import load_rules

    return load_rules(*rules, stance_labels).actors.link


def merge(
    articles: Iterable[dict[str, Any]],
    tasks: Tasks,
    cfg: MergeConfig,
    link: Linker,
    bad: BadRecords,
    report: Report,
    decisions: Decisions | None = None,
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
            task_text = data.get("text")
            if isinstance(task_text, str) and sha256_text(task_text) != text_hash:  # edited inside Label Studio
                report.stale_task(where, art["id"], "the task's text differs from the article's current text")
                continue
            if (data.get("text_hash") or text_hash) != text_hash:
                report.stale_task(where, art["id"], "text_hash differs from the article's current text")
                continue
            for ann in task.get("annotations") or []:
                report.annotations += 1
                if not isinstance(ann, dict) or ann.get("was_cancelled"):
                    report.cancelled += 1
                    continue
                at = f"{where} annotation {ann.get('id')}"
                version = parse_annotation(ann, art["text"], predicted, link, at, bad,
                                           entity_labels=cfg.entity_labels, stance_labels=cfg.stance_labels, task=task)
                if version is None:
                    continue
                version.seen = seen_predictions(ann, task, art["text"], link, entity_labels=cfg.entity_labels,
                                                stance_labels=cfg.stance_labels)
                report.dropped_relations.extend({"where": at, "article_id": art["id"], "annotator": version.annotator,
                                                 "reason": why} for why in version.dropped_relations)
                prev = latest.get(version.annotator)
                if prev is not None:
                    report.superseded += 1
                    older, newer = sorted((prev[0], version), key=lambda v: v.time)  # stable: a tie keeps the later
                    if newer.from_prediction is None:  # a re-import: how the annotator began is in the older version
                        newer.from_prediction = older.from_prediction
                    if prev[0].time > version.time:  # as instants; on a tie the later snapshot (read later) wins
                        continue
                latest[version.annotator] = (version, where)
        versions = [latest[a][0] for a in sorted(latest)]
        sources = {a: snapshot_of(latest[a][1]) for a in sorted(latest)}
        newest = max(sources.values(), default=None)
        if versions:
            report.gold_sources[art["id"]] = sources
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
        final = apply_decisions(final, (decisions or {}).get(art["id"]), text_hash, bool(versions), report.review)
        split = assign_split(art.get("story_id") or art["id"], cfg)
        report.resolution[rule] += 1
        report.status[status] += 1
        report.splits[split] += 1
        yield {
            **{k: v for k, v in art.items() if k not in ("entities", "stances", "provenance")},
            "split": split,
            "status": status,
            "entities": [{**e, "origin": status} for e in final["entities"]],
            "stances": [{**s, "origin": s.get("origin", status)} for s in final["stances"]],
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
                "annotation_snapshot": newest,  # the newest snapshot a kept version came from
                "annotation_snapshot_sha256": report.snapshots.get(newest) if newest else None,
                "resolution": rule,
            },
        }
    for article_id in sorted(set(tasks) - seen):
        for where, _ in tasks[article_id]:
            report.stale_task(where, article_id, "article is no longer in the pre-annotated data")


def _articles(path: Path, bad: BadRecords, cfg: MergeConfig) -> Iterator[dict[str, Any]]:
    """Pre-annotated articles that keep the record contract; others are reported and skipped."""
    for file, lineno, art in read_records(path, bad):
        if problem := article_problem(art, entity_labels=cfg.entity_labels, stance_labels=cfg.stance_labels):
            bad.add(f"{file}:{lineno}", problem)
            continue
        yield art


def bad_task_lines(bad: BadRecords, found: Sequence[Path]) -> list[str]:
    """The task lines (FILE:LINE, or FILE:task N of a JSON export) of `found` with at least one bad record, in order."""
    units: dict[tuple[int, int], str] = {}
    for problem in bad.problems:
        for index, path in enumerate(found):
            rest = problem["where"].removeprefix(f"{path}:")
            if rest != problem["where"] and (m := re.match(r"(task )?(\d+)", rest)):
                units[(index, int(m[2]))] = f"{path}:{m[0]}"
                break
    return [units[k] for k in sorted(units)]


def check_task_lines(bad: BadRecords, lines: list[str], total: int) -> None:
    """Fail the stage when more than `bad.max_share` of the `total` task lines are bad, naming them."""
    share = len(lines) / max(total, 1)
    if lines and share > bad.max_share:
        shown = ", ".join(lines[:8]) + (f" and {len(lines) - 8} more" if len(lines) > 8 else "")
        first = next(p for p in bad.problems if p["where"] == lines[0] or p["where"].startswith(f"{lines[0]} "))
        raise BadShareError(one_line(
            f"{STAGE}: {len(lines)} of {total} snapshot task lines are bad ({share:.0%} > max_bad_share "
            f"{bad.max_share:.0%}): {shown}; first: {first['where']}: {first['error']}", 600))


def previous_gold(output: Path) -> set[str]:
    """Ids of the gold articles of the previous output (read before it is replaced), or none if there is none."""
    if not output.is_file():
        return set()
    quiet = BadRecords(STAGE, 1.0, quiet=True)  # our own earlier output: a bad line only holds no gold id
    try:
        return {r["id"] for _, r in read_jsonl(output, quiet) if r.get("status") == "gold" and isinstance(r.get("id"), str)}
    except InputError as exc:
        print(f"{STAGE}: cannot compare with the previous output: {exc}", file=sys.stderr)
        return set()


def report_lost_gold(before: set[str], now: dict[str, str], rep: Report, output: Path) -> None:
    """List (in the report and on stderr) each article gold in the previous output and not gold now (`now`: status)."""
    stale = {s["article_id"] for s in rep.stale}
    deleted = {d["article_id"] for d in rep.deleted if not d["cancelled"]}
    for article_id in sorted(before):
        status = now.get(article_id, "absent")
        if status == "gold":
            continue
        reason = ("no longer in the pre-annotated data" if status == "absent" else
                  "its task is stale (the text changed)" if article_id in stale else
                  "its human annotation was deleted in Label Studio" if article_id in deleted else
                  "no usable human annotation in the snapshots (one removed, renamed or unreadable?)")
        rep.lost_gold.append({"article_id": article_id, "now": status, "reason": reason})
    for lost in rep.lost_gold[:20]:
        print(f"{STAGE}: lost gold: article {lost['article_id']} was gold in the previous {output}, now "
              f"{lost['now']}: {lost['reason']}", file=sys.stderr)
    if len(rep.lost_gold) > 20:
        print(f"{STAGE}: lost gold: {len(rep.lost_gold) - 20} more (merge report, lost_gold)", file=sys.stderr)


def main(
    preannotated: Path,
    annotations: Path,
    output: Path,
    report: Path,
    params: Path,
    rules: tuple[Path, Path, Path],
) -> None:
    """Merge every annotation snapshot over the pre-annotated articles into labeled.jsonl and a report."""
    cfg = stage_config(MergeConfig, STAGE, params)
    bad = BadRecords(STAGE, cfg.max_bad_share)  # snapshot task lines (and their annotations)
    bad_articles = BadRecords(STAGE, cfg.max_bad_share)  # pre-annotated article records
    rep = Report()
    found = snapshots(annotations)
    rep.snapshots = {p.as_posix(): file_digest(p) for p in found}
    if found:
        rep.snapshot, rep.snapshot_sha256 = found[-1].as_posix(), rep.snapshots[found[-1].as_posix()]
    tasks, rep.tasks = collect_tasks(found, bad)
    tombstones = drop_deleted(tasks, found, bad)  # before any annotation is read: `bad` holds only unread lines
    rep.deleted = [t.record() for t in tombstones]
    report_deleted(tombstones, STAGE)
    decisions = read_decisions(annotations / REVIEW_DIR, cfg.stance_labels, cfg.max_bad_share, STAGE)
    link = _actor_linker(rules, cfg.stance_labels)
    gold_before = previous_gold(output)  # write_jsonl replaces the output only after the last record

    def checked(records: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        now: dict[str, str] = {}
        for record in records:
            if record["id"] in gold_before:
                now[record["id"]] = record["status"]
            yield record
        report_lost_gold(gold_before, now, rep, output)
        rep.bad_task_lines = bad_task_lines(bad, found)
        # the report is written even when the check fails the stage; the output is renamed into place only after it
        write_json(report, rep.as_dict(bad, bad_articles))
        check_task_lines(bad, rep.bad_task_lines, rep.tasks)  # a line with any bad record counts once
        bad_articles.check()

    n = write_jsonl(output, checked(merge(_articles(preannotated, bad_articles, cfg), tasks, cfg, link, bad, rep,
                                                  decisions)))
    print(
        f"{STAGE}: {n} articles ({rep.status['gold']} gold, {rep.status['silver']} silver) from "
        f"{len(found)} snapshot(s); {len(rep.stale)} stale task(s), {len(bad) + len(bad_articles)} bad record(s), "
        f"{len(rep.bad_task_lines)} of {rep.tasks} task line(s) bad; {len(rep.deleted)} annotation(s) deleted in "
        f"Label Studio dropped; {len(rep.lost_gold)} gold article(s) of the previous output lost",
        file=sys.stderr,
    )
