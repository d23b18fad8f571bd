"""The Hugging Face layout of the dataset: configs, their features, their rows and their Parquet files.

Three configs (`articles`, `entities`, `stance`) of human-annotated (gold) rows, with the machine-only
(silver) rows in configs of the same features suffixed `_silver`. Every row aligns back to its article:
character offsets into the article's `text`, and entity indexes into its `entities` list. Each config's
split is written as Parquet shards named as `datasets.push_to_hub` names them.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipeline.common.contract import NO_STANCE, SPLITS

CONFIGS = ("articles", "entities", "stance")
# The stance `text`'s entity markers (Baldini Soares et al. 2019, "Matching the Blanks"); E1 is always the holder.
MARKERS = ("[E1]", "[/E1]", "[E2]", "[/E2]")
SILVER = "_silver"
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 9, "use_dictionary": True,
                   "write_statistics": True, "version": "2.6", "data_page_version": "1.0"}
BATCH_ROWS = 1024  # rows turned into Arrow at a time while a row group fills
# A row group is written once its Arrow batches reach this size: datasets' own bound on the row groups it writes
# (datasets.config.MAX_ROW_GROUP_SIZE, "100MB"), copied here so a datasets upgrade does not move a byte.
ROW_GROUP_BYTES = 100 * 10**6


class Schema(Protocol):
    """What the rows need of the publish config (publish.PublishConfig): the class names and the candidate cap."""

    @property
    def bio_tags(self) -> list[str]: ...
    @property
    def stance_classes(self) -> tuple[str, ...]: ...
    @property
    def stance_ends(self) -> tuple[str, ...]: ...
    @property
    def max_candidates_per_sentence(self) -> int: ...
    @property
    def rows_per_shard(self) -> int: ...


# ---------------------------------------------------------------- features


def features(cfg: Schema) -> dict[str, Any]:
    """The `datasets.Features` of each config (silver configs share them)."""
    from datasets import ClassLabel, Features, List, Value

    string, i32, f64, boolean = Value("string"), Value("int32"), Value("float64"), Value("bool")
    entity = {"start": i32, "end": i32, "label": string, "text": string, "actor": string}
    return {
        "articles": Features({
            "id": string, "title": string, "date": string, "source": string, "url": string, "text": string,
            "story_id": string,
            "sentences": List({"start": i32, "end": i32}),
            "entities": List(entity),
            "stances": List({"holder": i32, "target": i32, "label": string}),
            "annotators": List(string),
            "annotations": List({"annotator": string, "lead_time": f64, "ground_truth": boolean,
                                 "from_prediction": boolean, "entities": List(entity),
                                 "stances": List({"holder": i32, "target": i32, "label": string})}),
            "agreement": {"entity_f1": f64, "stance_kappa": f64, "n_annotators": i32},
            "provenance": {"status": string, "resolution": string, "annotation_snapshot": string, "model": string,
                           "model_version": string, "rules_version": string, "code_revision": string},
        }),
        "entities": Features({
            "id": string, "article_id": string, "sentence_index": i32, "sentence_start": i32, "sentence_end": i32,
            "tokens": List(string), "token_starts": List(i32), "token_ends": List(i32),
            "ner_tags": List(ClassLabel(names=cfg.bio_tags)),
        }),
        "stance": Features({
            "id": string, "article_id": string, "sentence_index": i32, "sentence": string, "sentence_start": i32,
            "sentence_end": i32,
            **{f"{role}{suffix}": tp for role in ("holder", "target")
               for suffix, tp in (("", string), ("_index", i32), ("_label", string), ("_actor", string),
                                  ("_start", i32), ("_end", i32))},
            "text": string,  # `sentence` with the pair's entity markers (MARKERS)
            "label": ClassLabel(names=list(cfg.stance_classes)),
        }),
    }


# ---------------------------------------------------------------- rows


def article_row(rec: dict[str, Any]) -> dict[str, Any]:
    """One row of the `articles` config."""
    prov = rec.get("provenance") or {}
    agreement = rec.get("agreement")
    return {
        **{k: rec.get(k) for k in ("id", "title", "date", "source", "url", "text")},
        "story_id": rec.get("story_id") or rec["id"],
        "sentences": [{"start": s["start"], "end": s["end"]} for s in rec["sentences"]],
        "entities": [{k: e.get(k) for k in ("start", "end", "label", "text", "actor")} for e in rec["entities"]],
        "stances": [{k: s[k] for k in ("holder", "target", "label")} for s in rec["stances"]],
        "annotators": list(rec.get("annotators") or []),
        "annotations": [
            {"annotator": a.get("annotator"), "lead_time": a.get("lead_time"), "ground_truth": a.get("ground_truth"),
             "from_prediction": a.get("from_prediction"),
             "entities": [{k: e.get(k) for k in ("start", "end", "label", "text", "actor")} for e in a["entities"]],
             "stances": [{k: s[k] for k in ("holder", "target", "label")} for s in a["stances"]]}
            for a in rec.get("annotations") or []
        ],
        "agreement": {k: agreement.get(k) for k in ("entity_f1", "stance_kappa", "n_annotators")} if agreement else None,
        "provenance": {"status": rec["status"], "resolution": prov.get("resolution"),
                       **{k: prov.get(k) for k in ("annotation_snapshot", "model", "model_version",
                                                   "rules_version", "code_revision")}},
    }


def _sentence_of(rec: dict[str, Any]) -> list[int | None]:
    """Index of the sentence holding each entity's start, or None."""
    sents = rec["sentences"]
    starts = [s["start"] for s in sents]
    out: list[int | None] = []
    for e in rec["entities"]:
        i = bisect.bisect_right(starts, e["start"]) - 1
        out.append(i if i >= 0 and e["start"] < sents[i]["end"] else None)
    return out


