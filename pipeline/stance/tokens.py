"""What the pair features read of a parsed document's tokens, from its token arrays rather than spaCy Token objects."""

from __future__ import annotations

from dataclasses import dataclass

import numpy
from spacy.attrs import DEP, HEAD, LEMMA, LOWER, POS
from spacy.tokens import Doc, Span

from pipeline.stance.lexicon import Cue, Lexicon

_CONTENT = frozenset({"VERB", "NOUN", "ADJ", "ADP"})


@dataclass(frozen=True, slots=True)
class Tok:
    """What the pair features read of one token, read once per document."""

    dep: str
    pos: str
    lower: str
    word: str  # its lemma for content words, else its part of speech
    head: int
    cue: Cue | None
    on_path: tuple[str, ...]  # the features it adds when it lies on a pair's path


class Parse:
    """Per-doc memo of what every pair asks of a token: its attributes, cue and negation, and its chain of heads.

    spaCy builds a new Token (and decodes its strings) on every access; a document's pairs ask of the same
    few tokens again and again, so the document is read once as arrays and the pairs work on token indexes.
    """

    def __init__(self, doc: Doc, lexicon: Lexicon) -> None:
        self.doc, self.lexicon = doc, lexicon
        self._strings = doc.vocab.strings
        arr = doc.to_array([HEAD, DEP, POS, LOWER, LEMMA]) if len(doc) else numpy.zeros((0, 5), "uint64")
        offsets = arr[:, 0].astype("int64")  # HEAD is the offset to the head, stored as uint64
        heads = numpy.arange(len(doc)) + offsets
        self._heads: list[int] = heads.tolist()
        self._attrs: list[list[int]] = arr[:, 1:].tolist()  # string ids: dep, pos, lower, lemma
        negs = (arr[:, 1] == self._strings["neg"]) & (offsets != 0)
        self._neg_child = set(heads[negs].tolist())  # tokens with a `neg` child
        self._toks: dict[int, Tok] = {}
        self._cues = {i: cue for i in lexicon.cue_positions(doc) if (cue := lexicon.match(doc[i])) is not None}
        self._chains: dict[int, list[int]] = {}
        self._roots: dict[tuple[int, int], int] = {}

    def tok(self, i: int) -> Tok:
        """Token `i`, read once."""
        if (found := self._toks.get(i)) is None:
            strings, lexicon, cue = self._strings, self.lexicon, self.cue(i)
            dep_id, pos_id, lower_id, lemma_id = self._attrs[i]
            dep, pos, lemma = strings[dep_id], strings[pos_id], strings[lemma_id].lower()
            feats = [f"cue={cue.label}", f"cue_lemma={cue.lemma}:{cue.label}", f"cue_at={dep}:{cue.label}"] \
                if cue is not None else []
            if lemma in lexicon.negative or lemma in lexicon.positive:
                feats.append(f"tone={'neg' if lemma in lexicon.negative else 'pos'}")
            if lemma in lexicon.speech_verbs:
                feats.append("speech_on_path")
            if i in self._neg_child:
                feats.append("neg_on_path")
            word = lemma if pos in _CONTENT else pos
            found = self._toks[i] = Tok(dep, pos, strings[lower_id], word, self._heads[i], cue, tuple(feats))
        return found

    def cue(self, i: int) -> Cue | None:
        """The lexicon's cue at token `i`."""
        return self._cues.get(i)

    def root(self, span: Span) -> int:
        """The index of the syntactic root of `span` (spaCy recomputes it on every access)."""
        if (found := self._roots.get((span.start, span.end))) is None:
            found = self._roots[span.start, span.end] = span.root.i
        return found

    def chain(self, i: int) -> list[int]:
        """Token `i` and its heads up to the root of its sentence."""
        if (found := self._chains.get(i)) is None:
            found = [i]
            while (head := self._heads[found[-1]]) != found[-1] and len(found) < 64:
                found.append(head)
            self._chains[i] = found
        return found

    def path(self, a: int, b: int) -> tuple[list[int], int | None, list[int]]:
        """Tokens from `a` up to (not including) the lowest common head, that head, and from it down to `b`."""
        up = self.chain(a)
        position = {t: k for k, t in enumerate(up)}
        down: list[int] = []
        for t in self.chain(b):
            if t in position:
                return up[: position[t]], t, list(reversed(down))
            down.append(t)
        return up, None, list(reversed(down))
