"""Publish data/labeled.jsonl as a Hub-ready Hugging Face dataset folder, and optionally push it.

Three configs (`articles`, `entities`, `stance`) of human-annotated (gold) rows, with the machine-only
(silver) rows in separate configs suffixed `_silver`; Parquet files per config and split, a dataset
card generated from the pipeline's records (pipeline/card.py), an actor-by-actor stance figure and a
manifest for the changelog of the next version. Rebuilding from the same inputs gives identical bytes.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.common.config import read_env_file
from pipeline.common.contract import NO_STANCE, SPLITS, labeled_problem, labels_problem, stage_config
from pipeline.common.errors import BadRecords, ConfigError, InputError, PipelineError
from pipeline.common.jsonl import read_json, read_jsonl, write_json
from pipeline.common.provenance import file_digest, sha256_text

STAGE = "publish"
CONFIGS = ("articles", "entities", "stance")
SILVER = "_silver"
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 9, "use_dictionary": True,
                   "write_statistics": True, "version": "2.6", "data_page_version": "1.0"}
FIGURE = "stance_by_actor.png"
MANIFEST = "manifest.json"
# The annotation guidelines travel with the data, so the card can link them on the Hub.
GUIDELINES = "guidelines.md"
# The evaluate stage's metrics files the card quotes (listed as publish deps in dvc.yaml).
CARD_METRICS = ("preannotation",)


@dataclass(frozen=True)
class PublishConfig:
    """The `publish:` section of params.yaml, plus the label sets owned by `preannotate:` (one source of truth)."""

    version: str
    pretty_name: str
    license: str
    license_name: str
    max_candidates_per_sentence: int
    figure_max_actors: int
    max_bad_share: float
    entity_labels: tuple[str, ...]  # from preannotate.entity_labels: the labels Label Studio offers
    stance_ends: tuple[str, ...]  # from preannotate.stance_ends: labels a stance holder or target may have
    stance_labels: tuple[str, ...]  # from preannotate.stance_labels: the relation labels Label Studio offers

    def validate(self) -> str | None:
        """Why the section can't be used (version, label sets, limits), or None."""
        if not SEMVER.match(self.version):
            return f"version must be a semantic version MAJOR.MINOR.PATCH, got {self.version!r}"
        if problem := labels_problem(self.entity_labels, self.stance_ends, self.stance_labels):
            return problem
        if self.max_candidates_per_sentence < 0:
            return "max_candidates_per_sentence must be >= 0"
        if self.figure_max_actors < 2:
            return "figure_max_actors must be >= 2"
        if not 0 <= self.max_bad_share <= 1:
            return f"max_bad_share must be in [0, 1], got {self.max_bad_share}"
        return None

    @property
    def bio_tags(self) -> list[str]:
        """ClassLabel names of `ner_tags`: O, then B-/I- per entity label in params order (stable ids)."""
        return ["O"] + [f"{p}-{label}" for label in self.entity_labels for p in ("B", "I")]

    @property
    def stance_classes(self) -> tuple[str, ...]:
        """ClassLabel names of the stance `label`: `none` (a candidate pair), then the stance labels in params order."""
        return (NO_STANCE, *self.stance_labels)


# ---------------------------------------------------------------- features


