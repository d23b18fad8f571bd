"""Ingest stage: raw scraped articles (.txt, .jsonl, .csv) -> cleaned articles with metadata and paragraphs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.cleaning.article import Raw
from pipeline.cleaning.clean import clean
from pipeline.cleaning.dedup import NearDuplicates
from pipeline.cleaning.readers import read_corpus
from pipeline.cleaning.rules import Rules, load_rules
from pipeline.common.config import MAX_TEXT_CHARS, section
from pipeline.common.errors import BadRecords, ConfigError
from pipeline.common.jsonl import write_json, write_jsonl
from pipeline.common.provenance import sha256_text

STAGE = "ingest"


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


@dataclass
class Report:
    """Everything the stage removed, dropped, flagged or worked around, for data/ingest_report.json."""

    files: int = 0
    records: int = 0
    ignored_files: list[str] = field(default_factory=list)
    skipped_files: list[dict[str, str]] = field(default_factory=list)
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
                "skipped_files": len(self.skipped_files),
            },
            "removed_lines_by_pattern": dict(sorted(Counter(r["pattern"] for r in self.removed_lines).items())),
            "removed_lines": self.removed_lines,
            "exact_duplicates": self.exact_duplicates,
            "near_duplicates": self.near_duplicates,
            "bad_records": bad.problems,
            "decoding_fallbacks": self.decoding_fallbacks,
            "metadata_warnings": self.metadata_warnings,
            "ignored_files": self.ignored_files,
            "skipped_files": self.skipped_files,
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
        if len(cleaned.text) > MAX_TEXT_CHARS:
            bad.add(raw.where, f"text too long to annotate ({len(cleaned.text)} > {MAX_TEXT_CHARS} characters after cleaning)")
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
        raws = read_corpus(corpus, cfg.max_article_bytes, bad, log)
        written = write_jsonl(Path(staging), ingest(raws, cfg, rules, bad, log))
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
