"""The stance cue lexicon (resources/stance_cues.yaml): cue words by part of speech and the word lists the rules read."""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy
from spacy.attrs import LEMMA
from spacy.tokens import Doc, Token

from pipeline.common.config import from_mapping, key_problem, read_yaml
from pipeline.common.errors import ConfigError
from pipeline.common.provenance import file_digest

# Bump when the rules change in a way that changes their output (part of the lexicon version).
RULES_VERSION = "4"

# Entity labels that can hold or be the target of a stance when the caller passes none (the set
# params.yaml ships as `preannotate.stance_ends`; the pre-annotator should pass the configured one).
DEFAULT_STANCE_ENDS = frozenset({"PERSON", "NORP", "ORG", "GPE", "LOC"})

# The stance labels of opposition and support when the lexicon has no `polarity` mapping (SemEval names).
DEFAULT_POLARITY: Mapping[str, str] = types.MappingProxyType({"negative": "against", "positive": "favor"})

# The lexicon's cue sections and the part of speech of their cues (`Cue.pos`, which cue rules dispatch on).
SECTIONS: Mapping[str, str] = types.MappingProxyType(
    {"verbs": "VERB", "nouns": "NOUN", "roles": "ROLE", "adjectives": "ADJ", "prepositions": "ADP"}
)


@dataclass(frozen=True)
class CueSpec:
    """One cue entry as written in the lexicon file."""

    label: str
    weight: float = 1.0
    preps: tuple[str, ...] | None = None
    object: bool = True
    clause: bool = False
    symmetric: bool = False
    negated: Literal["drop", "flip"] = "drop"

    def validate(self) -> str | None:
        """Reject weights outside (0, 1]."""
        if not 0.0 < self.weight <= 1.0:
            return f"weight {self.weight} is not in (0, 1]"
        return None


@dataclass(frozen=True)
class Cue:
    """A cue ready to match: lemma, part of speech, required extra words and how it behaves."""

    key: str
    pos: str
    lemma: str
    required: tuple[str, ...]
    label: str
    weight: float
    preps: frozenset[str]
    object: bool
    clause: bool
    symmetric: bool
    negated: str


@dataclass(frozen=True)
class Lexicon:
    """The loaded, frozen cue lexicon; `version` changes with the file or the rules."""

    path: str
    version: str
    labels: tuple[str, ...]
    cues: Mapping[tuple[str, str], tuple[Cue, ...]] = field(repr=False)
    speech_verbs: frozenset[str] = field(repr=False)
    negators: frozenset[str] = field(repr=False)
    undergo_verbs: frozenset[str] = field(repr=False)
    irrealis: frozenset[str] = field(repr=False)
    negative: frozenset[str] = field(repr=False)
    positive: frozenset[str] = field(repr=False)
    demand_verbs: frozenset[str] = field(repr=False, default=frozenset())
    negative_label: str | None = None  # the label of opposition: demand rule, negative tone of reported speech
    positive_label: str | None = None  # the label of support: positive tone of reported speech

    @cached_property
    def cue_lemmas(self) -> frozenset[str]:
        """Every lemma some cue has, whatever its part of speech."""
        return frozenset(lemma for _, lemma in self.cues)

    def cue_positions(self, doc: Doc) -> list[int]:
        """Indexes of the tokens of `doc` that may be a cue (`match` is None at every other token)."""
        return lemma_positions(doc, self.cue_lemmas)

    def match(self, tok: Token) -> Cue | None:
        """The most specific cue that `tok` instantiates, or None."""
        pos = "NOUN" if tok.pos_ == "PROPN" and not tok.ent_type_ else tok.pos_
        candidates = self.cues.get((pos, tok.lemma_.lower()))
        if pos == "NOUN":
            candidates = self.cues.get(("ROLE", tok.lemma_.lower())) or candidates
        if not candidates:
            return None
        attached = {c.lower_ for c in tok.children if c.dep_ in ("prt", "prep", "advmod", "agent")}
        for cue in candidates:  # sorted most specific first
            if all(word in attached for word in cue.required):
                return cue
        return None

    def flip(self, label: str) -> str:
        """The opposite label (the lexicon has exactly two when a cue flips)."""
        return next(other for other in self.labels if other != label)


def lemma_positions(doc: Doc, words: frozenset[str]) -> list[int]:
    """Indexes of the tokens of `doc` whose lower-cased lemma is in `words`, read off one token array."""
    if not len(doc):
        return []
    # A Token is built (and its strings decoded) on every access; each distinct lemma is decoded once here instead.
    unique, inverse = numpy.unique(doc.to_array(LEMMA), return_inverse=True)
    strings = doc.vocab.strings
    hit = numpy.fromiter((strings[int(h)].lower() in words for h in unique), dtype=bool, count=len(unique))
    return numpy.flatnonzero(hit[inverse.reshape(-1)]).tolist()


