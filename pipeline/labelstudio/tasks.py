"""Pre-annotated articles as Label Studio tasks: `data` to show, the model's `predictions` as regions and relations.

A task is identified by (article_id, text_hash); region ids are stable, so the same record gives the same task.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.common.contract import document_problem, is_number
from pipeline.common.errors import BadRecords, InputError
from pipeline.common.jsonl import JSONLineError, loads, open_input
from pipeline.common.provenance import sha256_text
from pipeline.common.shards import line_reader, read_records
from pipeline.labelstudio.config import FROM_NAME, TO_NAME
from pipeline.labelstudio.params import Config

DISPLAY_FIELDS = ("title", "date", "source", "url")


def model_version(provenance: Mapping[str, Any]) -> str:
    """`{model}@{model_version}+rules.{rules_version}+code.{code_revision}` from a record's provenance.

    With a learned stance model, `+stance.{stance_model}` follows, so a retrain is a new model version.
    """
    try:
        stance = f"+stance.{provenance['stance_model']}" if "stance_model" in provenance else ""
        return (
            f"{provenance['model']}@{provenance['model_version']}"
            f"+rules.{provenance['rules_version']}+code.{provenance['code_revision']}{stance}"
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"provenance lacks {exc}") from None


def _score_problem(item: Mapping[str, Any]) -> str | None:
    """Why an entity's or stance's optional `score` is unusable, or None."""
    if "score" not in item:
        return None
    score = item["score"]
    if not is_number(score) or not 0 <= score <= 1:
        return f"score {json.dumps(score)[:40]} is not a number in [0, 1]"
    return None


def check_record(record: Mapping[str, Any], cfg: Config) -> str | None:
    """What is wrong with a pre-annotated record, or None (the shared contract plus what a task needs)."""
    text = record.get("text")
    rid = record.get("id")
    if rid is None:
        return "missing 'id'"
    if not (isinstance(rid, str) and rid.strip()):  # merge keys articles by string id: 42 would be dropped there
        return f"'id' must be a non-empty string (an integer id as \"42\"), got {json.dumps(rid)[:40]}"
    if not isinstance(text, str) or not text:
        return "missing 'text'"
    try:
        model_version(record.get("provenance") or {})
    except ValueError as exc:
        return str(exc)
    if problem := document_problem(dict(record), text=text, entity_labels=cfg.entity_labels,
                                   stance_labels=cfg.stance_labels):
        return problem
    for i, ent in enumerate(record["entities"]):
        if ent["text"] != text[ent["start"]:ent["end"]]:
            return f"entities[{i}]: text {ent['text']!r} does not match the offsets ({text[ent['start']:ent['end']]!r})"
        if problem := _score_problem(ent):
            return f"entities[{i}]: {problem}"
    for i, st in enumerate(record["stances"]):
        if st["holder"] == st["target"]:
            return f"stances[{i}]: holder and target are the same entity ({st['holder']})"
        if problem := _score_problem(st):
            return f"stances[{i}]: {problem}"
    return None


def region_id(article_id: str, index: int) -> str:
    """Stable id of the index-th predicted entity region of an article."""
    return f"{article_id[:10]}_e{index}"


def task_score(record: Mapping[str, Any], how: str) -> float:
    """Task-level confidence from entity and stance scores (min or mean); 0 when nothing was proposed."""
    scores = [float(x["score"]) for key in ("entities", "stances") for x in record.get(key) or [] if "score" in x]
    if not scores:
        return 0.0
    return round(min(scores) if how == "min" else sum(scores) / len(scores), 6)


def _why(stance: Mapping[str, Any]) -> str:
    """Why a stance was proposed, in words: the rule (or `model`), its cue word and the score."""
    rule, cue = stance.get("rule"), (stance.get("cue") or {}).get("text")
    parts = [str(rule) if rule else "model"] + ([f"cue “{cue}”"] if cue else [])
    if "score" in stance:
        parts.append(f"score {float(stance['score']):.2f}")
    return ", ".join(parts)


def stance_lines(record: Mapping[str, Any], kept: Sequence[Mapping[str, Any]]) -> dict[int, list[str]]:
    """Per entity, the proposed stances it holds or is the target of, named and explained (shown on its region)."""
    text, ents = record["text"], record["entities"]
    name = [text[e["start"]:e["end"]] for e in ents]
    lines: dict[int, list[str]] = {}
    for st in kept:
        h, t, label = st["holder"], st["target"], str(st["label"]).upper()
        lines.setdefault(h, []).append(f"→ {label} {name[t]} ({_why(st)})")
        lines.setdefault(t, []).append(f"← {label} from {name[h]} ({_why(st)})")
    return lines


def result_json(record: Mapping[str, Any], ids: Sequence[str]) -> list[dict[str, Any]]:
    """A document's entities as labels regions (`ids[i]` for entity i, with its score) and stances as relations.

    Each region's `meta` (its Info panel in Label Studio) names its actor and the stances proposed from and to
    it, with their polarity and reason: the relations list itself shows only region numbers and labels."""
    text = record["text"]
    seen = set()
    kept = []
    for st in sorted(record.get("stances") or [], key=lambda s: -float(s.get("score", 0))):
        pair = (st["holder"], st["target"])
        if pair in seen:  # one relation per ordered pair in Label Studio: keep the most confident stance
            continue
        seen.add(pair)
        kept.append(st)
    stances = stance_lines(record, kept)
    result: list[dict[str, Any]] = []
    for i, ent in enumerate(record["entities"]):
        region: dict[str, Any] = {
            "id": ids[i],
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "type": "labels",
            "value": {"start": ent["start"], "end": ent["end"], "text": text[ent["start"]:ent["end"]],
                      "labels": [ent["label"]]},
        }
        if "score" in ent:
            region["score"] = float(ent["score"])
        # one string: Label Studio runs the items of meta.text together
        region["meta"] = {"text": ["\n".join([f"actor: {ent.get('actor') or 'none'}", *stances.get(i, [])])]}
        result.append(region)
    result.extend(
        {
            "from_id": ids[st["holder"]],
            "to_id": ids[st["target"]],
            "type": "relation",
            "direction": "right",
            "labels": [st["label"]],
        }
        for st in kept
    )
    return result


def prediction(record: Mapping[str, Any], cfg: Config) -> dict[str, Any]:
    """The model's proposals for one article as a Label Studio prediction."""
    ids = [region_id(record["id"], i) for i in range(len(record["entities"]))]
    return {
        "model_version": model_version(record["provenance"]),
        "score": task_score(record, cfg.ls.task_score),
        "result": result_json(record, ids),
    }


