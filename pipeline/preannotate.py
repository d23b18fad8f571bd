"""Pre-annotates articles with spaCy: entities, a domain layer, actor links and entity-to-entity stances.

All per-document work happens inside one spaCy pipeline component added after the model, so that
`n_process` parallelises it with the model and the main process only merges, caches and writes.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import sqlite3
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import spacy
from spacy.attrs import IDX, LENGTH, SENT_START
from spacy.language import Language
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc, Span
from spacy.util import filter_spans

from pipeline.common.config import from_mapping, read_yaml, section
from pipeline.common.errors import BadRecords, ConfigError
from pipeline.common.jsonl import dumps, read_jsonl, write_jsonl
from pipeline.common.provenance import code_revision, file_digest, sha256_text
from pipeline.stance.finder import find_stances
from pipeline.stance.lexicon import Lexicon, load_lexicon

STAGE = "preannotate"
# The modules whose code decides this stage's output: their hash is the recorded code revision and
# they are the stage's code deps in dvc.yaml (a test keeps the two lists equal).
CODE = ("preannotate.py", "stance/finder.py", "stance/lexicon.py", "stance/parse.py", "stance/holders.py",
        "stance/registry.py", "stance/scores.py", "stance/rules/verbs.py", "stance/rules/nouns.py",
        "stance/rules/adjectives.py", "stance/rules/prepositions.py", "stance/rules/speech_sentiment.py",
        "common/jsonl.py", "common/config.py", "common/errors.py", "common/provenance.py")
COMPONENT = "geonews_preannotate"
USER_DATA_KEY = "geonews_preannotate"
# A run of cached records is interrupted by an empty placeholder text every this many records, so the
# queue of records waiting for the model stays short however long the run of cached records is.
FLUSH_EVERY = 256


@dataclass(frozen=True)
class Params:
    """The `preannotate:` section of params.yaml."""

    model: str
    entity_labels: tuple[str, ...]
    stance_ends: tuple[str, ...]
    stance_labels: tuple[str, ...]
    batch_size: int
    n_process: int
    max_bad_share: float

    def validate(self) -> str | None:
        """Cross-field checks."""
        if not self.entity_labels:
            return "entity_labels must not be empty"
        if extra := sorted(set(self.stance_ends) - set(self.entity_labels)):
            return f"stance_ends {extra} are not in entity_labels"
        if self.batch_size < 1 or self.n_process < 1:
            return "batch_size and n_process must be at least 1"
        if not 0.0 <= self.max_bad_share <= 1.0:
            return "max_bad_share must be between 0 and 1"
        return None


# --- rule files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    """One domain entity pattern: a phrase and the label it takes."""

    label: str
    pattern: str


@dataclass(frozen=True)
class Penalties:
    """Score multipliers for odd-looking model-only entities."""

    lowercase: float
    short: float
    digits: float
    long: float


@dataclass(frozen=True)
class Scores:
    """Entity scores by where the entity comes from (see README "Pre-annotation")."""

    agreed: float
    domain: float
    linked: float
    model: dict[str, float]
    model_default: float
    penalties: Penalties


@dataclass(frozen=True)
class Patterns:
    """resources/entity_patterns.yaml: the domain layer over the model's NER."""

    entities: tuple[Pattern, ...]
    not_inside: tuple[str, ...]
    drop: tuple[str, ...]
    strip_leading: tuple[str, ...]
    titles: tuple[str, ...]
    scores: Scores


@dataclass(frozen=True)
class Name:
    """A name with its own label (an actor's capital or institution)."""

    text: str
    label: str


@dataclass(frozen=True)
class Actor:
    """One geopolitical actor of resources/actors.yaml."""

    id: str
    name: str
    label: str
    aliases: tuple[str | Name, ...] = ()
    demonyms: tuple[str | Name, ...] = ()
    people: tuple[str, ...] = ()
    seats: tuple[str, ...] = ()
    link_only: tuple[str, ...] = ()


@dataclass(frozen=True)
class Actors:
    """resources/actors.yaml."""

    actors: tuple[Actor, ...]


def _load_yaml(cls: type, path: Path) -> Any:
    """Read a YAML rule file and validate it into `cls`, with one-line errors."""
    return from_mapping(cls, read_yaml(path), str(path))


