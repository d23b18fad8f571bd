"""The dependency-parse machinery every stance rule shares: entity mentions, negation and unasserted events."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from spacy.tokens import Doc, Span, Token

from pipeline.stance.lexicon import Lexicon

# An entity mention one end of a stance reaches: (entity index, reached indirectly through an affiliation).
Mention = tuple[int, bool]

MAX_CLIMB = 8  # how far up the parse the rules climb from a word
_CONDITIONAL = frozenset({"if", "unless", "whether"})
# Dependencies through which a negation of the governing word reaches a cue ("did not want to resort to it").
_GOVERNED = frozenset({"xcomp", "pcomp", "pobj", "prep", "dobj", "acomp", "oprd", "attr"})
# Dependencies from an event up to a word that may leave it unasserted ("fears that Russia will try to occupy").
_COMPLEMENT = frozenset({"xcomp", "ccomp", "pcomp", "pobj", "prep", "dobj", "conj", "acl"})


class Found(NamedTuple):
    """What a cue rule finds at one cue: holders, targets, the rule's name and whether the cue is negated."""

    holders: list[Mention]
    targets: list[Mention]
    rule: str
    negated: bool


class Context:
    """One doc being searched: its entities that may end a stance, indexed by token, and the lexicon."""

    def __init__(self, doc: Doc, entities: Sequence[Span], lexicon: Lexicon, ends: Iterable[str]) -> None:
        self.doc = doc
        self.lex = lexicon
        self.entities = entities
        self._sents: dict[int, tuple[int, int]] = {}  # per cue token, its sentence's bounds (Token.sent scans for them)
        self._names = [span.text.lower() for span in entities]  # Span.text joins its tokens on every access
        ends = frozenset(ends)
        self.ent_of: list[int | None] = [None] * len(doc)
        for index, span in enumerate(entities):
            if span.label_ in ends:
                for tok in span:
                    self.ent_of[tok.i] = index

    def mentions(self, tok: Token | None) -> list[Mention]:
        """Entities a noun phrase headed by `tok` refers to, with its conjuncts and affiliations."""
        if tok is None:
            return []
        found: list[Mention] = []
        self._collect(tok, found, depth=0)
        seen: dict[int, bool] = {}
        for ent, indirect in found:
            seen[ent] = seen.get(ent, True) and indirect
        return list(seen.items())

    def _collect(self, tok: Token, found: list[Mention], depth: int) -> None:
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
                        if pobj.dep_ == "pobj" and (pobj_ent := self.ent_of[pobj.i]) is not None:
                            found.append((pobj_ent, True))
        for child in tok.children:
            if child.dep_ == "conj" and depth < 6:
                self._collect(child, found, depth + 1)

    def prep_objects(self, tok: Token, preps: frozenset[str]) -> list[Mention]:
        """Entities in the objects of `tok`'s prepositions listed in `preps`."""
        out: list[Mention] = []
        for child in tok.children:
            if child.dep_ in ("prep", "agent", "dative") and child.lower_ in preps:
                for pobj in child.children:
                    if pobj.dep_ in ("pobj", "pcomp"):
                        out += self.mentions(pobj)
        return out

    def children_entities(self, tok: Token, deps: Iterable[str]) -> list[Mention]:
        """Entities that are direct children of `tok` by one of `deps`: `a Trump ally`, `Russia's actions`."""
        deps = frozenset(deps)
        return [(e, False) for c in tok.children if c.dep_ in deps if (e := self.ent_of[c.i]) is not None]

    def negated_above(self, tok: Token) -> bool:
        """Whether a word governing `tok` in its clause is negated or a negator: `did not want to resort to ...`."""
        node = tok
        for _ in range(MAX_CLIMB):
            if node.dep_ not in _GOVERNED or node.head is node:
                return False
            node = node.head
            if negated(node) or (node.pos_ in ("VERB", "NOUN") and node.lemma_.lower() in self.lex.negators):
                return True
        return False

    def unasserted(self, tok: Token) -> bool:
        """Whether `tok` is an event its governors do not assert: deterred, prevented, feared, considered."""
        node = tok
        for _ in range(MAX_CLIMB):
            if node.head is node or node.dep_ not in _COMPLEMENT:
                return False
            node = node.head
            if node.pos_ in ("VERB", "NOUN") and node.lemma_.lower() in self.lex.irrealis:
                return True
        return False

    def valid_pair(self, cue: Token, holder: int, target: int) -> bool:
        """Both ends distinct, in the cue's sentence and not two mentions of the same name."""
        if holder == target:
            return False
        h, t = self.entities[holder], self.entities[target]
        if self._names[holder] == self._names[target] or (h.kb_id_ and h.kb_id_ == t.kb_id_):
            return False  # the same name, or the same actor (Putin and Russia)
        if (bounds := self._sents.get(cue.i)) is None:
            sent = cue.sent
            bounds = self._sents[cue.i] = (sent.start, sent.end)
        start, end = bounds
        return start <= h.start and h.end <= end and start <= t.start and t.end <= end


def negated(tok: Token) -> bool:
    """Whether `tok` carries a negation (`not`, `never`, `no`)."""
    return any(
        c.dep_ == "neg"
        or (c.lower_ in ("no", "never") and c.dep_ in ("det", "advmod"))
        or (c.dep_ in ("nsubj", "nsubjpass") and any(g.lower_ == "neither" for g in c.children))  # "neither X nor Y will be"
        for c in tok.children
    )


def conditional(tok: Token) -> bool:
    """Whether `tok` sits in an if/unless clause (a hypothetical is not a stance)."""
    node = tok
    for _ in range(MAX_CLIMB):
        if node.dep_ == "advcl" and any(c.dep_ == "mark" and c.lower_ in _CONDITIONAL for c in node.children):
            return True
        if node.head is node:
            return False
        node = node.head
    return False


def dative_like(child: Token) -> bool:
    """A name right after a verb parsed as modifier of its object: spaCy's misparse of `promised Moscow sanctions`."""
    noun = child.head
    return child.dep_ == "nmod" and child.pos_ == "PROPN" and noun.dep_ == "dobj" and child.i == noun.head.i + 1
