"""The stance review queue: a second Label Studio project, one task per proposed holder→target pair in context.

A task shows the sentence(s) from the holder's to the target's and the cue's (so the sentence before, when a
pronoun there stands for the holder), the holder and target marked and named, why the pair was proposed, and
the model's label preselected as a prediction; the reviewer answers `against`, `favor` or `none` by hotkey.
Pairs below `labelstudio.review.min_score` are left out; the `max_pairs` least certain ones are queued, least
certain first. A push after a model change gives the pairs nobody answered the new prediction and proposal;
answered ones keep what their reviewer saw. `pull --review` exports the decisions to annotations/review/
(pipeline/human/pairs.py reads them).
"""

from __future__ import annotations

import dataclasses
import heapq
import html
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from pipeline.common.errors import BadRecords
from pipeline.common.jsonl import write_json
from pipeline.common.provenance import sha256_text
from pipeline.common.shards import read_records
from pipeline.human.pairs import NONE, pair_id
from pipeline.human.snapshots import REVIEW_DIR
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.config import instructions_html, read_guidelines
from pipeline.labelstudio.index import IndexedTask, TaskIndex
from pipeline.labelstudio.lock import PushLock
from pipeline.labelstudio.params import Config, connect, load_config
from pipeline.labelstudio.pull import PullReport, pull
from pipeline.labelstudio.push import SAMPLING, _refresh_batch, _slow
from pipeline.labelstudio.tasks import _why, checked_located, model_version

FROM_NAME = "stance"
TO_NAME = "context"
MAX_SENTENCES = 3  # context shown at most: the pre-annotator looks this far back for a pronoun's antecedent
MARKS = {"holder": "#ffd166", "target": "#9bd1f9"}


def review_config(cfg: Config) -> Config:
    """The config of the review project: the same labels under the review queue's title."""
    return dataclasses.replace(cfg, ls=cfg.ls.model_copy(update={"project_title": cfg.ls.review.project_title}))


def choices(cfg: Config) -> tuple[str, ...]:
    """The reviewer's answers: the stance labels and `none`."""
    return (*cfg.stance_labels, NONE)


def label_config(cfg: Config) -> str:
    """The review project's labeling config XML: the pair, its context, why it was proposed, one choice."""
    view = ET.Element("View")
    ET.SubElement(view, "Header", value="$question", size="4")
    ET.SubElement(view, "HyperText", name=TO_NAME, value="$context", inline="true")
    ET.SubElement(view, "Header", value="$reason", size="6", style="color: #666; font-weight: normal")
    group = ET.SubElement(view, "Choices", name=FROM_NAME, toName=TO_NAME, choice="single-radio",
                          showInline="true", required="true")
    for name in choices(cfg):
        attrs = {"value": name}
        if name in cfg.ls.review.hotkeys:
            attrs["hotkey"] = cfg.ls.review.hotkeys[name]
        if name in cfg.ls.stance_colors:
            attrs["background"] = cfg.ls.stance_colors[name]
        ET.SubElement(group, "Choice", attrs)
    ET.indent(view, space="  ")
    return ET.tostring(view, encoding="unicode")


def _context(record: Mapping[str, Any], spans: dict[str, tuple[int, int]], cue: tuple[int, int] | None) -> str:
    """The sentences from the first to the last of holder, target and cue as HTML, holder and target marked."""
    text = record["text"]
    points = [s for s, _ in spans.values()] + ([cue[0]] if cue else [])
    sentences = [(s["start"], s["end"]) for s in record.get("sentences") or []] or [(0, len(text))]
    inside = [i for i, (s, e) in enumerate(sentences) if any(s <= p < e for p in points)]
    first, last = (min(inside), max(inside)) if inside else (0, len(sentences) - 1)
    first = max(first, last - MAX_SENTENCES + 1)
    start = min(sentences[first][0], *(s for s, _ in spans.values()))
    end = max(sentences[last][1], *(e for _, e in spans.values()))
    out, at = [], start
    for role, (s, e) in sorted(spans.items(), key=lambda kv: kv[1]):
        out.append(html.escape(text[at:s]))
        out.append(f'<mark style="background: {MARKS[role]}">{html.escape(text[s:e])}</mark>'
                   f"<sup>{role}</sup>")
        at = e
    out.append(html.escape(text[at:end]))
    return "".join(out).strip()


