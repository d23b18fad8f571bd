"""Ingest stage: raw scraped articles (.txt, .jsonl, .csv) -> cleaned articles with metadata and paragraphs."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import sys
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date as Date
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import urlsplit

import ftfy
import numpy as np

from pipeline.common.config import from_mapping, read_yaml, section
from pipeline.common.errors import BadRecords, ConfigError, InputError
from pipeline.common.jsonl import write_json, write_jsonl
from pipeline.common.provenance import sha256_text

STAGE = "ingest"
FORMATS = (".txt", ".jsonl", ".csv")
OPTIONAL_FIELDS = ("title", "date", "url", "source")
FALLBACK_ENCODINGS = ("cp1252", "latin-1")  # latin-1 decodes any byte string, so the chain always ends
SNIFF_BYTES = 8192
# Fix mojibake and normalise to NFC, but keep curly quotes, dashes and full-width characters as written.
FTFY = ftfy.TextFixerConfig(uncurl_quotes=False, fix_character_width=False, normalization="NFC", explain=False)
ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
SPACES = re.compile(r"\s+")
URL_AT_START = re.compile(r"https?://[^\s<>\"'“”]+", re.IGNORECASE)
WORD = re.compile(r"\w+")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


@dataclass(frozen=True)
class IngestParams:
    """The `ingest:` section of params.yaml."""

    language: str
    max_article_bytes: int
    min_text_chars: int
    near_duplicate_threshold: float
    shingle_size: int
    max_bad_share: float

    def validate(self) -> str | None:
        """Cross-field and range checks."""
        if not re.fullmatch(r"[a-z]{2,3}(?:-[A-Za-z0-9]+)*", self.language):
            return f"language: {self.language!r} is not a language code such as 'en'"
        if self.max_article_bytes < 1 or self.min_text_chars < 1 or self.shingle_size < 1:
            return "max_article_bytes, min_text_chars and shingle_size must be positive"
        if not 0 < self.near_duplicate_threshold <= 1:
            return "near_duplicate_threshold must be in (0, 1]"
        if not 0 <= self.max_bad_share <= 1:
            return "max_bad_share must be in [0, 1]"
        return None


# ---------------------------------------------------------------- rules (resources/boilerplate.yaml)


@dataclass(frozen=True)
class Guards:
    """Limits that keep boilerplate removal away from the article body."""

    head_lines: int
    tail_share: float
    max_line_chars: int
    title_max_chars: int


@dataclass(frozen=True)
class PatternSpec:
    """One furniture pattern, matched against whole lines."""

    name: str
    kind: Literal["drop_line", "cut_after"]
    regex: str
    where: Literal["anywhere", "head", "tail"] = "anywhere"
    case_sensitive: bool = False


@dataclass(frozen=True)
class DateSpec:
    """One date pattern with named groups year, month and day."""

    name: str
    kind: Literal["prefix", "line", "url"]
    regex: str


@dataclass(frozen=True)
class RulesFile:
    """The layout of resources/boilerplate.yaml."""

    version: str
    guards: Guards
    dates: tuple[DateSpec, ...]
    patterns: tuple[PatternSpec, ...]


@dataclass(frozen=True)
class Rules:
    """Compiled boilerplate and date rules."""

    version: str
    guards: Guards
    dates: tuple[tuple[DateSpec, re.Pattern[str]], ...]
    patterns: tuple[tuple[PatternSpec, re.Pattern[str]], ...]


def load_rules(path: Path) -> Rules:
    """Read and compile the boilerplate/date rules file; any problem is a ConfigError naming the rule."""
    spec = from_mapping(RulesFile, read_yaml(path, "patterns file"), str(path))
    if not 0 < spec.guards.tail_share < 1:
        raise ConfigError(f"{path}:guards.tail_share must be in (0, 1)")
    names = [p.name for p in spec.patterns] + [d.name for d in spec.dates]
    if dupes := sorted(n for n, c in Counter(names).items() if c > 1):
        raise ConfigError(f"{path}: duplicate rule name(s) {', '.join(dupes)}")
    dates = tuple((d, _compile(d.regex, re.IGNORECASE, path, d.name)) for d in spec.dates)
    for d, rx in dates:
        if not {"year", "month", "day"} <= set(rx.groupindex):
            raise ConfigError(f"{path}: date rule '{d.name}' needs named groups year, month and day")
    patterns = tuple(
        (p, _compile(p.regex, 0 if p.case_sensitive else re.IGNORECASE, path, p.name)) for p in spec.patterns
    )
    return Rules(spec.version, spec.guards, dates, patterns)


def _compile(regex: str, flags: int, path: Path, name: str) -> re.Pattern[str]:
    try:
        return re.compile(regex, flags)
    except re.error as exc:
        raise ConfigError(f"{path}: rule '{name}': invalid regex: {exc}") from None


# ---------------------------------------------------------------- cleaning one article (pure)


@dataclass(frozen=True)
class Raw:
    """One article as read from the corpus, before cleaning."""

    source_file: str  # relative to the corpus, with ":LINE" for JSONL/CSV records
    where: str  # the path as the user gave it, for messages
    text: str
    title: str | None = None
    date: str | None = None
    url: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class Removal:
    """A line (or the part of one) taken out of the text, and the rule that took it."""

    line: int  # 1-based line number within the text (for a .txt file: within the file)
    pattern: str
    kind: str  # drop_line | cut_after | metadata
    text: str


@dataclass(frozen=True)
class Cleaned:
    """The cleaned text of one article with its metadata and everything removed from it."""

    title: str | None
    text: str
    date: str | None
    url: str | None
    source: str | None
    paragraphs: list[dict[str, int]]
    removed: list[Removal]
    warnings: list[str]


def normalise_line(line: str) -> str:
    """Drop zero-width characters, collapse whitespace runs to one space and strip the line."""
    return SPACES.sub(" ", ZERO_WIDTH.sub("", line)).strip()


def fix_text(text: str) -> str:
    """Fix mojibake and line breaks, normalise to NFC; quotes and dashes are kept as they are."""
    return ftfy.fix_text(text, config=FTFY)


def clean(raw: Raw, rules: Rules) -> Cleaned:
    """Clean one article: metadata lines out, furniture out, paragraphs and title found."""
    lines = [normalise_line(line) for line in fix_text(raw.text).split("\n")]
    head = set([k for k, line in enumerate(lines) if line][: rules.guards.head_lines])
    found_date, removed, gone = _date_lines(lines, head, rules)
    _furniture(lines, head, gone, rules)
    removed.extend(gone.values())
    warnings: list[str] = []

    # The article's URL comes from a line the rules took out as furniture (a source link), never from the body.
    url = _clean_field(raw.url)
    if url is None:
        starts = (URL_AT_START.match(r.text) for r in sorted(removed, key=lambda r: r.line))
        url = next((m.group(0).rstrip(".,;:)]") for m in starts if m), None)

    date = None
    if (given := _clean_field(raw.date)) is not None:
        date = parse_date(given, rules)
        if date is None:
            warnings.append(f"unparseable date field {raw.date!r}; using the date found in the text, if any")
    date = date or found_date
    if date is None and url:
        for spec, rx in rules.dates:
            if spec.kind == "url" and (m := rx.search(url)) and (date := _date_of(m)):
                break

    paragraphs = _paragraphs(lines, gone)
    title = _clean_field(raw.title)
    if title is not None:
        title = normalise_line(fix_text(title))
        if paragraphs and paragraphs[0][2].casefold() == title.casefold():
            removed.append(Removal(paragraphs[0][0] + 1, "title", "metadata", paragraphs[0][2]))
            paragraphs.pop(0)
    elif len(paragraphs) > 1 and paragraphs[0][1] == 1 and _heading_like(paragraphs[0][2], rules.guards):
        first, _, title = paragraphs.pop(0)
        removed.append(Removal(first + 1, "title", "metadata", title))
    removed.sort(key=lambda r: (r.line, r.kind != "metadata"))

    spans, offset = [], 0
    for _, _, para in paragraphs:
        spans.append({"start": offset, "end": offset + len(para)})
        offset += len(para) + 2
    source = _clean_field(raw.source)
    if source is None and url:
        source = (urlsplit(url).hostname or "").removeprefix("www.") or None
    text = "\n\n".join(para for _, _, para in paragraphs)
    return Cleaned(title, text, date, url, source, spans, removed, warnings)


def _date_lines(lines: list[str], head: set[int], rules: Rules) -> tuple[str | None, list[Removal], dict[int, Removal]]:
    """Find the date among the head lines and take date lines (or date prefixes) out of `lines`.

    Returns the first valid date, the prefixes cut from lines that stay, and the lines that go (by index).
    """
    found: str | None = None
    cut: list[Removal] = []
    gone: dict[int, Removal] = {}
    for k in sorted(head):
        for spec, rx in rules.dates:
            if spec.kind == "url":
                continue
            m = rx.fullmatch(lines[k]) if spec.kind == "line" else rx.match(lines[k])
            if not m or (day := _date_of(m)) is None:
                continue
            found = found or day
            if spec.kind == "line":
                gone[k] = Removal(k + 1, spec.name, "metadata", lines[k])
                break
            prefix, lines[k] = lines[k][: m.end()].strip(), lines[k][m.end() :].lstrip(" –—-|:,")
            if lines[k]:
                cut.append(Removal(k + 1, spec.name, "metadata", prefix))
            else:
                gone[k] = Removal(k + 1, spec.name, "metadata", prefix)
            break
    return found, cut, gone


def _furniture(lines: list[str], head: set[int], gone: dict[int, Removal], rules: Rules) -> None:
    """Mark the lines that the boilerplate patterns remove in `gone`, within the guards."""
    guards = rules.guards
    # Characters from the start of each line to the end of the article, for the tail guard.
    total = sum(len(line) for k, line in enumerate(lines) if k not in gone) or 1
    from_end, acc = [0] * len(lines), 0
    for k in range(len(lines) - 1, -1, -1):
        acc += 0 if k in gone else len(lines[k])
        from_end[k] = acc

    def in_tail(k: int) -> bool:
        return from_end[k] <= guards.tail_share * total

    for k, line in enumerate(lines):
        if not line or k in gone or len(line) > guards.max_line_chars:
            continue
        for spec, rx in rules.patterns:
            if (spec.where == "head" and k not in head) or (spec.where == "tail" and not in_tail(k)):
                continue
            if not rx.fullmatch(line):
                continue
            if spec.kind == "cut_after" and in_tail(k):
                for j in range(k, len(lines)):
                    if lines[j] and j not in gone:
                        gone[j] = Removal(j + 1, spec.name, "cut_after", lines[j])
                return
            gone[k] = Removal(k + 1, spec.name, "drop_line", line)
            break


def _paragraphs(lines: list[str], gone: dict[int, Removal]) -> list[tuple[int, int, str]]:
    """(first line index, number of lines, paragraph) triples: blank-line separated blocks, or single lines if the text has no blank lines.

    A removed line separates paragraphs like a blank one. Inside a block, hard-wrapped lines are joined with a space.
    """
    present = [k for k, line in enumerate(lines) if line]
    blank_separated = any(not lines[k] for k in range(present[0], present[-1])) if present else False
    paragraphs: list[tuple[int, int, str]] = []
    block: list[int] = []
    for k, line in enumerate([*lines, ""]):
        if line and k not in gone:
            block.append(k)
            if blank_separated:
                continue
        if block:
            paragraphs.append((block[0], len(block), " ".join(lines[j] for j in block)))
            block = []
    return paragraphs


def _heading_like(line: str, guards: Guards) -> bool:
    """A first paragraph is a title when it is short and does not end like a sentence or a clause."""
    return len(line) <= guards.title_max_chars and not line.endswith((".", ",", ";", ":")) and bool(WORD.search(line))


def _clean_field(value: str | None) -> str | None:
    """A metadata field with whitespace normalised; empty means absent."""
    if value is None:
        return None
    value = normalise_line(value)
    return value or None


def _date_of(m: re.Match[str]) -> str | None:
    """ISO date from a match with year, month (number or English name) and day groups; None if not a real date."""
    month = m.group("month")
    number = int(month) if month.isdigit() else MONTHS.index(month[:3].lower()) + 1
    try:
        day = Date(int(m.group("year")), number, int(m.group("day")))
    except ValueError:
        return None
    return day.isoformat() if 1900 <= day.year <= 2100 else None


def parse_date(value: str, rules: Rules) -> str | None:
    """ISO date of a date field: ISO 8601 (date or date-time), else any of the rules' date formats."""
    if m := re.match(r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})(?:$|[T ])", value):
        return _date_of(m)
    for spec, rx in rules.dates:
        if spec.kind != "url" and (m := rx.fullmatch(value) or rx.match(value)) and (day := _date_of(m)):
            return day
    return None


