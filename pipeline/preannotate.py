"""Pre-annotates articles with spaCy: entities, a domain layer, actor links and entity-to-entity stances.

The per-document work is the annotator component of pipeline/entities/annotator.py; this stage loads the
model with it, streams records through `nlp.pipe`, reuses cached annotations and writes the output.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spacy.language import Language

from pipeline.common.config import MAX_TEXT_CHARS, section
from pipeline.common.errors import BadRecords, ConfigError
from pipeline.common.executor import Engine, run_shards, worker_state
from pipeline.common.provenance import code_files, code_revision
from pipeline.common.shards import count_records, exists, read_records, write_records
from pipeline.entities.annotator import COMPONENT, USER_DATA_KEY, Annotator, load_model
from pipeline.entities.cache import Cache

STAGE = "preannotate"
# The files whose code decides this stage's output (its import closure): their hash is the recorded code revision,
# and dvc.yaml lists the same files as the stage's code deps (a test checks).
CODE = code_files("preannotate.py")
# A run of cached records is interrupted by an empty placeholder text every this many records, so the
# queue of records waiting for the model stays short however long the run of cached records is.
FLUSH_EVERY = 256
# The committed base stance model (learned from SEESAW, CC BY-NC-SA 4.0), used when no --stance-model is given.
BASE_MODEL = Path(__file__).resolve().parents[1] / "resources" / "stance_model" / "seesaw.json"


@dataclass(frozen=True)
class Params:
    """The `preannotate:` section of params.yaml."""

    model: str
    entity_labels: tuple[str, ...]
    stance_ends: tuple[str, ...]
    stance_labels: tuple[str, ...]
    batch_size: int
    n_process: int
    n_workers: int
    shard_size: int
    records_per_shard: int  # records per output shard file (data/preannotated/); independent of the Dask shard_size
    max_bad_share: float
    stance_model: bool  # score entity pairs with the learned model (--stance-model FILE); false: rules alone
    stance_threshold: float  # the model's probability from which a pair is proposed as a stance

    def validate(self) -> str | None:
        """Cross-field checks."""
        if not self.entity_labels:
            return "entity_labels must not be empty"
        if extra := sorted(set(self.stance_ends) - set(self.entity_labels)):
            return f"stance_ends {extra} are not in entity_labels"
        if self.batch_size < 1 or self.n_process < 1:
            return "batch_size and n_process must be at least 1"
        if problem := Engine(self.n_workers, self.shard_size).problem():
            return problem
        if self.records_per_shard < 1:
            return "records_per_shard must be at least 1"
        if self.n_workers > 1 and self.n_process > 1:
            return "n_process > 1 needs n_workers: 1 (a Dask worker cannot start nlp.pipe's processes)"
        if not 0.0 <= self.max_bad_share <= 1.0:
            return "max_bad_share must be between 0 and 1"
        if not 0.0 < self.stance_threshold <= 1.0:
            return "stance_threshold must be in (0, 1]"
        return None


@dataclass
class Preannotator:
    """A loaded spaCy pipeline with the annotator component, and what goes into provenance and cache keys."""

    nlp: Language
    params: Params
    provenance: dict[str, str]
    fingerprint: str

    def cache_key(self, text: str) -> str:
        """Content address of a text's annotation under this model, these rules and this code."""
        return hashlib.sha256(f"{self.fingerprint}\0{text}".encode()).hexdigest()


def load(params: Params, patterns: Path, actors: Path, lexicon: Path, stance_model: Path | None = None) -> Preannotator:
    """Load the model and add the annotator component to the end of its pipeline.

    With `params.stance_model`, the learned stance model `stance_model` (default: the committed base model)
    proposes the stances; else the rules do.
    """
    if params.stance_model and stance_model is None:
        stance_model = BASE_MODEL
    nlp = load_model(params.model)
    if not {"parser", "senter", "sentencizer"} & set(nlp.pipe_names):
        nlp.add_pipe("sentencizer")  # sentences are part of the output contract
    # The parser keeps boundaries set before it; a sentencizer or senter would overwrite them.
    if "parser" in nlp.pipe_names:
        nlp.add_pipe("paragraph_sentences", before="parser")
    else:
        nlp.add_pipe("paragraph_sentences", after=next(n for n in ("senter", "sentencizer") if n in nlp.pipe_names))
    config: dict[str, Any] = {
        "patterns": str(patterns),
        "actors": str(actors),
        "lexicon": str(lexicon),
        "entity_labels": list(params.entity_labels),
        "stance_ends": list(params.stance_ends),
        "stance_labels": list(params.stance_labels),
    }
    if params.stance_model:
        config |= {"stance_model": str(stance_model), "stance_threshold": params.stance_threshold}
    annotator = nlp.add_pipe(COMPONENT, config=config, last=True)
    assert isinstance(annotator, Annotator)  # spaCy types add_pipe as any callable; the factory makes an Annotator
    provenance = {
        "model": params.model,
        "model_version": str(nlp.meta.get("version", "unknown")),
        "rules_version": annotator.rules.version,
        "code_revision": code_revision(CODE),
    }
    if (model := annotator.stance_model) is not None:  # absent without a model: outputs stay exactly the rules'
        provenance |= {
            "stance_model": model.version,
            "stance_training_data": model.training.data_hash[:12],
            "stance_threshold": str(params.stance_threshold),
            "stance_model_licence": model.training.licence,
            "stance_trained_on": ",".join(model.training.sources),
        }
    fingerprint = json.dumps([provenance, config["entity_labels"], config["stance_ends"], config["stance_labels"]])
    return Preannotator(nlp, params, provenance, fingerprint)


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
            annotation = cache.get(key) if cache else None
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
                cache.put(entry[1], annotation)
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
