"""Pull: a Label Studio JSON export snapshot, streamed to `annotations/<UTC timestamp>.jsonl`, never overwritten."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urljoin, urlsplit

import requests

from pipeline.common.errors import PipelineError
from pipeline.common.jsonl import dumps
from pipeline.common.provenance import sha256_text
from pipeline.common.shards import read_objects
from pipeline.labelstudio.api import LabelStudioAPI, LabelStudioError
from pipeline.labelstudio.params import Config
from pipeline.labelstudio.push import find_project

EXPORT_OPTIONS = {
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


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def iter_json_array(handle: TextIO, chunk_size: int = 1 << 20) -> Iterator[Any]:
    """Yield the elements of a top-level JSON array read from a text stream, one at a time."""
    decoder = json.JSONDecoder(parse_constant=_no_constant)
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


def write_new_file(path: Path, lines: Iterable[str], next_name: Callable[[], Path] | None = None) -> Path:
    """Write lines to a temp file and link it to `path` only if `path` does not exist yet; return the path written.

    When `path` is taken and `next_name` is given, the file takes `next_name()` instead (tried NAME_ATTEMPTS times).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # a snapshot is an ordinary, shareable file (mkstemp makes it private)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.writelines(lines)
            out.flush()
            os.fsync(out.fileno())
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


def refuse_cross_host_redirects(api: LabelStudioAPI) -> None:
    """Make every request of `api` fail, before it is followed, on a redirect to another scheme, host or port."""
    home = urlsplit(api.url)

    def refuse_redirect(resp: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        if resp.is_redirect:
            target = urlsplit(urljoin(resp.url, resp.headers["location"]))
            if (target.scheme, target.hostname, target.port) != (home.scheme, home.hostname, home.port):
                raise LabelStudioError(
                    f"Label Studio at {api.url} redirected {urlsplit(resp.url).path} to another host "
                    f"({target.scheme}://{target.netloc.rpartition('@')[2]}); refusing to follow it"
                )
        return resp

    hooks = api.session.hooks["response"]
    if not any(getattr(h, "__name__", "") == refuse_redirect.__name__ for h in hooks):
        hooks.append(refuse_redirect)


def pull(api: LabelStudioAPI, cfg: Config, out_dir: Path, articles: Path | None = None,
         now: dt.datetime | None = None) -> PullReport:
    """Export every task with every annotation into a new snapshot `out_dir/<UTC timestamp>.jsonl`."""
    refuse_cross_host_redirects(api)
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
        target = write_new_file(out_dir / snapshot_name(now), snapshot_lines(raw, report, current),
                                None if now is not None else lambda: next_second_name(out_dir))
    report.snapshot = str(target)
    return report


def snapshot_lines(raw: Path, report: PullReport, current: Mapping[str, str] | None) -> Iterator[str]:
    """The snapshot's lines, one exported task each, counted into `report`; an unusable export is one error."""
    with open(raw, encoding="utf-8") as handle:
        try:
            for task in iter_json_array(handle):
                if not isinstance(task, dict):
                    raise ValueError(f"element {report.tasks + 1} is a {type(task).__name__}, not a task object")
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

