"""Human gold annotations: YAML anchored by quoted sentences, resolved to character offsets in cleaned articles.

A gold file (``gold/<corpus file stem>.yaml``) lists, per sentence of one article, the entity mentions
and the stances between them, by quoting text rather than by offsets, so that the gold survives changes
to the cleaning (whitespace, quotes, removed furniture lines)::

    source_file: 000_26aa7dedf783269b.txt
    sentences:
      - sentence: "Blinken warned of the possibility that “Moscow is preparing for a provocation"
        entities:
          - [Blinken, PERSON, USA]        # text, label, actor (optional)
          - [Moscow, GPE, RUS]
        stances:
          - [Blinken, against, Moscow]    # holder, label, target: entity texts of this sentence
        skip: []                          # texts here that are deliberately not entities

`sentence` must occur exactly once in the article; each entity text must occur exactly once, as a whole
word, inside it, or carry ``#n`` (the n-th whole-word occurrence, from 1). Matching ignores differences
of whitespace, quote and dash style. Every other whole-word occurrence, anywhere in the article, of any
text tagged in any gold file must be tagged too or listed under `skip`, so that no mention is forgotten.
Entity and stance labels are those of params.yaml (`preannotate.entity_labels`, `preannotate.stance_labels`),
which the gold shares with the pre-annotations it scores.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.common.config import DEFAULT_PARAMS, BoundedLoader, key_problem, load_yaml
from pipeline.common.contract import LabelSets, label_sets
from pipeline.common.errors import InputError
from pipeline.common.jsonl import write_jsonl
from pipeline.common.shards import read_objects

_ACTOR = re.compile(r"^[A-Z][A-Z0-9_]*$")
_NTH = re.compile(r"^(?P<text>.+?)#(?P<n>[1-9][0-9]*)$")

# Characters that cleaning may change one for another; each maps to its plain form for matching.
_PLAIN = {
    "“": '"', "”": '"', "„": '"', "‟": '"', "«": '"', "»": '"',
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "`": "'",
    "–": "-", "—": "-", "‐": "-", "‑": "-", "−": "-",
    "…": "...",
}


class GoldError(InputError):
    """A gold entry that cannot be resolved; the message names the gold file, line and entry."""


@dataclass(frozen=True)
class _Where:
    path: Path
    line: int | None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else str(self.path)


class _LineList(list):
    """A YAML sequence that remembers the line it starts on."""

    line: int | None = None


class _LineDict(dict):
    """A YAML mapping that remembers the line it starts on."""

    line: int | None = None


class _Loader(BoundedLoader):
    """Safe YAML loader (bounded: config.BoundedLoader) whose lists and mappings carry their source line."""

    def construct_yaml_seq(self, node: yaml.SequenceNode) -> Iterator[list]:  # type: ignore[override]
        data = _LineList()
        data.line = node.start_mark.line + 1
        yield data
        data.extend(self.construct_sequence(node))

    def construct_yaml_map(self, node: yaml.MappingNode) -> Iterator[dict]:  # type: ignore[override]
        data = _LineDict()
        data.line = node.start_mark.line + 1
        yield data
        data.update(self.construct_mapping(node))


_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_yaml_seq)
_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_yaml_map)


class _Plain:
    """A text in plain form (see `_PLAIN`, whitespace runs collapsed) with a map back to original offsets."""

    def __init__(self, text: str) -> None:
        chars: list[str] = []
        index: list[int] = []
        space = False
        for i, ch in enumerate(text):
            if ch.isspace():
                if space:
                    continue
                space, ch = True, " "
            else:
                space = False
            for out in _PLAIN.get(ch, ch):
                chars.append(out)
                index.append(i)
        self.text = "".join(chars)
        self._index = index
        self._end = len(text)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original offsets of the plain-text span [start, end)."""
        return self._index[start], (self._index[end - 1] + 1) if end > start else self._index[start]


def plain(text: str) -> str:
    """The plain form of a text used for anchor matching."""
    return _Plain(text).text.strip()


def _words(pattern: str, text: str, start: int = 0, end: int | None = None) -> list[int]:
    """Start offsets of whole-word occurrences of `pattern` in `text` that lie within [start, end)."""
    rx = re.compile(r"(?<!\w)" + re.escape(pattern) + r"(?!\w)")
    end = len(text) if end is None else end
    return [m.start() for m in rx.finditer(text) if start <= m.start() and m.end() <= end]


def _occurrences(needle: str, text: str) -> list[int]:
    """Start offsets of every (possibly overlapping) occurrence of `needle` in `text`."""
    found, i = [], text.find(needle)
    while i >= 0:
        found.append(i)
        i = text.find(needle, i + 1)
    return found


