"""Features of a directed entity pair in one sentence, for the learned stance model (pipeline/stance/model.py).

A candidate is every ordered pair of distinct entity mentions of one sentence whose labels may end a
stance, a mention being a named entity or, with `pronouns`, a third-person pronoun standing for the
nearest preceding named entity it can refer to ("he" a PERSON, "they"/"it" an organisation or a place)
no more than PRONOUN_WINDOW sentences back: the pair's ends are then that entity's index, its features
are read at the pronoun and say so (`h_pron`, `t_pron`). Its features are strings (value 1) read off spaCy's parse: the dependency path between the
two mentions' heads, the cue words and tone words of the lexicon on it and in the sentence, the entity
labels, the rule that fired for the pair (and for the reverse pair), distance and order. Bump
FEATURES_VERSION whenever a feature changes: a model records the version it was trained with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from spacy.tokens import Doc, Span, Token

from pipeline.stance.lexicon import Cue, Lexicon

FEATURES_VERSION = "3"
MAX_PATH = 4  # dependency arcs kept on each side of the path; longer sides are cut (and say so)
PRONOUN_WINDOW = 3  # sentences back (the pronoun's own included) where a pronoun's antecedent is looked for
# Third-person pronouns and the entity labels each may stand for.
PRONOUNS: dict[str, frozenset[str]] = {
    **dict.fromkeys(("he", "him", "his", "she", "her", "hers"), frozenset({"PERSON"})),
    **dict.fromkeys(("they", "them", "their", "it", "its"), frozenset({"ORG", "GPE", "NORP"})),
}


@dataclass(frozen=True)
class Candidate:
    """One directed pair of entity mentions (indexes into the entity list), its features and its cue tokens."""

    holder: int
    target: int
    features: tuple[str, ...]
    cues: tuple[tuple[int, str], ...]  # (token index, label) of cue words on the path, then elsewhere between
    anchor: int  # the token joining the two ends in the parse (their lowest common head)
    at: int = -1  # first token of the holder's mention in this sentence (the pronoun's when it is one)

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
    mentions: tuple[Span, Span],
    holder: int,
    target: int,
    fired: Mapping[tuple[int, int], dict],
    sentence_cues: Sequence[tuple[int, str]],
) -> Candidate:
    """The features of the directed pair (holder, target) of entity indexes, mentioned in one sentence as `mentions`.

    A mention that is a pronoun is a one-token span labelled like its entity; `fired`: the rules' stances
    (read only when both mentions are the entities themselves); the cue words of the sentence.
    """
    h, t = mentions
    h_pron, t_pron = h.text.lower() in PRONOUNS, t.text.lower() in PRONOUNS
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
    if h_pron or t_pron:
        end, pron = ("h", h) if h_pron else ("t", t)
        feats += [f"{end}_pron", f"pron={pron.root.lower_}:{pron.label_}",
                  f"pron_path={end}:{'/'.join(up_deps)}|{'/'.join(down_deps)}"]
    elif (found := fired.get((holder, target))) is not None:
        feats += ["rule", f"rule={found['rule']}:{found['label']}", f"rule_label={found['label']}"]
    if not (h_pron or t_pron) and (back := fired.get((target, holder))) is not None:
        feats += [f"rev_rule_label={back['label']}"]
    if h.kb_id_:
        feats.append("h_actor")
    if t.kb_id_:
        feats.append("t_actor")
    anchor = top.i if top is not None else t.root.i
    return Candidate(holder, target, tuple(dict.fromkeys(feats)), tuple(cues), anchor, h.start)


def _pronoun_mentions(doc: Doc, entities: Sequence[Span], ends: frozenset[str]) -> dict[int, list[tuple[int, Span]]]:
    """Per sentence start, the pronouns standing for an entity: (entity index, the pronoun as a span of its label)."""
    inside = {i for span in entities for i in range(span.start, span.end)}
    sentences = list(doc.sents)
    out: dict[int, list[tuple[int, Span]]] = {}
    for k, sent in enumerate(sentences):
        first = sentences[max(0, k - PRONOUN_WINDOW + 1)].start
        for tok in sent:
            labels = PRONOUNS.get(tok.lower_)
            if labels is None or tok.pos_ != "PRON" or tok.i in inside:
                continue
            # The nearest preceding entity of a label the pronoun may stand for, in this or the previous sentences.
            ante = next((j for j in range(len(entities) - 1, -1, -1) if first <= entities[j].start < tok.i
                         and entities[j].label_ in labels and entities[j].label_ in ends), None)
            if ante is not None:
                span = Span(doc, tok.i, tok.i + 1, label=entities[ante].label_, kb_id=entities[ante].kb_id_)
                out.setdefault(sent.start, []).append((ante, span))
    return out


def candidates(
    doc: Doc, entities: Sequence[Span], ends: Iterable[str], lexicon: Lexicon, rule_stances: Iterable[dict],
    pronouns: bool = False,
) -> list[Candidate]:
    """Every ordered pair of mentions of one sentence of `entities` (spans of `doc`, document order) labelled one of `ends`.

    Two mentions of one name or of one actor (Putin and Russia) make no pair, as in the rules; with
    `pronouns`, a pronoun standing for an entity is a mention of it (never paired with another pronoun).
    """
    ends = frozenset(ends)
    fired = {(s["holder"], s["target"]): s for s in rule_stances}
    parse = _Parse(doc, lexicon)
    by_sentence: dict[int, list[tuple[int, Span]]] = {}
    for index, span in enumerate(entities):
        if span.label_ in ends:
            by_sentence.setdefault(span.sent.start, []).append((index, span))
    named = set(by_sentence)
    if pronouns:
        for start, found in _pronoun_mentions(doc, entities, ends).items():
            by_sentence.setdefault(start, []).extend(found)
    out = []
    for start in sorted(by_sentence):
        members = by_sentence[start]
        if len(members) < 2 or start not in named:
            continue
        sent = members[0][1].sent
        sentence_cues = [(tok.i, cue.label) for tok in sent if (cue := parse.cue(tok)) is not None]
        for i, a in members:
            for j, b in members:
                x, y = entities[i], entities[j]
                if i == j or x.text.lower() == y.text.lower() or (x.kb_id_ and x.kb_id_ == y.kb_id_):
                    continue
                if a is not x and b is not y:
                    continue  # two pronouns
                out.append(pair_features(parse, (a, b), i, j, fired, sentence_cues))
    return out
