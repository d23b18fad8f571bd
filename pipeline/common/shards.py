"""Folders of JSON Lines shards between stages: a manifest of counts and hashes, written atomically, read verified.

A folder such as data/articles/ holds `articles-00000-of-00002.jsonl`, `articles-00001-of-00002.jsonl` and
`manifest.json`. It is written in a temporary folder beside it and renamed into place, so a crash never leaves
a folder that looks complete; reading checks each shard against the manifest, then parses it, holding one
line in memory. A path ending in `.jsonl` is one plain JSON Lines file instead (for tests and hand use), read
and written the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice
from pathlib import Path
from typing import Any

from pipeline.common.errors import BadRecords, InputError
from pipeline.common.jsonl import (
    JSONLineError,
    dumps,
    loads,
    read_json,
    read_jsonl,
    umask_mode,
    write_json,
    write_jsonl,
)

MANIFEST = "manifest.json"
FORMAT = "jsonl-shards"
VERSION = 1


def is_plain(path: Path) -> bool:
    """Whether `path` names one plain JSON Lines file rather than a shard folder."""
    return Path(path).suffix == ".jsonl"


def shard_name(prefix: str, index: int, count: int) -> str:
    """The file name of shard `index` of `count` (Hub-style: `articles-00000-of-00003.jsonl`)."""
    return f"{prefix}-{index:05d}-of-{count:05d}.jsonl"


def write_records(path: Path, records: Iterable[dict[str, Any]], per_shard: int) -> int:
    """Write records as a shard folder of `per_shard` records a shard (or one file for a `.jsonl` path); return the count.

    The folder is built beside `path` and renamed over it only when complete; an old folder is replaced whole.
    """
    path = Path(path)
    if is_plain(path):
        return write_jsonl(path, records)
    if per_shard < 1:
        raise ValueError("per_shard must be at least 1")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        shards = _write_parts(tmp, records, per_shard)
        entries = []
        for index, (part, n, digest) in enumerate(shards):
            name = shard_name(path.name, index, len(shards))
            part.rename(tmp / name)
            entries.append({"file": name, "records": n, "sha256": digest})
        total = sum(n for _, n, _ in shards)
        write_json(tmp / MANIFEST, {"format": FORMAT, "version": VERSION, "records": total, "shards": entries})
        os.chmod(tmp, umask_mode(0o777))  # mkdtemp's 0o700 is for the temporary name only
        _replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return total


def _write_parts(folder: Path, records: Iterable[dict[str, Any]], per_shard: int) -> list[tuple[Path, int, str]]:
    """Write records into numbered part files of `per_shard` lines; (path, records, sha256) of each."""
    parts: list[tuple[Path, int, str]] = []
    it = iter(records)
    while (first := next(it, None)) is not None:
        part, digest, n = folder / f"part-{len(parts):05d}", hashlib.sha256(), 0
        with open(part, "wb") as out:
            for record in chain([first], islice(it, per_shard - 1)):
                line = (dumps(record) + "\n").encode("utf-8")
                out.write(line)
                digest.update(line)
                n += 1
        parts.append((part, n, digest.hexdigest()))
    return parts


def _replace(tmp: Path, path: Path) -> None:
    """Rename the complete folder `tmp` to `path`, moving an existing folder aside first and removing it after."""
    if not path.exists() and not path.is_symlink():
        os.replace(tmp, path)
        return
    if not path.is_dir() or path.is_symlink():
        raise InputError(f"{path}: exists and is not a shard folder; remove it first")
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.replace(path, old / path.name)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def manifest(folder: Path) -> dict[str, Any]:
    """The checked manifest of a shard folder: its format, total and shard entries agree, and the files are there."""
    folder = Path(folder)
    doc = read_json(folder / MANIFEST, "shard manifest")
    where = folder / MANIFEST
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"{where}: not a {FORMAT} manifest")
    if doc.get("version") != VERSION:
        raise InputError(f"{where}: manifest version {doc.get('version')!r} is not {VERSION}")
    entries = doc.get("shards")
    if not isinstance(entries, list) or not all(_entry_ok(e) for e in entries):
        raise InputError(f"{where}: 'shards' must be a list of {{file, records, sha256}}")
    if doc.get("records") != sum(e["records"] for e in entries):
        raise InputError(f"{where}: 'records' {doc.get('records')!r} is not the sum of the shards' records")
    listed = {e["file"] for e in entries}
    if len(listed) != len(entries):
        raise InputError(f"{where}: a shard is listed twice")
    for e in entries:
        if not (folder / e["file"]).is_file():
            raise InputError(f"{folder / e['file']}: shard listed in {MANIFEST} is missing")
    if extra := sorted(p.name for p in folder.iterdir() if p.name not in listed and p.name != MANIFEST):
        raise InputError(f"{folder / extra[0]}: file not listed in {MANIFEST}")
    return doc


def _entry_ok(entry: Any) -> bool:
    """Whether one manifest entry has a plain file name, a record count and a hex sha256."""
    return (isinstance(entry, dict) and isinstance(entry.get("file"), str) and Path(entry["file"]).name == entry["file"]
            and isinstance(entry.get("records"), int) and not isinstance(entry["records"], bool)
            and entry["records"] >= 0 and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64)


def count_records(path: Path) -> int:
    """Records in a shard folder (from its manifest) or non-blank lines of a plain file."""
    path = Path(path)
    if path.is_dir():
        total: int = manifest(path)["records"]
        return total
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def exists(path: Path) -> bool:
    """Whether `path` is a shard folder or a file the reader accepts."""
    path = Path(path)
    return path.is_dir() or path.is_file()


def read_records(path: Path, bad: BadRecords | None = None) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    """Yield (file, line number, object) of a shard folder, shard by shard in order, or of a plain JSON Lines file.

    A plain file's bad lines go to `bad` as `read_jsonl` does. A folder is a stage's own output: a missing or
    extra file or a count or hash that disagrees with the manifest is a one-line InputError naming the shard,
    raised before any record of that shard is yielded (one streaming pass checks it, a second parses it, so
    memory holds one line, not a shard); a line that is no JSON object is one too, naming the line.
    """
    path = Path(path)
    if not path.is_dir():
        for lineno, obj in read_jsonl(path, bad):
            yield path, lineno, obj
        return
    for entry in manifest(path)["shards"]:
        shard = path / entry["file"]
        _check_shard(shard, entry)
        for lineno, obj in _parse_shard(shard):
            if bad is not None:
                bad.seen += 1
            yield shard, lineno, obj


def _check_shard(shard: Path, entry: dict[str, Any]) -> None:
    """Check a shard's line count and sha256 against its manifest entry, streaming (one line in memory)."""
    digest, lines = hashlib.sha256(), 0
    try:
        with open(shard, "rb") as handle:
            for raw in handle:
                digest.update(raw)
                lines += 1
    except OSError as exc:
        raise InputError(f"{shard}: cannot read ({exc.strerror})") from None
    if lines == entry["records"] and digest.hexdigest() == entry["sha256"]:
        return
    for _ in _parse_shard(shard):  # name the first line that is no JSON object, when one is the cause
        pass
    if lines != entry["records"]:
        raise InputError(f"{shard}: {lines} records, the manifest says {entry['records']}")
    if digest.hexdigest() != entry["sha256"]:
        raise InputError(f"{shard}: sha256 differs from the manifest (the file changed after it was written)")


def _parse_shard(shard: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of a checked shard, one line at a time; a line that is no JSON object is an InputError."""
    with open(shard, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                obj = loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise InputError(f"{shard}:{lineno}: not valid UTF-8 ({exc.reason} at byte {exc.start + 1})") from None
            except JSONLineError as exc:
                raise InputError(f"{shard}:{lineno}: {exc}") from None
            if not isinstance(obj, dict):
                raise InputError(f"{shard}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


@contextlib.contextmanager
def line_reader() -> Iterator[Callable[[Path, int], bytes]]:
    """A function (file, byte offset) -> the raw line there, each file opened once; for a second pass over shards."""
    with contextlib.ExitStack() as stack:
        handles: dict[Path, Any] = {}

        def read(file: Path, offset: int) -> bytes:
            if file not in handles:
                handles[file] = stack.enter_context(open(file, "rb"))
            handles[file].seek(offset)
            line: bytes = handles[file].readline()
            return line

        yield read


def read_objects(path: Path, bad: BadRecords | None = None) -> Iterator[dict[str, Any]]:
    """The objects of a shard folder or plain JSON Lines file, in order (`read_records` without where they are)."""
    for _, _, obj in read_records(path, bad):
        yield obj
