"""Reading the corpus: .txt, .jsonl and .csv files into raw articles; decoding fallbacks and bad records reported."""

from __future__ import annotations

import csv
import errno
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from pipeline.cleaning.article import Raw
from pipeline.common.errors import BadRecords, InputError
from pipeline.common.jsonl import JSONLineError, loads

FORMATS = (".txt", ".jsonl", ".csv")
OPTIONAL_FIELDS = ("title", "date", "url", "source")
FALLBACK_ENCODINGS = ("cp1252", "latin-1")  # latin-1 decodes any byte string, so the chain always ends
SNIFF_BYTES = 8192


class ReadLog(Protocol):
    """What the readers count and note while reading (the ingest stage's Report)."""

    files: int
    records: int
    ignored_files: list[str]
    skipped_files: list[dict[str, str]]  # entries that are not regular files: FIFOs, dangling links, loops

    def fallback(self, where: str, encoding: str, reason: str) -> None:
        """Record that a file or record was not UTF-8 and how it was decoded."""


def read_corpus(corpus: Path, max_bytes: int, bad: BadRecords, report: ReadLog) -> Iterator[Raw]:
    """Yield raw articles from every .txt, .jsonl and .csv file under `corpus`, in sorted path order."""
    paths = sorted(
        (p for p in corpus.rglob("*") if not any(part.startswith(".") for part in p.relative_to(corpus).parts)),
        key=lambda p: p.relative_to(corpus).as_posix(),
    )
    readers = {".txt": _read_txt, ".jsonl": _read_jsonl, ".csv": _read_csv}
    for path in paths:
        rel = path.relative_to(corpus).as_posix()
        if (kind := _not_a_file(path)) is not None:
            if kind:
                report.skipped_files.append({"path": shown(rel), "kind": kind})
                print(f"ingest: warning {shown(str(path))}: skipped, {kind}", file=sys.stderr)
            continue
        if shown(rel) != rel:  # the name would be written into source_file and the report, which are UTF-8
            report.records += 1
            bad.add(shown(str(path)), "file name is not valid UTF-8; rename the file")
            continue
        reader = readers.get(path.suffix.lower())
        if reader is None:
            report.ignored_files.append(rel)
            continue
        report.files += 1
        try:
            yield from reader(path, rel, max_bytes, bad, report)
        except OSError as exc:  # unreadable (permissions, vanished): skipped like any bad record
            report.records += 1
            bad.add(str(path), f"cannot read: {exc.strerror or exc}")
    if report.files == 0:
        raise InputError(f"{corpus}: no {', '.join(FORMATS)} files to ingest")


def shown(name: str) -> str:
    """A file name as printable UTF-8: bytes that are not UTF-8 (surrogate escapes) shown as \\xNN."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return name


def _not_a_file(path: Path) -> str | None:
    """None for a regular file (or a link to one), "" for a folder, else what the entry is (reported, not read)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        if path.is_symlink():
            return "dangling symlink"
        return f"cannot stat: {exc.strerror}"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "symlink to a folder (not followed)" if path.is_symlink() else ""
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe), not a file"
    if stat.S_ISSOCK(mode):
        return "socket, not a file"
    return "device, not a file"


def _decode(data: bytes, where: str, report: ReadLog | None) -> str:
    """Decode UTF-8 (a BOM is dropped), else a UTF-16 text with BOM, else cp1252/latin-1 with a reported fallback."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"{exc.reason} at byte {exc.start}"
    for encoding in FALLBACK_ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if report is not None:
            report.fallback(where, encoding, reason)
        return text
    raise AssertionError("latin-1 decodes every byte string")


def _read_txt(path: Path, rel: str, max_bytes: int, bad: BadRecords, report: ReadLog) -> Iterator[Raw]:
    """One article per .txt file."""
    report.records += 1
    size = path.stat().st_size
    if size > max_bytes:
        bad.add(str(path), f"file too large ({size} bytes > max_article_bytes {max_bytes})")
        return
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", errors="replace")
        report.fallback(str(path), "utf-16", "UTF-16 byte order mark")
    elif b"\x00" in data:
        bad.add(str(path), "binary file (contains NUL bytes), not text")
        return
    else:
        text = _decode(data, str(path), report)
    if not text.strip():
        bad.add(str(path), "empty file")
        return
    yield Raw(rel, str(path), text)


def _sniff_binary(handle: BinaryIO) -> bool:
    """True when the start of the file holds NUL bytes."""
    head = handle.read(SNIFF_BYTES)
    handle.seek(0)
    return b"\x00" in head


def _lines(handle: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, line or None if longer than `limit` bytes, size) without reading an oversized line into memory."""
    lineno = 0
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        lineno += 1
        if len(line) <= limit or (line.endswith(b"\n") and len(line) == limit + 1):
            yield lineno, line, len(line)
            continue
        size = len(line)
        while not line.endswith(b"\n"):
            line = handle.readline(1 << 20)
            if not line:
                break
            size += len(line)
        yield lineno, None, size


