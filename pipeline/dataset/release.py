"""Versions of the dataset: the manifest of what a version contains, recorded releases and the changelog between them."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pipeline.common.errors import InputError
from pipeline.common.jsonl import read_json, write_json
from pipeline.common.provenance import sha256_text

SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")  # use with fullmatch: "$" lets a final "\n" through
MANIFEST = "manifest.json"


def labels_digest(rec: dict[str, Any]) -> str:
    """Short hash of an article's final labels, to tell changed articles between versions."""
    payload = {"status": rec["status"], "split": rec["split"],
               "entities": [[e["start"], e["end"], e["label"], e.get("actor")] for e in rec["entities"]],
               "stances": [[s["holder"], s["target"], s["label"]] for s in rec["stances"]]}
    return sha256_text(json.dumps(payload, sort_keys=True))[:16]


def release_fields(rec: dict[str, Any]) -> dict[str, str]:
    """What the manifest keeps of an article's labels and text, computed while the whole record is at hand."""
    return {"labels_digest": labels_digest(rec), "text_sha256": sha256_text(rec["text"])[:16]}


def manifest(records: Collection[dict[str, Any]], version: str, files: dict[str, str]) -> dict[str, Any]:
    """What this version contains: per article status, split and label digest; label counts; file hashes.

    `records` are article summaries carrying release_fields (publish.summarize), not whole records.
    """
    counts: dict[str, Counter[str]] = {"entities": Counter(), "stances": Counter()}
    for rec in records:
        if rec["status"] == "gold":
            counts["entities"].update(e["label"] for e in rec["entities"])
            counts["stances"].update(s["label"] for s in rec["stances"])
    return {
        "version": version,
        "articles": {r["id"]: {"status": r["status"], "split": r["split"], "labels": r["labels_digest"],
                               "text_sha256": r["text_sha256"]} for r in records},
        "gold_label_counts": {k: dict(sorted(v.items())) for k, v in counts.items()},
        "files": dict(sorted(files.items())),
    }


def version_key(version: str) -> tuple[int, ...]:
    """MAJOR.MINOR.PATCH as a tuple of ints, so versions compare numerically."""
    return tuple(int(x) for x in version.split("."))


def previous_manifest(releases: Path, version: str) -> dict[str, Any] | None:
    """The recorded manifest of the highest published version below `version`, or None."""
    found = []
    for path in releases.glob("manifest-*.json") if releases.is_dir() else ():
        v = path.stem.removeprefix("manifest-")
        if SEMVER.fullmatch(v) and version_key(v) < version_key(version):
            found.append((version_key(v), path))
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
