"""Why SEESAW gold triplets are out of the stance model's reach: each unreachable triplet's cause, counted.

A gold triplet (sentence, holder, label, target) is reachable when some candidate pair of the parse
(pipeline/stance/features.py) has that sentence and both ends matching its names (`seesaw.match_name`,
the metric's own matching). For the others, each end is classed by what the parse has of it:

- `pronoun` / `named`: a candidate end (a named entity, or a pronoun standing for it) in the sentence;
- `name_mismatch`: an entity of `stance_ends` covers a word of the name there but matches another name or none;
- `label_outside`: spaCy (or the domain layer) found it there with a label outside `stance_ends`;
- `not_entity`: a word of the name is in the sentence, inside no entity;
- `quote_speaker`: the holder is not in the sentence but is the subject of a speech verb within
  QUOTE_WINDOW sentences (the speaker of a quote that runs on);
- `beyond_window`: named in the article more than PRONOUN_WINDOW sentences before, and the sentence has a pronoun;
- `pronoun_to_other`: named before, in the pronoun window, and the sentence's pronoun stands for another entity;
- `earlier_no_pronoun`: named before, and the sentence has no third-person pronoun (a title, "the senator");
- `later_only`: named only after the sentence;
- `implicit`: never named in the article (the author, an unnamed side).

A triplet's cause is its harder end's (the order of CAUSES, hardest first): fixing the easier end alone
would not reach it. Both ends present but no pair (two pronouns, one actor, a spaCy sentence break
between them) is `split_or_same_actor`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from spacy.tokens import Doc, Span

from pipeline.research.seesaw import ALIASES, _same_word, _tokens, match_name
from pipeline.research.seesaw_model import Parsed, _load, recall_bound
from pipeline.stance.features import PRONOUN_WINDOW, PRONOUNS, _pronoun_mentions
from pipeline.stance.lexicon import Lexicon, load_lexicon
from pipeline.stance.model import NONE

QUOTE_WINDOW = 3  # sentences before (and one after) where a quote's speaker is looked for
CAUSES = ("implicit", "later_only", "earlier_no_pronoun", "pronoun_to_other", "beyond_window", "quote_speaker", "not_entity", "label_outside",
          "name_mismatch", "split_or_same_actor")
PRESENT = ("named", "pronoun")


def _name_words(name: str) -> list[tuple[str, ...]]:
    """The word tuples a name may be written as: its own words and the aliases that lead to it."""
    own = _tokens(name)
    forms = [own]
    forms += [tuple(alias.split()) for alias, targets in ALIASES.items() if " ".join(own) in targets]
    return forms


def _mentions_words(words: Sequence[str], name: str) -> bool:
    """Whether the lower-case words hold the name: a long-enough word of it, or all words of an alias."""
    for form in _name_words(name):
        if form == _tokens(name):
            if any(len(w) >= 3 and any(_same_word(w, x) for x in words) for w in form):
                return True
        elif all(w in words for w in form):
            return True
    return False


class ArticleView:
    """What one parsed article offers the classification: sentences, entities, pronoun mentions."""

    def __init__(self, p: Parsed, ends: frozenset[str], keep: frozenset[str], lexicon: Lexicon) -> None:
        assert p.doc is not None, "parse(..., keep_docs=True)"
        self.p, self.doc, self.ends, self.lexicon = p, p.doc, ends, lexicon
        doc: Doc = p.doc
        self.kept: list[Span] = [e for e in doc.ents if e.label_ in keep]
        self.sents = list(doc.sents)
        self.sent_of = {tok.i: k for k, s in enumerate(self.sents) for tok in s}
        self.names = p.article.names
        self.match = [match_name(e.text, self.names) if e.label_ in ends else None for e in self.kept]
        self.pronouns = {start: [(j, span) for j, span in found]
                         for start, found in _pronoun_mentions(doc, self.sents, self.kept, ends).items()}
        self.sid_span = {sid: (a, b) for a, b, sid in p.spans}

    def tokens(self, sid: str) -> list[int]:
        """Token indexes of a SEESAW sentence."""
        a, b = self.sid_span[sid]
        return [t.i for t in self.doc if a <= t.idx < b]

    def classify(self, sid: str, name: str, holder: bool) -> str:
        """The status of one end of a gold triplet in SEESAW sentence `sid`."""
        toks = self.tokens(sid)
        if not toks:
            return "implicit"
        lo, hi = toks[0], toks[-1] + 1
        if any(lo <= e.start < hi and m == name for e, m in zip(self.kept, self.match, strict=True)):
            return "named"
        for found in self.pronouns.values():
            if any(lo <= span.start < hi and self.match[j] == name for j, span in found):
                return "pronoun"
        words = [self.doc[i].lower_ for i in toks]
        if _mentions_words(words, name):
            for e in self.doc.ents:
                if e.start < hi and lo < e.end and _mentions_words([t.lower_ for t in e], name):
                    return "name_mismatch" if e.label_ in self.ends else "label_outside"
            return "not_entity"
        k = self.sent_of[lo]
        if holder and self._speaker_near(k, name):
            return "quote_speaker"
        named_at = [self.sent_of[e.start] for e, m in zip(self.kept, self.match, strict=True) if m == name]
        if not named_at:
            return "implicit"
        before = [j for j in named_at if j < k]
        if not before:
            return "later_only"
        has_pronoun = any(t.lower_ in PRONOUNS and t.pos_ == "PRON" for t in self.sents[k])
        if not has_pronoun:
            return "earlier_no_pronoun"
        return "beyond_window" if k - max(before) >= PRONOUN_WINDOW else "pronoun_to_other"

    def _speaker_near(self, k: int, name: str) -> bool:
        """Whether an entity matching `name` is the subject of a speech verb within QUOTE_WINDOW sentences of `k`."""
        for e, m in zip(self.kept, self.match, strict=True):
            if m != name:
                continue
            j = self.sent_of[e.start]
            if not (k - QUOTE_WINDOW <= j <= k + 1) or j == k:
                continue
            head = e.root.head
            if e.root.dep_ in ("nsubj", "nsubjpass") and head.lemma_.lower() in self.lexicon.speech_verbs:
                return True
        return False


def diagnose(parsed: Sequence[Parsed], ends: frozenset[str], keep: frozenset[str],
             lexicon: Lexicon) -> tuple[Counter[str], Counter[tuple[str, str]], int]:
    """Causes of the unreachable gold triplets, per triplet and per (end, status); and the gold count."""
    causes: Counter[str] = Counter()
    per_end: Counter[tuple[str, str]] = Counter()
    gold = 0
    for p in parsed:
        reachable = {(k[0], k[1], lab, k[2]) for k, lab in zip(p.keys, p.labels, strict=True)
                     if k is not None and lab is not None and lab != NONE}
        view = ArticleView(p, ends, keep, lexicon)
        for sid, h, lab, t in sorted(p.article.gold):
            gold += 1
            if (sid, h, lab, t) in reachable:
                causes["reachable"] += 1
                continue
            hs, ts = view.classify(sid, h, True), view.classify(sid, t, False)
            per_end[("holder", hs)] += 1
            per_end[("target", ts)] += 1
            failing = [s for s in (hs, ts) if s not in PRESENT]
            causes[min(failing, key=CAUSES.index) if failing else "split_or_same_actor"] += 1
    return causes, per_end, gold


def report(causes: Counter[str], per_end: Counter[tuple[str, str]], gold: int) -> str:
    """The printed table: each cause's triplets and share of gold, then each end's statuses."""
    lines = [f"{'cause':<22}{'triplets':>9}{'share':>8}   holder  target"]
    for cause in ("reachable", *CAUSES, *PRESENT):
        n = causes.get(cause, 0)
        lines.append(f"{cause:<22}{n:>9}{n / max(1, gold):>8.1%}   {per_end.get(('holder', cause), 0):>6}"
                     f"  {per_end.get(('target', cause), 0):>6}")
    lines.append(f"{'gold':<22}{gold:>9}")
    return "\n".join(lines)


def main(folder: Path, params: Path, patterns: Path, actors: Path, lexicon: Path, limit: int | None = None,
         mentions: frozenset[str] = frozenset()) -> None:
    """Parse SEESAW train with the params' pre-annotator and print the recall bound and the table of causes."""
    parsed, _, pre = _load(folder, params, patterns, actors, lexicon, "train", limit, keep_docs=True, mentions=mentions)
    recall_bound(parsed)
    lex = load_lexicon(lexicon, labels=pre.stance_labels)
    print(report(*diagnose(parsed, frozenset(pre.stance_ends), frozenset(pre.entity_labels), lex)))