def normalise(text: str) -> str:
    """Lower-case `text` and drop a leading "the", a possessive "'s", edge punctuation and extra spaces."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").lower()
    text = " ".join(text.split()).strip(" \"'“”.,;:()[]")
    text = text.removeprefix("the ")
    text = text.removesuffix("'s")
    return text.strip(" \"'“”.,;:()[]")


def _deletions(word: str) -> set[str]:
    """The word and all its one-character deletions (symmetric-delete fuzzy matching at distance 1)."""
    return {word} | {word[:i] + word[i + 1 :] for i in range(len(word))}


class ActorIndex:
    """Precompiled look-ups from entity text to actor id."""

    FUZZY_MIN = 6  # last names at least this long also match one typo away ("Blnken", "Rybkov")
    PREFIX_LABELS = frozenset({"ORG", "FAC", "NORP"})

    def __init__(self, actors: Actors, titles: Iterable[str], where: str) -> None:
        self.titles = frozenset(t.lower() for t in titles)
        self.names: dict[str, str] = {}
        self.entity_names: list[tuple[str, str, bool]] = []  # (text, label, may create an entity)
        self.prefixes: dict[str, str] = {}  # country names and demonyms that make "Russian Foreign Ministry" Russian
        self.seats: set[str] = set()
        surnames: dict[str, set[str]] = {}
        labels: dict[str, str] = {}
        for actor in actors.actors:
            if actor.id in labels:
                raise ConfigError(f"{where}: actor id {actor.id!r} appears twice")
            labels[actor.id] = actor.label
            named = [(n, actor.label) if isinstance(n, str) else (n.text, n.label) for n in actor.aliases]
            named += [(n, "NORP") if isinstance(n, str) else (n.text, n.label) for n in actor.demonyms]
            named += [(p, "PERSON") for p in actor.people]
            named += [(c, "GPE") for c in actor.seats]
            self.seats.update(normalise(c) for c in actor.seats)
            for text, label in named:
                self._add(normalise(text), actor.id, where)
                self.entity_names.append((text, label, True))
                if label in ("GPE", "NORP") and len(text.split()) <= 3:
                    self.prefixes[normalise(text)] = actor.id
            for text in (actor.name, *actor.link_only):
                self._add(normalise(text), actor.id, where)
            for person in actor.people:
                surnames.setdefault(normalise(person).split()[-1], set()).add(actor.id)
        self.surnames = {s: next(iter(ids)) for s, ids in surnames.items() if len(ids) == 1}
        for surname in self.surnames:
            if surname not in self.names:
                person = next(p for a in actors.actors for p in a.people if normalise(p).split()[-1] == surname)
                self.entity_names.append((person.split()[-1], "PERSON", False))
        fuzzy: dict[str, set[str]] = {}
        for surname, actor_id in self.surnames.items():
            if len(surname) >= self.FUZZY_MIN:
                for variant in _deletions(surname):
                    fuzzy.setdefault(variant, set()).add(actor_id)
        self.fuzzy = {v: next(iter(ids)) for v, ids in fuzzy.items() if len(ids) == 1}

    def _add(self, key: str, actor_id: str, where: str) -> None:
        if not key:
            return
        other = self.names.setdefault(key, actor_id)
        if other != actor_id:
            raise ConfigError(f"{where}: name {key!r} belongs to both {other} and {actor_id}")

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one index per run, entity strings repeat a lot
    def link(self, text: str, label: str) -> str | None:
        """The actor id an entity refers to, or None."""
        key = normalise(text)
        if key in self.names:
            return self.names[key]
        words = key.split()
        if not words:
            return None
        if label == "PERSON":
            while len(words) > 1 and words[0] in self.titles:
                words = words[1:]
            if (rest := " ".join(words)) in self.names:
                return self.names[rest]
            last = words[-1]
            if last in self.surnames:
                return self.surnames[last]
            if len(last) >= self.FUZZY_MIN - 1:
                for variant in _deletions(last):
                    if variant in self.fuzzy:
                        return self.fuzzy[variant]
            return None
        if label in self.PREFIX_LABELS and len(words) > 1:
            for k in range(min(3, len(words) - 1), 0, -1):
                if (head := " ".join(words[:k])) in self.prefixes:
                    return self.prefixes[head]
            if "of" in words[:-1]:
                tail = " ".join(words[len(words) - words[::-1].index("of") :])
                return self.names.get(tail)
        return None


@dataclass(frozen=True)
class Rules:
    """The domain layer, the actors and the stance lexicon, with a short hash over all three."""

    patterns: Patterns
    actors: ActorIndex
    lexicon: Lexicon
    version: str


def load_rules(patterns: Path, actors: Path, lexicon: Path, stance_labels: Iterable[str]) -> Rules:
    """Load and validate the three rule files; any problem is a ConfigError."""
    pats = _load_yaml(Patterns, patterns)
    index = ActorIndex(_load_yaml(Actors, actors), pats.titles, str(actors))
    if not Path(lexicon).is_file():
        raise ConfigError(f"{lexicon}: file not found")
    lex = load_lexicon(lexicon, labels=list(stance_labels))
    version = sha256_text("\n".join([file_digest(patterns), file_digest(actors), lex.version]))[:12]
    return Rules(pats, index, lex, version)


# --- the spaCy component ----------------------------------------------------------------------------


def sentence_offsets(doc: Doc) -> list[tuple[int, int]]:
    """Character offsets of the Doc's sentences, read from token arrays (much faster than `doc.sents`)."""
    if not len(doc):
        return []
    arr = doc.to_array([SENT_START, IDX, LENGTH]).astype("int64")
    starts = numpy.flatnonzero(arr[:, 0] == 1)
    if not len(starts) or starts[0] != 0:
        starts = numpy.concatenate(([0], starts))
    ends = numpy.append(starts[1:], len(doc)) - 1
    return list(zip(arr[starts, 1].tolist(), (arr[ends, 1] + arr[ends, 2]).tolist(), strict=True))


