"""Entity-to-entity stance: explainable rules over spaCy's dependency parse, driven by a cue lexicon.

A stance goes from a HOLDER entity mention to a TARGET entity mention inside one sentence and is
labelled by the cue word that carries it (resources/stance_cues.yaml). Each rule below finds the
holder and the target of one cue in one syntactic pattern; the stance records the rule and the cue.

Score = RULE_PRECISION[rule] x cue weight x INDIRECT_FACTOR per end reached through an affiliation
("NATO foreign ministers" -> NATO). RULE_PRECISION is each rule's triplet precision measured on
SEESAW train (`python -m pipeline evaluate-seesaw DIR --split train --by-rule`), so a score
estimates the chance that an annotator keeps the proposal and orders the queue accordingly.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from spacy.tokens import Doc, Span, Token

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

# Triplet precision of each rule on SEESAW train, Laplace-smoothed ((tp + 1) / (tp + fp + 2)) so that
# rare rules are not over-trusted; re-measure with `evaluate-seesaw --by-rule` when rules change.
RULE_PRECISION: Mapping[str, float] = types.MappingProxyType(
    {
        "svo": 0.71,
        "passive": 0.83,
        "clause": 0.67,
        "control": 0.56,
        "adjective": 0.83,
        "symmetric": 0.75,
        "possessive": 0.62,
        "role": 0.53,
        "prep_against": 0.42,
        "speech": 0.37,
        "light_verb": 0.54,
        "speech_sentiment": 0.45,
        "speech_agent": 0.40,
        "speech_tone": 0.36,
        "demand": 0.33,
        "adjacent": 0.90,
        "undergo": 0.69,
    }
)
INDIRECT_FACTOR = 0.85
TONE_MIN = 1

_SECTIONS = {"verbs": "VERB", "nouns": "NOUN", "roles": "ROLE", "adjectives": "ADJ", "prepositions": "ADP"}
_THIRD_PERSON = frozenset({"he", "she", "it", "they", "him", "her", "them", "its", "their", "his", "this", "that"})
_RELATIVE = frozenset({"who", "which", "that", "whom"})
_CONDITIONAL = frozenset({"if", "unless", "whether"})
_MAX_CLIMB = 8
# Dependencies through which a negation of the governing word reaches a cue ("did not want to resort to it").
_GOVERNED = frozenset({"xcomp", "pcomp", "pobj", "prep", "dobj", "acomp", "oprd", "attr"})
# Dependencies from an event up to a word that may leave it unasserted ("fears that Russia will try to occupy").
_COMPLEMENT = frozenset({"xcomp", "ccomp", "pcomp", "pobj", "prep", "dobj", "conj", "acl"})
# Prepositions introducing what a tone word of reported speech is about; never a venue (`in`, `at`).
_ABOUT = frozenset({"of", "against", "about", "with", "toward", "towards"})
# Dependencies from an act up to the verb demanding it ("demands that X sign treaties to prevent Y ...").
_DEMANDED = frozenset({"relcl", "acl", "conj", "xcomp", "ccomp", "dobj", "pobj", "prep", "advcl"})
# Words before a name that a verb's misparsed object may start with ("slammed President Barack Obama").
_TITLES = frozenset({"the", "president", "sen", "senator", "rep", "representative", "gov", "governor", "mr", "mrs",
                     "ms", "dr", "former", "then", "vice", "speaker", "secretary", "house", "senate", "gen", "general",
                     "prime", "minister", "leader", "majority", "minority", "chancellor", "attorney", "judge"})
# Adverbial clauses that are the writer's narration beside a reported clause, not part of it.
_NARRATION = frozenset({"while", "whereas", "as", "after", "before", "when", "since"})


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


def load_lexicon(path: Path | str, labels: Sequence[str] | None = None) -> Lexicon:
    """Load and validate the cue lexicon; `labels` (from params) must cover the lexicon's labels."""
    path = Path(path)
    data = read_yaml(path, "lexicon file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if problem := key_problem(data):
        raise ConfigError(f"{path}: {problem}")
    known = {"labels", "polarity", "noun_preps", "speech_verbs", "negators", "undergo_verbs", "irrealis", "demand_verbs",
             "sentiment", *_SECTIONS}
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
    for section, pos in _SECTIONS.items():
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


@dataclass
class _Ends:
    """Entity mentions found for one end of a stance: (entity index, reached indirectly)."""

    mentions: list[tuple[int, bool]]
    rule: str
    speech_ok: bool = False  # no explicit holder: the speaker of a reported clause may hold it
    negated: bool = False


class _Finder:
    """Applies the rules to one doc."""

    def __init__(self, doc: Doc, entities: Sequence[Span], lexicon: Lexicon, ends: frozenset[str]) -> None:
        self.doc = doc
        self.lex = lexicon
        self.ent_of: list[int | None] = [None] * len(doc)
        for index, span in enumerate(entities):
            if span.label_ in ends:
                for tok in span:
                    self.ent_of[tok.i] = index
        self.entities = entities

    # --- mentions -------------------------------------------------------------------------------
    def mentions(self, tok: Token | None) -> list[tuple[int, bool]]:
        """Entities a noun phrase headed by `tok` refers to, with its conjuncts and affiliations."""
        if tok is None:
            return []
        found: list[tuple[int, bool]] = []
        self._collect(tok, found, depth=0)
        seen: dict[int, bool] = {}
        for ent, indirect in found:
            seen[ent] = seen.get(ent, True) and indirect
        return list(seen.items())

    def _collect(self, tok: Token, found: list[tuple[int, bool]], depth: int) -> None:
        ent = self.ent_of[tok.i]
        if ent is not None:
            found.append((ent, False))
        elif tok.pos_ != "PRON" and depth < 3:
            for child in tok.children:
                child_ent = self.ent_of[child.i]
                if child.dep_ in ("compound", "poss", "nmod", "amod") and child_ent is not None:
                    found.append((child_ent, True))
                elif child.dep_ == "appos" and child_ent is not None:
                    found.append((child_ent, False))
                elif child.dep_ == "prep" and (child.lower_ == "of" or (child.lower_ == "for" and tok.dep_ == "nsubj")):
                    # "the Secretary-General of NATO", "a spokesman for the Council said"
                    for pobj in child.children:
                        if pobj.dep_ == "pobj" and self.ent_of[pobj.i] is not None:
                            found.append((self.ent_of[pobj.i], True))
        for child in tok.children:
            if child.dep_ == "conj" and depth < 6:
                self._collect(child, found, depth + 1)

    def prep_objects(self, tok: Token, preps: frozenset[str]) -> list[tuple[int, bool]]:
        """Entities in the objects of `tok`'s prepositions listed in `preps`."""
        out: list[tuple[int, bool]] = []
        for child in tok.children:
            if child.dep_ in ("prep", "agent", "dative") and child.lower_ in preps:
                for pobj in child.children:
                    if pobj.dep_ in ("pobj", "pcomp"):
                        out += self.mentions(pobj)
        return out

    # --- holders ------------------------------------------------------------------------------
    def verb_holders(self, verb: Token, hops: int = 0) -> _Ends:
        """Who does what `verb` says: subject, passive agent, shared or controlling subject."""
        negated = self.negated(verb)
        agent = next((c for c in verb.children if c.dep_ == "agent"), None)
        if agent is not None:
            pobj = next((c for c in agent.children if c.dep_ == "pobj"), None)
            return _Ends(self.mentions(pobj), "passive", negated=negated)
        subj = next((c for c in verb.children if c.dep_ in ("nsubj", "csubj")), None)
        if subj is not None:
            if verb.dep_ == "relcl" and subj.lower_ in _RELATIVE:
                mentions = self.mentions(verb.head)
                return _Ends(mentions, "svo" if mentions else "control", negated=negated)
            mentions = self.mentions(subj)
            speech_ok = not mentions and subj.lower_ not in _THIRD_PERSON
            return _Ends(mentions, "svo", speech_ok=speech_ok, negated=negated)
        if any(c.dep_ == "nsubjpass" for c in verb.children):
            return _Ends([], "passive", speech_ok=True, negated=negated)
        if hops >= _MAX_CLIMB:
            return _Ends([], "svo", negated=negated)
        gov = verb.head
        if verb.dep_ == "pcomp" and gov.pos_ == "ADP":
            gov = gov.head
        if verb.dep_ == "conj" and gov.pos_ in ("VERB", "AUX"):
            ends = self.verb_holders(gov, hops + 1)
            ends.negated = ends.negated or negated
            return ends
        if verb.dep_ == "acl" and gov.pos_ in ("NOUN", "PROPN"):
            ends = self.noun_holders(gov)
            return _Ends(ends.mentions, "control", ends.speech_ok, negated or ends.negated)
        if verb.dep_ in ("xcomp", "pcomp", "advcl") and gov.pos_ in ("VERB", "AUX") and gov is not verb:
            gov_negated = self.negated(gov) or gov.lemma_.lower() in self.lex.negators
            obj = next((c for c in gov.children if c.dep_ == "dobj"), None)
            if obj is not None and verb.dep_ in ("xcomp", "pcomp"):
                return _Ends(self.mentions(obj), "control", negated=negated or gov_negated)
            ends = self.verb_holders(gov, hops + 1)
            return _Ends(ends.mentions, "control", ends.speech_ok, negated or gov_negated)
        return _Ends([], "svo", speech_ok=True, negated=negated)

    def noun_holders(self, noun: Token) -> _Ends:
        """Who holds a noun cue: possessor or modifier, `by`/`from` phrase, else the light verb's subject."""
        negated = self.negated(noun)
        direct: list[tuple[int, bool]] = []
        for child in noun.children:
            ent = self.ent_of[child.i]
            if child.dep_ in ("poss", "compound", "amod", "nmod") and ent is not None and not self.dative_like(child):
                direct.append((ent, False))
            elif child.dep_ == "poss" and child.pos_ != "PRON":
                direct += self.mentions(child)  # "the Obama administration's sanctions against Russia"
            elif child.dep_ in ("prep", "agent") and child.lower_ in ("by", "from"):
                for pobj in child.children:
                    if pobj.dep_ == "pobj":
                        direct += self.mentions(pobj)
        if direct:
            return _Ends(direct, "possessive", negated=negated)
        head = noun.head
        if noun.dep_ == "pobj" and head.pos_ == "ADP" and head.head.pos_ in ("VERB", "AUX"):
            head = head.head
        elif noun.dep_ not in ("dobj", "attr", "nsubjpass", "oprd", "conj") or head.pos_ not in ("VERB", "AUX"):
            return _Ends([], "possessive", speech_ok=True, negated=negated)
        if noun.dep_ == "conj":
            return self.noun_holders(head) if head.pos_ == "NOUN" else _Ends([], "light_verb", negated=negated)
        ends = self.verb_holders(head)
        verb_negated = ends.negated or head.lemma_.lower() in self.lex.negators
        return _Ends(ends.mentions, "light_verb", ends.speech_ok, negated or verb_negated)

    # --- reported speech and conditions ---------------------------------------------------------
    def speaker(self, tok: Token) -> list[tuple[int, bool]]:
        """The entity reporting the clause around `tok` (its `say`-verb subject), if any.

        Attribution ("according to the New York Times") names a source, never a holder.
        """
        node = tok
        for _ in range(_MAX_CLIMB):
            for child in node.children:
                if child.dep_ == "parataxis" and child.lemma_.lower() in self.lex.speech_verbs:
                    return self.verb_holders(child).mentions
            parent = node.head
            if parent is node:
                return []
            if node.dep_ in ("ccomp", "xcomp") and parent.lemma_.lower() in self.lex.speech_verbs:
                speakers = self.verb_holders(parent).mentions
                if speakers:
                    return speakers
            node = parent
        return []

    def conditional(self, tok: Token) -> bool:
        """Whether `tok` sits in an if/unless clause (a hypothetical is not a stance)."""
        node = tok
        for _ in range(_MAX_CLIMB):
            if node.dep_ == "advcl" and any(c.dep_ == "mark" and c.lower_ in _CONDITIONAL for c in node.children):
                return True
            if node.head is node:
                return False
            node = node.head
        return False

    @staticmethod
    def negated(tok: Token) -> bool:
        """Whether `tok` carries a negation (`not`, `never`, `no`)."""
        return any(
            c.dep_ == "neg"
            or (c.lower_ in ("no", "never") and c.dep_ in ("det", "advmod"))
            or (c.dep_ in ("nsubj", "nsubjpass") and any(g.lower_ == "neither" for g in c.children))  # "neither X nor Y will be"
            for c in tok.children
        )

    def negated_above(self, tok: Token) -> bool:
        """Whether a word governing `tok` in its clause is negated or a negator: `did not want to resort to ...`."""
        node = tok
        for _ in range(_MAX_CLIMB):
            if node.dep_ not in _GOVERNED or node.head is node:
                return False
            node = node.head
            if self.negated(node) or (node.pos_ in ("VERB", "NOUN") and node.lemma_.lower() in self.lex.negators):
                return True
        return False

    def unasserted(self, tok: Token) -> bool:
        """Whether `tok` is an event its governors do not assert: deterred, prevented, feared, considered."""
        node = tok
        for _ in range(_MAX_CLIMB):
            if node.head is node or node.dep_ not in _COMPLEMENT:
                return False
            node = node.head
            if node.pos_ in ("VERB", "NOUN") and node.lemma_.lower() in self.lex.irrealis:
                return True
        return False

    # --- rules ----------------------------------------------------------------------------------
    def apply(self, tok: Token, cue: Cue) -> Iterator[tuple[list, list, str, bool]]:
        """Holders, targets, rule and negation for one cue token."""
        if cue.pos == "VERB":
            holders = self.verb_holders(tok)
            rule = holders.rule
            if any(c.dep_ == "nsubjpass" for c in tok.children) or (tok.tag_ == "VBN" and tok.dep_ == "acl"):
                subj = next((c for c in tok.children if c.dep_ == "nsubjpass"), None)
                targets = self.mentions(subj) if subj is not None else self.mentions(tok.head)
                rule = "passive" if holders.mentions else rule
            else:
                targets = []
                if cue.object:
                    for child in tok.children:
                        if child.dep_ == "dobj":
                            targets += self.mentions(child)
            targets += self.prep_objects(tok, cue.preps)
            if not targets and cue.object and holders.mentions and rule == "svo":
                targets = self.adjacent(tok)  # "Republicans slammed President Barack Obama", misparsed
                rule = "adjacent" if targets else rule
            if not targets and cue.clause:
                targets = self.clause_subjects(tok)
                rule = "clause" if rule == "svo" else rule
        elif cue.pos == "NOUN":
            holders = self.noun_holders(tok)
            rule = holders.rule
            targets = self.prep_objects(tok, cue.preps)
            if not targets and rule == "light_verb" and tok.dep_ == "dobj":
                targets = self.prep_objects(tok.head, cue.preps)  # "give guarantees to Russia"
                for child in tok.head.children:  # "give Russia guarantees", "promised Moscow sanctions"
                    if child.dep_ == "dative":
                        targets += self.mentions(child)
                targets += [(e, False) for c in tok.children if self.dative_like(c) if (e := self.ent_of[c.i]) is not None]
            if cue.symmetric:
                between = self.prep_objects(tok, frozenset({"between"}))
                if len(between) > 1:
                    yield between, between, "symmetric", self.negated(tok)
                    return
            if not targets and rule == "possessive" and holders.mentions:
                targets = self.undergoer(tok)  # "the FBI faces attacks from Trump"
            if tok.dep_ == "dobj" and tok.head.lemma_.lower() in self.lex.undergo_verbs:
                # "X drew criticism from Y", "X won the support of Y": the giver holds it, the receiver is its target
                givers = self.prep_objects(tok.head, frozenset({"from", "by"})) or self.prep_objects(tok, frozenset({"of"}))
                if givers and not self.ent_of[tok.i] and not cue.symmetric:
                    holders, rule, targets = _Ends(givers, "undergo"), "undergo", self.undergoer(tok)
        elif cue.pos == "ROLE":
            holders, targets = self.role_ends(tok)
            rule = "role"
            holders.negated = self.negated(tok)
        elif cue.pos == "ADJ":
            head = tok.head if tok.dep_ in ("acomp", "amod") else tok
            holders = self.verb_holders(head) if head.pos_ in ("VERB", "AUX") else _Ends([], "adjective")
            holders.negated = holders.negated or self.negated(tok)
            rule = "adjective"
            targets = self.prep_objects(tok, cue.preps)
        else:  # a preposition like "against": "measures against Russia"
            if self.lex.match(tok.head) is not None:
                return  # the head cue handles it
            head = tok.head
            holders = self.noun_holders(head) if head.pos_ in ("NOUN", "PROPN") else self.verb_holders(head)
            rule = "prep_against"
            targets = [m for pobj in tok.children if pobj.dep_ == "pobj" for m in self.mentions(pobj)]
        if cue.symmetric and cue.pos == "VERB" and not targets and len(holders.mentions) > 1:
            targets = holders.mentions  # "Cruz and Rubio have been fighting"
            rule = "symmetric"
        if not targets:
            return
        if not holders.mentions and holders.speech_ok:
            speakers = self.speaker(tok)
            if speakers:
                yield speakers, targets, "speech", holders.negated
            return
        negated = holders.negated or self.negated(tok)
        if rule in ("control", "light_verb") and cue.label == self.lex.negative_label:
            demanders = self.demander(tok)  # "demanding guarantees that would prevent X from expanding"
            if demanders:
                holders.mentions, rule = demanders, "demand"
        yield holders.mentions, targets, rule, negated
        if cue.symmetric and rule != "symmetric":
            yield targets, holders.mentions, "symmetric", negated

    def demander(self, tok: Token) -> list[tuple[int, bool]]:
        """Who demands the act `tok` is part of: `Russia demands guarantees that would prevent X ...`."""
        node, demanded_thing = tok, False
        for _ in range(_MAX_CLIMB):
            parent = node.head
            if parent is node or node.dep_ not in _DEMANDED:
                return []
            demanded_thing = demanded_thing or node.dep_ in ("relcl", "acl")
            if parent.pos_ in ("VERB", "AUX") and parent.lemma_.lower() in self.lex.demand_verbs:
                if not demanded_thing:
                    return []  # "seeking to press X" is the seeker's own act, found by the control rule
                ends = self.verb_holders(parent)
                return ends.mentions or (self.speaker(parent) if ends.speech_ok else [])
            node = parent
        return []

    @staticmethod
    def dative_like(child: Token) -> bool:
        """A name right after a verb parsed as modifier of its object: spaCy's misparse of `promised Moscow sanctions`."""
        noun = child.head
        return child.dep_ == "nmod" and child.pos_ == "PROPN" and noun.dep_ == "dobj" and child.i == noun.head.i + 1

    def adjacent(self, verb: Token) -> list[tuple[int, bool]]:
        """The entity named right after a verb, past titles: spaCy's misparse of `slammed President Barack Obama`."""
        for tok in self.doc[verb.i + 1 : min(verb.i + 5, verb.sent.end)]:
            ent = self.ent_of[tok.i]
            if ent is not None:
                return [(ent, False)]
            if tok.lower_.rstrip(".") not in _TITLES:
                return []
        return []

    def undergoer(self, noun: Token) -> list[tuple[int, bool]]:
        """Subject of a verb of undergoing whose object is the noun cue: `X faced criticism from Y`."""
        head = noun.head
        if noun.dep_ == "pobj" and head.pos_ == "ADP":
            head = head.head  # "came under attack from"
        if head.pos_ in ("VERB", "AUX") and head.lemma_.lower() in self.lex.undergo_verbs:
            return self.verb_holders(head).mentions
        return []

    def role_ends(self, noun: Token) -> tuple[_Ends, list[tuple[int, bool]]]:
        """Holder and target of a role noun: `King, an avid opponent of Bush`, `Pecker is a Trump ally`."""
        targets = self.prep_objects(noun, self.lex_role_preps(noun))
        if not targets:
            targets = [(e, False) for c in noun.children if c.dep_ in ("compound", "poss", "amod")
                       if (e := self.ent_of[c.i]) is not None]
        holders: list[tuple[int, bool]] = [
            (e, False) for c in noun.children if c.dep_ == "appos" if (e := self.ent_of[c.i]) is not None
        ]
        if not holders:
            if noun.dep_ == "appos" or (noun.dep_ == "compound" and self.ent_of[noun.head.i] is not None):
                holders = self.mentions(noun.head)
            elif noun.dep_ in ("attr", "oprd") and noun.head.pos_ in ("VERB", "AUX"):
                holders = self.verb_holders(noun.head).mentions
        return _Ends(holders, "role"), targets

    def lex_role_preps(self, noun: Token) -> frozenset[str]:
        """Target prepositions of the role cue at `noun`."""
        cue = self.lex.match(noun)
        return cue.preps if cue is not None else frozenset({"of"})

    def clause_subjects(self, verb: Token) -> list[tuple[int, bool]]:
        """Subjects of the clause a verb of warning/accusing reports: `warned (of the risk) that X ...`."""
        out: list[tuple[int, bool]] = []
        clauses = [c for c in verb.children if c.dep_ == "ccomp"]
        for prep in verb.children:
            if prep.dep_ == "prep" and prep.lower_ in ("of", "about", "against"):
                for pobj in prep.children:
                    clauses += [c for c in pobj.children if c.dep_ in ("acl", "relcl", "ccomp")]
                    clauses += [pobj] if pobj.dep_ == "pcomp" else []
        for clause in clauses:
            subj = next((c for c in clause.children if c.dep_ in ("nsubj", "nsubjpass")), None)
            out += self.mentions(subj)
        return out

    def stances(self) -> list[dict]:
        """All stances of the doc, one per (holder, target), best-scored, in cue order."""
        best: dict[tuple[int, int], dict] = {}
        for tok in self.doc:
            cue = self.lex.match(tok)
            if cue is None or self.conditional(tok) or self.unasserted(tok):
                continue
            above = self.negated_above(tok)
            for holders, targets, rule, negated in self.apply(tok, cue):
                label = cue.label
                negated = negated or above
                if negated:
                    if cue.negated == "drop":
                        continue
                    label = self.lex.flip(label)
                for holder, h_indirect in holders:
                    for target, t_indirect in targets:
                        if not self._valid_pair(tok, holder, target):
                            continue
                        score = RULE_PRECISION[rule] * cue.weight * INDIRECT_FACTOR ** (h_indirect + t_indirect)
                        stance = {
                            "holder": holder,
                            "target": target,
                            "label": label,
                            "score": round(min(max(score, 0.0), 1.0), 4),
                            "rule": rule,
                            "cue": {"start": tok.idx, "end": tok.idx + len(tok.text), "text": tok.text},
                        }
                        key = (holder, target)
                        if key not in best or stance["score"] > best[key]["score"]:
                            best[key] = stance
        for stance in self.speech_sentiment(best):
            best.setdefault((stance["holder"], stance["target"]), stance)
        return sorted(best.values(), key=lambda s: (s["cue"]["start"], s["holder"], s["target"]))

    def speech_sentiment(self, found: Mapping[tuple[int, int], dict]) -> Iterator[dict]:
        """A named speaker's stance towards what a tone word of their reported clause evaluates.

        "Lew said Russia's dangerous actions are illegal" -> Lew against Russia (cue "dangerous"): the
        target is an argument of the tone word (the noun it qualifies or its possessor, the subject of
        its predicate or verb, its `of`/`against`/`about` object), never any entity the clause names.
        """
        against, favor = self.lex.negative_label, self.lex.positive_label
        if against is None or favor is None:
            return
        for verb in self.doc:
            if verb.pos_ not in ("VERB", "AUX") or verb.lemma_.lower() not in self.lex.speech_verbs:
                continue
            speakers = self.verb_holders(verb).mentions
            if not speakers or self.conditional(verb) or self.negated(verb):
                continue
            clause = [t for c in verb.children if c.dep_ == "ccomp" for t in c.subtree]
            if verb.dep_ == "parataxis" and not clause:
                inside = {t.i for t in verb.subtree}
                clause = [t for t in verb.head.subtree if t.i not in inside]
            narration = {
                t.i for c in clause if c.dep_ == "advcl" and any(m.dep_ == "mark" and m.lower_ in _NARRATION for m in c.children)
                for t in c.subtree
            }
            clause = [t for t in clause if t.i not in narration]
            inside = {t.i for t in clause}
            votes: dict[int, list[tuple[int, Token, str]]] = {}
            for tok in clause:
                polarity = self.polarity(tok)
                if not polarity or self.conditional(tok) or self.unasserted(tok) or self.negated_above(tok):
                    continue
                rule, targets = "speech_sentiment", self.evaluated(tok)
                if not targets:
                    rule, targets = "speech_agent", self.agent(tok, inside)
                for target, _ in targets:
                    votes.setdefault(target, []).append((polarity, tok, rule))
            tone = [(p, t) for t in clause if (p := self.polarity(t)) and not self.negated_above(t)]
            net = sum(p for p, _ in tone)
            if abs(net) >= TONE_MIN and not votes:
                cue = next(t for p, t in tone if (p < 0) == (net < 0))
                for tok in clause:  # named subjects and objects of the clause's verbs, not its other mentions
                    target = self.ent_of[tok.i]
                    if target is not None and tok.dep_ in ("nsubj", "dobj") and tok.head.i in inside and not self.unasserted(tok):
                        votes.setdefault(target, []).append((net, cue, "speech_tone"))
            for target, tones in votes.items():
                total = sum(p for p, _, _ in tones)
                if not total:
                    continue
                label = against if total < 0 else favor
                _, cue, rule = min((t for t in tones if (t[0] < 0) == (total < 0)), key=lambda t: t[2] != "speech_sentiment")
                for holder, indirect in speakers:
                    if (holder, target) in found or not self._valid_pair(verb, holder, target):
                        continue
                    yield {
                        "holder": holder,
                        "target": target,
                        "label": label,
                        "score": round(RULE_PRECISION[rule] * INDIRECT_FACTOR**indirect, 4),
                        "rule": rule,
                        "cue": {"start": cue.idx, "end": cue.idx + len(cue.text), "text": cue.text},
                    }

    def polarity(self, tok: Token) -> int:
        """-1 or +1 for a negative or positive tone word that is not itself negated, else 0."""
        if self.ent_of[tok.i] is not None or tok.pos_ not in ("ADJ", "NOUN", "VERB", "ADV"):
            return 0
        words = (tok.lemma_.lower(), tok.lower_)
        polarity = -1 if any(w in self.lex.negative for w in words) else 1 if any(w in self.lex.positive for w in words) else 0
        predicate = tok.head if tok.dep_ in ("acomp", "attr", "oprd", "advmod") else tok
        return 0 if self.negated(tok) or self.negated(predicate) else polarity

    def agent(self, tok: Token, clause: set[int]) -> list[tuple[int, bool]]:
        """The named subject of the nearest verb above a tone word in the clause: `Mr. Reid is pushing a partisan agenda`."""
        node = tok
        for _ in range(4):
            if node.head is node or node.head.i not in clause or node.dep_ in ("relcl", "advcl", "ccomp", "parataxis"):
                return []
            node = node.head
            if node.pos_ in ("VERB", "AUX"):
                subj = next((c for c in node.children if c.dep_ == "nsubj"), None)
                if subj is not None:
                    return self.mentions(subj)
        return []

    def evaluated(self, tok: Token) -> list[tuple[int, bool]]:
        """Entities a tone word is about: the noun it qualifies, its predicate's subject, possessor or object."""
        out: list[tuple[int, bool]] = []
        if tok.dep_ == "amod" and tok.head.pos_ in ("NOUN", "PROPN"):
            out += self.mentions(tok.head)  # "Russia's dangerous actions"
        elif tok.dep_ in ("acomp", "attr", "oprd") and tok.head.pos_ in ("VERB", "AUX"):
            subj = next((c for c in tok.head.children if c.dep_ in ("nsubj", "nsubjpass")), None)
            out += self.mentions(subj)  # "Beau Biden was an original", "it was unfair for Mr. Obama"
            out += self.prep_objects(tok.head, frozenset({"for"})) if subj is not None and subj.lower_ == "it" else []
        elif tok.pos_ == "VERB":
            holders = self.verb_holders(tok)
            out += holders.mentions if holders.rule == "svo" else []  # "Obama has failed"
        if tok.pos_ in ("NOUN", "ADJ"):
            out += [(e, False) for c in tok.children if c.dep_ in ("poss", "compound") if (e := self.ent_of[c.i]) is not None]
            out += self.prep_objects(tok, _ABOUT)
        return out

    def _valid_pair(self, cue: Token, holder: int, target: int) -> bool:
        """Both ends distinct, in the cue's sentence and not two mentions of the same name."""
        if holder == target:
            return False
        h, t = self.entities[holder], self.entities[target]
        if h.text.lower() == t.text.lower() or (h.kb_id_ and h.kb_id_ == t.kb_id_):
            return False  # the same name, or the same actor (Putin and Russia)
        sent = cue.sent
        return sent.start <= h.start and h.end <= sent.end and sent.start <= t.start and t.end <= sent.end


def find_stances(
    doc: Doc, entities: Sequence[Span], lexicon: Lexicon, ends: Iterable[str] = DEFAULT_STANCE_ENDS
) -> list[dict]:
    """Stances between those `entities` (spans of `doc`, in document order) labelled one of `ends`, by the rules."""
    return _Finder(doc, entities, lexicon, frozenset(ends)).stances()


__all__ = [
    "DEFAULT_POLARITY",
    "DEFAULT_STANCE_ENDS",
    "RULES_VERSION",
    "RULE_PRECISION",
    "Lexicon",
    "find_stances",
    "load_lexicon",
]
