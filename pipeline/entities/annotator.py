"""The spaCy side of pre-annotation: the model, a paragraph sentence splitter and the annotator component.

All per-document work happens inside the annotator component, added after the model, so that `n_process`
parallelises it with the model and the main process only merges, caches and writes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy
import spacy
from spacy.attrs import IDX, LENGTH, SENT_START
from spacy.language import Language
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc, Span
from spacy.util import filter_spans

from pipeline.common.config import MAX_TEXT_CHARS
from pipeline.common.errors import ConfigError
from pipeline.entities.actors import normalise
from pipeline.entities.rules import Rules, load_rules
from pipeline.stance.finder import find_stances, model_stances
from pipeline.stance.model import StanceModel
from pipeline.stance.model import load_model as load_stance_model

COMPONENT = "geonews_preannotate"
USER_DATA_KEY = "geonews_preannotate"


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


def sentence_spans(doc: Doc, text: str) -> list[dict[str, int]]:
    """The Doc's sentences (its text is `text`) as start/end offsets, without edge whitespace or empty ones."""
    sentences = []
    for s, e in sentence_offsets(doc):
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s < e:
            sentences.append({"start": s, "end": e})
    return sentences


def _forms(text: str) -> set[str]:
    """The case forms a name is matched in: as written, ALL CAPS, and "Nato" for acronyms of 4+ letters."""
    forms = {text, text.upper()}
    if text.isupper() and len(text) >= 4 and text.isalpha():
        forms.add(text.title())
    return forms


class Annotator:
    """spaCy component: domain fixes, actor links, scores, sentences and stances for one Doc."""

    def __init__(self, nlp: Language, rules: Rules, entity_labels: Iterable[str], stance_ends: Iterable[str],
                 stance_labels: Iterable[str], stance_model: StanceModel | None = None,
                 stance_threshold: float | None = None) -> None:
        if stance_model is not None and stance_threshold is None:  # one default per key: params.yaml's
            raise ConfigError("a stance model needs its threshold (preannotate.stance_threshold)")
        self.rules = rules
        self.stance_model, self.stance_threshold = stance_model, stance_threshold
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
            self.names.add(key, [nlp.make_doc(t) for t in sorted(texts)])
        self.keys = {nlp.vocab.strings[k]: (k.rstrip("?"), not k.endswith("?")) for k in by_key}
        self.not_inside = PhraseMatcher(nlp.vocab, attr="LOWER")
        self.not_inside.add("NOT_INSIDE", [nlp.make_doc(t) for t in rules.patterns.not_inside])

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
        kept, records = self.entity_layer(doc, text)
        stances = self.rule_stances(doc, text, kept)
        if self.stance_model is not None and self.stance_threshold is not None and kept:
            # the rules' stances are the model's features and explanation
            stances = model_stances(doc, kept, stances, self.rules.lexicon, self.stance_ends, self.stance_model,
                                    self.stance_threshold)
        return {"sentences": sentence_spans(doc, text), "entities": records, "stances": stances}

    def entity_layer(self, doc: Doc, text: str) -> tuple[list[Span], list[dict[str, Any]]]:
        """The entity spans that are kept and their records; sets `doc.ents` to every corrected span."""
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
        return kept, records

    def rule_stances(self, doc: Doc, text: str, kept: list[Span]) -> list[dict[str, Any]]:
        """The stance rules' proposals among `kept` (the entity spans of `doc`, whose text is `text`)."""
        stances = []
        for st in find_stances(doc, kept, self.rules.lexicon, self.stance_ends) if kept else ():
            h, t = st["holder"], st["target"]
            if not (0 <= h < len(kept) and 0 <= t < len(kept)) or h == t or st["label"] not in self.stance_labels:
                continue
            if kept[h].label_ not in self.stance_ends or kept[t].label_ not in self.stance_ends:
                continue
            cue = st["cue"]
            stances.append({"holder": h, "target": t, "label": st["label"],
                            "score": round(min(1.0, max(0.0, float(st["score"]))), 4), "rule": st["rule"],
                            "cue": {"start": cue["start"], "end": cue["end"], "text": text[cue["start"] : cue["end"]]}})
        return stances


def load_model(name: str) -> Language:
    """Load an installed spaCy pipeline by name, with a one-line error if it is not installed."""
    try:
        nlp = spacy.load(name)
    except OSError:
        raise ConfigError(
            f"spaCy model {name!r} is not installed (install its package or set preannotate.model in params.yaml)"
        ) from None
    nlp.max_length = MAX_TEXT_CHARS  # what ingest and preannotate's record check let through, whatever the model says
    return nlp


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
    stance_model: str = "",
    stance_threshold: float | None = None,
) -> Annotator:
    """spaCy factory of the annotator component, configured with the rule files, label sets and stance model.

    `stance_model` is the path of a learned model file ("" = the rules alone), loaded here so that every
    process or Dask worker that builds the pipeline loads it once.
    """
    rules = load_rules(Path(patterns), Path(actors), Path(lexicon), stance_labels)
    model = load_stance_model(Path(stance_model)) if stance_model else None
    if model is not None and (extra := sorted(set(model.labels[1:]) - set(stance_labels))):
        raise ConfigError(f"{stance_model}: the stance model's labels {extra} are not in preannotate.stance_labels")
    return Annotator(nlp, rules, entity_labels, stance_ends, stance_labels, model, stance_threshold)
