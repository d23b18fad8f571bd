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
from typing import Annotated, Any, Self

import numpy as np
from pydantic import AfterValidator, model_validator

from pipeline.cleaning.article import Cleaned, Raw
from pipeline.cleaning.clean import clean
from pipeline.cleaning.dedup import NearDuplicates, Stories
from pipeline.cleaning.readers import read_corpus
from pipeline.cleaning.rules import Rules, load_rules
from pipeline.common.config import MAX_TEXT_CHARS, Count, Section, Share, Threshold, Workers, section
from pipeline.common.errors import BadRecords, ConfigError
from pipeline.common.executor import Engine, run_shards, worker_state
from pipeline.common.jsonl import write_json, write_jsonl
from pipeline.common.provenance import sha256_text
from pipeline.common.shards import write_records

STAGE = "ingest"


def _language_code(code: str) -> str:
    """`code`, if it is an ISO 639 code with optional subtags."""
    if not re.fullmatch(r"[a-z]{2,3}(?:-[A-Za-z0-9]+)*", code):
        raise ValueError(f"{code!r} is not a language code such as 'en'")
    return code


class IngestParams(Section):
    """The `ingest:` section of params.yaml."""

    language: Annotated[str, AfterValidator(_language_code)]
    max_article_bytes: Count
    min_text_chars: Count
    near_duplicate_threshold: Threshold
    shingle_size: Count
    n_workers: Workers
    shard_size: Count
    records_per_shard: Count  # articles per output shard file (data/articles/); independent of the Dask shard_size
    max_bad_share: Share

    @model_validator(mode="after")
    def _runnable(self) -> Self:
        if problem := Engine(self.n_workers, self.shard_size).problem():
            raise ValueError(problem)
        return self


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
    html_extracted: list[str] = field(default_factory=list)  # records that were HTML documents: their text was kept

    def fallback(self, where: str, encoding: str, reason: str) -> None:
        """Record (and say on stderr) that a file or record was not UTF-8 and how it was decoded."""
        self.decoding_fallbacks.append({"where": where, "encoding": encoding, "reason": reason})
        print(f"{STAGE}: warning {where}: not valid UTF-8 ({reason}); decoded as {encoding}", file=sys.stderr)

    def as_json(self, articles: int, bad: BadRecords, cfg: IngestParams, rules: Rules) -> dict[str, Any]:
        """The report document."""
        return {
            "stage": STAGE,
            "rules_version": rules.version,
            "params": cfg.model_dump(),
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
                **({"html_extracted": len(self.html_extracted)} if self.html_extracted else {}),
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
            **({"html_extracted": self.html_extracted} if self.html_extracted else {}),
        }


@dataclass(frozen=True)
class CleanJob:
    """Cleaning and MinHash signatures of a shard of raw articles: picklable, so it runs on any Dask worker."""

    patterns: Path
    min_text_chars: int
    threshold: float
    shingle_size: int

    def __call__(self, shard: list[Raw]) -> list[tuple[Raw, Cleaned, np.ndarray | None]]:
        """Each raw article with its cleaned form and, if it is long enough to keep, its signature."""
        rules = worker_state(("ingest rules", self.patterns), lambda: load_rules(self.patterns))
        minhash = worker_state(("minhash", self.threshold, self.shingle_size),
                               lambda: NearDuplicates(self.threshold, self.shingle_size))
        out = []
        for raw in shard:
            cleaned = clean(raw, rules)
            keep = len(cleaned.text) >= self.min_text_chars
            out.append((raw, cleaned, minhash.signature(cleaned.text) if keep else None))
        return out