def _forms(text: str) -> set[str]:
    """The case forms a name is matched in: as written, ALL CAPS, and "Nato" for acronyms of 4+ letters."""
    forms = {text, text.upper()}
    if text.isupper() and len(text) >= 4 and text.isalpha():
        forms.add(text.title())
    return forms


class Annotator:
    """spaCy component: domain fixes, actor links, scores, sentences and stances for one Doc."""

    def __init__(
        self,
        nlp: Language,
        rules: Rules,
        entity_labels: Iterable[str],
        stance_ends: Iterable[str],
        stance_labels: Iterable[str],
    ) -> None:
        self.rules = rules
        self.scores = rules.patterns.scores
        self.keep = frozenset(entity_labels)
        self.stance_ends = frozenset(stance_ends)
        self.stance_labels = frozenset(stance_labels)
        self.drop = frozenset(rules.patterns.drop)
        self.strip_leading = frozenset(w.lower() for w in rules.patterns.strip_leading)
        self.titles = rules.actors.titles
        names = [(p.pattern, p.label, True) for p in rules.patterns.entities] + rules.actors.entity_names
        self.names = PhraseMatcher(nlp.vocab, attr="ORTH")
        by_key: dict[str, set[str]] = {}
        for text, label, create in names:
            by_key.setdefault(label if create else f"{label}?", set()).update(_forms(text))
        for key, texts in sorted(by_key.items()):
            self.names.add(key, list(nlp.tokenizer.pipe(sorted(texts))))
        self.keys = {nlp.vocab.strings[k]: (k.rstrip("?"), not k.endswith("?")) for k in by_key}
        self.not_inside = PhraseMatcher(nlp.vocab, attr="LOWER")
        self.not_inside.add("NOT_INSIDE", list(nlp.tokenizer.pipe(rules.patterns.not_inside)))

    def __call__(self, doc: Doc) -> Doc:
        doc.user_data[USER_DATA_KEY] = self.annotate(doc)
        return doc

    def entities(self, doc: Doc, text: str) -> list[tuple[int, int, str, str]]:
        """Model entities of `doc` (whose text is `text`) corrected by the domain layer: (start, end, label, source)."""
        inside = [(s, e) for _, s, e in self.not_inside(doc)]
        ents: list[list[Any]] = []
        for ent in doc.ents:
            ent_text = text[ent.start_char : ent.end_char]
            if "\n" in ent_text or ent_text in self.drop:
                continue  # names never cross a line break; in scraped text such spans are site furniture
            if any(s <= ent.start and ent.end <= e and ent.end - ent.start < e - s for s, e in inside):
                continue
            start, end = self._trim(doc, ent.start, ent.end, ent.label_)
            ents.append([start, end, ent.label_, "model"])
        matches = [Span(doc, s, e, label=k) for k, s, e in self.names(doc)]
        for m in filter_spans(matches):
            label, create = self.keys[m.label]
            starts = [e[0] for e in ents]
            i = bisect.bisect_right(starts, m.start) - 1
            lo = i if i >= 0 and ents[i][1] > m.start else i + 1
            hi = bisect.bisect_left(starts, m.end)
            over = ents[lo:hi]
            if not over:
                if create:
                    ents.insert(lo, [m.start, m.end, label, "domain"])
                continue
            first = over[0]
            if len(over) == 1 and first[0] <= m.start and m.end <= first[1]:
                if first[2] == label:
                    if (first[0], first[1]) == (m.start, m.end):
                        first[3] = "agreed"
                elif (first[0], first[1]) == (m.start, m.end) or (m.end == first[1] and doc[m.start - 1].pos_ != "ADP"):
                    first[2], first[3] = label, "domain"  # the pattern is the head of the model's span
                continue
            ents[lo:hi] = [[m.start, m.end, label, "domain"]]
        return [(start, end, label, source) for start, end, label, source in ents]

    def _trim(self, doc: Doc, start: int, end: int, label: str) -> tuple[int, int]:
        """A model span without a leading determiner, a PERSON's title or a trailing possessive."""
        while end - start > 1 and (
            doc[start].lower_ in self.strip_leading or (label == "PERSON" and doc[start].lower_ in self.titles)
        ):
            start += 1
        while end - start > 1 and doc[end - 1].lower_ in ("'s", "\u2019s", "'", "\u2019"):
            end -= 1
        return start, end

    def score(self, span: Span, text: str, source: str, linked: bool) -> float:
        """Estimated probability that an annotator keeps this entity (`text`) as proposed."""
        sc = self.scores
        if source == "agreed":
            return sc.agreed
        if source == "domain":
            return sc.domain
        value = sc.linked if linked else sc.model.get(span.label_, sc.model_default)
        if not (text[:1].isupper() or text[:1].isdigit()) and not text.lower().startswith("the "):
            value *= sc.penalties.lowercase
        if len(text) <= 2 and not text.isupper():
            value *= sc.penalties.short
        if any(c.isdigit() for c in text):
            value *= sc.penalties.digits
        if len(span) >= 5:
            value *= sc.penalties.long
        return min(1.0, max(0.0, value))

    def annotate(self, doc: Doc) -> dict[str, Any]:
        """The annotation of one Doc: sentences, entities and stances as plain data."""
        text = doc.text  # spaCy joins the tokens on every access: read it once
        link = self.rules.actors.link
        seats = self.rules.actors.seats
        spans, kept, records = [], [], []
        for start, end, label, source in self.entities(doc, text):
            span = Span(doc, start, end, label=label)
            span_text = text[span.start_char : span.end_char]
            actor = link(span_text, label)
            if actor and start and doc[start - 1].lower_ in ("in", "at") and normalise(span_text) in seats:
                actor = None  # a seat of government as a venue: "talks in Geneva", "in Washington"
            if actor:
                span.kb_id_ = actor
            spans.append(span)
            if label in self.keep:
                kept.append(span)
                records.append(
                    {
                        "start": span.start_char,
                        "end": span.end_char,
                        "label": label,
                        "text": span_text,
                        "score": round(self.score(span, span_text, source, actor is not None), 4),
                        "actor": actor,
                    }
                )
        doc.ents = spans
        sentences = []
        for s, e in sentence_offsets(doc):
            while s < e and text[s].isspace():
                s += 1
            while e > s and text[e - 1].isspace():
                e -= 1
            if s < e:
                sentences.append({"start": s, "end": e})
        stances = []
        for st in find_stances(doc, kept, self.rules.lexicon, self.stance_ends) if kept else ():
            h, t = st["holder"], st["target"]
            if not (0 <= h < len(kept) and 0 <= t < len(kept)) or h == t or st["label"] not in self.stance_labels:
                continue
            if kept[h].label_ not in self.stance_ends or kept[t].label_ not in self.stance_ends:
                continue
            cue = st["cue"]
            stances.append(
                {
                    "holder": h,
                    "target": t,
                    "label": st["label"],
                    "score": round(min(1.0, max(0.0, float(st["score"]))), 4),
                    "rule": st["rule"],
                    "cue": {"start": cue["start"], "end": cue["end"], "text": text[cue["start"] : cue["end"]]},
                }
            )
        return {"sentences": sentences, "entities": records, "stances": stances}