def entity_rows(rec: dict[str, Any], tokenizer: Any, cfg: Schema, stats: Counter[str]) -> Iterator[dict]:
    """Rows of the `entities` config: one per sentence, spaCy tokens with article offsets and BIO tags (space tokens dropped)."""
    tag_id = {t: i for i, t in enumerate(cfg.bio_tags)}
    where = _sentence_of(rec)
    by_sentence: dict[int, list[dict]] = {}
    for e, i in zip(rec["entities"], where, strict=True):
        if i is None:
            stats["entities outside any sentence"] += 1
        elif e["end"] > rec["sentences"][i]["end"]:
            stats["entities crossing a sentence boundary"] += 1
        else:
            by_sentence.setdefault(i, []).append(e)
    text = rec["text"]
    for i, sent in enumerate(rec["sentences"]):
        s0 = sent["start"]
        doc = tokenizer(text[s0 : sent["end"]])
        bio = ["O"] * len(doc)
        # longest first: BIO can't nest, so an overlapped shorter span is dropped and counted
        for e in sorted(by_sentence.get(i, []), key=lambda e: (e["start"] - e["end"], e["start"])):
            span = doc.char_span(e["start"] - s0, e["end"] - s0, alignment_mode="expand")
            if span is None or len(span) == 0:
                stats["entities not aligned to tokens"] += 1
                continue
            if any(bio[k] != "O" for k in range(span.start, span.end)):
                stats["overlapping entities dropped from BIO"] += 1
                continue
            if (span.start_char, span.end_char) != (e["start"] - s0, e["end"] - s0):
                stats["entities widened to token boundaries"] += 1
            bio[span.start : span.end] = [f"B-{e['label']}"] + [f"I-{e['label']}"] * (len(span) - 1)
        keep = [k for k, tok in enumerate(doc) if not tok.is_space]
        if not keep:
            continue
        tags = [bio[k] for k in keep]
        for k, tag in enumerate(tags):  # a dropped leading space token must not leave an I- without its B-
            if tag.startswith("I-") and (k == 0 or tags[k - 1][2:] != tag[2:]):
                tags[k] = "B-" + tag[2:]
        stats["entities in BIO"] += sum(t.startswith("B-") for t in tags)
        yield {
            "id": f"{rec['id']}-{i:04d}",
            "article_id": rec["id"],
            "sentence_index": i,
            "sentence_start": s0,
            "sentence_end": sent["end"],
            "tokens": [doc[k].text for k in keep],
            "token_starts": [s0 + doc[k].idx for k in keep],
            "token_ends": [s0 + doc[k].idx + len(doc[k]) for k in keep],
            "ner_tags": [tag_id[t] for t in tags],
        }


def marked(sentence: str, holder: tuple[int, int], target: tuple[int, int]) -> str:
    """`sentence` with the holder wrapped in [E1]...[/E1] and the target in [E2]...[/E2] (MARKERS)."""
    # at one position closing markers come first, inner spans close first and outer ones open first (nested spans nest)
    cuts = []
    for k, (start, end) in enumerate((holder, target), 1):
        cuts += [(start, 1, -end, k, f"[E{k}]"), (end, 0, -start, -k, f"[/E{k}]")]
    out, at = [], 0
    for pos, *_, mark in sorted(cuts):
        out += [sentence[at:pos], mark]
        at = pos
    return "".join(out) + sentence[at:]


