"""Pull: a Label Studio JSON export snapshot, streamed to `annotations/<UTC timestamp>.jsonl`, never overwritten.

Each task line is the task as Label Studio exports it plus `pipeline_origin`, the fingerprint of the project
it came from (pipeline/human/origin.py).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import ijson

from pipeline.common.errors import ConfigError, PipelineError
from pipeline.common.jsonl import dumps
from pipeline.common.provenance import sha256_text
from pipeline.common.shards import read_objects
from pipeline.human.identity import ORIGIN_KEY, project_fingerprint
from pipeline.human.origin import meta_path, origin_record, project_origin
from pipeline.labelstudio.api import LabelStudioAPI, LabelStudioError
from pipeline.labelstudio.params import Config
from pipeline.labelstudio.push import find_project

EXPORT_OPTIONS: dict[str, Any] = {
    # completed_by as the user id (no e-mail addresses in committed snapshots); predictions in full.
    "serialization_options": {
        "drafts": {"only_id": True},
        "predictions": {"only_id": False},
        "annotations__completed_by": {"only_id": True},
        "include_annotation_history": False,
    },
}


# A pull whose second is taken waits for the next one; after this many seconds taken it gives up.
NAME_ATTEMPTS = 3


def snapshot_name(now: dt.datetime | None = None) -> str:
    """`YYYYMMDDTHHMMSSZ.jsonl` for the current UTC time."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + ".jsonl"


MAX_DEPTH = 1000  # ijson keeps a prefix per level, quadratic in depth: a deeper export is refused before that
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))


class _Counted:
    """A binary file read on from `first`, counting the bytes read and watching the nesting depth as it goes."""

    def __init__(self, first: bytes, handle: BinaryIO) -> None:
        self.first, self.handle, self.read_bytes = first, handle, 0
        self.depth, self.carry, self.in_string = 0, b"", False

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson reads 0 bytes to tell a binary file from a text one
            return b""
        chunk, self.first = self.first + self.handle.read(size - len(self.first) if size > 0 else size), b""
        self.read_bytes += len(chunk)
        self._track(chunk)
        return chunk

    def _track(self, chunk: bytes) -> None:
        """Follow the bracket depth outside strings (regular expressions do the scanning, C-fast)."""
        text = _ESCAPE.sub(b"", self.carry + chunk)
        self.carry = b"\\" if text.endswith(b"\\") else b""  # an escape cut by the end of the chunk
        if self.in_string:
            end = text.find(b'"')
            if end < 0:
                return
            text, self.in_string = text[end + 1:], False
        text = _STRING.sub(b"", text)
        if (start := text.find(b'"')) >= 0:
            text, self.in_string = text[:start], True
        brackets = text.translate(None, _NOT_BRACKET)
        opened = brackets.count(b"[") + brackets.count(b"{")
        if self.depth + opened > MAX_DEPTH:
            for char in brackets:
                self.depth += 1 if char in b"[{" else -1
                if self.depth > MAX_DEPTH:
                    raise ValueError(f"nested too deeply (more than {MAX_DEPTH} levels, within the first "
                                     f"{self.read_bytes} bytes)")
        else:
            self.depth += 2 * opened - len(brackets)


def iter_json_array(handle: BinaryIO) -> Iterator[Any]:
    """Yield the elements of a top-level JSON array read from a binary stream, one at a time (ijson).

    A stream that is empty, not an array, or not valid JSON is a ValueError of one line naming where."""
    head = b" "
    while head and head.isspace():  # ijson's `item` prefix would match nothing in an object: look first
        head = handle.read(1)
    if not head:
        raise ValueError("empty export")
    if head != b"[":
        raise ValueError("export is not a JSON array")
    counted = _Counted(head, handle)
    items = ijson.items(counted, "item", use_float=True, buf_size=1 << 20)
    n = 0
    try:
        for item in items:
            n += 1
            yield item
    except ijson.JSONError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        what = "export ends inside the array" if "premature EOF" in first else first.removeprefix("b'")
        raise ValueError(f"{what} (after element {n}, within the first {counted.read_bytes} bytes)") from None


