"""re3d (dstl/re3d, defence and security news) as an outside check of entities and stances: data, split, scores.

A re3d folder holds one sub-folder per source, each with `documents.json`, `entities.json` and
`relations.json` (mongoexport: one JSON object per line, maybe with a UTF-8 byte-order mark). Offsets
(`begin`/`end`, `sourceBegin`/`sourceEnd`, `targetBegin`/`targetEnd`) are document-level character offsets
into the document's `text`; a relation's `begin`/`end` is its trigger span.

Stance relations become the project's labels (`STANCE_TYPES`): FightingAgainst, Dislikes -> against;
AlliesOf, Likes -> favor. Gold stances are kept once per document and (source span, target span, label)
(two types on one pair merge); a relation whose ends are one span, or whose IBCC `confidence` is below
`min_confidence` (the crowd rejected it), is dropped. A gold stance is *reachable* when both ends have a
re3d type the project proposes (`TYPE_MAP`) and are named (`is_named`).

Matching (`match_stances`): a predicted holder -> target matches a gold source -> target when the spans
overlap pairwise ("overlap"), or also end in the same word ("head"); pairs are one to one; "strict"
needs the label. Precision counts every prediction; recall is over all gold and over reachable gold.
Entities (`score_entities`): exact span, overlap, or overlap with any label ("span"), one to one.
The split is by document id alone (`part_of`), stable whatever documents are added. Evaluation data
only: nothing of re3d's text may be copied into the project. No spaCy here: the runs are in `re3d_eval`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.common.errors import ConfigError, InputError

STANCE_TYPES: Mapping[str, str] = {"FightingAgainst": "against", "Dislikes": "against", "AlliesOf": "favor", "Likes": "favor"}
TYPE_MAP: Mapping[str, tuple[str, ...]] = {
    "Person": ("PERSON",), "Organisation": ("ORG",), "Location": ("GPE", "LOC"), "Nationality": ("NORP",),
}
PARTS = ("tune", "heldout")
TUNE_SHARE = 0.4
MIN_CONFIDENCE = 0.5
MATCH_MODES = ("overlap", "head")
ENTITY_MODES = ("exact", "overlap", "span")
# Capitalised words that are never a name: determiners, pronouns, question words.
FUNCTION_WORDS = frozenset({
    "the", "a", "an", "this", "that", "these", "those", "he", "she", "it", "they", "we", "i", "you", "him", "her",
    "them", "us", "his", "hers", "its", "their", "our", "my", "your", "who", "whom", "which", "what", "some", "all",
    "both", "each", "such", "other", "another",
})
_WORD = re.compile(r"[^\W_]+(?:[.'’][^\W_]+)*\.?")

Span = tuple[int, int]


@dataclass(frozen=True)
class GoldEntity:
    """A gold entity: document offsets, its re3d type(s) (one span may carry two) and text."""

    begin: int
    end: int
    types: tuple[str, ...]
    text: str

    @property
    def labels(self) -> frozenset[str]:
        """The project labels this entity accepts (empty for types the project does not propose)."""
        return frozenset(label for t in self.types for label in TYPE_MAP.get(t, ()))


@dataclass(frozen=True)
class GoldStance:
    """A gold stance source -> target (document offsets), its label, re3d types, trigger span and reach."""

    source: Span
    target: Span
    label: str
    types: tuple[str, ...]
    trigger: Span
    reachable: bool = False
    why_unreachable: str = ""  # "" | "type" (an end of a type the project does not propose) | "unnamed"


@dataclass(frozen=True)
class Re3dDoc:
    """One re3d document: its source folder, text, gold entities, gold stances and every relation."""

    id: str
    source: str
    text: str
    entities: tuple[GoldEntity, ...]
    stances: tuple[GoldStance, ...]
    relations: tuple[tuple[Span, Span, str], ...] = ()  # (source, target, re3d type) of every relation


@dataclass
class LoadReport:
    """What `load_documents` read, kept and dropped."""

    relations: int = 0
    stance_relations: int = 0
    duplicates: int = 0  # same document, source span, target span and label as a kept stance
    self_pairs: int = 0
    low_confidence: int = 0
    same_text_repeats: int = 0  # kept stances repeating another's (source text, target text, label) in a document
    value_mismatch: int = 0  # spans whose text differs from re3d's `value` (quotes or line breaks normalised)


def _read_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """The JSON objects of a mongoexport file, each with its `file:line`; BOM-safe; one-line errors."""
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    out = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        out.append((f"{path}:{lineno}", obj))
    return out


def _str(obj: Mapping[str, Any], key: str, where: str) -> str:
    """obj[key] as a string, or a one-line InputError naming `where`."""
    value = obj.get(key)
    if not isinstance(value, str):
        raise InputError(f"{where}: field {key!r} missing or not a string")
    return value


def _span(obj: Mapping[str, Any], b: str, e: str, text: str, where: str) -> Span:
    """A (begin, end) pair of document offsets, checked against the text."""
    begin, end = obj.get(b), obj.get(e)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (begin, end)):
        raise InputError(f"{where}: fields {b!r}/{e!r} missing or not integers")
    assert isinstance(begin, int) and isinstance(end, int)
    if not 0 <= begin <= end <= len(text):
        raise InputError(f"{where}: {b}/{e} {begin}..{end} outside the document's {len(text)} characters")
    return begin, end


def is_named(text: str, span: Span) -> bool:
    """Whether a span holds a name: a capitalised word (no function word) the document never writes in lower case."""
    for m in _WORD.finditer(text, span[0], span[1]):
        word = m.group()
        if not any(c.isupper() for c in word) or (word.lower() in FUNCTION_WORDS and (len(word) == 1 or not word.isupper())):
            continue  # "The", "They", "I" are no names; "US" is
        if word.isupper() or any(c.isupper() for c in word[1:]) or "." in word:
            return True  # acronyms, CamelCase, "U.S."
        if not re.search(rf"(?<![^\W_]){re.escape(word.lower())}(?![^\W_])", text):
            return True
    return False


def _gold_stance(obj: Mapping[str, Any], text: str, where: str, types: Mapping[Span, list[str]]) -> GoldStance:
    """The gold stance of one stance relation, with its reach."""
    src = _span(obj, "sourceBegin", "sourceEnd", text, where)
    tgt = _span(obj, "targetBegin", "targetEnd", text, where)
    trigger = _span(obj, "begin", "end", text, where)
    typed = all(any(t in TYPE_MAP for t in types.get(end, ())) for end in (src, tgt))
    named = is_named(text, src) and is_named(text, tgt)
    why = "" if typed and named else ("type" if not typed else "unnamed")
    return GoldStance(src, tgt, STANCE_TYPES[obj["type"]], (obj["type"],), trigger, not why, why)


def _load_folder(folder: Path, min_confidence: float, rep: LoadReport, seen: dict[str, str]) -> list[Re3dDoc]:
    """The documents of one source folder with their gold."""
    texts: dict[str, str] = {}
    for where, obj in _read_lines(folder / "documents.json"):
        did = _str(obj, "_id", where)
        if did in seen:
            raise InputError(f"{where}: duplicate document id {did[:40]!r} (also in {seen[did]})")
        seen[did], texts[did] = folder.name, _str(obj, "text", where)

    def doc_of(obj: Mapping[str, Any], where: str) -> str:
        did = _str(obj, "documentId", where)
        if did not in texts:
            raise InputError(f"{where}: documentId {did[:40]!r} is not in {folder / 'documents.json'}")
        return did

    types: dict[str, dict[Span, list[str]]] = {d: {} for d in texts}
    for where, obj in _read_lines(folder / "entities.json"):
        did = doc_of(obj, where)
        span, etype = _span(obj, "begin", "end", texts[did], where), _str(obj, "type", where)
        if etype not in (known := types[did].setdefault(span, [])):
            known.append(etype)
        rep.value_mismatch += texts[did][span[0] : span[1]] != obj.get("value")
    kept: dict[str, dict[tuple[Span, Span, str], GoldStance]] = {d: {} for d in texts}
    others: dict[str, set[tuple[Span, Span, str]]] = {d: set() for d in texts}
    for where, obj in _read_lines(folder / "relations.json"):
        rep.relations += 1
        did, rtype = doc_of(obj, where), _str(obj, "type", where)
        text = texts[did]
        if rtype not in STANCE_TYPES:
            src, tgt = _span(obj, "sourceBegin", "sourceEnd", text, where), _span(obj, "targetBegin", "targetEnd", text, where)
            others[did].add((src, tgt, rtype))
            continue
        rep.stance_relations += 1
        g = _gold_stance(obj, text, where, types[did])
        rep.value_mismatch += (text[slice(*g.source)] != obj.get("source")) + (text[slice(*g.target)] != obj.get("target"))
        conf = obj.get("confidence", 1)
        if not isinstance(conf, int | float) or isinstance(conf, bool):
            raise InputError(f"{where}: field 'confidence' is not a number")
        if conf < min_confidence:
            rep.low_confidence += 1
        elif g.source == g.target:
            rep.self_pairs += 1
        elif (old := kept[did].get(key := (g.source, g.target, g.label))) is not None:
            rep.duplicates += 1
            kept[did][key] = replace(old, types=tuple(dict.fromkeys((*old.types, rtype))))
        else:
            kept[did][key] = g
    docs = []
    for did, text in texts.items():
        stances = sorted(kept[did].values(), key=lambda s: (s.source, s.target, s.label))
        repeats = Counter((text[slice(*s.source)], text[slice(*s.target)], s.label) for s in stances)
        rep.same_text_repeats += sum(n - 1 for n in repeats.values())
        entities = tuple(GoldEntity(b, e, tuple(ts), text[b:e]) for (b, e), ts in sorted(types[did].items()))
        relations = tuple(sorted(others[did] | {(s.source, s.target, t) for s in stances for t in s.types}))
        docs.append(Re3dDoc(did, folder.name, text, entities, tuple(stances), relations))
    return docs


def load_documents(root: Path, min_confidence: float = MIN_CONFIDENCE) -> tuple[list[Re3dDoc], LoadReport]:
    """Every document of a re3d folder (one sub-folder per source, sorted) with its gold, and what was dropped."""
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if (p / "documents.json").is_file()) if root.is_dir() else []
    if not folders:
        raise ConfigError(f"{root}: not a re3d folder (no sub-folder with a documents.json)")
    rep, seen = LoadReport(), dict[str, str]()
    docs = [d for folder in folders for d in _load_folder(folder, min_confidence, rep, seen)]
    return docs, rep


def part_of(doc_id: str) -> str:
    """'tune' when sha256(doc_id)'s first 64 bits / 2**64 is below TUNE_SHARE, else 'heldout'."""
    return "tune" if int(hashlib.sha256(doc_id.encode()).hexdigest()[:16], 16) / 2**64 < TUNE_SHARE else "heldout"


