"""The Label Studio round trip: a labeling config generated from params, idempotent push of pre-annotations, pull of corrections.

push: one task per article (`data`: text, title, date, source, url, article_id, text_hash; `predictions`:
entities as `labels` regions, stances as relations, with the model version and a task score). A task is
identified by (article_id, text_hash), so a push adds only what is missing, even after a push that died.
pull: a Label Studio JSON export snapshot, streamed to `annotations/<UTC timestamp>.jsonl`, never overwritten.
"""

from __future__ import annotations

import colorsys
import datetime as dt
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree as ET

from pipeline.common.config import from_mapping, load_params, read_env_file
from pipeline.common.contract import LabelSets, document_problem, is_number, label_sets
from pipeline.common.errors import BadRecords, ConfigError, InputError, PipelineError
from pipeline.common.jsonl import dumps, read_jsonl
from pipeline.common.provenance import sha256_text
from pipeline.labelstudio.api import LabelStudioAPI, LabelStudioError, mask

FROM_NAME = "label"
TO_NAME = "text"
SAMPLING = {"least_confident_first": "Uncertainty sampling", "input_order": "Sequential sampling"}
DISPLAY_FIELDS = ("title", "date", "source", "url")


MAX_RETRIES = 20  # the back-off is capped at 10 s a try: more would hang for minutes on a server that is down


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


@dataclass(frozen=True)
class ServerParams:
    """The local server started by `python -m pipeline label-studio`."""

    port: int
    start_timeout_s: float

    def validate(self) -> str | None:
        """Range checks."""
        if not 0 <= self.port <= 65535:
            return f"port: expected a TCP port 1-65535 (or 0: any free port), got {self.port}"
        if not _positive(self.start_timeout_s):
            return f"start_timeout_s: expected a number of seconds > 0, got {self.start_timeout_s}"
        return None


@dataclass(frozen=True)
class LabelStudioParams:
    """params.yaml `labelstudio:` section."""

    project_title: str
    entity_colors: dict[str, str]
    entity_hotkeys: dict[str, str]
    stance_colors: dict[str, str]
    queue_order: Literal["least_confident_first", "input_order"]
    task_score: Literal["min", "mean"]
    import_batch_size: int
    page_size: int
    timeout_s: float
    retries: int
    export_timeout_s: float
    max_bad_share: float
    server: ServerParams

    def validate(self) -> str | None:
        """Range and cross-field checks."""
        if len(self.project_title) < 3:
            return "project_title: Label Studio needs at least 3 characters"
        for key in ("import_batch_size", "page_size"):
            if getattr(self, key) < 1:
                return f"{key}: expected an integer >= 1, got {getattr(self, key)}"
        for key in ("timeout_s", "export_timeout_s"):
            if not _positive(getattr(self, key)):
                return f"{key}: expected a number of seconds > 0, got {getattr(self, key)}"
        if not 0 <= self.retries <= MAX_RETRIES:
            return f"retries: expected an integer 0-{MAX_RETRIES}, got {self.retries}"
        if not 0.0 <= self.max_bad_share <= 1.0:
            return f"max_bad_share: expected a share 0-1, got {self.max_bad_share}"
        keys = list(self.entity_hotkeys.values())
        if len(set(keys)) != len(keys):
            return f"entity_hotkeys: duplicate hotkey in {dict(self.entity_hotkeys)}"
        for name, colour in {**self.entity_colors, **self.stance_colors}.items():
            if not (colour.startswith("#") and len(colour) in (4, 7)):
                return f"colour of {name}: expected #rgb or #rrggbb, got {colour!r}"
        return None


@dataclass(frozen=True)
class Config:
    """Everything the round trip needs from params.yaml: this stage's section plus the label sets of preannotate."""

    ls: LabelStudioParams
    entity_labels: tuple[str, ...]
    stance_labels: tuple[str, ...]


def load_config(params_path: Path) -> Config:
    """Read the `labelstudio:` section and the label sets (`preannotate.entity_labels`, `preannotate.stance_labels`)."""
    params = load_params(params_path)
    if "labelstudio" not in params:
        raise ConfigError(f"{params_path}: missing section 'labelstudio'")
    ls = from_mapping(LabelStudioParams, params["labelstudio"], f"{params_path}:labelstudio")
    labels = label_sets(params_path)
    for key, mapping, known in (
        ("entity_colors", ls.entity_colors, labels.entity_labels),
        ("entity_hotkeys", ls.entity_hotkeys, labels.entity_labels),
        ("stance_colors", ls.stance_colors, labels.stance_labels),
    ):
        stray = sorted(set(mapping) - set(known))
        if stray:
            raise ConfigError(
                f"{params_path}:labelstudio.{key}: {', '.join(stray)} not in preannotate's labels ({', '.join(known)})"
            )
    return Config(ls, labels.entity_labels, labels.stance_labels)


