"""Reading the corpus: .txt, .jsonl and .csv files into raw articles; decoding fallbacks and bad records reported."""

from __future__ import annotations

import codecs
import csv
import errno
import io
import stat
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from charset_normalizer import from_bytes

from pipeline.cleaning.article import Raw
from pipeline.common.errors import BadRecords, InputError
from pipeline.common.jsonl import JSONLineError, loads

FORMATS = (".txt", ".jsonl", ".csv")
OPTIONAL_FIELDS = ("title", "date", "url", "source")
SNIFF_BYTES = 8192
# Byte order marks: the text is decoded as their encoding, strictly (UTF-32 first: its LE mark starts like UTF-16's).
BOMS = tuple((getattr(codecs, f"BOM_UTF{n}_{e}"), f"utf-{n}") for n in (32, 16) for e in ("LE", "BE"))
# Without a byte order mark UTF-16/32 are never guessed: such bytes are binary (NUL bytes) to the readers.
NOT_GUESSED = ["utf_16", "utf_16_le", "utf_16_be", "utf_32", "utf_32_le", "utf_32_be", "utf_7"]
MIN_GUESS_BYTES = 64  # shorter non-UTF-8 input gives detectors too little to go on: reported, never guessed
MAX_CHAOS = 0.1  # charset-normalizer's "mess" of the decoded text (0 is clean text)
# Another decoding this close in mess and language fit makes the guess a coin toss (cp1250 or cp1252 for "è"?).
RIVAL_CHAOS, RIVAL_COHERENCE = 0.02, 0.1
TEXT_CONTROLS = frozenset("\t\n\r\v\f\x1c\x1d\x1e\x85")


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


class Undecodable(ValueError):
    """Bytes that are not UTF-8 and whose encoding cannot be told with confidence."""


def bom_encoding(data: bytes) -> str | None:
    """The UTF-16/32 encoding that a byte order mark at the start of `data` announces, if any."""
    return next((encoding for bom, encoding in BOMS if data.startswith(bom)), None)