def features(cfg: PublishConfig) -> dict[str, Any]:
    """The `datasets.Features` of each config (silver configs share them)."""
    from datasets import ClassLabel, Features, List, Value

    string, i32, f64 = Value("string"), Value("int32"), Value("float64")
    entity = {"start": i32, "end": i32, "label": string, "text": string, "actor": string}
    return {
        "articles": Features({
            "id": string, "title": string, "date": string, "source": string, "url": string, "text": string,
            "story_id": string,
            "entities": List(entity),
            "stances": List({"holder": i32, "target": i32, "label": string}),
            "annotators": List(string),
            "annotations": List({"annotator": string, "lead_time": f64, "entities": List(entity),
                                 "stances": List({"holder": i32, "target": i32, "label": string})}),
            "agreement": {"entity_f1": f64, "stance_kappa": f64, "n_annotators": i32},
            "provenance": {"status": string, "resolution": string, "annotation_snapshot": string, "model": string,
                           "model_version": string, "rules_version": string, "code_revision": string},
        }),
        "entities": Features({
            "id": string, "article_id": string, "sentence_index": i32,
            "tokens": List(string), "ner_tags": List(ClassLabel(names=cfg.bio_tags)),
        }),
        "stance": Features({
            "id": string, "article_id": string, "sentence": string,
            **{f"{role}{suffix}": tp for role in ("holder", "target")
               for suffix, tp in (("", string), ("_label", string), ("_actor", string), ("_start", i32), ("_end", i32))},
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
        "entities": [{k: e.get(k) for k in ("start", "end", "label", "text", "actor")} for e in rec["entities"]],
        "stances": [{k: s[k] for k in ("holder", "target", "label")} for s in rec["stances"]],
        "annotators": list(rec.get("annotators") or []),
        "annotations": [
            {"annotator": a.get("annotator"), "lead_time": a.get("lead_time"),
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


def entity_rows(rec: dict[str, Any], tokenizer: Any, cfg: PublishConfig, stats: Counter[str]) -> Iterator[dict]:
    """Rows of the `entities` config: one per sentence, spaCy tokens with BIO tags (space tokens dropped)."""
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
            "tokens": [doc[k].text for k in keep],
            "ner_tags": [tag_id[t] for t in tags],
        }


def stance_rows(rec: dict[str, Any], cfg: PublishConfig, stats: Counter[str]) -> Iterator[dict]:
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
        row = {"id": f"{rec['id']}-{h:04d}-{t:04d}", "article_id": rec["id"], "sentence": text[start:end]}
        for role, k in (("holder", h), ("target", t)):
            e = ents[k]
            row |= {role: e["text"], f"{role}_label": e["label"], f"{role}_actor": e.get("actor"),
                    f"{role}_start": e["start"] - start, f"{role}_end": e["end"] - start}
        row["label"] = cfg.stance_classes.index(labelled.get((h, t), NO_STANCE))
        rows.append(row)
    yield from sorted(rows, key=lambda r: r["id"])


# ---------------------------------------------------------------- input


def load_labeled(path: Path, cfg: PublishConfig) -> list[dict[str, Any]]:
    """Publishable records of labeled.jsonl sorted by id; bad ones are reported, skipped and counted."""
    bad = BadRecords(STAGE, cfg.max_bad_share)
    records = []
    for lineno, rec in read_jsonl(path, bad):
        if problem := labeled_problem(rec, entity_labels=cfg.entity_labels, stance_labels=cfg.stance_labels):
            bad.add(f"{path}:{lineno}", problem)
            continue
        records.append(rec)
    bad.check()
    return sorted(records, key=lambda r: r["id"])


# ---------------------------------------------------------------- build


def build_rows(records: list[dict[str, Any]], cfg: PublishConfig) -> tuple[dict[str, dict[str, list[dict]]], Counter[str]]:
    """Rows of every config (silver ones suffixed) and split, plus counts of what BIO/pairs had to drop."""
    import spacy

    tokenizer = spacy.blank("en").tokenizer
    tables: dict[str, dict[str, list[dict]]] = {}
    stats: Counter[str] = Counter()
    for rec in records:
        suffix = "" if rec["status"] == "gold" else SILVER
        split = rec["split"]
        for name, rows in (("articles", [article_row(rec)]),
                           ("entities", entity_rows(rec, tokenizer, cfg, stats)),
                           ("stance", stance_rows(rec, cfg, stats))):
            tables.setdefault(name + suffix, {}).setdefault(split, []).extend(rows)
    return tables, stats


def write_parquet(rows: list[dict[str, Any]], feats: Any, path: Path) -> None:
    """Write rows with the Hugging Face features' Arrow schema; fixed writer options, so identical rows give identical bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=feats.arrow_schema)
    pq.write_table(table, path, **PARQUET_OPTIONS)


def data_file(config: str, split: str) -> str:
    """Path of a config's split inside the folder, in the Hub's file-naming convention."""
    return f"{config}/{split}-00000-of-00001.parquet"


def labels_digest(rec: dict[str, Any]) -> str:
    """Short hash of an article's final labels, to tell changed articles between versions."""
    payload = {"status": rec["status"], "split": rec["split"],
               "entities": [[e["start"], e["end"], e["label"], e.get("actor")] for e in rec["entities"]],
               "stances": [[s["holder"], s["target"], s["label"]] for s in rec["stances"]]}
    return sha256_text(json.dumps(payload, sort_keys=True))[:16]


def manifest(records: list[dict[str, Any]], cfg: PublishConfig, files: dict[str, str]) -> dict[str, Any]:
    """What this version contains: per article status, split and label digest; label counts; file hashes."""
    counts: dict[str, Counter[str]] = {"entities": Counter(), "stances": Counter()}
    for rec in records:
        if rec["status"] == "gold":
            counts["entities"].update(e["label"] for e in rec["entities"])
            counts["stances"].update(s["label"] for s in rec["stances"])
    return {
        "version": cfg.version,
        "articles": {r["id"]: {"status": r["status"], "split": r["split"], "labels": labels_digest(r),
                               "text_sha256": sha256_text(r["text"])[:16]} for r in records},
        "gold_label_counts": {k: dict(sorted(v.items())) for k, v in counts.items()},
        "files": dict(sorted(files.items())),
    }


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def previous_manifest(releases: Path, version: str) -> dict[str, Any] | None:
    """The recorded manifest of the highest published version below `version`, or None."""
    found = []
    for path in releases.glob("manifest-*.json") if releases.is_dir() else ():
        v = path.stem.removeprefix("manifest-")
        if SEMVER.match(v) and _version_key(v) < _version_key(version):
            found.append((_version_key(v), path))
    if not found:
        return None
    return read_manifest(max(found)[1])


def read_manifest(path: Path) -> dict[str, Any]:
    """A recorded release manifest, with a one-line InputError naming the file if it is unreadable or malformed."""
    man = read_json(path, "release manifest")
    if not isinstance(man, dict):
        raise InputError(f"{path}: release manifest must be a JSON object, got {type(man).__name__}")
    articles, counts, files = (man.get(k, {}) for k in ("articles", "gold_label_counts", "files"))
    if not (isinstance(articles, dict) and all(isinstance(a, dict) for a in articles.values())):
        raise InputError(f"{path}: release manifest field 'articles' must map article ids to objects")
    if not (isinstance(counts, dict) and all(isinstance(c, dict) and all(isinstance(n, int) for n in c.values())
                                             for c in counts.values())):
        raise InputError(f"{path}: release manifest field 'gold_label_counts' must map kinds to label counts")
    if not isinstance(files, dict):
        raise InputError(f"{path}: release manifest field 'files' must map file names to hashes")
    return man


def write_manifest(path: Path, man: dict[str, Any]) -> None:
    """Write a manifest atomically (sorted keys, ASCII-escaped, as manifests have always been written)."""
    write_json(path, man, sort_keys=True, ensure_ascii=True)


def changelog(current: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any] | None:
    """Articles added, removed and changed, and gold label count deltas, against the previous version."""
    if previous is None:
        return None
    now, before = current["articles"], previous.get("articles", {})
    changed = sorted(a for a in set(now) & set(before) if now[a] != before[a])
    deltas = {}
    for kind in ("entities", "stances"):
        a, b = current["gold_label_counts"].get(kind, {}), previous.get("gold_label_counts", {}).get(kind, {})
        deltas[kind] = {lab: a.get(lab, 0) - b.get(lab, 0) for lab in sorted(set(a) | set(b)) if a.get(lab, 0) != b.get(lab, 0)}
    return {
        "previous_version": previous.get("version"),
        "added": sorted(set(now) - set(before)),
        "removed": sorted(set(before) - set(now)),
        "changed": changed,
        "newly_gold": sorted(a for a in changed if now[a]["status"] == "gold" and before[a].get("status") == "silver"),
        "label_deltas": deltas,
    }


def read_metrics(folder: Path | None) -> dict[str, Any]:
    """The evaluate stage's metrics the card quotes (CARD_METRICS), by file stem; those absent are left out."""
    out: dict[str, Any] = {}
    if folder is None or not folder.is_dir():
        return out
    for path in (folder / f"{name}.json" for name in CARD_METRICS):
        if not path.is_file():
            continue
        out[path.stem] = read_json(path, "metrics file")
        if not isinstance(out[path.stem], dict):
            raise InputError(f"{path}: metrics file must be a JSON object, got {type(out[path.stem]).__name__}")
    return out


def build(labeled: Path, output: Path, cfg: PublishConfig, *, metrics: Path | None, releases: Path,
          guidelines: Path | None) -> dict[str, Any]:
    """Build the dataset folder at `output` (atomically replaced) and return its manifest."""
    from pipeline.dataset import card

    guidelines_text = None
    if guidelines is not None:
        if not guidelines.is_file():
            raise InputError(f"{guidelines}: guidelines file not found")
        guidelines_text = guidelines.read_text(encoding="utf-8")
    records = load_labeled(labeled, cfg)
    if not records:
        raise InputError(f"{labeled}: no publishable articles")
    tables, stats = build_rows(records, cfg)
    feats = features(cfg)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        counts: dict[str, dict[str, int]] = {}
        for name in sorted(tables):
            for split in SPLITS:
                rows = tables[name].get(split) or []
                if rows:  # an empty Parquet file can't be loaded: an empty split is not declared
                    write_parquet(rows, feats[name.removesuffix(SILVER)], tmp / data_file(name, split))
                    counts.setdefault(name, {})[split] = len(rows)
        card.stance_by_actor(records, tmp / FIGURE, cfg.figure_max_actors)
        if guidelines_text is not None:
            (tmp / GUIDELINES).write_text(guidelines_text, encoding="utf-8")
        files = {p.relative_to(tmp).as_posix(): file_digest(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        man = manifest(records, cfg, files)
        man["rows"] = counts
        context = card.CardContext(
            cfg=cfg, records=records, counts=counts, features=feats, stats=dict(sorted(stats.items())),
            metrics=read_metrics(metrics), changelog=changelog(man, previous_manifest(releases, cfg.version)),
            labeled_md5=file_digest(labeled, "md5"), labeled_path=labeled.as_posix(),
            guidelines=guidelines_text, guidelines_path=GUIDELINES if guidelines_text is not None else None,
            figure=FIGURE,
        )
        (tmp / "README.md").write_text(card.render(context), encoding="utf-8")
        write_manifest(tmp / MANIFEST, man)
        if output.exists():
            shutil.rmtree(output)
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return man


# ---------------------------------------------------------------- push


def hf_token(env_file: Path = Path(".env")) -> str:
    """HF_TOKEN from the environment or the git-ignored .env file; one-line error when missing."""
    token = os.environ.get("HF_TOKEN")
    if not token and env_file.is_file():
        token = read_env_file(env_file).get("HF_TOKEN")
    if not token:
        raise ConfigError("HF_TOKEN is not set: export HF_TOKEN=... or add it to .env (never to params.yaml)")
    return token


def upload_plan(folder: Path, repo_id: str, version: str) -> list[str]:
    """Lines describing what a push would upload: repo, tag, then each file with its size."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    lines = [f"repo: {repo_id} (dataset)", f"tag: v{version}", f"files: {len(files)}, {total:,} bytes"]
    lines += [f"  {p.relative_to(folder).as_posix()}  {p.stat().st_size:,} bytes" for p in files]
    return lines


def push(folder: Path, repo_id: str, man: dict[str, Any], releases: Path) -> None:
    """Upload the folder to a Hub dataset repo, tag it with the version and record its manifest in `releases`."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    version = man["version"]
    record = releases / f"manifest-{version}.json"
    if record.is_file() and read_manifest(record).get("files") != man["files"]:
        raise ConfigError(f"version {version} was already published with other content: bump publish.version")
    api = HfApi(token=hf_token())
    try:
        api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
        api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=folder,
                          commit_message=f"Release {version}", delete_patterns=["*.parquet", "**/*.parquet", "*.png"])
        api.create_tag(repo_id, tag=f"v{version}", repo_type="dataset", exist_ok=record.is_file(),
                       tag_message=f"Dataset version {version}")
    except (HfHubHTTPError, OSError) as exc:
        raise PipelineError(f"push to {repo_id} failed: {str(exc).splitlines()[0]}") from None
    write_manifest(record, man)
    print(f"{STAGE}: pushed {folder} to {repo_id} as v{version}; recorded {record}", file=sys.stderr)


def load_config(params: Path) -> PublishConfig:
    """The `publish:` section with the label sets (entity labels, stance ends, stance labels) of `preannotate:`."""
    return stage_config(PublishConfig, STAGE, params)


def main(input: Path, output: Path, params: Path, metrics: Path | None, releases: Path, guidelines: Path | None,
         push_to: str | None, dry_run: bool) -> None:
    """Build the dataset folder; with `push_to`, upload it (or with `dry_run`, list what would be uploaded)."""
    cfg = load_config(params)
    if dry_run and not push_to:
        raise ConfigError("--dry-run only makes sense with --push REPO_ID")
    if push_to and not dry_run:
        hf_token()  # fail before the build when the token is missing
    man = build(input, output, cfg, metrics=metrics, releases=releases, guidelines=guidelines)
    rows = {c: sum(s.values()) for c, s in man["rows"].items()}
    print(f"{STAGE}: wrote {output} v{cfg.version}: " + ", ".join(f"{c} {n}" for c, n in sorted(rows.items())),
          file=sys.stderr)
    if push_to and dry_run:
        print("dry run: nothing uploaded, no tag created")
        print("\n".join(upload_plan(output, push_to, cfg.version)))
    elif push_to:
        push(output, push_to, man, releases)