# -- labeling config ----------------------------------------------------------------------------


def _palette_colour(label: str) -> str:
    """A stable colour for a label without one in params (hue from a hash of the name)."""
    hue = int(hashlib.sha256(label.encode()).hexdigest()[:4], 16) / 0xFFFF
    r, g, b = colorsys.hls_to_rgb(hue, 0.6, 0.65)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def label_config(cfg: Config) -> str:
    """The Label Studio labeling config XML: metadata header, text, entity labels, stance relations."""
    view = ET.Element("View")
    meta = ET.SubElement(view, "View", style="margin-bottom: 0.5em")
    ET.SubElement(meta, "Header", value="$title", size="4")
    ET.SubElement(meta, "Header", value="$byline", size="6", style="color: #666; font-weight: normal")
    labels = ET.SubElement(view, "Labels", name=FROM_NAME, toName=TO_NAME, showInline="true")
    for name in cfg.entity_labels:
        attrs = {"value": name, "background": cfg.ls.entity_colors.get(name) or _palette_colour(name)}
        if name in cfg.ls.entity_hotkeys:
            attrs["hotkey"] = cfg.ls.entity_hotkeys[name]
        ET.SubElement(labels, "Label", attrs)
    relations = ET.SubElement(view, "Relations")
    for name in cfg.stance_labels:
        attrs = {"value": name}
        if name in cfg.ls.stance_colors:
            attrs["background"] = cfg.ls.stance_colors[name]
        ET.SubElement(relations, "Relation", attrs)
    ET.SubElement(view, "Text", name=TO_NAME, value="$text")
    ET.indent(view, space="  ")
    return ET.tostring(view, encoding="unicode")