def guess(data: bytes) -> tuple[str, str]:
    """(encoding, text) of non-UTF-8 bytes, when charset-normalizer is confident; else Undecodable.

    Confident: enough bytes, a clean decoding (low chaos, no control characters), a language recognised in it or no
    other encoding that fits at all, and no other decoding (a different text) nearly as good. Short or ambiguous
    input (a few accents that cp1250, cp1252 and cp852 read differently) is not guessed: mojibake is never accepted."""
    if len(data) < MIN_GUESS_BYTES:
        raise Undecodable(f"not valid UTF-8, and {len(data)} bytes are too few to tell the encoding")
    matches = list(from_bytes(data, cp_exclusion=NOT_GUESSED))  # best first; each a different decoded text
    if not matches or matches[0].chaos > MAX_CHAOS or not (matches[0].coherence > 0 or len(matches) == 1):
        raise Undecodable("not valid UTF-8, and its encoding cannot be told with confidence (binary or unknown)")
    best = matches[0]
    rivals = [m.encoding for m in matches[1:]
              if m.chaos <= best.chaos + RIVAL_CHAOS and m.coherence >= best.coherence - RIVAL_COHERENCE]
    if rivals:
        raise Undecodable(f"not valid UTF-8, and its encoding cannot be told with confidence ({best.encoding} or "
                          f"{rivals[0]}?); save it as UTF-8")
    text = str(best)
    if any(unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn") and c not in TEXT_CONTROLS for c in text):
        raise Undecodable(f"not text: control characters when decoded as {best.encoding}, the likeliest encoding")
    return best.encoding, text


def _decode(data: bytes, where: str, report: ReadLog | None) -> str:
    """UTF-8 (a BOM is dropped), UTF-16/32 with a BOM, else the encoding a detector is sure of (reported).

    Undecodable when none of these fits."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[3:]
    elif encoding := bom_encoding(data):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise Undecodable(f"invalid {encoding.upper()} ({exc.reason} at byte {exc.start})") from None
        if report is not None:
            report.fallback(where, encoding, f"{encoding.upper()} byte order mark")
        return text
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"{exc.reason} at byte {exc.start}"
    encoding, text = guess(data)
    if report is not None:
        report.fallback(where, encoding, reason)
    return text


def _read_txt(path: Path, rel: str, max_bytes: int, bad: BadRecords, report: ReadLog) -> Iterator[Raw]:
    """One article per .txt file."""
    report.records += 1
    size = path.stat().st_size
    if size > max_bytes:
        bad.add(str(path), f"file too large ({size} bytes > max_article_bytes {max_bytes})")
        return
    data = path.read_bytes()
    if b"\x00" in data and not bom_encoding(data):
        bad.add(str(path), "binary file (contains NUL bytes), not text")
        return
    try:
        text = _decode(data, str(path), report)
    except Undecodable as exc:
        bad.add(str(path), str(exc))
        return
    if not text.strip():
        bad.add(str(path), "empty file")
        return
    yield Raw(rel, str(path), text)


def _sniff_binary(handle: BinaryIO) -> bool:
    """True when the start of the file holds NUL bytes (and no UTF-16/32 byte order mark explains them)."""
    head = handle.read(SNIFF_BYTES)
    handle.seek(0)
    return b"\x00" in head and not bom_encoding(head)


def _file_lines(handle: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None, int]]:
    """`_lines` of a file, as UTF-8: a UTF-16/32 file (with its BOM) is recoded line by line; a line that its
    encoding cannot decode ends the file with UnicodeDecodeError."""
    head = handle.read(4)
    handle.seek(0)
    encoding = bom_encoding(head)
    if encoding is None:
        yield from _lines(handle, limit)
        return
    text = io.TextIOWrapper(handle, encoding=encoding, newline="")
    lineno = 0
    while line := text.readline(limit + 1):
        lineno += 1
        size = len(line)
        if size > limit and not line.endswith("\n"):
            while not line.endswith("\n") and (line := text.readline(1 << 20)):
                size += len(line)
            yield lineno, None, size
            continue
        yield lineno, line.encode("utf-8", "surrogatepass"), size


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
        lines = _file_lines(handle, max_bytes)
        lineno = 0
        while True:
            try:
                lineno, line, size = next(lines)
            except StopIteration:
                break
            except UnicodeDecodeError as exc:  # a UTF-16/32 file with bytes its encoding cannot decode
                report.records += 1
                bad.add(f"{path}:{lineno + 1}", f"invalid {exc.encoding.upper()} ({exc.reason}); the rest of the file is not read")
                break
            where = f"{path}:{lineno}"
            if line is not None and not line.strip():
                continue
            report.records += 1
            if line is None:
                bad.add(where, f"record too large ({size} bytes > max_article_bytes {max_bytes})")
                continue
            try:
                text = _decode(line, where, report)
            except Undecodable as exc:
                bad.add(where, str(exc))
                continue
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
            encoding: str | None = None  # the encoding of the file's first non-UTF-8 line, used for the others
            for lineno, line, _ in _file_lines(handle, max_bytes):
                if line is None:  # stands in for the oversized line: the csv module reports it as too large
                    yield "x" * (max_bytes + 1) + "\n"
                    continue
                try:
                    yield line.decode("utf-8-sig" if lineno == 1 else "utf-8")
                    continue
                except UnicodeDecodeError as exc:
                    reason = f"{exc.reason} at byte {exc.start}"
                try:
                    if encoding is None:
                        encoding, text = guess(line)
                        report.fallback(f"{path}:{lineno}", encoding, reason)  # once: the file is decoded alike
                        yield text
                    else:
                        yield line.decode(encoding)
                except (Undecodable, UnicodeDecodeError) as exc:
                    raise _StopFile(lineno, str(exc) if isinstance(exc, Undecodable) else
                                    f"not valid UTF-8 nor {encoding} ({exc.reason})") from None

        old_limit = csv.field_size_limit(max_bytes)
        try:
            yield from _csv_rows(csv.reader(decoded(), strict=True), path, rel, max_bytes, bad, report)
        finally:
            csv.field_size_limit(old_limit)


class _StopFile(Exception):
    """A CSV line that cannot be decoded: the file is read no further."""

    def __init__(self, lineno: int, message: str) -> None:
        super().__init__(message)
        self.lineno, self.message = lineno, message


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
        except _StopFile as stop:  # a line that cannot be decoded: the file's rows from there are not read
            report.records += 1
            bad.add(f"{path}:{stop.lineno}", f"{stop.message}; the rest of the file is not read")
            return
        except UnicodeDecodeError as exc:  # a UTF-16/32 file with bytes its encoding cannot decode
            report.records += 1
            bad.add(f"{path}:{reader.line_num + 1}", f"invalid {exc.encoding.upper()} ({exc.reason}); the rest of the file is not read")
            return
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
            if twice := sorted({name for name in header if header.count(name) > 1}):
                report.records += 1
                bad.add(f"{path}:{start}", f"column {', '.join(repr(n) for n in twice)} appears more than once in the "
                                           f"header; which one holds the article is ambiguous")
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