def stance_rows(rec: dict[str, Any], cfg: Schema, stats: Counter[str]) -> Iterator[dict]:
    """Rows of the `stance` config: every annotated stance plus unlabelled candidate pairs (`none`) per sentence."""
    ents, sents, text = rec["entities"], rec["sentences"], rec["text"]
    where = _sentence_of(rec)
    labelled = {(s["holder"], s["target"]): s["label"] for s in rec["stances"]}
    capable = set(cfg.stance_ends)
    pairs: list[tuple[int, int]] = []
    for i in range(len(sents)):
        members = [k for k, w in enumerate(where) if w == i and ents[k]["label"] in capable
                   and ents[k]["end"] <= sents[i]["end"]]
        candidates = [(h, t) for h in members for t in members
                      if h != t and (h, t) not in labelled and ents[h]["text"] != ents[t]["text"]]
        stats["candidate pairs beyond the cap"] += max(0, len(candidates) - cfg.max_candidates_per_sentence)
        pairs.extend(candidates[: cfg.max_candidates_per_sentence])
    pairs.extend(labelled)
    rows = []
    for h, t in pairs:
        hs, ts = where[h], where[t]
        if hs is None or ts is None:
            stats["stances outside any sentence"] += 1
            continue
        start = sents[min(hs, ts)]["start"]
        end = max(sents[max(hs, ts)]["end"], ents[h]["end"], ents[t]["end"])
        if hs != ts:
            stats["stances across sentences"] += 1
        row = {"id": f"{rec['id']}-{h:04d}-{t:04d}", "article_id": rec["id"], "sentence_index": min(hs, ts),
               "sentence": text[start:end], "sentence_start": start, "sentence_end": end}
        for role, k in (("holder", h), ("target", t)):
            e = ents[k]
            row |= {role: e["text"], f"{role}_index": k, f"{role}_label": e["label"], f"{role}_actor": e.get("actor"),
                    f"{role}_start": e["start"] - start, f"{role}_end": e["end"] - start}
        row["text"] = marked(row["sentence"], (row["holder_start"], row["holder_end"]),
                             (row["target_start"], row["target_end"]))
        row["label"] = cfg.stance_classes.index(labelled.get((h, t), NO_STANCE))
        rows.append(row)
    yield from sorted(rows, key=lambda r: r["id"])


# ---------------------------------------------------------------- tables and files


def rows_of(rec: dict[str, Any], tokenizer: Any, cfg: Schema, stats: Counter[str]) -> Iterator[tuple[str, list[dict]]]:
    """Each config's rows of one article (machine-only articles go to the `_silver` configs)."""
    suffix = "" if rec["status"] == "gold" else SILVER
    yield "articles" + suffix, [article_row(rec)]
    yield "entities" + suffix, list(entity_rows(rec, tokenizer, cfg, stats))
    yield "stance" + suffix, list(stance_rows(rec, cfg, stats))


def shard_names(config: str, split: str, n_rows: int, rows_per_shard: int) -> list[str]:
    """Paths of a split's shards in the folder, as `datasets.push_to_hub` names them: <config>/<split>-00000-of-0000N.parquet."""
    n = max(1, math.ceil(n_rows / rows_per_shard))
    return [f"{config}/{split}-{i:05d}-of-{n:05d}.parquet" for i in range(n)]