def ingest(
    raws: Iterable[Raw], cfg: IngestParams, patterns: Path, bad: BadRecords, report: Report, stories: Stories
) -> Iterator[dict]:
    """Clean articles (in shards, on Dask workers if n_workers > 1), skip too-short ones, drop exact duplicates.

    Near-duplicate links go to `report` and into `stories`, in input order whatever the workers; yields articles
    without their cluster fields, which `link_stories` adds.
    """
    seen: dict[str, str] = {}
    index = NearDuplicates(cfg.near_duplicate_threshold, cfg.shingle_size)
    ids: list[str] = []
    job = CleanJob(Path(patterns), cfg.min_text_chars, cfg.near_duplicate_threshold, cfg.shingle_size)
    for raw, cleaned, sig in run_shards(raws, job, Engine(cfg.n_workers, cfg.shard_size), desc=STAGE):
        report.removed_lines.extend({"file": raw.source_file, **asdict(r)} for r in cleaned.removed)
        report.metadata_warnings.extend({"where": raw.where, "warning": w} for w in cleaned.warnings)
        if cleaned.html:
            report.html_extracted.append(raw.where)
            print(f"{STAGE}: warning {raw.where}: an HTML document; its text was extracted (scripts, styles and "
                  f"navigation dropped)", file=sys.stderr)
        if sig is None:
            bad.add(raw.where, f"text too short after cleaning ({len(cleaned.text)} < min_text_chars {cfg.min_text_chars})")
            continue
        if len(cleaned.text) > MAX_TEXT_CHARS:
            bad.add(raw.where, f"text too long to annotate ({len(cleaned.text)} > {MAX_TEXT_CHARS} characters after cleaning)")
            continue
        article_id = sha256_text(cleaned.text)[:16]
        if article_id in seen:  # the first in corpus order (sorted paths, then lines) is kept
            report.exact_duplicates.append({"id": article_id, "source_file": raw.source_file, "duplicate_of": seen[article_id]})
            print(f"{STAGE}: warning {raw.where}: dropped, article {article_id} has the same text as "
                  f"{seen[article_id]} (the first in corpus order is kept)", file=sys.stderr)
            continue
        seen[article_id] = raw.source_file
        me = stories.add()
        for j, similarity in index.add_signature(sig):
            stories.union(j, me)
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


def link_stories(articles: Iterable[dict], stories: Stories) -> Iterator[dict]:
    """Add `story_id` (the first article of its near-duplicate cluster) and `cluster_size` (1 for a lone article).

    `articles` are the ones `ingest` yielded, in the same order: the n-th is article n of `stories`.
    """
    sizes = stories.sizes()
    ids: list[str] = []
    for n, article in enumerate(articles):
        ids.append(article["id"])  # a root is never later than its members, so its id is known by then
        yield {**article, "story_id": ids[stories.root(n)], "cluster_size": sizes[n]}


def main(*, corpus: Path, output: Path, report: Path, patterns: Path, params: Path) -> None:
    """Run the stage: read `corpus`, write cleaned articles to the shard folder `output` and the report to `report`."""
    cfg = section(IngestParams, STAGE, params)
    rules = worker_state(("ingest rules", Path(patterns)), lambda: load_rules(patterns))  # in-process: loaded once
    if not corpus.is_dir():
        raise ConfigError(f"{corpus}: corpus folder not found" if not corpus.exists() else f"{corpus}: not a folder")
    bad = BadRecords(STAGE, cfg.max_bad_share)
    log = Report()
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".pass1", dir=output.parent)
    os.close(fd)
    try:
        raws = read_corpus(corpus, cfg.max_article_bytes, bad, log)
        stories = Stories()
        written = write_jsonl(Path(staging), ingest(raws, cfg, patterns, bad, log, stories))
        write_json(report, log.as_json(written, bad, cfg, rules))
        bad.check(log.records)
        with open(staging, encoding="utf-8") as handle:
            write_records(output, link_stories((json.loads(line) for line in handle), stories), cfg.records_per_shard)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
    print(
        f"{STAGE}: {written} articles from {log.records} records in {log.files} files -> {output} "
        f"({len(bad)} bad, {len(log.exact_duplicates)} exact duplicates, {len(log.near_duplicates)} near-duplicate "
        f"pairs, {len(log.removed_lines)} lines removed; see {report})",
        file=sys.stderr,
    )