def load_lexicon(path: Path | str, labels: Sequence[str] | None = None) -> Lexicon:
    """Load and validate the cue lexicon; `labels` (from params) must cover the lexicon's labels."""
    path = Path(path)
    data = read_yaml(path, "lexicon file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if problem := key_problem(data):
        raise ConfigError(f"{path}: {problem}")
    known = {"labels", "polarity", "noun_preps", "speech_verbs", "negators", "undergo_verbs", "irrealis", "demand_verbs",
             "sentiment", *SECTIONS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
    file_labels = _words(data.get("labels"), path, "labels")
    if not file_labels:
        raise ConfigError(f"{path}: labels: expected a non-empty list of stance labels")
    if labels is not None and set(file_labels) - set(labels):
        extra = ", ".join(sorted(set(file_labels) - set(labels)))
        raise ConfigError(f"{path}: labels: {extra} not in the configured stance labels ({', '.join(labels)})")
    negative_label, positive_label = _polarity(data.get("polarity"), file_labels, path)
    noun_preps = _words(data.get("noun_preps", []), path, "noun_preps")
    cues: dict[tuple[str, str], list[Cue]] = {}
    for section, pos in SECTIONS.items():
        entries = data.get(section) or {}
        if not isinstance(entries, dict):
            raise ConfigError(f"{path}: {section}: expected a mapping of cue -> options")
        if problem := key_problem(entries):
            raise ConfigError(f"{path}: {section}: {problem}")
        for key, options in entries.items():
            where = f"{path}: {section}.{key}"
            words = str(key).lower().split()
            if not words:
                raise ConfigError(f"{where}: empty cue")
            spec = from_mapping(CueSpec, options, where)
            if spec.label not in file_labels:
                raise ConfigError(f"{where}: label {spec.label!r} is not one of {', '.join(file_labels)}")
            if spec.negated == "flip" and len(file_labels) != 2:
                raise ConfigError(f"{where}: negated: flip needs exactly two labels")
            default_preps = {"NOUN": tuple(noun_preps), "ROLE": ("of",)}.get(pos, ())
            preps = spec.preps if spec.preps is not None else default_preps
            cue = Cue(
                key=str(key),
                pos=pos,
                lemma=words[0],
                required=tuple(words[1:]),
                label=spec.label,
                weight=spec.weight,
                preps=frozenset(preps) | frozenset(words[1:]),
                object=spec.object,
                clause=spec.clause,
                symmetric=spec.symmetric,
                negated=spec.negated,
            )
            cues.setdefault((pos, cue.lemma), []).append(cue)
    frozen = {k: tuple(sorted(v, key=lambda c: -len(c.required))) for k, v in cues.items()}
    sentiment = data.get("sentiment") or {}
    if isinstance(sentiment, dict) and (problem := key_problem(sentiment)):
        raise ConfigError(f"{path}: sentiment: {problem}")
    if not isinstance(sentiment, dict) or set(sentiment) - {"negative", "positive"}:
        raise ConfigError(f"{path}: sentiment: expected a mapping with the keys negative and positive")
    negative = set(_words(sentiment.get("negative", []), path, "sentiment.negative"))
    positive = set(_words(sentiment.get("positive", []), path, "sentiment.positive"))
    for (pos, lemma), group in frozen.items():
        for cue in group:
            if not cue.required and pos != "ADP" and cue.label in (negative_label, positive_label):
                (negative if cue.label == negative_label else positive).add(lemma)
    return Lexicon(
        path=str(path),
        version=f"{RULES_VERSION}-{file_digest(path)[:12]}",
        labels=tuple(file_labels),
        cues=types.MappingProxyType(frozen),
        speech_verbs=frozenset(_words(data.get("speech_verbs", []), path, "speech_verbs")),
        negators=frozenset(_words(data.get("negators", []), path, "negators")),
        undergo_verbs=frozenset(_words(data.get("undergo_verbs", []), path, "undergo_verbs")),
        irrealis=frozenset(_words(data.get("irrealis", []), path, "irrealis")),
        demand_verbs=frozenset(_words(data.get("demand_verbs", []), path, "demand_verbs")),
        negative=frozenset(negative),
        positive=frozenset(positive),
        negative_label=negative_label,
        positive_label=positive_label,
    )


def _polarity(value: object, labels: Sequence[str], path: Path) -> tuple[str | None, str | None]:
    """The labels of opposition and support: the lexicon's `polarity` mapping, else those of DEFAULT_POLARITY present."""
    if value is None:
        if unknown := [label for label in labels if label not in DEFAULT_POLARITY.values()]:
            raise ConfigError(
                f"{path}: labels: {', '.join(unknown)} has no polarity; add "
                f"polarity: {{negative: <label of opposition>, positive: <label of support>}}"
            )
        polarity = {k: v for k, v in DEFAULT_POLARITY.items() if v in labels}
    else:
        if (not isinstance(value, dict) or not value or key_problem(value) or set(value) - set(DEFAULT_POLARITY)
                or not all(isinstance(v, str) for v in value.values())):
            raise ConfigError(f"{path}: polarity: expected a mapping with the keys negative and/or positive")
        polarity = dict(value)
        for key, label in polarity.items():
            if label not in labels:
                raise ConfigError(f"{path}: polarity.{key}: {label!r} is not one of the labels ({', '.join(labels)})")
        if len(set(polarity.values())) < len(polarity):
            raise ConfigError(f"{path}: polarity: negative and positive must be different labels")
    return polarity.get("negative"), polarity.get("positive")


def _words(value: object, path: Path, key: str) -> list[str]:
    """A list of lower-case words from the lexicon, or a one-line error naming the key."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{path}: {key}: expected a list of words")
    return [v.strip().lower() for v in value]

