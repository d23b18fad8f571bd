"""Features of a directed entity pair in one sentence, for the learned stance model (pipeline/stance/model.py).

A candidate is every ordered pair of distinct entity mentions of one sentence whose labels may end a
stance. Its features are strings (value 1) read off spaCy's parse: the dependency path between the
two mentions' heads, the cue words and tone words of the lexicon on it and in the sentence, the entity
labels, the rule that fired for the pair (and for the reverse pair), distance and order. Bump
FEATURES_VERSION whenever a feature changes: a model records the version it was trained with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from spacy.tokens import Doc, Span, Token

from pipeline.stance.lexicon import Cue, Lexicon

FEATURES_VERSION = "2"
MAX_PATH = 4  # dependency arcs kept on each side of the path; longer sides are cut (and say so)


@dataclass(frozen=True)
class Candidate:
    """One directed pair of entity mentions (indexes into the entity list), its features and its cue tokens."""

    holder: int
    target: int
    features: tuple[str, ...]
    cues: tuple[tuple[int, str], ...]  # (token index, label) of cue words on the path, then elsewhere between
    anchor: int  # the token joining the two ends in the parse (their lowest common head)

    def cue_for(self, label: str) -> int:
        """The token that best carries `label` for this pair: its first cue of that label, else any cue, else the anchor."""
        return next((i for i, lab in self.cues if lab == label), self.cues[0][0] if self.cues else self.anchor)


def _bucket(n: int) -> str:
    """A coarse, stable bucket of a count."""
    for limit, name in ((1, "1"), (2, "2"), (4, "3-4"), (8, "5-8"), (16, "9-16")):
        if n <= limit:
            return name
    return "17+"


class _Parse:
    """Per-doc memo of what every pair asks of a token: its chain of heads, its cue, its negation."""

    def __init__(self, doc: Doc, lexicon: Lexicon) -> None:
        self.doc, self.lexicon = doc, lexicon
        self._chains: dict[int, list[Token]] = {}
        self._cues: dict[int, Cue | None] = {}
        self._neg: dict[int, bool] = {}

    def chain(self, tok: Token) -> list[Token]:
        """`tok` and its heads up to the root of its sentence."""
        if (found := self._chains.get(tok.i)) is None:
            found = [tok]
            while found[-1].head.i != found[-1].i and len(found) < 64:  # spaCy makes a new Token per access: compare .i
                found.append(found[-1].head)
            self._chains[tok.i] = found
        return found

    def cue(self, tok: Token) -> Cue | None:
        """The lexicon's cue at `tok`."""
        if tok.i not in self._cues:
            self._cues[tok.i] = self.lexicon.match(tok)
        return self._cues[tok.i]

    def negated(self, tok: Token) -> bool:
        """Whether `tok` has a `neg` child."""
        if (found := self._neg.get(tok.i)) is None:
            found = self._neg[tok.i] = any(c.dep_ == "neg" for c in tok.children)
        return found

    def path(self, a: Token, b: Token) -> tuple[list[Token], Token | None, list[Token]]:
        """Tokens from `a` up to (not including) the lowest common head, that head, and from it down to `b`."""
        up = self.chain(a)
        position = {t.i: k for k, t in enumerate(up)}
        down: list[Token] = []
        for tok in self.chain(b):
            if tok.i in position:
                return up[: position[tok.i]], tok, list(reversed(down))
            down.append(tok)
        return up, None, list(reversed(down))


def _word(tok: Token) -> str:
    """What a path token contributes: its lemma for content words, else its part of speech."""
    return tok.lemma_.lower() if tok.pos_ in ("VERB", "NOUN", "ADJ", "ADP") else tok.pos_