def instructions_html(markdown_text: str) -> str:
    """The annotation guidelines (Markdown) as the HTML Label Studio shows as the project's instructions."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown_text)


# -- push: pre-annotated articles -> tasks ------------------------------------------------------


def model_version(provenance: Mapping[str, Any]) -> str:
    """`{model}@{model_version}+rules.{rules_version}+code.{code_revision}` from a record's provenance."""
    try:
        return (
            f"{provenance['model']}@{provenance['model_version']}"
            f"+rules.{provenance['rules_version']}+code.{provenance['code_revision']}"
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


def result_json(record: Mapping[str, Any], ids: Sequence[str]) -> list[dict[str, Any]]:
    """A document's entities as labels regions (`ids[i]` for entity i, with its score) and stances as relations."""
    text = record["text"]
    result: list[dict[str, Any]] = []
    for i, ent in enumerate(record["entities"]):
        region = {
            "id": ids[i],
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "type": "labels",
            "value": {"start": ent["start"], "end": ent["end"], "text": text[ent["start"]:ent["end"]],
                      "labels": [ent["label"]]},
        }
        if "score" in ent:
            region["score"] = float(ent["score"])
        result.append(region)
    seen = set()
    for st in sorted(record.get("stances") or [], key=lambda s: -float(s.get("score", 0))):
        pair = (st["holder"], st["target"])
        if pair in seen:  # one relation per ordered pair in Label Studio: keep the most confident stance
            continue
        seen.add(pair)
        result.append(
            {
                "from_id": ids[st["holder"]],
                "to_id": ids[st["target"]],
                "type": "relation",
                "direction": "right",
                "labels": [st["label"]],
            }
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


def build_tasks(records: Iterable[tuple[int, dict[str, Any]]], cfg: Config, where: Path, bad: BadRecords) -> list[dict]:
    """Check records and turn the good ones into tasks, ordered for the annotators' queue."""
    tasks = []
    before = len(bad)
    rejected = 0
    for lineno, record in records:
        problem = check_record(record, cfg)
        if problem:
            bad.add(f"{where}:{lineno}", problem)
            rejected += 1
            continue
        tasks.append(to_task(record, cfg))
    unreadable = len(bad) - before - rejected  # lines that were not even JSON objects
    bad.check(len(tasks) + rejected + unreadable)
    if cfg.ls.queue_order == "least_confident_first":
        tasks.sort(key=lambda t: t["predictions"][0]["score"])  # stable: input order among equal scores
    return tasks


@dataclass
class PushReport:
    """What a push did."""

    created: int = 0
    refreshed: int = 0
    unchanged: int = 0
    text_changed: list[tuple[str, int]] | None = None

    def line(self) -> str:
        """One summary line."""
        changed = len(self.text_changed or [])
        return (
            f"push: {self.created} new task(s), {self.refreshed} with refreshed predictions, "
            f"{self.unchanged} unchanged, {changed} article(s) whose text changed (new task, old one kept)"
        )


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


def ensure_project(api: LabelStudioAPI, cfg: Config, guidelines: str) -> dict[str, Any]:
    """Create the project, or bring its config, instructions and queue order up to date."""
    settings = {
        "title": cfg.ls.project_title,
        "label_config": label_config(cfg),
        "expert_instruction": instructions_html(guidelines),
        "show_instruction": True,
        "sampling": SAMPLING[cfg.ls.queue_order],
        "show_collab_predictions": True,
    }
    project = find_project(api, cfg.ls.project_title)
    if project is None:
        return api.post("/api/projects", settings, what=f"creating project {cfg.ls.project_title!r}")
    changed = {k: v for k, v in settings.items() if project.get(k) != v}
    if changed:
        project = api.patch(f"/api/projects/{project['id']}", changed, what=f"updating project {cfg.ls.project_title!r}")
    return project


def existing_tasks(api: LabelStudioAPI, project_id: int, page_size: int) -> dict[tuple[str, str], dict[str, Any]]:
    """(article_id, text_hash) -> {id, model_versions, predictions} of every task in the project, paged."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for task in api.pages(
        "/api/tasks", what="listing tasks", page_size=page_size,
        params={"project": project_id, "fields": "all", "include": "id,data,predictions"},
    ):
        data = task.get("data") or {}
        key = (str(data.get("article_id")), str(data.get("text_hash")))
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
         progress: bool = True) -> tuple[dict[str, Any], PushReport]:
    """Create/update the project and add the tasks it lacks; refresh predictions of an older model version."""
    from tqdm import tqdm

    project = ensure_project(api, cfg, guidelines)
    have = existing_tasks(api, project["id"], cfg.ls.page_size)
    by_article: dict[str, list[int]] = {}
    for (aid, _), info in have.items():
        by_article.setdefault(aid, []).append(info["id"])
    report = PushReport(text_changed=[])
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


# -- pull: export snapshot -> annotations/<timestamp>.jsonl -------------------------------------

EXPORT_OPTIONS = {
    # completed_by as the user id (no e-mail addresses in committed snapshots); predictions in full.
    "serialization_options": {
        "drafts": {"only_id": True},
        "predictions": {"only_id": False},
        "annotations__completed_by": {"only_id": True},
        "include_annotation_history": False,
    },
}


def snapshot_name(now: dt.datetime | None = None) -> str:
    """`YYYYMMDDTHHMMSSZ.jsonl` for the current UTC time."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + ".jsonl"


def iter_json_array(handle, chunk_size: int = 1 << 20) -> Iterator[Any]:
    """Yield the elements of a top-level JSON array read from a text stream, one at a time."""
    decoder = json.JSONDecoder()
    buf = ""
    pos = 0
    started = False
    eof = False
    while True:
        if not eof and len(buf) - pos < chunk_size:
            more = handle.read(chunk_size)
            eof = not more
            buf = buf[pos:] + more
            pos = 0
        while pos < len(buf) and buf[pos] in " \t\r\n,":
            pos += 1
        if not started:
            if pos >= len(buf):
                if eof:
                    raise ValueError("empty export")
                continue
            if buf[pos] != "[":
                raise ValueError("export is not a JSON array")
            started = True
            pos += 1
            continue
        if pos < len(buf) and buf[pos] == "]":
            return
        if pos >= len(buf):
            if eof:
                raise ValueError("export ends inside the array")
            continue
        try:
            item, end = decoder.raw_decode(buf, pos)
        except json.JSONDecodeError:
            if eof:
                raise
            more = handle.read(chunk_size)  # an element longer than what is buffered: read on
            eof = not more
            buf = buf[pos:] + more
            pos = 0
            continue
        yield item
        pos = end


def _write_new_file(path: Path, lines: Iterable[str]) -> int:
    """Write lines to a temp file and link it to `path` only if `path` does not exist yet; return the count."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # a snapshot is an ordinary, shareable file (mkstemp makes it private)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            for line in lines:
                out.write(line)
                n += 1
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)  # fails if the name is taken: a pull never overwrites a snapshot
        except FileExistsError:
            raise PipelineError(f"{path} already exists; a pull never overwrites a snapshot") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return n


def export_snapshot(api: LabelStudioAPI, project_id: int, out_json: Path, timeout_s: float) -> None:
    """Have Label Studio write a JSON export snapshot of the whole project and stream it to `out_json`."""
    export = api.post(
        f"/api/projects/{project_id}/exports", {"title": "pipeline pull", **EXPORT_OPTIONS},
        what="creating an export snapshot", timeout_s=timeout_s,
    )
    export_id = export["id"]
    deadline = time.monotonic() + timeout_s
    while export.get("status") not in ("completed", "failed"):
        if time.monotonic() > deadline:
            raise LabelStudioError(f"export snapshot {export_id} not ready after {timeout_s:g} s")
        time.sleep(1.0)
        export = api.get(f"/api/projects/{project_id}/exports/{export_id}", what="checking the export snapshot")
    if export["status"] == "failed":
        raise LabelStudioError(f"Label Studio failed to build export snapshot {export_id} (see the server log)")
    api.download(
        f"/api/projects/{project_id}/exports/{export_id}/download", out_json, what="downloading the export",
        params={"exportType": "JSON"}, timeout_s=timeout_s,
    )
    api.delete(f"/api/projects/{project_id}/exports/{export_id}", what="removing the export snapshot on the server")


def load_article_hashes(path: Path) -> dict[str, str]:
    """article id -> sha256 of its current text, from data/articles.jsonl."""
    return {
        rec["id"]: sha256_text(rec["text"]) for _, rec in read_jsonl(path)
        if isinstance(rec.get("id"), str) and isinstance(rec.get("text"), str)
    }


def annotation_status(task: Mapping[str, Any], current: Mapping[str, str] | None) -> str:
    """'ok', or why the task's annotations are stale (text changed since they were made)."""
    data = task.get("data") or {}
    text_hash = data.get("text_hash")
    if not isinstance(data.get("text"), str) or sha256_text(data["text"]) != text_hash:
        return "text_hash does not match the task's text"
    if current is not None:
        aid = data.get("article_id")
        if aid not in current:
            return "article no longer in the articles file"
        if current[aid] != text_hash:
            return "article text changed since the task was pushed"
    return "ok"


@dataclass
class PullReport:
    """What a pull found."""

    snapshot: str
    tasks: int = 0
    annotated_tasks: int = 0
    annotations: int = 0
    cancelled: int = 0
    annotators: Counter | None = None
    stale: list[dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for a JSON report."""
        return {
            "snapshot": self.snapshot, "tasks": self.tasks, "annotated_tasks": self.annotated_tasks,
            "annotations": self.annotations, "cancelled": self.cancelled,
            "annotations_per_annotator": {str(k): v for k, v in sorted((self.annotators or {}).items())},
            "stale": self.stale or [],
        }

    def line(self) -> str:
        """One summary line."""
        return (
            f"pull: {self.snapshot}: {self.tasks} task(s), {self.annotated_tasks} annotated, "
            f"{self.annotations} submitted annotation(s) by {len(self.annotators or {})} annotator(s), "
            f"{self.cancelled} skipped/cancelled, {len(self.stale or [])} stale"
        )


def pull(api: LabelStudioAPI, cfg: Config, out_dir: Path, articles: Path | None = None,
         now: dt.datetime | None = None) -> PullReport:
    """Export every task with every annotation into a new snapshot `out_dir/<UTC timestamp>.jsonl`."""
    project = find_project(api, cfg.ls.project_title)
    if project is None:
        raise LabelStudioError(f"no project titled {cfg.ls.project_title!r} on {api.url}; push first")
    current = load_article_hashes(articles) if articles else None
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / snapshot_name(now)
    if target.exists():
        raise PipelineError(f"{target} already exists; a pull never overwrites a snapshot (wait a second)")
    report = PullReport(snapshot=str(target), annotators=Counter(), stale=[])
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".pull.") as tmp:
        raw = Path(tmp) / "export.json"
        export_snapshot(api, project["id"], raw, cfg.ls.export_timeout_s)

        def lines() -> Iterator[str]:
            with open(raw, encoding="utf-8") as handle:
                try:
                    for task in iter_json_array(handle):
                        _count(task, report, current)
                        yield dumps(task) + "\n"
                except ValueError as exc:
                    raise LabelStudioError(f"the export is not valid JSON: {exc}") from None

        _write_new_file(target, lines())
    return report


def _count(task: Mapping[str, Any], report: PullReport, current: Mapping[str, str] | None) -> None:
    report.tasks += 1
    annotations = task.get("annotations") or []
    submitted = [a for a in annotations if not a.get("was_cancelled")]
    report.cancelled += len(annotations) - len(submitted)
    report.annotations += len(submitted)
    report.annotated_tasks += bool(submitted)
    for ann in submitted:
        report.annotators[ann.get("completed_by")] += 1
    status = annotation_status(task, current)
    if annotations and status != "ok":
        report.stale.append(
            {"task": task.get("id"), "article_id": (task.get("data") or {}).get("article_id"),
             "annotations": [a.get("id") for a in annotations], "reason": status}
        )


# -- command entry points -----------------------------------------------------------------------


ENV_KEYS = ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY")


def connect(cfg: Config, env_file: Path = Path(".env")) -> LabelStudioAPI:
    """A client for the server named by LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY, both from one source.

    The environment wins when it sets either of them, and must then set both: a token from `.env` (the
    local server's admin token) is never sent to a URL from the environment, nor the other way round."""

    in_env = {key: os.environ.get(key, "") for key in ENV_KEYS}
    if any(in_env.values()):
        if not all(in_env.values()):
            have, lack = (ENV_KEYS if in_env[ENV_KEYS[0]] else ENV_KEYS[::-1])
            raise ConfigError(
                f"{have} is set in the environment but {lack} is not; export both (the URL and the token "
                f"are taken together, from the environment or else from {env_file})"
            )
        source, url, token = "the environment", in_env["LABEL_STUDIO_URL"], in_env["LABEL_STUDIO_API_KEY"]
    else:
        file_env = read_env_file(env_file)
        source, url, token = str(env_file), file_env.get("LABEL_STUDIO_URL"), file_env.get("LABEL_STUDIO_API_KEY")
        if not url:
            raise ConfigError(
                f"LABEL_STUDIO_URL is not set (environment or {env_file}); `make label-studio` starts a local server"
            )
        if not token:
            raise ConfigError(f"{env_file} sets LABEL_STUDIO_URL but not LABEL_STUDIO_API_KEY")
    try:
        return LabelStudioAPI(url, token, timeout_s=cfg.ls.timeout_s, retries=cfg.ls.retries)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (from {source})") from None


def read_guidelines(path: Path) -> str:
    """The annotation guidelines (Markdown)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: guidelines file not found") from None


def push_main(input: Path, guidelines: Path, params: Path, env_file: Path = Path(".env"),
              limit: int | None = None) -> PushReport:
    """Push pre-annotated articles to the Label Studio project named in params."""
    cfg = load_config(params)
    text = read_guidelines(guidelines)
    bad = BadRecords("push", cfg.ls.max_bad_share)
    tasks = build_tasks(read_jsonl(input, bad), cfg, input, bad)
    if limit is not None:
        tasks = tasks[:limit]
    api = connect(cfg, env_file)
    project, report = push(api, tasks, cfg, text)
    print(report.line(), file=sys.stderr)
    for aid, old in report.text_changed or []:
        print(f"push: article {aid}: text changed; old task {old} left as it is", file=sys.stderr)
    print(f"push: project {project['id']} at {api.url}/projects/{project['id']}/data", file=sys.stderr)
    return report


def pull_main(out_dir: Path, params: Path, articles: Path | None = None, report_path: Path | None = None,
              env_file: Path = Path(".env")) -> PullReport:
    """Pull a new annotations snapshot."""
    cfg = load_config(params)
    api = connect(cfg, env_file)
    report = pull(api, cfg, out_dir, articles)
    print(report.line(), file=sys.stderr)
    for item in report.stale or []:
        print(f"pull: stale: task {item['task']} (article {item['article_id']}): {item['reason']}", file=sys.stderr)
    if report_path:
        from pipeline.common.jsonl import write_json

        write_json(report_path, report.as_dict())
    return report


def config_main(params: Path, output: Path | None = None) -> str:
    """Print (or write) the labeling config generated from params."""
    xml = label_config(load_config(params))
    if output:
        from pipeline.common.jsonl import atomic_writer

        with atomic_writer(output) as out:
            out.write(xml + "\n")
    else:
        print(xml)
    return xml


def up_main(input: Path, guidelines: Path, params: Path, data_dir: Path = Path(".labelstudio"),
            env_file: Path = Path(".env")) -> None:
    """Bring up the local server, create/update the project, push the tasks, say how to log in."""
    from pipeline.labelstudio import server as ls_server

    cfg = load_config(params)
    text = read_guidelines(guidelines)
    bad = BadRecords("push", cfg.ls.max_bad_share)
    tasks = build_tasks(read_jsonl(input, bad), cfg, input, bad)
    url, creds, started = ls_server.server_main(data_dir, env_file, cfg.ls.server.port, cfg.ls.server.start_timeout_s)
    api = LabelStudioAPI(url, creds.token, timeout_s=cfg.ls.timeout_s, retries=cfg.ls.retries)
    project, report = push(api, tasks, cfg, text)
    print(report.line(), file=sys.stderr)
    print(
        f"\nLabel Studio is {'up' if started else 'already running'}: {url}/projects/{project['id']}/data\n"
        f"  log in as {creds.email}; the password is LABEL_STUDIO_PASSWORD in {env_file} "
        f"(`grep LABEL_STUDIO_PASSWORD {env_file}`)\n"
        f"  API token {mask(creds.token)} is LABEL_STUDIO_API_KEY in {env_file}\n"
        f"  stop it with `python -m pipeline label-studio --stop`; data stays in {data_dir}/"
    )


GOLD_ANNOTATOR = "gold@annotators.local"


def import_gold(api: LabelStudioAPI, project_id: int, gold_records: Iterable[Mapping[str, Any]],
                page_size: int) -> int:
    """Submit each gold record as the human annotation of its task, by the gold annotator; return the count."""

    user = next((u for u in api.get("/api/users/", what="listing users") if u.get("email") == GOLD_ANNOTATOR), None)
    if user is None:
        import secrets

        user = api.post("/api/users/", {"email": GOLD_ANNOTATOR, "username": "gold", "first_name": "Gold",
                                        "password": secrets.token_urlsafe(18)}, what="creating the gold annotator")
    tasks = existing_tasks(api, project_id, page_size)
    n = 0
    for record in gold_records:
        key = (record["id"], sha256_text(record["text"]))
        if key not in tasks:
            raise InputError(f"gold for article {record['id']}: no task with that article and text; push it first")
        api.post(
            f"/api/tasks/{tasks[key]['id']}/annotations",
            {"result": gold_result(record), "completed_by": user["id"], "ground_truth": True},
            what=f"submitting the gold annotation of article {record['id']}",
        )
        n += 1
    return n


def import_gold_main(gold: Path, articles: Path, input: Path, guidelines: Path, out_dir: Path, params: Path) -> PullReport:
    """Round-trip the human gold through a throwaway Label Studio server into a new snapshot in `out_dir`."""
    from pipeline.evaluation import gold as gold_module
    from pipeline.labelstudio import server as ls_server

    cfg = load_config(params)
    text = read_guidelines(guidelines)
    labels = LabelSets(cfg.entity_labels, cfg.stance_labels)
    records = list(gold_module.load_gold(gold, (a for _, a in read_jsonl(articles)), labels))
    bad = BadRecords("push", cfg.ls.max_bad_share)
    tasks = build_tasks(read_jsonl(input, bad), cfg, input, bad)
    with tempfile.TemporaryDirectory(prefix="ls-gold-") as tmp:
        creds, port = ls_server.Credentials.new(), ls_server.free_port()
        url, log = f"http://127.0.0.1:{port}", Path(tmp) / "server.log"
        print(f"ls-import-gold: starting a throwaway Label Studio on {url}…", file=sys.stderr)
        proc = ls_server.start(Path(tmp) / "data", port, creds, log)
        try:
            ls_server.wait_healthy(url, cfg.ls.server.start_timeout_s, proc, log)
            api = LabelStudioAPI(url, creds.token, timeout_s=cfg.ls.timeout_s, retries=cfg.ls.retries)
            project, _ = push(api, tasks, cfg, text, progress=False)
            n = import_gold(api, project["id"], records, cfg.ls.page_size)
            report = pull(api, cfg, out_dir, articles)
        finally:
            ls_server.stop(proc)
    print(f"ls-import-gold: {n} gold annotation(s) -> {report.line()}", file=sys.stderr)
    return report


def down_main(data_dir: Path = Path(".labelstudio")) -> None:
    """Stop the local server."""
    from pipeline.labelstudio import server as ls_server

    print("label-studio: stopped" if ls_server.stop_main(data_dir) else "label-studio: no local server running")
