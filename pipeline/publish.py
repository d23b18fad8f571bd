"""Publish data/labeled.jsonl as a Hub-ready Hugging Face dataset folder, and optionally push it.

Three configs (`articles`, `entities`, `stance`) of human-annotated (gold) rows, with the machine-only
(silver) rows in separate configs suffixed `_silver`; Parquet files per config and split, a dataset
card generated from the pipeline's records (pipeline/card.py), an actor-by-actor stance figure and a
manifest for the changelog of the next version. Rebuilding from the same inputs gives identical bytes.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import from_mapping, load_params
from pipeline.errors import BadRecords, ConfigError, InputError, PipelineError
from pipeline.jsonl import read_jsonl
from pipeline.provenance import file_digest

STAGE = "publish"
SPLITS = ("train", "validation", "test")
STANCE_CLASSES = ("none", "against", "favor")
CONFIGS = ("articles", "entities", "stance")
SILVER = "_silver"
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 9, "use_dictionary": True,
                   "write_statistics": True, "version": "2.6", "data_page_version": "1.0"}
FIGURE = "stance_by_actor.png"
MANIFEST = "manifest.json"
# The annotation guidelines travel with the data, so the card can link them on the Hub.
GUIDELINES = "guidelines.md"


@dataclass(frozen=True)
class PublishConfig:
    """The `publish:` section of params.yaml, plus the label set owned by `preannotate:` (one source of truth)."""

    version: str
    pretty_name: str
    license: str
    license_name: str
    max_candidates_per_sentence: int
    figure_max_actors: int
    max_bad_share: float
    entity_labels: tuple[str, ...]  # from preannotate.entity_labels: the labels Label Studio offers
    stance_ends: tuple[str, ...]  # from preannotate.stance_ends: labels a stance holder or target may have

    def validate(self) -> str | None:
        if not SEMVER.match(self.version):
            return f"version must be a semantic version MAJOR.MINOR.PATCH, got {self.version!r}"
        if len(set(self.entity_labels)) != len(self.entity_labels) or not self.entity_labels:
            return "preannotate.entity_labels must be a non-empty list without duplicates"
        if unknown := set(self.stance_ends) - set(self.entity_labels):
            return f"preannotate.stance_ends {sorted(unknown)} are not in preannotate.entity_labels"
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
            "label": ClassLabel(names=list(STANCE_CLASSES)),
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
        row["label"] = STANCE_CLASSES.index(labelled.get((h, t), "none"))
        rows.append(row)
    yield from sorted(rows, key=lambda r: r["id"])


# ---------------------------------------------------------------- input


def check_record(rec: dict[str, Any], cfg: PublishConfig) -> str | None:
    """Why a labeled.jsonl record can't be published, or None."""
    for key, tp in (("id", str), ("text", str), ("split", str), ("status", str), ("entities", list),
                    ("stances", list), ("sentences", list)):
        if not isinstance(rec.get(key), tp):
            return f"field {key!r} missing or not a {tp.__name__}"
    if rec["split"] not in SPLITS or rec["status"] not in ("gold", "silver"):
        return f"unknown split {rec['split']!r} or status {rec['status']!r}"
    labels = set(cfg.entity_labels)
    for e in rec["entities"]:
        if e.get("label") not in labels:
            return f"entity label {e.get('label')!r} is not in preannotate.entity_labels"
        if not 0 <= e["start"] < e["end"] <= len(rec["text"]):
            return f"entity offsets {e['start']}-{e['end']} out of range"
    n = len(rec["entities"])
    for s in rec["stances"]:
        if not (0 <= s.get("holder", -1) < n and 0 <= s.get("target", -1) < n) or s.get("label") not in STANCE_CLASSES[1:]:
            return f"bad stance {s!r}"
    return None


def load_labeled(path: Path, cfg: PublishConfig) -> list[dict[str, Any]]:
    """Publishable records of labeled.jsonl sorted by id; bad ones are reported, skipped and counted."""
    bad = BadRecords(STAGE, cfg.max_bad_share)
    records, total = [], 0
    for lineno, rec in read_jsonl(path, bad):
        total += 1
        if problem := check_record(rec, cfg):
            bad.add(f"{path}:{lineno}", problem)
            continue
        records.append(rec)
    bad.check(total)
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
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


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
                               "text_sha256": hashlib.sha256(r["text"].encode()).hexdigest()[:16]} for r in records},
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
    path = max(found)[1]
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON: {exc.msg}") from None


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
    """The evaluate stage's metrics/*.json, by file stem (empty when the folder is absent)."""
    out: dict[str, Any] = {}
    if folder is None or not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: invalid JSON: {exc.msg}") from None
    return out


def build(labeled: Path, output: Path, cfg: PublishConfig, *, metrics: Path | None, releases: Path,
          guidelines: Path | None) -> dict[str, Any]:
    """Build the dataset folder at `output` (atomically replaced) and return its manifest."""
    from pipeline import card

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
        files = {p.relative_to(tmp).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
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
        (tmp / MANIFEST).write_text(json.dumps(man, indent=2, sort_keys=True) + "\n", encoding="utf-8")
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
        from dotenv import dotenv_values

        token = dotenv_values(env_file).get("HF_TOKEN")
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
    if record.is_file() and json.loads(record.read_text(encoding="utf-8")).get("files") != man["files"]:
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
    releases.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(man, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{STAGE}: pushed {folder} to {repo_id} as v{version}; recorded {record}", file=sys.stderr)


def load_config(params: Path) -> PublishConfig:
    """The `publish:` section with the entity label set and stance ends of the `preannotate:` section."""
    raw = load_params(params)
    own, pre = raw.get(STAGE), raw.get("preannotate")
    if not isinstance(own, dict) or not isinstance(pre, dict):
        raise ConfigError(f"{params}: sections 'publish' and 'preannotate' must both be mappings")
    if clash := sorted({"entity_labels", "stance_ends"} & set(own)):
        raise ConfigError(f"{params}:publish: {', '.join(clash)} come from the preannotate section; remove them here")
    merged = {**own, **{k: pre.get(k) for k in ("entity_labels", "stance_ends")}}
    return from_mapping(PublishConfig, merged, f"{params}:{STAGE}")


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


def preannotation_quality(gold: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Entity and stance precision/recall/F1 of the model's proposals against the final gold labels, via pipeline.scoring."""
    from pipeline import scoring

    return scoring.preannotation_quality(
        [(r["predictions"], {"entities": r["entities"], "stances": r["stances"]}) for r in gold]
    )