def pair_task(record: Mapping[str, Any], stance: Mapping[str, Any], cfg: Config) -> dict[str, Any]:
    """One review task: a proposed stance of one article, in context, with the model's label preselected."""
    ents, text = record["entities"], record["text"]
    ends = {role: ents[stance[role]] for role in ("holder", "target")}
    spans = {role: (e["start"], e["end"]) for role, e in ends.items()}
    cue = (stance["cue"]["start"], stance["cue"]["end"]) if isinstance(stance.get("cue"), dict) else None
    score = float(stance.get("score", 1.0))
    named = {role: f"{e['text']} ({e['label']}{', ' + e['actor'] if e.get('actor') else ''})"
             for role, e in ends.items()}
    data = {
        "question": f"What stance does {named['holder']} take towards {named['target']}?",
        "context": _context(record, spans, cue),
        "reason": f"proposed: {str(stance['label']).upper()} ({_why(stance)})",
        "article_id": record["id"],
        "text_hash": sha256_text(text),
        "pair_id": pair_id(record["id"], spans["holder"], spans["target"]),
        "holder": {k: ends["holder"].get(k) for k in ("start", "end", "label", "text", "actor")},
        "target": {k: ends["target"].get(k) for k in ("start", "end", "label", "text", "actor")},
        "proposed": stance["label"],
        "title": record.get("title") or "",
        "text": text,  # the whole article: pull checks its hash, as for an article task
    }
    result = [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [stance["label"]]}}]
    return {"data": data, "predictions": [{"model_version": model_version(record["provenance"]), "score": score,
                                           "result": result}]}


def _candidates(records: Iterable[Mapping[str, Any]], cfg: Config) -> Iterator[tuple[float, int, dict[str, Any]]]:
    """(score, input order, task) of every proposed pair at or above `min_score`; one per ordered pair."""
    n = 0
    for record in records:
        seen: set[tuple[int, int]] = set()
        for st in sorted(record.get("stances") or [], key=lambda s: -float(s.get("score", 1.0))):
            pair = (st["holder"], st["target"])
            score = float(st.get("score", 1.0))
            if pair in seen or score < cfg.ls.review.min_score:
                continue
            seen.add(pair)
            n += 1
            yield score, n, pair_task(record, st, cfg)


def review_tasks(records: Iterable[Mapping[str, Any]], cfg: Config) -> list[dict[str, Any]]:
    """The review queue: the `max_pairs` least certain proposed pairs, least certain first (input order on a tie)."""
    kept = heapq.nsmallest(cfg.ls.review.max_pairs, _candidates(records, cfg), key=lambda c: (c[0], c[1]))
    return [task for _, _, task in kept]


def read_review_tasks(path: Path, cfg: Config) -> list[dict[str, Any]]:
    """The review queue of a pre-annotated shard folder or JSON Lines file (bad records reported, too many an error)."""
    bad = BadRecords("push", cfg.ls.max_bad_share)
    return review_tasks((record for _, _, record in checked_located(read_records(path, bad), cfg, bad)), cfg)


@dataclass
class ReviewPushReport:
    """What a review push did."""

    created: int = 0
    unchanged: int = 0
    refreshed: int = 0  # unanswered pairs given the new model's prediction (and its proposal in the task)
    kept_answered: int = 0  # a newer model version, but a reviewer answered, skipped or drafted: left as it was

    def line(self) -> str:
        """One summary line."""
        return (f"push --review: {self.created} new pair task(s), {self.refreshed} unanswered with refreshed "
                f"predictions, {self.kept_answered} answered left as they were, {self.unchanged} already queued")


def _settings(cfg: Config, guidelines: str) -> dict[str, Any]:
    """The review project's settings."""
    return {
        "title": cfg.ls.review.project_title,
        "label_config": label_config(cfg),
        "expert_instruction": instructions_html(guidelines),
        "show_instruction": True,
        "sampling": SAMPLING[cfg.ls.queue_order],
        "show_collab_predictions": True,
        "maximum_annotations": cfg.ls.annotations_per_task,
    }