class SplitShards:
    """One config split written as Parquet shards while its rows arrive, each of at most `rows_per_shard` rows.

    Rows become Arrow record batches of BATCH_ROWS; the batches are written as one row group of the open shard
    when they reach ROW_GROUP_BYTES or the shard is full, so memory holds a row group, never a shard. A shard is
    written under a temporary name and renamed at `close`, when the number of shards in the name is known.
    """

    def __init__(self, folder: Path, config: str, split: str, schema: Any, rows_per_shard: int) -> None:
        self.folder, self.config, self.split = folder, config, split
        self.schema, self.rows_per_shard = schema, rows_per_shard
        self.rows: list[dict[str, Any]] = []
        self.batches: list[Any] = []
        self.batched = self.batched_bytes = 0
        self.writer: Any = None  # the open shard's pyarrow.parquet.ParquetWriter
        self.in_shard = 0  # rows already in the open shard's row groups
        self.parts: list[Path] = []
        self.n_rows = 0

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Take rows in order; a row group is written as soon as it is full, a shard closed as soon as it is."""
        for row in rows:
            self.rows.append(row)
            self.n_rows += 1
            if self.in_shard + self.batched + len(self.rows) == self.rows_per_shard:
                self._write_group()
                self._close_shard()
            elif len(self.rows) >= BATCH_ROWS:
                self._batch()
                if self.batched_bytes >= ROW_GROUP_BYTES:
                    self._write_group()

    def _batch(self) -> None:
        import pyarrow as pa

        if self.rows:
            batch = pa.RecordBatch.from_pylist(self.rows, schema=self.schema)
            self.batches.append(batch)
            self.batched += len(self.rows)
            self.batched_bytes += batch.nbytes
            self.rows = []

    def _write_group(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._batch()
        if not self.batched:
            return
        # one contiguous table, as if built from all its rows at once: a file of one row group has the bytes
        # pq.write_table gives a whole table
        table = pa.Table.from_batches(self.batches, schema=self.schema).combine_chunks()
        self.batches, self.batched, self.batched_bytes = [], 0, 0
        if self.writer is None:
            path = self.folder / self.config / f".{self.split}-{len(self.parts):05d}.partial"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(path, self.schema, **PARQUET_OPTIONS)
            self.parts.append(path)
        self.writer.write_table(table)
        self.in_shard += table.num_rows

    def _close_shard(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer, self.in_shard = None, 0

    def close(self) -> list[str]:
        """Write the last row group and give each shard its final name; return the names (none when no row came)."""
        self._write_group()
        self._close_shard()
        names = shard_names(self.config, self.split, self.n_rows, self.rows_per_shard) if self.n_rows else []
        for part, name in zip(self.parts, names, strict=True):
            part.rename(self.folder / name)
        return names


@dataclass
class Written:
    """What writing the configs found: rows and Arrow bytes per config and split, dropped-row counts, the card's examples."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    split_bytes: dict[str, dict[str, int]] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)
    firsts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def examples(self) -> dict[str, dict[str, Any]]:
        """The card's data instances: the first `entities` row and the first annotated `stance` row (gold, else silver)."""
        out: dict[str, dict[str, Any]] = {}
        for name in ("entities", "stance"):
            for config in (name, name + SILVER):
                row = next((self.firsts[config, s] for s in SPLITS if (config, s) in self.firsts), None)
                if row is not None:
                    out[config] = row
                    break
        return out


def _example(name: str, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row of one article the card may show for its config: any entity row, a stance row with a label."""
    if name.startswith("entities"):
        return rows[0] if rows else None
    if name.startswith("stance"):
        return next((r for r in rows if r["label"] != 0), None)
    return None


def write_configs(records: Iterable[dict[str, Any]], feats: dict[str, Any], folder: Path, cfg: Schema,
                  shape: Callable[[str, dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None) -> Written:
    """Every config's Parquet shards from records in id order, one article at a time (empty splits left out).

    `shape(config, row, record)`, if given, turns each row into the one written (a text-free release's).
    """
    import spacy

    tokenizer = spacy.blank("en").tokenizer
    writers: dict[tuple[str, str], SplitShards] = {}
    out = Written()
    for rec in records:
        for name, rows in rows_of(rec, tokenizer, cfg, out.stats):
            if shape is not None:
                rows = [shape(name.removesuffix(SILVER), row, rec) for row in rows]
            key = (name, rec["split"])
            if key not in writers:
                schema = feats[name.removesuffix(SILVER)].arrow_schema
                writers[key] = SplitShards(folder, name, rec["split"], schema, cfg.rows_per_shard)
            writers[key].add(rows)
            if key not in out.firsts and (example := _example(name, rows)) is not None:
                out.firsts[key] = example
    for name in sorted({n for n, _ in writers}):
        for split in SPLITS:
            # datasets 5.2.0 can't load an empty split (tests/test_publish_card.py shows it): it is not declared
            if (w := writers.get((name, split))) and (paths := w.close()):
                out.counts.setdefault(name, {})[split] = w.n_rows
                out.split_bytes.setdefault(name, {})[split] = sum(arrow_bytes(folder / p) for p in paths)
    return out


def arrow_bytes(path: Path) -> int:
    """A shard's share of `num_bytes` as `datasets` records it on loading: the Arrow `nbytes` of the file read back
    in batches of its first row group's rows, one batch in memory at a time (the tables as written count a few
    bytes less: tests/test_publish_streaming.py)."""
    import pyarrow.dataset as ds

    with open(path, "rb") as handle:
        fragment = ds.ParquetFileFormat().make_fragment(handle)
        if not fragment.row_groups:
            return 0
        batches = fragment.to_batches(batch_size=fragment.row_groups[0].num_rows, batch_readahead=0,
                                      fragment_readahead=0)
        return sum(batch.nbytes for batch in batches)


def data_files(config: str, split: str) -> str:
    """The card's `data_files` glob of a config's split: every shard, whatever their number."""
    return f"{config}/{split}-*"