def split(docs: Iterable[Re3dDoc]) -> dict[str, list[Re3dDoc]]:
    """The documents by part ('tune' about 40%, 'heldout' the rest), input order kept within each part."""
    out: dict[str, list[Re3dDoc]] = {p: [] for p in PARTS}
    for d in docs:
        out[part_of(d.id)].append(d)
    return out


def split_counts(docs: Sequence[Re3dDoc]) -> dict[str, int]:
    """Documents, gold stances and reachable gold stances of some documents."""
    return {"docs": len(docs), "stances": sum(len(d.stances) for d in docs),
            "reachable": sum(s.reachable for d in docs for s in d.stances)}


def prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    """Precision, recall, F1 (0.0 when undefined)."""
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def overlap(a: Span, b: Span) -> int:
    """Characters two spans share (<= 0 when disjoint)."""
    return min(a[1], b[1]) - max(a[0], b[0])


def last_word(text: str, span: Span) -> str:
    """The last word of a span, lower case, without a possessive 's or dots ('' if none)."""
    words = _WORD.findall(text, span[0], span[1])
    return re.sub(r"['’]s$", "", words[-1].lower()).replace(".", "") if words else ""


def ends_match(text: str, pred: Span, gold: Span, mode: str) -> int:
    """Characters a predicted and a gold end share when they match under `mode` ('overlap' | 'head'), else 0."""
    shared = overlap(pred, gold)
    if shared <= 0 or (mode == "head" and last_word(text, pred) != last_word(text, gold)):
        return 0
    return shared