# ---------------------------------------------------------------- near-duplicates


class NearDuplicates:
    """MinHash signatures of word shingles with LSH banding; finds earlier articles above a Jaccard threshold.

    Only a signature of NUM_PERM hash values is kept per article, never its text.
    """

    NUM_PERM = 128
    PRIME = 4294967311  # smallest prime above 2**32; (a*h + b) stays below 2**64 for a, b, h < 2**32
    MIX = 0x9E3779B1  # odd 32-bit multiplier of the rolling shingle hash

    def __init__(self, threshold: float, shingle_size: int) -> None:
        rng = np.random.default_rng(20220109)  # fixed: signatures must be the same on every machine
        self.a = rng.integers(1, 2**32, size=self.NUM_PERM, dtype=np.uint64)
        self.b = rng.integers(0, 2**32, size=self.NUM_PERM, dtype=np.uint64)
        self.threshold = threshold
        self.shingle_size = shingle_size
        self.bands, self.rows = lsh_bands(threshold, self.NUM_PERM)
        self.buckets: list[dict[bytes, list[int]]] = [{} for _ in range(self.bands)]
        self.signatures: list[np.ndarray] = []

    def shingles(self, text: str) -> np.ndarray:
        """Distinct 32-bit hashes of the lower-cased text's word n-grams (one n-gram if it is shorter than n words)."""
        words = WORD.findall(text.casefold()) or [""]
        word_hashes = np.fromiter((zlib.crc32(w.encode()) for w in words), dtype=np.uint64, count=len(words))
        size = min(self.shingle_size, len(words))
        count = len(words) - size + 1
        hashes = np.zeros(count, dtype=np.uint64)
        for j in range(size):  # polynomial rolling hash over the n words, vectorised over all positions
            hashes = (hashes * np.uint64(self.MIX) + word_hashes[j : j + count]) & np.uint64(0xFFFFFFFF)
        return np.unique(hashes)

    def signature(self, text: str) -> np.ndarray:
        """MinHash signature of the text's shingle set."""
        return ((np.outer(self.shingles(text), self.a) + self.b) % np.uint64(self.PRIME)).min(axis=0)

    def add(self, text: str) -> list[tuple[int, float]]:
        """Index one article; return (index of an earlier article, estimated Jaccard similarity) above the threshold."""
        sig = self.signature(text)
        candidates: set[int] = set()
        keys = [sig[i * self.rows : (i + 1) * self.rows].tobytes() for i in range(self.bands)]
        for bucket, key in zip(self.buckets, keys, strict=True):
            candidates.update(bucket.get(key, ()))
        found = []
        for j in sorted(candidates):
            similarity = float(np.mean(self.signatures[j] == sig))
            if similarity >= self.threshold:
                found.append((j, round(similarity, 3)))
        me = len(self.signatures)
        self.signatures.append(sig)
        for bucket, key in zip(self.buckets, keys, strict=True):
            bucket.setdefault(key, []).append(me)
        return found


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands and rows per band whose S-curve best separates pairs below/above the threshold (misses weigh 9x)."""
    grid = np.linspace(0, 1, 201)
    best: tuple[float, int, int] = (float("inf"), 1, num_perm)
    for bands in range(1, num_perm + 1):
        rows = num_perm // bands
        p = 1 - (1 - grid**rows) ** bands
        false_pos = np.trapezoid(np.where(grid < threshold, p, 0), grid)
        false_neg = np.trapezoid(np.where(grid >= threshold, 1 - p, 0), grid)
        cost = 0.1 * false_pos + 0.9 * false_neg
        if cost < best[0]:
            best = (float(cost), bands, rows)
    return best[1], best[2]


# ---------------------------------------------------------------- the stage


@dataclass
class Report:
    """Everything the stage removed, dropped, flagged or worked around, for data/ingest_report.json."""

    files: int = 0
    records: int = 0
    ignored_files: list[str] = field(default_factory=list)
    removed_lines: list[dict[str, Any]] = field(default_factory=list)
    exact_duplicates: list[dict[str, Any]] = field(default_factory=list)
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)
    decoding_fallbacks: list[dict[str, str]] = field(default_factory=list)
    metadata_warnings: list[dict[str, str]] = field(default_factory=list)

    def fallback(self, where: str, encoding: str, reason: str) -> None:
        """Record (and say on stderr) that a file or record was not UTF-8 and how it was decoded."""
        self.decoding_fallbacks.append({"where": where, "encoding": encoding, "reason": reason})
        print(f"{STAGE}: warning {where}: not valid UTF-8 ({reason}); decoded as {encoding}", file=sys.stderr)

    def as_json(self, articles: int, bad: BadRecords, cfg: IngestParams, rules: Rules) -> dict[str, Any]:
        """The report document."""
        return {
            "stage": STAGE,
            "rules_version": rules.version,
            "params": asdict(cfg),
            "counts": {
                "files": self.files,
                "records": self.records,
                "articles": articles,
                "bad_records": len(bad),
                "exact_duplicates": len(self.exact_duplicates),
                "near_duplicate_pairs": len(self.near_duplicates),
                "removed_lines": len(self.removed_lines),
                "decoding_fallbacks": len(self.decoding_fallbacks),
                "ignored_files": len(self.ignored_files),
            },
            "removed_lines_by_pattern": dict(sorted(Counter(r["pattern"] for r in self.removed_lines).items())),
            "removed_lines": self.removed_lines,
            "exact_duplicates": self.exact_duplicates,
            "near_duplicates": self.near_duplicates,
            "bad_records": bad.problems,
            "decoding_fallbacks": self.decoding_fallbacks,
            "metadata_warnings": self.metadata_warnings,
            "ignored_files": self.ignored_files,
        }


def ingest(raws: Iterable[Raw], cfg: IngestParams, rules: Rules, bad: BadRecords, report: Report) -> Iterator[dict]:
    """Clean articles, skip too-short ones, drop exact duplicates and record near-duplicate pairs in `report`.

    Yields articles without their cluster fields; `link_stories` adds `story_id` and `near_duplicates`.
    """
    seen: dict[str, str] = {}
    index = NearDuplicates(cfg.near_duplicate_threshold, cfg.shingle_size)
    ids: list[str] = []
    for raw in raws:
        cleaned = clean(raw, rules)
        report.removed_lines.extend({"file": raw.source_file, **asdict(r)} for r in cleaned.removed)
        report.metadata_warnings.extend({"where": raw.where, "warning": w} for w in cleaned.warnings)
        if len(cleaned.text) < cfg.min_text_chars:
            bad.add(raw.where, f"text too short after cleaning ({len(cleaned.text)} < min_text_chars {cfg.min_text_chars})")
            continue
        article_id = sha256_text(cleaned.text)[:16]
        if article_id in seen:
            report.exact_duplicates.append({"id": article_id, "source_file": raw.source_file, "duplicate_of": seen[article_id]})
            continue
        seen[article_id] = raw.source_file
        for j, similarity in index.add(cleaned.text):
            report.near_duplicates.append(
                {"id": article_id, "source_file": raw.source_file, "similar_to": ids[j], "similarity": similarity}
            )
        ids.append(article_id)
        yield {
            "id": article_id,
            "title": cleaned.title,
            "text": cleaned.text,
            "date": cleaned.date,
            "url": cleaned.url,
            "source": cleaned.source,
            "language": cfg.language,
            "paragraphs": cleaned.paragraphs,
            "source_file": raw.source_file,
        }


def link_stories(articles: Iterable[dict], pairs: list[dict[str, Any]]) -> Iterator[dict]:
    """Add `story_id` (first article of its near-duplicate cluster) and `near_duplicates` (both directions)."""
    parent: dict[str, str] = {}
    order: dict[str, int] = {}
    links: dict[str, list[dict[str, Any]]] = {}

    def root(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for n, pair in enumerate(pairs):
        a, b = pair["similar_to"], pair["id"]  # a was read before b
        order.setdefault(a, 2 * n)
        order.setdefault(b, 2 * n + 1)
        ra, rb = root(a), root(b)
        if ra != rb:
            first, second = sorted((ra, rb), key=order.__getitem__)
            parent[second] = first
        links.setdefault(a, []).append({"id": b, "similarity": pair["similarity"]})
        links.setdefault(b, []).append({"id": a, "similarity": pair["similarity"]})
    for article in articles:
        aid = article["id"]
        yield {
            **article,
            "story_id": root(aid),
            "near_duplicates": sorted(links.get(aid, []), key=lambda x: (-x["similarity"], x["id"])),
        }


# ---------------------------------------------------------------- reading the corpus


def read_corpus(corpus: Path, cfg: IngestParams, bad: BadRecords, report: Report) -> Iterator[Raw]:
    """Yield raw articles from every .txt, .jsonl and .csv file under `corpus`, in sorted path order."""
    paths = sorted(
        (p for p in corpus.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(corpus).parts)),
        key=lambda p: p.relative_to(corpus).as_posix(),
    )
    readers = {".txt": _read_txt, ".jsonl": _read_jsonl, ".csv": _read_csv}
    for path in paths:
        rel = path.relative_to(corpus).as_posix()
        reader = readers.get(path.suffix.lower())
        if reader is None:
            report.ignored_files.append(rel)
            continue
        report.files += 1
        try:
            yield from reader(path, rel, cfg, bad, report)
        except OSError as exc:  # unreadable (permissions, vanished): skipped like any bad record
            report.records += 1
            bad.add(str(path), f"cannot read: {exc.strerror or exc}")
    if report.files == 0:
        raise InputError(f"{corpus}: no {', '.join(FORMATS)} files to ingest")


def _decode(data: bytes, where: str, report: Report | None) -> str:
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


def _read_txt(path: Path, rel: str, cfg: IngestParams, bad: BadRecords, report: Report) -> Iterator[Raw]:
    """One article per .txt file."""
    report.records += 1
    size = path.stat().st_size
    if size > cfg.max_article_bytes:
        bad.add(str(path), f"file too large ({size} bytes > max_article_bytes {cfg.max_article_bytes})")
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


def _read_jsonl(path: Path, rel: str, cfg: IngestParams, bad: BadRecords, report: Report) -> Iterator[Raw]:
    """One article per JSON Lines object with a `text` field."""
    with open(path, "rb") as handle:
        if _sniff_binary(handle):
            report.records += 1
            bad.add(str(path), "binary file (contains NUL bytes), not JSON Lines")
            return
        records_before = report.records
        for lineno, line, size in _lines(handle, cfg.max_article_bytes):
            where = f"{path}:{lineno}"
            if line is not None and not line.strip():
                continue
            report.records += 1
            if line is None:
                bad.add(where, f"record too large ({size} bytes > max_article_bytes {cfg.max_article_bytes})")
                continue
            text = _decode(line, where, report)
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                bad.add(where, f"invalid JSON ({exc.msg}, column {exc.colno})")
                continue
            except RecursionError:
                bad.add(where, "invalid JSON (nested too deeply)")
                continue
            if not isinstance(obj, dict):
                bad.add(where, f"expected a JSON object, got {type(obj).__name__}")
                continue
            if raw := _record(obj, f"{rel}:{lineno}", where, bad):
                yield raw
        if report.records == records_before:
            report.records += 1
            bad.add(str(path), "empty file (no JSON Lines records)")


def _read_csv(path: Path, rel: str, cfg: IngestParams, bad: BadRecords, report: Report) -> Iterator[Raw]:
    """One article per CSV row; the header row names the columns and must include `text`."""
    with open(path, "rb") as handle:
        if _sniff_binary(handle):
            report.records += 1
            bad.add(str(path), "binary file (contains NUL bytes), not CSV")
            return

        def decoded() -> Iterator[str]:
            fallback = False
            for lineno, line, _ in _lines(handle, cfg.max_article_bytes):
                if line is None:  # stands in for the oversized line: the csv module reports it as too large
                    yield "x" * (cfg.max_article_bytes + 1) + "\n"
                    continue
                try:
                    yield line.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError:
                    # The first non-UTF-8 line of a file is reported; the rest of the file is decoded alike.
                    yield _decode(line, f"{path}:{lineno}", None if fallback else report)
                    fallback = True

        old_limit = csv.field_size_limit(cfg.max_article_bytes)
        try:
            yield from _csv_rows(csv.reader(decoded(), strict=True), path, rel, cfg, bad, report)
        finally:
            csv.field_size_limit(old_limit)


def _csv_rows(reader: Any, path: Path, rel: str, cfg: IngestParams, bad: BadRecords, report: Report) -> Iterator[Raw]:
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
                message = f"record too large (a field passes max_article_bytes {cfg.max_article_bytes})"
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


def main(*, corpus: Path, output: Path, report: Path, patterns: Path, params: Path) -> None:
    """Run the stage: read `corpus`, write cleaned articles to `output` and the report to `report`."""
    cfg = section(IngestParams, STAGE, params)
    rules = load_rules(patterns)
    if not corpus.is_dir():
        raise ConfigError(f"{corpus}: corpus folder not found" if not corpus.exists() else f"{corpus}: not a folder")
    bad = BadRecords(STAGE, cfg.max_bad_share)
    log = Report()
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".pass1", dir=output.parent)
    os.close(fd)
    try:
        written = write_jsonl(Path(staging), ingest(read_corpus(corpus, cfg, bad, log), cfg, rules, bad, log))
        write_json(report, log.as_json(written, bad, cfg, rules))
        bad.check(log.records)
        with open(staging, encoding="utf-8") as handle:
            write_jsonl(output, link_stories((json.loads(line) for line in handle), log.near_duplicates))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
    print(
        f"{STAGE}: {written} articles from {log.records} records in {log.files} files -> {output} "
        f"({len(bad)} bad, {len(log.exact_duplicates)} exact duplicates, {len(log.near_duplicates)} near-duplicate "
        f"pairs, {len(log.removed_lines)} lines removed; see {report})",
        file=sys.stderr,
    )