# --- the stage --------------------------------------------------------------------------------------


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


def load_model(name: str) -> Language:
    """Load an installed spaCy pipeline by name, with a one-line error if it is not installed."""
    try:
        return spacy.load(name)
    except OSError:
        raise ConfigError(
            f"spaCy model {name!r} is not installed (install its package or set preannotate.model in params.yaml)"
        ) from None


@Language.component("paragraph_sentences")
def paragraph_sentences(doc: Doc) -> Doc:
    """Start a sentence after every line break, so sentences never cross a paragraph or an unpunctuated heading."""
    for token in doc[1:]:
        if "\n" in doc[token.i - 1].text:
            token.is_sent_start = True
    return doc


@Language.factory(COMPONENT)
def make_annotator(
    nlp: Language,
    name: str,
    patterns: str,
    actors: str,
    lexicon: str,
    entity_labels: list[str],
    stance_ends: list[str],
    stance_labels: list[str],
) -> Annotator:
    """spaCy factory of the annotator component, configured with the rule files and label sets."""
    rules = load_rules(Path(patterns), Path(actors), Path(lexicon), stance_labels)
    return Annotator(nlp, rules, entity_labels, stance_ends, stance_labels)


def load(params: Params, patterns: Path, actors: Path, lexicon: Path) -> Preannotator:
    """Load the model and add the annotator component to the end of its pipeline."""
    nlp = load_model(params.model)
    if not {"parser", "senter", "sentencizer"} & set(nlp.pipe_names):
        nlp.add_pipe("sentencizer")  # sentences are part of the output contract
    # The parser keeps boundaries set before it; a sentencizer or senter would overwrite them.
    if "parser" in nlp.pipe_names:
        nlp.add_pipe("paragraph_sentences", before="parser")
    else:
        nlp.add_pipe("paragraph_sentences", after=next(n for n in ("senter", "sentencizer") if n in nlp.pipe_names))
    config = {
        "patterns": str(patterns),
        "actors": str(actors),
        "lexicon": str(lexicon),
        "entity_labels": list(params.entity_labels),
        "stance_ends": list(params.stance_ends),
        "stance_labels": list(params.stance_labels),
    }
    annotator: Annotator = nlp.add_pipe(COMPONENT, config=config, last=True)
    provenance = {
        "model": params.model,
        "model_version": str(nlp.meta.get("version", "unknown")),
        "rules_version": annotator.rules.version,
        "code_revision": code_revision(CODE),
    }
    fingerprint = json.dumps([provenance, config["entity_labels"], config["stance_ends"], config["stance_labels"]])
    return Preannotator(nlp, params, provenance, fingerprint)