def pair_features(
    parse: _Parse,
    entities: Sequence[Span],
    holder: int,
    target: int,
    fired: Mapping[tuple[int, int], dict],
    sentence_cues: Sequence[tuple[int, str]],
) -> Candidate:
    """The features of the directed pair (holder, target) of `entities`; `fired`: rule stances; cues of the sentence."""
    h, t = entities[holder], entities[target]
    lexicon = parse.lexicon
    up, top, down = parse.path(h.root, t.root)
    feats = ["bias", f"hl={h.label_}", f"tl={t.label_}", f"pair={h.label_}>{t.label_}"]
    up_deps = [tok.dep_ for tok in up][:MAX_PATH] + (["..."] if len(up) > MAX_PATH else [])
    down_deps = [tok.dep_ for tok in down][-MAX_PATH:]
    down_deps = (["..."] if len(down) > MAX_PATH else []) + down_deps
    top_word = _word(top) if top is not None else "NONE"
    feats += [f"up={'/'.join(up_deps)}", f"down={'/'.join(down_deps)}", f"top={top_word}",
              f"path={'/'.join(up_deps)}|{'/'.join(down_deps)}", f"top_path={top_word}|{'/'.join(up_deps)}|{'/'.join(down_deps)}",
              f"hdep={h.root.dep_}", f"tdep={t.root.dep_}", f"len={_bucket(len(up) + len(down))}"]
    if h.root.head.pos_ == "ADP":
        feats.append(f"hprep={h.root.head.lower_}")
    if t.root.head.pos_ == "ADP":
        feats.append(f"tprep={t.root.head.lower_}")
    first, last = (h, t) if h.start < t.start else (t, h)
    feats += [f"order={'ht' if h.start < t.start else 'th'}", f"dist={_bucket(max(0, last.start - first.end))}"]
    path_tokens = [*up[1:], *([top] if top is not None else []), *down[:-1]]
    on_path = {tok.i for tok in path_tokens}
    cues: list[tuple[int, str]] = []
    for tok in path_tokens:
        if (cue := parse.cue(tok)) is not None:
            cues.append((tok.i, cue.label))
            feats += [f"cue={cue.label}", f"cue_lemma={cue.lemma}:{cue.label}", f"cue_at={tok.dep_}:{cue.label}"]
        lemma = tok.lemma_.lower()
        if lemma in lexicon.negative or lemma in lexicon.positive:
            feats.append(f"tone={'neg' if lemma in lexicon.negative else 'pos'}")
        if lemma in lexicon.speech_verbs:
            feats.append("speech_on_path")
        if parse.negated(tok):
            feats.append("neg_on_path")
    for i, label in sentence_cues:
        if first.end <= i < last.start and i not in on_path:
            cues.append((i, label))
            feats.append(f"between_cue={label}")
    if (found := fired.get((holder, target))) is not None:
        feats += ["rule", f"rule={found['rule']}:{found['label']}", f"rule_label={found['label']}"]
    if (back := fired.get((target, holder))) is not None:
        feats += [f"rev_rule_label={back['label']}"]
    if h.kb_id_:
        feats.append("h_actor")
    if t.kb_id_:
        feats.append("t_actor")
    anchor = top.i if top is not None else t.root.i
    return Candidate(holder, target, tuple(dict.fromkeys(feats)), tuple(cues), anchor)


def candidates(
    doc: Doc, entities: Sequence[Span], ends: Iterable[str], lexicon: Lexicon, rule_stances: Iterable[dict]
) -> list[Candidate]:
    """Every ordered pair of `entities` (spans of `doc`, document order) in one sentence, both labelled one of `ends`.

    Two mentions of one name or of one actor (Putin and Russia) make no pair, as in the rules.
    """
    ends = frozenset(ends)
    fired = {(s["holder"], s["target"]): s for s in rule_stances}
    parse = _Parse(doc, lexicon)
    by_sentence: dict[int, list[int]] = {}
    for index, span in enumerate(entities):
        if span.label_ in ends:
            by_sentence.setdefault(span.sent.start, []).append(index)
    out = []
    for members in by_sentence.values():
        if len(members) < 2:
            continue
        sent = entities[members[0]].sent
        sentence_cues = [(tok.i, cue.label) for tok in sent if (cue := parse.cue(tok)) is not None]
        for i in members:
            for j in members:
                a, b = entities[i], entities[j]
                if i == j or a.text.lower() == b.text.lower() or (a.kb_id_ and a.kb_id_ == b.kb_id_):
                    continue
                out.append(pair_features(parse, entities, i, j, fired, sentence_cues))
    return out