def pair_up(cands: Iterable[tuple[int, int, int]]) -> dict[int, int]:
    """Greedy one-to-one pairing of (score, i, j) candidates, best score first, then earlier items."""
    out: dict[int, int] = {}
    used: set[int] = set()
    for _, i, j in sorted(cands, key=lambda c: (-c[0], c[1], c[2])):
        if i not in out and j not in used:
            out[i] = j
            used.add(j)
    return out


def predicted_stances(record: Mapping[str, Any]) -> list[tuple[Span, Span, str]]:
    """(holder span, target span, label) of a pre-annotated record's stances."""
    ents = record["entities"]
    return [((ents[s["holder"]]["start"], ents[s["holder"]]["end"]), (ents[s["target"]]["start"], ents[s["target"]]["end"]),
             s["label"]) for s in record["stances"]]


def match_stances(doc: Re3dDoc, record: Mapping[str, Any], mode: str = "overlap", labelled: bool = True) -> dict[int, int]:
    """One-to-one pairing predicted stance index -> gold stance index in one document."""
    cands = []
    for i, (h, t, label) in enumerate(predicted_stances(record)):
        for j, g in enumerate(doc.stances):
            if labelled and label != g.label:
                continue
            a, b = ends_match(doc.text, h, g.source, mode), ends_match(doc.text, t, g.target, mode)
            if a and b:
                cands.append((a + b, i, j))
    return pair_up(cands)