def write_new_file(path: Path, lines: Iterable[str], next_name: Callable[[], Path] | None = None) -> Path:
    """Write lines to a temp file and link it to `path` only if `path` does not exist yet; return the path written.

    When `path` is taken and `next_name` is given, the file takes `next_name()` instead (tried NAME_ATTEMPTS times).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # a snapshot is an ordinary, shareable file (mkstemp makes it private)
    try:
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
                out.writelines(lines)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            if exc.filename is not None:  # a file being read (the raw export), named by the error itself
                raise
            raise ConfigError(f"{path}: could not write the snapshot ({exc.strerror or exc}); no snapshot was "
                                "written, earlier ones are untouched: free space and pull again") from None
        attempts = NAME_ATTEMPTS if next_name is not None else 1
        while True:
            try:
                os.link(tmp, path)  # fails if the name is taken: a pull never overwrites a snapshot
                return path
            except FileExistsError:
                attempts -= 1
                if next_name is None or not attempts:
                    raise PipelineError(f"{path} already exists; a pull never overwrites a snapshot") from None
                path = next_name()
    finally:
        Path(tmp).unlink(missing_ok=True)


def next_second_name(folder: Path) -> Path:
    """The snapshot name of the next whole UTC second in `folder`, after sleeping until then."""
    time.sleep(1.0 - time.time() % 1.0 + 0.001)
    return folder / snapshot_name()


def export_snapshot(api: LabelStudioAPI, project_id: int, out_json: Path, timeout_s: float) -> None:
    """Have Label Studio write a JSON export snapshot of the whole project and stream it to `out_json`."""
    exports = api.sdk.projects.exports.with_raw_response
    slow = {"timeout_in_seconds": timeout_s}
    export = api.call("creating an export snapshot", exports.create, project_id, title="pipeline pull",
                      **EXPORT_OPTIONS, request_options=slow)
    export_id = export["id"]
    deadline = time.monotonic() + timeout_s
    while export.get("status") not in ("completed", "failed"):
        if time.monotonic() > deadline:
            raise LabelStudioError(f"export snapshot {export_id} not ready after {timeout_s:g} s")
        time.sleep(1.0)
        export = api.call("checking the export snapshot", exports.get, project_id, export_id)
    if export["status"] == "failed":
        raise LabelStudioError(f"Label Studio failed to build export snapshot {export_id} (see the server log)")
    api.save_stream("downloading the export", exports.download(project_id, export_id, export_type="JSON",
                                                              request_options={**slow, "chunk_size": 1 << 20}), out_json)
    api.call("removing the export snapshot on the server", exports.delete, project_id, export_id, missing_ok=True)


def fingerprint_of(api: LabelStudioAPI, project_id: int) -> str:
    """The fingerprint of a project of this server (pipeline/human/identity.py)."""
    return project_fingerprint(api.get(f"/api/projects/{project_id}", what="reading the project"))


def load_article_hashes(path: Path) -> dict[str, str]:
    """article id -> sha256 of its current text, from data/articles/."""
    return {
        rec["id"]: sha256_text(rec["text"]) for rec in read_objects(path)
        if isinstance(rec.get("id"), str) and isinstance(rec.get("text"), str)
    }


def annotation_status(task: Mapping[str, Any], current: Mapping[str, str] | None) -> str:
    """'ok', or why the task's annotations are stale (text changed since they were made)."""
    data = task.get("data")
    if not isinstance(data, Mapping):
        return "the task has no data object"
    text_hash = data.get("text_hash")
    if not isinstance(data.get("text"), str) or sha256_text(data["text"]) != text_hash:
        return "text_hash does not match the task's text"
    if current is not None:
        aid = data.get("article_id")
        if not isinstance(aid, str) or aid not in current:
            return "article no longer in the articles file"
        if current[aid] != text_hash:
            return "article text changed since the task was pushed"
    return "ok"


def _user_order(item: tuple[Any, int]) -> tuple[int, int, str]:
    """Numeric user ids in numeric order, then any other `completed_by` (None, a string) by its text."""
    key = item[0]
    return (0, key, "") if isinstance(key, int) and not isinstance(key, bool) else (1, 0, str(key))


