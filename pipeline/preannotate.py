"""Pre-annotates articles with spaCy: entities, a domain layer, actor links and entity-to-entity stances.

The per-document work is the annotator component of pipeline/entities/annotator.py; this stage loads the
model with it, streams records through `nlp.pipe`, reuses cached annotations and writes the output.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.common.config import MAX_TEXT_CHARS, section
from pipeline.common.errors import BadRecords, ConfigError
from pipeline.common.executor import Engine, run_shards, worker_state
from pipeline.common.provenance import code_files, code_revision
from pipeline.common.shards import count_records, exists, read_records, write_records
from pipeline.entities import loader
from pipeline.entities.annotator import USER_DATA_KEY
from pipeline.entities.cache import Cache
from pipeline.entities.loader import Params, Preannotator

STAGE = "preannotate"
# The files whose code decides this stage's output (its import closure): their hash is the recorded code revision,
# and dvc.yaml lists the same files as the stage's code deps (a test checks).
CODE = code_files("preannotate.py")
# A run of cached records is interrupted by an empty placeholder text every this many records, so the
# queue of records waiting for the model stays short however long the run of cached records is.
FLUSH_EVERY = 256
def load(params: Params, patterns: Path, actors: Path, lexicon: Path, stance_model: Path | None = None) -> Preannotator:
    """This stage's pre-annotator: the loaded pipeline with this stage's code revision in provenance."""
    return loader.load(params, patterns, actors, lexicon, stance_model, code_revision(CODE))


@dataclass
class Counts:
    """How many records a run annotated and how many it took from the cache."""

    annotated: int = 0
    cached: int = 0


_PLACEHOLDER = object()


def preannotate(
    records: Iterable[dict[str, Any]],
    pre: Preannotator,
    cache: Cache | None = None,
    counts: Counts | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield each record (with `id` and `text`) plus sentences, entities, stances and provenance, in order.

    Records whose annotation is in `cache` skip the model; the others stream through `nlp.pipe`.
    """
    counts = counts if counts is not None else Counts()
    pending: deque[Any] = deque()  # [record, key, annotation or None] in input order, and placeholders

    def texts() -> Iterator[str]:
        run = 0
        for record in records:
            key = pre.cache_key(record["text"]) if cache else ""
            annotation = cache.get(key, record["text"]) if cache else None
            pending.append([record, key, annotation])
            if annotation is None:
                run = 0
                yield record["text"]
            elif (run := run + 1) >= FLUSH_EVERY:
                run = 0
                pending.append(_PLACEHOLDER)
                yield ""

    def finish(entry: list[Any]) -> dict[str, Any]:
        record, _, annotation = entry
        return {**record, **annotation, "provenance": pre.provenance}

    params = pre.params
    for doc in pre.nlp.pipe(texts(), batch_size=params.batch_size, n_process=params.n_process):
        while True:
            entry = pending.popleft()
            if entry is _PLACEHOLDER:
                break
            if entry[2] is not None:
                counts.cached += 1
                yield finish(entry)
                continue
            annotation: dict[str, Any] = doc.user_data.pop(USER_DATA_KEY)
            entry[2] = annotation
            if cache:
                cache.put(entry[1], entry[0]["text"], annotation)
            counts.annotated += 1
            yield finish(entry)
            break
    while pending:
        entry = pending.popleft()
        if entry is not _PLACEHOLDER:
            counts.cached += 1
            yield finish(entry)


@dataclass(frozen=True)
class ShardJob:
    """What a worker needs to pre-annotate a shard: small and picklable; the model is built once per worker."""

    params: Params
    patterns: Path
    actors: Path
    lexicon: Path
    cache: Path | None
    stance_model: Path | None = None

    def loaded(self) -> Preannotator:
        """This process's model for this job, loaded on first use."""
        return worker_state((STAGE, self.params, self.patterns, self.actors, self.lexicon, self.stance_model),
                            lambda: load(self.params, self.patterns, self.actors, self.lexicon, self.stance_model))

    def __call__(self, shard: list[dict[str, Any]]) -> list[tuple[dict[str, Any], bool]]:
        """The shard's records pre-annotated in order, each with whether it came from the cache."""
        store = Cache(self.cache) if self.cache else None
        counts = Counts()
        out: list[tuple[dict[str, Any], bool]] = []
        cached_before = 0
        try:
            for record in preannotate(shard, self.loaded(), store, counts):
                out.append((record, counts.cached > cached_before))
                cached_before = counts.cached
        finally:
            if store:
                store.close()
        return out


def check_record(obj: dict[str, Any]) -> str | None:
    """Why a record cannot be annotated, or None."""
    rid = obj.get("id")
    if rid is None:
        return "missing 'id'"
    if not (isinstance(rid, str) and rid.strip()) and not (isinstance(rid, int) and not isinstance(rid, bool)):
        return f"'id' must be a non-empty string or an integer, got {json.dumps(rid)[:40]}"
    if "text" not in obj:
        return "missing 'text'"
    if not isinstance(obj["text"], str):
        return f"'text' must be a string, got {type(obj['text']).__name__}"
    if not obj["text"].strip():
        return "empty 'text'"
    if len(obj["text"]) > MAX_TEXT_CHARS:
        return f"'text' too long to annotate ({len(obj['text'])} > {MAX_TEXT_CHARS} characters)"
    return None


def main(
    input: Path,
    output: Path,
    params: Path,
    patterns: Path,
    actors: Path,
    lexicon: Path,
    cache: Path | None = None,
    stance_model: Path | None = None,
) -> None:
    """Pre-annotate a shard folder (or JSONL file) of records with `id` and `text` into another, atomically.

    Output shard boundaries come from `records_per_shard` alone, so the output is the same byte for byte
    whatever `n_workers` and the Dask `shard_size`.
    """
    cfg = section(Params, STAGE, params)
    if not exists(input):
        raise ConfigError(f"{input}: input not found")
    model = Path(stance_model) if stance_model and cfg.stance_model else None
    job = ShardJob(cfg, Path(patterns), Path(actors), Path(lexicon), Path(cache) if cache else None, model)
    if cfg.n_workers == 1:
        job.loaded()  # a missing model is an error before any output; a cluster's workers load their own
    bad = BadRecords(STAGE, cfg.max_bad_share)
    counts = Counts()

    def records() -> Iterator[dict[str, Any]]:
        first: dict[str, tuple[Path, int]] = {}  # id (a string, as Label Studio and the dataset make it) -> first file, line
        for file, lineno, obj in read_records(input, bad):
            here = (file, lineno)
            if not (problem := check_record(obj)) and (seen := first.setdefault(str(obj["id"]), here)) != here:
                problem = f"duplicate id {str(obj['id'])[:40]!r} (first on line {seen[1]}" + (
                    ")" if seen[0] == file else f" of {seen[0]})")
            if problem:
                bad.add(f"{file}:{lineno}", problem)
                continue
            yield obj

    def checked(out: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        yield from out  # the check runs before the output file is renamed into place
        bad.check()  # every non-blank input line, parsed or not

    def counted() -> Iterator[dict[str, Any]]:
        total = count_records(input)
        for record, cached in run_shards(records(), job, Engine(cfg.n_workers, cfg.shard_size), desc=STAGE, total=total):
            counts.cached += cached
            counts.annotated += not cached
            yield record

    written = write_records(output, checked(counted()), cfg.records_per_shard)
    print(
        f"{STAGE}: wrote {written} records to {output}: {counts.annotated} annotated, "
        f"{counts.cached} from cache, {len(bad)} skipped",
        file=sys.stderr,
    )