def push_review(api: LabelStudioAPI, tasks: list[dict[str, Any]], cfg: Config, guidelines: str,
                project: dict[str, Any]) -> tuple[dict[str, Any], ReviewPushReport]:
    """Bring the review project's settings up to date and add the pair tasks it lacks (by pair and text hash)."""
    projects = api.sdk.projects.with_raw_response
    changed = {k: v for k, v in _settings(cfg, guidelines).items() if project.get(k) != v}
    if changed:
        project = api.call("updating the review project", projects.update, project["id"], **changed)
    pid = project["id"]
    have = _queued(api, pid, cfg.ls.page_size)
    report = ReviewPushReport()
    new, stale = [], []
    for task in tasks:
        old = have.get((task["data"]["pair_id"], task["data"]["text_hash"]))
        if old is None:
            new.append(task)
        elif old.model_versions == {task["predictions"][0]["model_version"]}:
            report.unchanged += 1
        elif old.annotated:
            report.kept_answered += 1
        else:
            stale.append((old, task))
    if stale:
        refreshed, kept = _refresh(api, pid, stale, cfg.ls.page_size)
        report.refreshed += refreshed
        report.kept_answered += kept
    for i in range(0, len(new), cfg.ls.import_batch_size):
        batch = new[i:i + cfg.ls.import_batch_size]
        answer = api.call("importing review tasks", projects.import_tasks, pid, request=batch,
                          request_options=_slow(api))
        report.created += int((answer or {}).get("task_count", len(batch)))
    versions = Counter(t["predictions"][0]["model_version"] for t in tasks)
    if versions and project.get("model_version") != (current := versions.most_common(1)[0][0]):
        project = api.call("setting the review project's model version", projects.update, pid, model_version=current)
    return project, report


def _queued(api: LabelStudioAPI, project_id: int, page_size: int) -> dict[tuple[str, str], IndexedTask]:
    """The queued tasks by (pair id, text hash), the first (lowest id) of a key."""
    pairs = {int(t["id"]): (str(t["data"].get("pair_id")), str(t["data"].get("text_hash")))
             for t in api.pages("/api/tasks", what="review tasks", page_size=page_size,
                                params={"project": project_id, "include": "id,data", "resolve_uri": "false"})}
    have: dict[tuple[str, str], IndexedTask] = {}
    for entry in TaskIndex.fetch(api, project_id, page_size):
        have.setdefault(pairs[entry.task_id], entry)
    return have


def _refresh(api: LabelStudioAPI, project_id: int, stale: list[tuple[IndexedTask, dict[str, Any]]],
             page_size: int) -> tuple[int, int]:
    """New predictions for unanswered pairs, then their task data (the proposal and its reason) where the new
    prediction landed; return (refreshed, answered meanwhile and kept)."""
    refreshed, kept = _refresh_batch(api, project_id, [(old, task["predictions"][0]) for old, task in stale],
                                     page_size)
    now = {e.task_id: e for e in TaskIndex.fetch(api, project_id, page_size, ids=[old.task_id for old, _ in stale])}
    for old, task in stale:
        entry = now.get(old.task_id)
        if entry and not entry.annotated and entry.model_versions == {task["predictions"][0]["model_version"]}:
            api.patch(f"/api/tasks/{old.task_id}", {"data": task["data"]}, what="updating a review task's proposal")
    return refreshed, kept


def push_review_main(input: Path, guidelines: Path, params: Path, env_file: Path = Path(".env"),
                     break_lock: bool = False) -> ReviewPushReport:
    """Push the stance review queue to its own Label Studio project, holding that project's push lock."""
    cfg = load_config(params)
    text = read_guidelines(guidelines)
    tasks = read_review_tasks(input, cfg)
    api = connect(cfg, env_file)
    with PushLock(api, cfg.ls.review.project_title, cfg.ls.lock_stale_s, break_lock=break_lock) as lock:
        assert lock.project is not None
        project, report = push_review(api, tasks, cfg, text, lock.project)
    print(report.line(), file=sys.stderr)
    print(f"push --review: project {project['id']} at {api.url}/projects/{project['id']}/data", file=sys.stderr)
    return report


def pull_review_main(out_dir: Path, params: Path, articles: Path | None = None, report_path: Path | None = None,
                     env_file: Path = Path(".env")) -> PullReport:
    """Pull the review project's decisions into a new snapshot `out_dir/review/<UTC timestamp>.jsonl`."""
    cfg = review_config(load_config(params))
    report = pull(connect(cfg, env_file), cfg, out_dir / REVIEW_DIR, articles)
    print(report.line(), file=sys.stderr)
    if report_path:
        write_json(report_path, report.as_dict())
    return report