def gold_region_id(record_id: str, entity: Mapping[str, Any]) -> str:
    """A stable region id for one gold entity (same span and label, same id)."""
    key = f"{record_id}:{entity['start']}:{entity['end']}:{entity['label']}"
    return "g" + hashlib.sha256(key.encode()).hexdigest()[:9]


def gold_result(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Label Studio annotation result JSON for one gold record: labels regions, then stance relations."""
    return result_json(record, [gold_region_id(record["id"], e) for e in record["entities"]])


def to_task(record: Mapping[str, Any], cfg: Config) -> dict[str, Any]:
    """One Label Studio task for one pre-annotated article."""
    data: dict[str, Any] = {"text": record["text"]}
    for key in DISPLAY_FIELDS:  # "" rather than null: Label Studio would render a missing value as "$title"
        data[key] = record.get(key) or ""
    data["article_id"] = record["id"]
    data["text_hash"] = sha256_text(record["text"])
    # Shown under the title. Not "$date · $source" in the config: Label Studio reads "$source" in a
    # template as the whole task's JSON.
    data["byline"] = " · ".join(x for x in (record.get("date"), record.get("source")) if x)
    return {"data": data, "predictions": [prediction(record, cfg)]}


def checked_records(records: Iterable[tuple[int, dict[str, Any]]], cfg: Config, where: Path,
                    bad: BadRecords) -> Iterator[tuple[int, dict[str, Any]]]:
    """The good records (line number, record) of the file `where`; bad ones reported and counted, too many an error."""
    for _, lineno, record in checked_located(((where, n, r) for n, r in records), cfg, bad):
        yield lineno, record


def checked_located(records: Iterable[tuple[Path, int, dict[str, Any]]], cfg: Config,
                    bad: BadRecords) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    """The good records (file, line number, record); bad ones reported and counted, too many of them an error at the end."""
    good = rejected = 0
    before = len(bad)
    for file, lineno, record in records:
        unannotated = "entities" not in record and not isinstance((record.get("provenance") or {}).get("model"), str)
        if unannotated and not good and not rejected:
            # the first record is not pre-annotated: an ingested file, one line for the whole file, not one per record
            raise InputError(f"{file}:{lineno}: not a pre-annotated article (no entities, no model in its "
                             f"provenance); run preannotate first (dvc repro preannotate)")
        problem = check_record(record, cfg)
        if problem:
            bad.add(f"{file}:{lineno}", problem)
            rejected += 1
            continue
        good += 1
        yield file, lineno, record
    unreadable = len(bad) - before - rejected  # lines that were not even JSON objects
    bad.check(good + rejected + unreadable)


def build_tasks(records: Iterable[tuple[int, dict[str, Any]]], cfg: Config, where: Path, bad: BadRecords) -> list[dict]:
    """Check records and turn the good ones into tasks, ordered for the annotators' queue (all in memory)."""
    tasks = [to_task(record, cfg) for _, record in checked_records(records, cfg, where, bad)]
    if cfg.ls.queue_order == "least_confident_first":
        tasks.sort(key=lambda t: t["predictions"][0]["score"])  # stable: input order among equal scores
    return tasks


class TaskStream:
    """The tasks of pre-annotated articles (a shard folder or a JSON Lines file) in queue order, built one at a time.

    Reading checks every record and keeps only (score, file, line, byte offset, article id) of each good one
    (the first of an article id and text hash); iterating reads each line again at its offset, so memory
    holds one task, not the file.
    """

    def __init__(self, path: Path, cfg: Config) -> None:
        self.path, self.cfg = path, cfg
        bad = BadRecords("push", cfg.ls.max_bad_share)
        keep: list[tuple[float, Path, int, str]] = []
        seen: set[tuple[str, str]] = set()
        for file, lineno, record in checked_located(read_records(path, bad), cfg, bad):
            key = (record["id"], sha256_text(record["text"]))
            if key not in seen:  # the same article twice in the input: one task
                seen.add(key)
                keep.append((task_score(record, cfg.ls.task_score), file, lineno, record["id"]))
        if cfg.ls.queue_order == "least_confident_first":
            keep.sort(key=lambda item: item[0])  # stable: input order among equal scores
        wanted: dict[Path, set[int]] = {}
        for _, file, lineno, _ in keep:
            wanted.setdefault(file, set()).add(lineno)
        offsets = {file: _line_offsets(file, lines) for file, lines in wanted.items()}
        self._order = [(file, offsets[file][lineno], article_id) for _, file, lineno, article_id in keep]

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with line_reader() as read:
            for file, offset, article_id in self._order:
                try:
                    record = loads(read(file, offset).decode("utf-8"))
                except (JSONLineError, UnicodeDecodeError):
                    record = None
                except OSError as exc:
                    raise InputError(f"{file}: cannot read ({exc.strerror}); push again") from None
                if not isinstance(record, dict) or record.get("id") != article_id:
                    raise InputError(f"{file}: changed while it was being pushed; push again")
                yield to_task(record, self.cfg)

    def limit(self, n: int) -> TaskStream:
        """Only the first `n` tasks of the queue."""
        self._order = self._order[:n]
        return self


def _line_offsets(path: Path, wanted: set[int]) -> dict[int, int]:
    """Byte offset of each wanted line (1-based line numbers, as `read_jsonl` counts them)."""
    offsets, pos = {}, 0
    with open_input(path) as handle:
        for lineno, raw in enumerate(handle, start=1):
            if lineno in wanted:
                offsets[lineno] = pos
            pos += len(raw)
    return offsets


def read_tasks(path: Path, cfg: Config) -> TaskStream:
    """The tasks of a pre-annotated shard folder or JSON Lines file, streamed (bad records reported, too many of them an error)."""
    return TaskStream(path, cfg)