@dataclass
class Counts:
    """How many records a run annotated and how many it took from the cache."""

    annotated: int = 0
    cached: int = 0


class Cache:
    """Content-addressed store of annotations: one SQLite file, key -> JSON, committed in small transactions.

    SQLite makes every commit atomic, so a run that dies halfway leaves a consistent cache holding the
    records finished so far; one indexed file scales to millions of entries without a directory per key.
    """

    COMMIT_EVERY = 200

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(folder / "annotations.sqlite3", timeout=60)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS annotation (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"{folder}: cannot open the annotation cache ({exc})") from None
        self.uncommitted = 0

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached annotation under `key`, or None."""
        row = self.db.execute("SELECT value FROM annotation WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store an annotation under `key`."""
        self.db.execute("INSERT OR REPLACE INTO annotation (key, value) VALUES (?, ?)", (key, dumps(value)))
        self.uncommitted += 1
        if self.uncommitted >= self.COMMIT_EVERY:
            self.db.commit()
            self.uncommitted = 0

    def close(self) -> None:
        """Commit what is pending and close the database."""
        self.db.commit()
        self.db.close()


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
            entry[2] = doc.user_data.pop(USER_DATA_KEY)
            if cache:
                cache.put(entry[1], entry[2])
            counts.annotated += 1
            yield finish(entry)
            break
    while pending:
        entry = pending.popleft()
        if entry is not _PLACEHOLDER:
            counts.cached += 1
            yield finish(entry)


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
    return None


def main(
    input: Path,
    output: Path,
    params: Path,
    patterns: Path,
    actors: Path,
    lexicon: Path,
    cache: Path | None = None,
) -> None:
    """Pre-annotate a JSONL file of records with `id` and `text` into another, atomically."""
    cfg = section(Params, STAGE, params)
    if not Path(input).is_file():
        raise ConfigError(f"{input}: input file not found")
    pre = load(cfg, patterns, actors, lexicon)
    bad = BadRecords(STAGE, cfg.max_bad_share)
    counts = Counts()

    def records() -> Iterator[dict[str, Any]]:
        for lineno, obj in read_jsonl(input, bad):
            if problem := check_record(obj):
                bad.add(f"{input}:{lineno}", problem)
                continue
            yield obj

    def checked(out: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        yield from out  # the check runs before the output file is renamed into place
        bad.check()  # every non-blank input line, parsed or not

    store = Cache(cache) if cache else None
    try:
        written = write_jsonl(output, checked(preannotate(records(), pre, store, counts)))
    finally:
        if store:
            store.close()
    print(
        f"{STAGE}: wrote {written} records to {output}: {counts.annotated} annotated, "
        f"{counts.cached} from cache, {len(bad)} skipped",
        file=sys.stderr,
    )