def _read_jsonl(path: Path, rel: str, max_bytes: int, bad: BadRecords, report: ReadLog) -> Iterator[Raw]:
    """One article per JSON Lines object with a `text` field."""
    with open(path, "rb") as handle:
        if _sniff_binary(handle):
            report.records += 1
            bad.add(str(path), "binary file (contains NUL bytes), not JSON Lines")
            return
        records_before = report.records
        for lineno, line, size in _lines(handle, max_bytes):
            where = f"{path}:{lineno}"
            if line is not None and not line.strip():
                continue
            report.records += 1
            if line is None:
                bad.add(where, f"record too large ({size} bytes > max_article_bytes {max_bytes})")
                continue
            text = _decode(line, where, report)
            try:
                obj = loads(text)
            except JSONLineError as exc:
                bad.add(where, str(exc))
                continue
            if not isinstance(obj, dict):
                bad.add(where, f"expected a JSON object, got {type(obj).__name__}")
                continue
            if raw := _record(obj, f"{rel}:{lineno}", where, bad):
                yield raw
        if report.records == records_before:
            report.records += 1
            bad.add(str(path), "empty file (no JSON Lines records)")


def _read_csv(path: Path, rel: str, max_bytes: int, bad: BadRecords, report: ReadLog) -> Iterator[Raw]:
    """One article per CSV row; the header row names the columns and must include `text`."""
    with open(path, "rb") as handle:
        if _sniff_binary(handle):
            report.records += 1
            bad.add(str(path), "binary file (contains NUL bytes), not CSV")
            return

        def decoded() -> Iterator[str]:
            fallback = False
            for lineno, line, _ in _lines(handle, max_bytes):
                if line is None:  # stands in for the oversized line: the csv module reports it as too large
                    yield "x" * (max_bytes + 1) + "\n"
                    continue
                try:
                    yield line.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError:
                    # The first non-UTF-8 line of a file is reported; the rest of the file is decoded alike.
                    yield _decode(line, f"{path}:{lineno}", None if fallback else report)
                    fallback = True

        old_limit = csv.field_size_limit(max_bytes)
        try:
            yield from _csv_rows(csv.reader(decoded(), strict=True), path, rel, max_bytes, bad, report)
        finally:
            csv.field_size_limit(old_limit)


def _csv_rows(reader: Any, path: Path, rel: str, max_bytes: int, bad: BadRecords, report: ReadLog) -> Iterator[Raw]:
    """Rows of a CSV reader as raw articles, malformed rows reported with their line."""
    header: list[str] | None = None
    last_line = 0
    records_before = report.records
    while True:
        start = last_line + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            last_line = reader.line_num
            report.records += 1
            message = str(exc)
            if "field larger than field limit" in message:
                message = f"record too large (a field passes max_article_bytes {max_bytes})"
            bad.add(f"{path}:{start}", f"malformed CSV: {message}")
            if header is None:
                return
            continue
        last_line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in row]
            if "text" not in header:
                report.records += 1
                bad.add(f"{path}:{start}", f"no 'text' column in the header (columns: {', '.join(header)})")
                return
            continue
        report.records += 1
        if len(row) != len(header):
            bad.add(f"{path}:{start}", f"expected {len(header)} fields as in the header, got {len(row)}")
            continue
        obj = {name: (value if value.strip() else None) for name, value in zip(header, row, strict=True)}
        if raw := _record(obj, f"{rel}:{start}", f"{path}:{start}", bad):
            yield raw
    if report.records == records_before:
        report.records += 1
        bad.add(str(path), "empty file (no CSV rows)" if header is None else "no CSV rows under the header")


def _record(obj: dict[str, Any], source_file: str, where: str, bad: BadRecords) -> Raw | None:
    """A raw article from a JSONL object or CSV row, or None (reported) if `text` or a field is unusable."""
    text = obj.get("text")
    if text is None:
        bad.add(where, "missing 'text' field")
        return None
    if not isinstance(text, str):
        bad.add(where, f"'text' must be a string, got {type(text).__name__}")
        return None
    if not text.strip():
        bad.add(where, "empty 'text' field")
        return None
    for name in OPTIONAL_FIELDS:
        if obj.get(name) is not None and not isinstance(obj[name], str):
            bad.add(where, f"'{name}' must be a string or null, got {type(obj[name]).__name__}")
            return None
    return Raw(source_file, where, text, *(obj.get(name) for name in OPTIONAL_FIELDS))
