"""hydrate: a text-free release (publish.include_text: false) and a user's own copies of its articles -> the full release.

Each published article is matched to a copy by the sha256 of its text (and title); its record is rebuilt from
the text-free row (offsets, labels, versions, provenance) with the copy's text, entity texts taken from their
offsets, and every config's rows are written again by the code that publish runs (rows.write_configs), so
every text-bearing column is recomputed, whatever the configs hold. Hydrated from the copies of every article,
the folder holds the full release's data files byte for byte; an article whose copy is missing or differs is
reported on one line and left out, and the command exits non-zero after writing the rest.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.cleaning.clean import clean
from pipeline.cleaning.readers import read_corpus
from pipeline.cleaning.rules import load_rules
from pipeline.common import shards
from pipeline.common.errors import BadRecords, ConfigError, InputError
from pipeline.common.jsonl import read_json, umask_mode
from pipeline.common.provenance import file_digest, sha256_text
from pipeline.dataset.card import configs_yaml, dataset_infos
from pipeline.dataset.release import MANIFEST, manifest, release_fields, write_manifest
from pipeline.dataset.rows import CONFIGS, SILVER, features, write_configs
from pipeline.dataset.textfree import FORMAT, HYDRATE_FILE, HYDRATED, TEXT_FREE

COMMAND = "hydrate"
MAX_ARTICLE_BYTES = 64 * 2**20  # a raw copy larger than this is a bad record (ingest's own limit is lower)
CARD = "README.md"


@dataclass(frozen=True)
class Schema:
    """The rows' schema as the text-free release's HYDRATE_FILE records it (rows.Schema)."""

    bio_tags: list[str]
    stance_classes: tuple[str, ...]
    stance_ends: tuple[str, ...]
    max_candidates_per_sentence: int
    rows_per_shard: int
    version: str


def read_recipe(dataset: Path) -> Schema:
    """The text-free release's recipe, with a one-line error when the folder is not one."""
    path = dataset / HYDRATE_FILE
    if not path.is_file():
        raise InputError(f"{path}: not found: {dataset} is not a text-free release (publish.include_text: false)")
    doc = read_json(path, "hydration recipe")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"{path}: not a {FORMAT} recipe")
    try:
        schema = Schema(list(doc["bio_tags"]), tuple(doc["stance_classes"]), tuple(doc["stance_ends"]),
                        int(doc["max_candidates_per_sentence"]), int(doc["rows_per_shard"]), str(doc["version"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: bad or missing key {exc}") from None
    if schema.rows_per_shard < 1:
        raise InputError(f"{path}: rows_per_shard must be at least 1")
    return schema


@dataclass(frozen=True)
class Copy:
    """A user's copy of an article: its text and title, and where it was read."""

    text: str
    title: str | None
    url: str | None
    where: str


@dataclass
class ReadLog:
    """What the corpus readers count and note (readers.ReadLog); decoding fallbacks are said on stderr."""

    files: int = 0
    records: int = 0
    ignored_files: list[str] = field(default_factory=list)
    skipped_files: list[dict[str, str]] = field(default_factory=list)

    def fallback(self, where: str, encoding: str, reason: str) -> None:
        print(f"{COMMAND}: warning {where}: not valid UTF-8 ({reason}); decoded as {encoding}", file=sys.stderr)


def read_copies(articles: Path, patterns: Path) -> Iterator[Copy]:
    """The user's articles: the pipeline's cleaned shard folder (data/articles/) or a raw corpus cleaned as ingest does."""
    if not articles.exists():
        raise ConfigError(f"{articles}: articles folder not found")
    if (articles / shards.MANIFEST).is_file() or articles.is_file():
        for path, lineno, rec in shards.read_records(articles, BadRecords(COMMAND, 1.0)):
            if isinstance(rec.get("text"), str):
                yield Copy(rec["text"], rec.get("title"), rec.get("url"), f"{path}:{lineno}")
        return
    rules = load_rules(patterns)
    for raw in read_corpus(articles, MAX_ARTICLE_BYTES, BadRecords(COMMAND, 1.0), ReadLog()):
        cleaned = clean(raw, rules)
        yield Copy(cleaned.text, cleaned.title, cleaned.url, raw.where)


def published_articles(dataset: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every text-free article row with its split, in id order (the order publish wrote them)."""
    import pyarrow.parquet as pq

    found = []
    for config in ("articles", "articles" + SILVER):
        for path in sorted((dataset / config).glob("*.parquet")):
            try:
                table = pq.read_table(path)
            except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
                raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
            if "text_sha256" not in table.column_names:
                raise InputError(f"{path}: no column text_sha256: not the articles of a text-free release")
            found += [(path.name.split("-")[0], row) for row in table.to_pylist()]
    if not found:
        raise InputError(f"{dataset}: no article rows (articles/*.parquet)")
    return sorted(found, key=lambda f: f[1]["id"])


def record(row: dict[str, Any], split: str, copy: Copy) -> dict[str, Any]:
    """The labeled record publish built the row from, as far as the rows read it: the row, the copy's text and title."""
    text = copy.text

    def entities(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e | {"text": text[e["start"] : e["end"]]} for e in items]

    prov = row["provenance"] or {}
    return {**{k: row[k] for k in ("id", "date", "source", "url", "story_id", "sentences", "stances", "annotators",
                                   "agreement")},
            "title": copy.title, "text": text, "status": prov.get("status"), "split": split,
            "entities": entities(row["entities"]),
            "annotations": [a | {"entities": entities(a["entities"])} for a in row["annotations"] or []],
            "provenance": {k: v for k, v in prov.items() if k != "status"}}


def match(rows: list[tuple[str, dict[str, Any]]], copies: Iterator[Copy]) -> tuple[list[dict[str, Any]], list[str]]:
    """The hydrated records, and one line for each article whose copy is missing or differs from its hashes."""
    by_hash: dict[str, Copy] = {}
    by_url: dict[str, Copy] = {}
    for c in copies:
        by_hash.setdefault(sha256_text(c.text), c)
        if c.url:
            by_url.setdefault(c.url, c)
    records, problems = [], []
    for split, row in rows:
        name = f"article {row['id']}" + (f" ({row['url']})" if row.get("url") else "")
        copy = by_hash.get(row["text_sha256"])
        if copy is None:
            other = by_url.get(row["url"]) if row.get("url") else None
            problems.append(f"{name}: the text of {other.where} differs from the published one (sha256 "
                            f"{sha256_text(other.text)[:16]}…, published {row['text_sha256'][:16]}…)" if other else
                            f"{name}: no copy has its text (sha256 {row['text_sha256'][:16]}…) or its URL")
        elif (sha256_text(copy.title) if copy.title is not None else None) != row["title_sha256"]:
            problems.append(f"{name}: the title of {copy.where} differs from the published one ({copy.title!r})")
        else:
            records.append(record(row, split, copy))
    return records, problems


def card(text_free: str, schema: Schema, written: Any, n_hydrated: int, n_published: int) -> str:
    """The text-free card with the full features in its metadata and a statement of how it was hydrated."""
    from huggingface_hub import DatasetCard

    doc = DatasetCard(text_free)
    doc.data.configs = configs_yaml(written.counts)  # type: ignore[attr-defined]  # a DatasetCardData field
    dataset_infos(features(schema), written.counts, written.split_bytes).to_dataset_card_data(doc.data)
    left = n_published - n_hydrated
    note = (f"{HYDRATED} Rebuilt with `python -m pipeline hydrate` from the text-free release v{schema.version} and "
            f"the user's own copies of the articles: {n_hydrated} of {n_published} articles"
            + (f"; {left} left out, their copies missing or different from the published hashes, so the counts "
               "and statistics in this card, which are the release's, are higher than this folder's" if left else "")
            + ". The texts, titles, tokens and sentences are the copies'; checked against the sha256 of each text and title.")
    body = doc.text.replace(TEXT_FREE, note)
    return f"---\n{doc.data.to_yaml()}\n---\n{body}"


def main(dataset: Path, articles: Path, output: Path, patterns: Path) -> None:
    """Hydrate `dataset` with the copies in `articles` into `output` (atomically replaced); exit 3 if any is left out."""
    if output.resolve() == dataset.resolve():
        raise ConfigError(f"{output}: --output must not be the text-free release itself")
    schema = read_recipe(dataset)
    rows = published_articles(dataset)
    records, problems = match(rows, read_copies(articles, patterns))
    for line in problems:
        print(f"{COMMAND}: {line}", file=sys.stderr)
    if not records:
        raise InputError(f"{articles}: none of the {len(rows)} articles of {dataset} could be hydrated")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    tmp.chmod(umask_mode(0o777))
    try:
        written = write_configs(records, features(schema), tmp, schema)
        configs = {c + s for c in CONFIGS for s in ("", SILVER)}
        for path in sorted(p for p in dataset.rglob("*") if p.is_file()):
            rel = path.relative_to(dataset)
            if rel.parts[0] in configs or rel.parts[0].startswith(".") or rel.as_posix() in (CARD, MANIFEST, HYDRATE_FILE):
                continue
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tmp / rel)
        files = {p.relative_to(tmp).as_posix(): file_digest(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        man = manifest([rec | release_fields(rec) for rec in records], schema.version, files)
        man["rows"] = written.counts
        if (dataset / CARD).is_file():
            (tmp / CARD).write_text(card((dataset / CARD).read_text(encoding="utf-8"), schema, written, len(records),
                                         len(rows)), encoding="utf-8")
        write_manifest(tmp / MANIFEST, man)
        if output.exists():
            shutil.rmtree(output)
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    print(f"{COMMAND}: wrote {output}: {len(records)} of {len(rows)} articles hydrated", file=sys.stderr)
    if problems:
        raise InputError(f"{len(problems)} of {len(rows)} articles not hydrated (their copies are missing or differ, "
                         f"listed above); the other {len(records)} are in {output}")