def _short(text: str, n: int = 50) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def read_gold_files(path: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Parse one gold YAML file, or every *.yaml in a folder (sorted), into (path, document) pairs."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        if not files:
            raise GoldError(f"{path}: no gold .yaml files")
    elif path.exists():
        files = [path]
    else:
        raise GoldError(f"{path}: gold file or folder not found")
    docs = []
    for file in files:
        try:
            doc = load_yaml(file, _Loader, GoldError)
        except UnicodeDecodeError as exc:
            raise GoldError(f"{file}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise GoldError(f"{file}: cannot read ({exc.strerror or exc})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("source_file"), str):
            raise GoldError(f"{file}: expected a mapping with 'source_file' and 'sentences'")
        if problem := key_problem(doc):
            raise GoldError(f"{file}: {problem}")
        unknown = sorted(set(doc) - {"source_file", "sentences", "notes"})
        if unknown:
            raise GoldError(f"{file}: unknown key(s) {', '.join(unknown)}")
        if not isinstance(doc.get("sentences"), list):
            raise GoldError(f"{file}: 'sentences' must be a list")
        docs.append((file, doc))
    return docs


@dataclass(frozen=True)
class _Sentence:
    """One gold sentence block located in its article's plain text (offsets of the sentence in `norm.text`)."""

    file: Path
    where: _Where
    label: str
    norm: _Plain
    start: int
    end: int

    def locate(self, key: Any, line: int | None, what: str) -> tuple[int, int]:
        """Original-text offsets of `key` ("text" or "text#n") inside this sentence; a GoldError if not unique."""
        at = _Where(self.file, line or self.where.line)
        if not isinstance(key, str) or not key.strip():
            raise GoldError(f"{at}: {self.label}: {what} must be a non-empty string, got {key!r}")
        m = _NTH.match(key)
        needle, nth = (m["text"], int(m["n"])) if m else (key, None)
        needle = plain(needle)
        found = _words(needle, self.norm.text, self.start, self.end)
        if nth is None and len(found) != 1:
            problem = "not found" if not found else f"occurs {len(found)} times; write '{key}#n'"
            raise GoldError(f"{at}: {self.label}: {what} {key!r} {problem}")
        if nth is not None and nth > len(found):
            raise GoldError(f"{at}: {self.label}: {what} {key!r}: only {len(found)} occurrence(s)")
        start = found[(nth or 1) - 1]
        return self.norm.span(start, start + len(needle))


def resolve(
    file: Path, doc: Mapping[str, Any], article: Mapping[str, Any], labels: LabelSets
) -> tuple[dict[str, Any], list]:
    """Resolve one gold document against its article into a record, plus its skip spans (original offsets)."""
    text, rid = article.get("text"), article.get("id")
    if not isinstance(text, str):
        raise GoldError(f"{file}: article {doc['source_file']!r} has no 'text' (got {text!r})")
    if not isinstance(rid, str | int) or isinstance(rid, bool):
        raise GoldError(f"{file}: article {doc['source_file']!r} has no 'id' (got {rid!r})")
    norm = _Plain(text)
    entities: list[dict[str, Any]] = []
    stances: list[tuple[int, int, str, _Where]] = []
    skips: list[tuple[int, int]] = []
    for block in doc["sentences"]:
        where = _Where(file, getattr(block, "line", None))
        if not isinstance(block, dict) or not isinstance(block.get("sentence"), str):
            raise GoldError(f"{where}: each sentences entry needs a 'sentence' string")
        if problem := key_problem(block):
            raise GoldError(f"{where}: {problem}")
        unknown = sorted(set(block) - {"sentence", "entities", "stances", "skip"})
        if unknown:
            raise GoldError(f"{where}: unknown key(s) {', '.join(unknown)}")
        anchor = plain(block["sentence"])
        label = f"sentence {_short(anchor)!r}"
        hits = _occurrences(anchor, norm.text) if anchor else []
        if len(hits) != 1:
            found = "not found in" if not hits else f"found {len(hits)} times in"
            raise GoldError(f"{where}: {label} {found} article {article.get('source_file')} ({article.get('id')})")
        s_start, s_end = hits[0], hits[0] + len(anchor)
        for key in ("entities", "stances", "skip"):
            if not isinstance(block.get(key) or [], list):
                raise GoldError(f"{where}: {label}: '{key}' must be a list, got {block[key]!r}")

        sentence = _Sentence(file, where, label, norm, s_start, s_end)
        local: dict[str, int] = {}
        for item in block.get("entities") or []:
            at = _Where(file, getattr(item, "line", None) or where.line)
            if not isinstance(item, list) or len(item) not in (2, 3):
                raise GoldError(f"{at}: {label}: entity must be [text, LABEL] or [text, LABEL, ACTOR], got {item!r}")
            key, ent_label, actor = item[0], item[1], item[2] if len(item) == 3 else None
            if not isinstance(key, str) or not key.strip():
                raise GoldError(f"{at}: {label}: entity text must be a non-empty string, got {key!r}")
            if not isinstance(ent_label, str) or ent_label not in labels.entity_labels:
                raise GoldError(f"{at}: {label}: entity {key!r}: label {ent_label!r} not in "
                                f"{', '.join(labels.entity_labels)} (preannotate.entity_labels)")
            if actor is not None and not (isinstance(actor, str) and _ACTOR.match(actor)):
                raise GoldError(f"{at}: {label}: entity {key!r}: actor {actor!r} is not an upper-case id")
            if key in local:
                raise GoldError(f"{at}: {label}: entity {key!r} listed twice")
            start, end = sentence.locate(key, at.line, "entity")
            local[key] = len(entities)
            entities.append({"start": start, "end": end, "label": ent_label, "text": text[start:end], "actor": actor,
                             "_where": at})
        for item in block.get("stances") or []:
            at = _Where(file, getattr(item, "line", None) or where.line)
            if not isinstance(item, list) or len(item) != 3:
                raise GoldError(f"{at}: {label}: stance must be [holder, label, target], got {item!r}")
            holder, st_label, target = item
            if not isinstance(st_label, str) or st_label not in labels.stance_labels:
                raise GoldError(f"{at}: {label}: stance label {st_label!r} not in "
                                f"{', '.join(labels.stance_labels)} (preannotate.stance_labels)")
            for end_name, ref in (("holder", holder), ("target", target)):
                if not isinstance(ref, str):
                    raise GoldError(f"{at}: {label}: stance {end_name} must be an entity text (a string), got {ref!r}")
                if ref not in local:
                    raise GoldError(f"{at}: {label}: stance {end_name} {ref!r} is not an entity of this sentence")
            if holder == target:
                raise GoldError(f"{at}: {label}: stance holder and target are the same mention {holder!r}")
            stances.append((local[holder], local[target], st_label, at))
        for key in block.get("skip") or []:
            skips.append(sentence.locate(key, getattr(block.get("skip"), "line", None), "skip"))
    return _finish(article, entities, stances), skips


def _finish(article: Mapping[str, Any], entities: list[dict], stances: list[tuple]) -> dict[str, Any]:
    """Sort entities, reject overlaps and duplicate stances, and renumber stance ends."""
    order = sorted(range(len(entities)), key=lambda i: (entities[i]["start"], entities[i]["end"]))
    new_index = {old: new for new, old in enumerate(order)}
    ordered = [entities[i] for i in order]
    for a, b in itertools.pairwise(ordered):
        if b["start"] < a["end"]:
            raise GoldError(f"{b['_where']}: entity {b['text']!r} overlaps {a['text']!r} (listed at {a['_where']})")
    seen: dict[tuple[int, int], str] = {}
    out_stances = []
    for h, t, label, at in stances:
        pair = (new_index[h], new_index[t])
        if pair in seen:
            raise GoldError(f"{at}: stance {ordered[pair[0]]['text']!r} -> {ordered[pair[1]]['text']!r} given twice")
        seen[pair] = label
        out_stances.append({"holder": pair[0], "target": pair[1], "label": label})
    out_stances.sort(key=lambda s: (s["holder"], s["target"]))
    clean = [{k: v for k, v in e.items() if k != "_where"} for e in ordered]
    return {"id": article["id"], "text": article["text"], "entities": clean, "stances": out_stances}


def check_complete(records: list[tuple[Path, dict[str, Any], list]]) -> None:
    """Fail when a text tagged somewhere in the gold occurs untagged (and not skipped) in any gold article."""
    forms = sorted({e["text"] for _, rec, _ in records for e in rec["entities"]}, key=len, reverse=True)
    for file, rec, skips in records:
        covered = [(e["start"], e["end"]) for e in rec["entities"]] + skips
        text = rec["text"]
        for form in forms:
            for start in _words(form, text):
                end = start + len(form)
                if not any(s < end and start < e for s, e in covered):
                    line = text.count("\n", 0, start) + 1
                    context = text[max(0, start - 30): end + 30].replace("\n", " ")
                    raise GoldError(
                        f"{file}: {form!r} at text line {line} ({context!r}) is tagged elsewhere in the gold but not "
                        f"here; tag it or add it to that sentence's 'skip'"
                    )


def load_gold(
    path: Path, articles: Iterable[Mapping[str, Any]], labels: LabelSets | None = None
) -> Iterator[dict[str, Any]]:
    """Yield one gold record per gold file, in the preannotate contract form, resolved against `articles`.

    `labels` default to those of ./params.yaml (`contract.label_sets`), where every command runs.
    """
    labels = label_sets(DEFAULT_PARAMS) if labels is None else labels
    by_source: dict[str, Mapping[str, Any]] = {}
    for article in articles:
        source = article.get("source_file")
        if isinstance(source, str):
            by_source[source] = article
    resolved = []
    for file, doc in read_gold_files(path):
        found = by_source.get(doc["source_file"])
        if found is None:
            raise GoldError(f"{file}: source_file {doc['source_file']!r} is not among the articles")
        record, skips = resolve(file, doc, found, labels)
        resolved.append((file, record, skips))
    check_complete(resolved)
    for _, record, _ in resolved:
        yield record


def main(gold: Path, articles: Path, output: Path, params: Path = DEFAULT_PARAMS) -> int:
    """Resolve the gold folder against data/articles/ and write data/gold.jsonl; return the record count."""
    labels = label_sets(params)
    records = list(load_gold(gold, read_objects(articles), labels))
    n = write_jsonl(output, records)
    ents = sum(len(r["entities"]) for r in records)
    stances = sum(len(r["stances"]) for r in records)
    print(f"gold: {n} articles, {ents} entities, {stances} stances -> {output}")
    return n