@dataclass
class PullReport:
    """What a pull found."""

    snapshot: str
    tasks: int = 0
    annotated_tasks: int = 0
    annotations: int = 0
    cancelled: int = 0
    annotators: Counter = field(default_factory=Counter)  # user id -> submitted annotations
    stale: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for a JSON report."""
        return {
            "snapshot": self.snapshot, "tasks": self.tasks, "annotated_tasks": self.annotated_tasks,
            "annotations": self.annotations, "cancelled": self.cancelled,
            "annotations_per_annotator": {str(k): v for k, v in sorted(self.annotators.items(), key=_user_order)},
            "stale": self.stale,
        }

    def line(self) -> str:
        """One summary line."""
        return (
            f"pull: {self.snapshot}: {self.tasks} task(s), {self.annotated_tasks} annotated, "
            f"{self.annotations} submitted annotation(s) by {len(self.annotators)} annotator(s), "
            f"{self.cancelled} skipped/cancelled, {len(self.stale)} stale"
        )


def pull(api: LabelStudioAPI, cfg: Config, out_dir: Path, articles: Path | None = None,
         now: dt.datetime | None = None) -> PullReport:
    """Export every task with every annotation into a new snapshot `out_dir/<UTC timestamp>.jsonl`."""
    project = find_project(api, cfg.ls.project_title)
    if project is None:
        raise LabelStudioError(f"no project titled {cfg.ls.project_title!r} on {api.url}; push first")
    current = load_article_hashes(articles) if articles else None
    out_dir.mkdir(parents=True, exist_ok=True)
    report = PullReport(snapshot="")
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".pull.") as tmp:
        raw = Path(tmp) / "export.json"
        export_snapshot(api, project["id"], raw, cfg.ls.export_timeout_s)
        # Named when written: a second pull within the same second takes the next second's name.
        lines = snapshot_lines(raw, report, current, fingerprint_of(api, project["id"]))
        target = write_new_file(out_dir / snapshot_name(now), lines,
                                None if now is not None else lambda: next_second_name(out_dir))
    # The origin lets merge take an annotation missing from a later snapshot for a deletion (human/tombstones.py);
    # written after the snapshot, so a pull cut short between the two leaves a snapshot that tombstones nothing.
    write_new_file(meta_path(target), [dumps(origin_record(target, project_origin(api.url, project))) + "\n"])
    report.snapshot = str(target)
    return report


def snapshot_lines(raw: Path, report: PullReport, current: Mapping[str, str] | None,
                   origin: str | None = None) -> Iterator[str]:
    """The snapshot's lines, one exported task each (with the `origin` fingerprint), counted into `report`;
    an unusable export is one error."""
    with open(raw, "rb") as handle:
        try:
            for task in iter_json_array(handle):
                if not isinstance(task, dict):
                    raise ValueError(f"element {report.tasks + 1} is a {type(task).__name__}, not a task object")
                if origin is not None:
                    task[ORIGIN_KEY] = {"project": origin}
                line = dumps(task) + "\n"
                line.encode("utf-8")  # a lone surrogate escape could not be written
                _count(task, report, current)
                yield line
        except (ValueError, RecursionError) as exc:  # UnicodeError is a ValueError
            message = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).splitlines()[0][:200]
            raise LabelStudioError(f"the export is not valid JSON: {message}") from None


def _count(task: Mapping[str, Any], report: PullReport, current: Mapping[str, str] | None) -> None:
    """Add one exported task to the report's counts (and to its stale list if its annotations are stale)."""
    report.tasks += 1
    annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict)] \
        if isinstance(task.get("annotations"), list) else []
    submitted = [a for a in annotations if not a.get("was_cancelled")]
    report.cancelled += len(annotations) - len(submitted)
    report.annotations += len(submitted)
    report.annotated_tasks += bool(submitted)
    for ann in submitted:
        who = ann.get("completed_by")
        report.annotators[who if isinstance(who, int | str) or who is None else dumps(who)] += 1
    status = annotation_status(task, current)
    if annotations and status != "ok":
        data = task.get("data")
        report.stale.append(
            {"task": task.get("id"), "article_id": data.get("article_id") if isinstance(data, dict) else None,
             "annotations": [a.get("id") for a in annotations], "reason": status}
        )