@dataclass
class StanceTally:
    """Stance counts of one system over some documents, for one match mode and labelling."""

    docs: int = 0
    gold: int = 0
    reachable: int = 0
    predicted: int = 0
    tp: int = 0
    tp_reachable: int = 0

    def scores(self) -> dict[str, float]:
        """P, recall and F1 over all gold and over reachable gold (same P)."""
        p, r, f = prf(self.tp, self.predicted, self.gold)
        _, rr, fr = prf(self.tp_reachable, self.predicted, self.reachable)
        return {"p": p, "r_all": r, "f1_all": f, "r_reach": rr, "f1_reach": fr}

    def as_dict(self) -> dict[str, Any]:
        """Counts and scores, for JSON."""
        return {"docs": self.docs, "gold": self.gold, "reachable": self.reachable, "predicted": self.predicted,
                "tp": self.tp, "tp_reachable": self.tp_reachable, **self.scores()}


def score_stances(pairs: Iterable[tuple[Re3dDoc, Mapping[str, Any]]], mode: str = "overlap",
                  labelled: bool = True) -> StanceTally:
    """Stance tally over (gold document, pre-annotated record) pairs."""
    if mode not in MATCH_MODES:
        raise ConfigError(f"stance match mode must be one of {', '.join(MATCH_MODES)}, not {mode!r}")
    t = StanceTally()
    for doc, record in pairs:
        m = match_stances(doc, record, mode, labelled)
        t.docs += 1
        t.gold += len(doc.stances)
        t.reachable += sum(s.reachable for s in doc.stances)
        t.predicted += len(record["stances"])
        t.tp += len(m)
        t.tp_reachable += sum(doc.stances[j].reachable for j in m.values())
    return t


def _entity_candidates(preds: Sequence[Mapping[str, Any]], gold: Sequence[GoldEntity], mode: str) -> list[tuple[int, int, int]]:
    """(score, prediction, gold) candidates for one document: exact spans first, then larger overlaps."""
    cands = []
    for i, p in enumerate(preds):
        ps = (p["start"], p["end"])
        for j, g in enumerate(gold):
            if mode != "span" and p["label"] not in g.labels:
                continue
            exact = ps == (g.begin, g.end)
            if mode == "exact" and exact:
                cands.append((1, i, j))
            elif mode != "exact" and (shared := overlap(ps, (g.begin, g.end))) > 0:
                cands.append((shared + (10**6 if exact else 0), i, j))
    return cands


def score_entities(pairs: Iterable[tuple[Re3dDoc, Mapping[str, Any]]], mode: str = "exact") -> dict[str, Any]:
    """Entity P/R/F1 ('exact' | 'overlap' | 'span' = overlap, any label), recall per gold type and of named gold."""
    if mode not in ENTITY_MODES:
        raise ConfigError(f"entity match mode must be one of {', '.join(ENTITY_MODES)}, not {mode!r}")
    tp = n_pred = n_gold = 0
    by_type: dict[str, Counter[str]] = {}
    named: Counter[str] = Counter()
    for doc, record in pairs:
        gold = [g for g in doc.entities if g.labels]
        hit = set(pair_up(_entity_candidates(record["entities"], gold, mode)).values())
        tp, n_pred, n_gold = tp + len(hit), n_pred + len(record["entities"]), n_gold + len(gold)
        for j, g in enumerate(gold):
            c = by_type.setdefault("/".join(t for t in g.types if t in TYPE_MAP), Counter())
            c["gold"], c["tp"] = c["gold"] + 1, c["tp"] + (j in hit)
            if is_named(doc.text, (g.begin, g.end)):
                named["gold"], named["tp"] = named["gold"] + 1, named["tp"] + (j in hit)
    p, r, f = prf(tp, n_pred, n_gold)
    return {"p": p, "r": r, "f1": f, "tp": tp, "predicted": n_pred, "gold": n_gold, "named_gold": named["gold"],
            "r_named": named["tp"] / named["gold"] if named["gold"] else 0.0,
            "r_by_type": {k: {"gold": c["gold"], "r": c["tp"] / c["gold"]} for k, c in sorted(by_type.items())}}
