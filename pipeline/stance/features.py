"""Features of a directed entity pair in one sentence, for the learned stance model (pipeline/stance/model.py).

A candidate is every ordered pair of distinct entity mentions of one sentence whose labels may end a
stance, a mention being a named entity or, with `pronouns`, a third-person pronoun standing for the
nearest preceding named entity it can refer to ("he" a PERSON, "they"/"it" an organisation or a place)
no more than PRONOUN_WINDOW sentences back: the pair's ends are then that entity's index, its features
are read at the pronoun and say so (`h_pron`, `t_pron`). Two opt-in kinds of mention, off in the
pre-annotator and the model (5-fold CV by story on SEESAW train: recall bound 44.9% -> 48.9%, F1 at
equal precision unchanged; docs/stance-quality.md "The learned stance model"): with `nominals`, a definite title noun
("the president", "the administration": NOMINALS) is an anaphor like a pronoun (`h_nominal`); with
`speakers`, a sentence that holds or continues a quote and names no speaker of its own has the quote's
speaker as a holder, read at the sentence's root (`h_speaker`): the entity that is the subject of a verb
of saying up to SPEAKER_WINDOW sentences before (or in the next sentence, when the quote runs on into it).
The model is trained and served on the same pairs: `model_candidates`, pronouns on.
Its features are strings (value 1) read off spaCy's parse: the dependency path between the two mentions'
heads, the cue words and tone words of the lexicon on it and in the sentence, the entity labels, the
rule that fired for the pair (and for the reverse pair), distance and order. Bump FEATURES_VERSION
whenever a feature changes: a model records the version it was trained with.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from spacy.tokens import Doc, Span, Token

from pipeline.stance.lexicon import Lexicon
from pipeline.stance.tokens import Parse

FEATURES_VERSION = "3"
MAX_PATH = 4  # dependency arcs kept on each side of the path; longer sides are cut (and say so)
PRONOUN_WINDOW = 3  # sentences back (the pronoun's own included) where a pronoun's antecedent is looked for
# A mention pairs with its MAX_PAIR_NEIGHBOURS nearest mentions of its sentence (`_neighbours`): linear, not quadratic
# (1,000 names were a million pairs). A constant, not a params key: a sentence of up to 13 mentions keeps every pair.
MAX_PAIR_NEIGHBOURS = 12
# Definite nouns that name an entity already met ("the president", "the administration"), with their labels:
# anaphors like the pronouns (`nominals`).
NOMINALS: dict[str, frozenset[str]] = {
    **dict.fromkeys(("president", "senator", "leader", "speaker", "governor", "minister", "secretary", "candidate",
                     "congressman", "congresswoman", "lawmaker", "chairman", "chairwoman", "spokesman", "spokeswoman",
                     "nominee", "mayor", "ambassador", "director", "businessman", "billionaire", "democrat",
                     "republican"), frozenset({"PERSON"})),
    **dict.fromkeys(("administration", "party", "government", "committee", "agency", "company", "campaign",
                     "department", "court", "regime", "group", "organization", "chamber"), frozenset({"ORG", "NORP"})),
    **dict.fromkeys(("country", "nation"), frozenset({"GPE"})),
}
SPEAKER_WINDOW = 2  # sentences back where a quote's speaker is looked for (and one ahead)
QUOTES = frozenset({'"', "\u201c", "\u201d", "''", "``"})
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
    h_end: int = -1  # end of that mention (token index, exclusive)
    t_start: int = -1  # the target's mention in this sentence, as for the holder
    t_end: int = -1

    def cue_for(self, label: str) -> int:
        """The token that best carries `label` for this pair: its first cue of that label, else any cue, else the anchor."""
        return next((i for i, lab in self.cues if lab == label), self.cues[0][0] if self.cues else self.anchor)


def _bucket(n: int) -> str:
    """A coarse, stable bucket of a count."""
    for limit, name in ((1, "1"), (2, "2"), (4, "3-4"), (8, "5-8"), (16, "9-16")):
        if n <= limit:
            return name
    return "17+"


def pair_features(
    parse: Parse,
    mentions: tuple[Span, Span],
    holder: int,
    target: int,
    fired: Mapping[tuple[int, int], dict],
    sentence_cues: Sequence[tuple[int, str]],
    speaker: str = "",
) -> Candidate:
    """The features of the directed pair (holder, target) of entity indexes, mentioned in one sentence as `mentions`.

    A mention that is a pronoun is a one-token span labelled like its entity, and so is a quote's speaker
    (`speaker` says how it was found: "back" or "ahead"); `fired`: the rules' stances (read only when
    both mentions are the entities themselves); the cue words of the sentence.
    """
    h, t = mentions
    h_label, t_label = h.label_, t.label_
    h_pron, t_pron = _anaphor(h), _anaphor(t)
    tok = parse.tok
    h_root, t_root = parse.root(h), parse.root(t)
    h_info, t_info = tok(h_root), tok(t_root)
    up, top, down = parse.path(h_root, t_root)
    feats = ["bias", f"hl={h_label}", f"tl={t_label}", f"pair={h_label}>{t_label}"]
    up_deps = [tok(i).dep for i in up][:MAX_PATH] + (["..."] if len(up) > MAX_PATH else [])
    down_deps = [tok(i).dep for i in down][-MAX_PATH:]
    down_deps = (["..."] if len(down) > MAX_PATH else []) + down_deps
    up_path, down_path = "/".join(up_deps), "/".join(down_deps)
    top_word = tok(top).word if top is not None else "NONE"
    feats += [f"up={up_path}", f"down={down_path}", f"top={top_word}",
              f"path={up_path}|{down_path}", f"top_path={top_word}|{up_path}|{down_path}",
              f"hdep={h_info.dep}", f"tdep={t_info.dep}", f"len={_bucket(len(up) + len(down))}"]
    if (h_head := tok(h_info.head)).pos == "ADP":
        feats.append(f"hprep={h_head.lower}")
    if (t_head := tok(t_info.head)).pos == "ADP":
        feats.append(f"tprep={t_head.lower}")
    first, last = (h, t) if h.start < t.start else (t, h)
    feats += [f"order={'ht' if h.start < t.start else 'th'}", f"dist={_bucket(max(0, last.start - first.end))}"]
    path_tokens = [*up[1:], *([top] if top is not None else []), *down[:-1]]
    cues: list[tuple[int, str]] = []
    for i in path_tokens:
        info = tok(i)
        if info.cue is not None:
            cues.append((i, info.cue.label))
        feats += info.on_path
    on_path = set(path_tokens)
    between = sentence_cues[bisect.bisect_left(sentence_cues, (first.end, "")):  # cues in token order
                            bisect.bisect_left(sentence_cues, (last.start, ""))]
    for i, label in between:
        if i not in on_path:
            cues.append((i, label))
            feats.append(f"between_cue={label}")
    if speaker:
        feats += ["h_speaker", f"speaker={speaker}", f"speaker_path={down_path}", f"speaker_t={t_label}"]
        if top is not None and (cue := tok(top).cue) is not None:
            feats.append(f"speaker_root_cue={cue.label}")
    elif h_pron or t_pron:
        end, pron, pron_root = ("h", h, h_info) if h_pron else ("t", t, t_info)
        feats += [f"{end}_pron", f"pron={pron_root.lower}:{pron.label_}", f"pron_path={end}:{up_path}|{down_path}"]
        if (h_pron or t_pron) == "nominal":
            feats.append(f"{end}_nominal")
    elif (found := fired.get((holder, target))) is not None:
        feats += ["rule", f"rule={found['rule']}:{found['label']}", f"rule_label={found['label']}"]
    if not (h_pron or t_pron or speaker) and (back := fired.get((target, holder))) is not None:
        feats += [f"rev_rule_label={back['label']}"]
    if h.kb_id_:
        feats.append("h_actor")
    if t.kb_id_:
        feats.append("t_actor")
    anchor = top if top is not None else t_root
    return Candidate(holder, target, tuple(dict.fromkeys(feats)), tuple(cues), anchor, h.start, h.end, t.start, t.end)


def _anaphor(span: Span) -> str:
    """"pronoun" or "nominal" when a one-token mention is an anaphor standing for an entity, else ""."""
    if len(span) != 1:
        return ""
    tok = span.root
    if tok.lower_ in PRONOUNS:
        return "pronoun"
    return "nominal" if tok.pos_ == "NOUN" and not tok.ent_type_ and tok.lemma_.lower() in NOMINALS else ""


def _anaphor_labels(tok: Token, nominals: bool) -> frozenset[str] | None:
    """The entity labels a token may stand for as a pronoun or (with `nominals`) a definite noun, or None."""
    if tok.pos_ == "PRON":
        return PRONOUNS.get(tok.lower_)
    if nominals and tok.pos_ == "NOUN" and any(c.dep_ == "det" and c.lower_ == "the" for c in tok.children):
        return NOMINALS.get(tok.lemma_.lower())
    return None


def _pronoun_mentions(doc: Doc, sentences: Sequence[Span], entities: Sequence[Span], ends: frozenset[str],
                      nominals: bool = False) -> dict[int, list[tuple[int, Span]]]:
    """Per sentence start, the anaphors standing for an entity: (entity index, the anaphor as a span of its label)."""
    inside = {i for span in entities for i in range(span.start, span.end)}
    starts = [span.start for span in entities]  # in document order, a pronoun's window is a slice of them
    ordered = all(a <= b for a, b in itertools.pairwise(starts))
    out: dict[int, list[tuple[int, Span]]] = {}
    for k, sent in enumerate(sentences):
        first = sentences[max(0, k - PRONOUN_WINDOW + 1)].start
        for tok in sent:
            labels = _anaphor_labels(tok, nominals)
            if labels is None or tok.i in inside:
                continue
            # The nearest preceding entity of a label the pronoun may stand for, in this or the previous sentences.
            back = range(bisect.bisect_left(starts, tok.i) - 1, bisect.bisect_left(starts, first) - 1, -1) \
                if ordered else range(len(entities) - 1, -1, -1)
            ante = next((j for j in back if first <= entities[j].start < tok.i
                         and entities[j].label_ in labels and entities[j].label_ in ends), None)
            if ante is not None:
                span = Span(doc, tok.i, tok.i + 1, label=entities[ante].label_, kb_id=entities[ante].kb_id_)
                out.setdefault(sent.start, []).append((ante, span))
    return out


def _speaker_mentions(doc: Doc, sentences: Sequence[Span], entities: Sequence[Span], ends: frozenset[str],
                      lexicon: Lexicon) -> dict[int, tuple[int, Span, str]]:
    """Per sentence start, the quote's speaker standing as a holder: (entity index, span at the root, "back"/"ahead").

    A sentence qualifies when it holds a quotation mark or starts inside an open quote, and no entity is
    the subject of a verb of saying in it; the speaker is the nearest such subject within SPEAKER_WINDOW
    sentences before, else in the next sentence when the quote runs on into it.
    """
    starts = [sent.start for sent in sentences]
    said: list[int | None] = [None] * len(sentences)  # per sentence: the first entity that is a speech verb's subject
    for j, span in enumerate(entities):
        k = bisect.bisect_right(starts, span.start) - 1
        if said[k] is None and span.label_ in ends and span.root.dep_ in ("nsubj", "nsubjpass") \
                and span.root.head.lemma_.lower() in lexicon.speech_verbs:
            said[k] = j
    quoted: list[bool] = []
    open_quote = False
    for sent in sentences:
        marks = sum(tok.text in QUOTES for tok in sent)
        quoted.append(open_quote or marks > 0)
        open_quote = open_quote != (marks % 2 == 1)
    out: dict[int, tuple[int, Span, str]] = {}
    for k, sent in enumerate(sentences):
        if not quoted[k] or said[k] is not None:
            continue
        back = [(m, "back") for m in range(k - 1, max(-1, k - SPEAKER_WINDOW - 1), -1) if said[m] is not None]
        ahead = [(k + 1, "ahead")] if k + 1 < len(sentences) and said[k + 1] is not None and quoted[k + 1] else []
        if not (chosen := back + ahead):
            continue
        m, how = chosen[0]
        speaker = said[m]
        assert speaker is not None
        who = entities[speaker]
        if any(sent.start <= e.start < sent.end and (e.text.lower() == who.text.lower()
               or (e.kb_id_ and e.kb_id_ == who.kb_id_)) for e in entities):
            continue  # the speaker is named in the sentence: an ordinary mention
        root = sent.root
        out[sent.start] = (speaker, Span(doc, root.i, root.i + 1, label=who.label_, kb_id=who.kb_id_), how)
    return out


def _neighbours(members: Sequence[tuple[int, Span]]) -> list[list[int]]:
    """Per mention of a sentence, the positions in `members` it pairs with: all when MAX_PAIR_NEIGHBOURS + 1 or fewer,
    else its MAX_PAIR_NEIGHBOURS nearest by token (the earlier on a tie) and those it is nearest to (both directions).
    """
    n = len(members)
    if n <= MAX_PAIR_NEIGHBOURS + 1:
        return [[q for q in range(n) if q != p] for p in range(n)]
    order = sorted(range(n), key=lambda p: (members[p][1].start, p))
    starts = [members[p][1].start for p in order]
    partners: list[set[int]] = [set() for _ in range(n)]
    for k, p in enumerate(order):
        left, right = k - 1, k + 1
        for _ in range(MAX_PAIR_NEIGHBOURS):
            take_left = left >= 0 and (right >= n or starts[k] - starts[left] <= starts[right] - starts[k])
            q = order[left] if take_left else order[right]
            left, right = (left - 1, right) if take_left else (left, right + 1)
            partners[p].add(q)
            partners[q].add(p)
    return [sorted(found) for found in partners]


def candidates(
    doc: Doc, entities: Sequence[Span], ends: Iterable[str], lexicon: Lexicon, rule_stances: Iterable[dict],
    pronouns: bool = False, speakers: bool = False, nominals: bool = False,
) -> list[Candidate]:
    """Every ordered pair of mentions of one sentence of `entities` (spans of `doc`, document order) labelled one of `ends`.
    In a sentence of more than MAX_PAIR_NEIGHBOURS + 1 mentions, only with its nearest ones (`_neighbours`).

    Two mentions of one name or of one actor (Putin and Russia) make no pair, as in the rules; with
    `pronouns`, a pronoun standing for an entity is a mention of it (never paired with another pronoun);
    with `nominals`, so is a definite noun of NOMINALS ("the president"); with `speakers`, a quote's
    speaker named in a sentence nearby is a holder of the quote's sentence.
    """
    ends = frozenset(ends)
    fired = {(s["holder"], s["target"]): s for s in rule_stances}
    parse = Parse(doc, lexicon)
    sentences = list(doc.sents)
    starts = [sent.start for sent in sentences]
    by_sentence: dict[int, list[tuple[int, Span]]] = {}
    for index, span in enumerate(entities):
        if span.label_ in ends:  # a span's sentence is the one its first token is in, as for Span.sent
            by_sentence.setdefault(starts[bisect.bisect_right(starts, span.start) - 1], []).append((index, span))
    named = set(by_sentence)
    if pronouns:
        for start, found in _pronoun_mentions(doc, sentences, entities, ends, nominals).items():
            by_sentence.setdefault(start, []).extend(found)
    speaking = _speaker_mentions(doc, sentences, entities, ends, lexicon) if speakers else {}
    lowered = [span.text.lower() for span in entities]  # Span.text joins its tokens on every access
    actors = [span.kb_id_ for span in entities]
    out = []
    for start in sorted(by_sentence):
        members = by_sentence[start]
        if (len(members) < 2 and start not in speaking) or start not in named:
            continue
        sent = sentences[bisect.bisect_left(starts, start)]
        sentence_cues = [(i, cue.label) for i in range(sent.start, sent.end) if (cue := parse.cue(i)) is not None]
        for (i, a), near in zip(members, _neighbours(members), strict=True):
            for j, b in (members[q] for q in near):
                x, y = entities[i], entities[j]
                if i == j or lowered[i] == lowered[j] or (actors[i] and actors[i] == actors[j]):
                    continue
                if a is not x and b is not y:
                    continue  # two pronouns
                out.append(pair_features(parse, (a, b), i, j, fired, sentence_cues))
        if start in speaking:
            i, a, how = speaking[start]
            for j, b in members:
                if b is not entities[j] or i == j or lowered[i] == lowered[j] or (actors[j] and actors[j] == actors[i]):
                    continue  # the speaker holds a stance on a named entity of the sentence
                out.append(pair_features(parse, (a, b), i, j, fired, sentence_cues, speaker=how))
    return out


def model_candidates(
    doc: Doc, entities: Sequence[Span], ends: Iterable[str], lexicon: Lexicon, rule_stances: Iterable[dict],
    speakers: bool = False, nominals: bool = False,
) -> list[Candidate]:
    """The pairs the stance model is trained on and scores: `candidates` with pronouns as mentions."""
    return candidates(doc, entities, ends, lexicon, rule_stances, pronouns=True, speakers=speakers, nominals=nominals)
