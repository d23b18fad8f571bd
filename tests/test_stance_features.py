"""Features of entity pairs (pipeline/stance/features.py) on hand-built parses: paths, memo, candidates."""

from __future__ import annotations

import random
import time
from pathlib import Path

import spacy
from spacy.tokens import Doc, Span

from pipeline.stance import features
from pipeline.stance.features import (
    MAX_PAIR_NEIGHBOURS,
    PRONOUN_WINDOW,
    Candidate,
    candidates,
    model_candidates,
)
from pipeline.stance.finder import find_stances, model_stances
from pipeline.stance.lexicon import load_lexicon
from pipeline.stance.model import StanceModel, Training, fit
from pipeline.stance.tokens import Parse

ROOT = Path(__file__).resolve().parents[1]
LEXICON = load_lexicon(ROOT / "resources" / "stance_cues.yaml")
NLP = spacy.blank("en")


def parsed(words: list[str], heads: list[int], deps: list[str], ents: list[tuple[int, int, str]],
           lemmas: list[str] | None = None) -> tuple[Doc, list[Span]]:
    """A doc with the given parse (absolute head indexes), lemmas and entity spans (token start, end, label)."""
    pos = ["PROPN" if d in ("nsubj", "dobj", "pobj", "conj") else "VERB" if d == "ROOT" else "X" for d in deps]
    doc = Doc(NLP.vocab, words=words, heads=heads, deps=deps, pos=pos, lemmas=lemmas or [w.lower() for w in words],
              sent_starts=[i == 0 for i in range(len(words))])
    spans = [Span(doc, s, e, label=lab) for s, e, lab in ents]
    doc.ents = spans
    return doc, spans


# "Russia attacked Ukraine ." : attacked is the root; Russia its subject, Ukraine its object.
SVO = (["Russia", "attacked", "Ukraine", "."], [1, 1, 1, 1], ["nsubj", "ROOT", "dobj", "punct"],
       [(0, 1, "GPE"), (2, 3, "GPE")], ["russia", "attack", "ukraine", "."])


def test_the_path_stops_at_the_root_and_joins_at_the_lowest_common_head() -> None:
    doc, _ = parsed(*SVO)
    parse = Parse(doc, LEXICON)
    assert parse.chain(0) == [0, 1]
    assert parse.chain(1) == [1]
    assert parse.path(0, 2) == ([0], 1, [2])


def test_pair_features_name_the_short_path_and_the_cue_on_it() -> None:
    doc, spans = parsed(*SVO)
    cands = candidates(doc, spans, ["GPE"], LEXICON, [])
    assert [(c.holder, c.target) for c in cands] == [(0, 1), (1, 0)]
    feats = set(cands[0].features)
    assert {"up=nsubj", "down=dobj", "path=nsubj|dobj", "len=2", "order=ht"} <= feats
    assert "cue=against" in feats and cands[0].anchor == 1
    assert not any("ROOT" in f for f in feats if f.startswith(("up=", "down=", "path=")))


def test_a_deep_path_is_cut_and_says_so() -> None:
    # A chain: w0 <- w1 <- ... <- w6 (root); entity at w0 and at w6's direct object w7.
    words = [f"w{i}" for i in range(7)] + ["Ukraine"]
    heads = [1, 2, 3, 4, 5, 6, 6, 6]
    deps = ["nsubj", "xcomp", "xcomp", "xcomp", "xcomp", "xcomp", "ROOT", "dobj"]
    doc, spans = parsed(words, heads, deps, [(0, 1, "GPE"), (7, 8, "GPE")])
    cand = candidates(doc, spans, ["GPE"], LEXICON, [])[0]
    assert "up=nsubj/xcomp/xcomp/xcomp/..." in cand.features and "len=5-8" in cand.features


# "Putin spoke . He condemned Ukraine ." : two sentences; "He" stands for Putin.
PRONOUN = (["Putin", "spoke", ".", "He", "condemned", "Ukraine", "."], [1, 1, 1, 4, 4, 4, 4],
           ["nsubj", "ROOT", "punct", "nsubj", "ROOT", "dobj", "punct"], [(0, 1, "PERSON"), (5, 6, "GPE")],
           ["putin", "speak", ".", "he", "condemn", "ukraine", "."])


def pronoun_doc(words, heads, deps, ents, lemmas) -> tuple[Doc, list[Span]]:
    """PRONOUN with its two sentences and a pronoun's part of speech."""
    pos = ["PROPN", "VERB", "PUNCT", "PRON", "VERB", "PROPN", "PUNCT"]
    doc = Doc(NLP.vocab, words=words, heads=heads, deps=deps, pos=pos, lemmas=lemmas,
              sent_starts=[True, False, False, True, False, False, False])
    spans = [Span(doc, s, e, label=lab) for s, e, lab in ents]
    doc.ents = spans
    return doc, spans


def test_a_pronoun_stands_for_the_nearest_preceding_entity_it_can_refer_to() -> None:
    doc, spans = pronoun_doc(*PRONOUN)
    assert candidates(doc, spans, ["PERSON", "GPE"], LEXICON, []) == []  # no sentence names both
    cands = sorted(candidates(doc, spans, ["PERSON", "GPE"], LEXICON, [], pronouns=True), key=lambda c: c.holder)
    assert [(c.holder, c.target, c.at) for c in cands] == [(0, 1, 3), (1, 0, 5)]  # `at`: the pair's sentence
    assert {"h_pron", "pron=he:PERSON", "up=nsubj", "cue=against"} <= set(cands[0].features)
    assert "t_pron" in cands[1].features and "rule" not in cands[0].features


def test_a_pronoun_of_the_wrong_kind_or_too_far_back_stands_for_nothing() -> None:
    words, heads, deps, _, lemmas = PRONOUN
    doc, spans = pronoun_doc(words, heads, deps, [(0, 1, "GPE"), (5, 6, "GPE")], lemmas)  # "he" is no place
    assert candidates(doc, spans, ["GPE"], LEXICON, [], pronouns=True) == []
    far = ["Putin", "spoke", "."] + ["It", "rained", "."] * PRONOUN_WINDOW + ["He", "condemned", "Ukraine", "."]
    n = len(far)
    heads = [1, 1, 1] + [h for k in range(PRONOUN_WINDOW) for h in (4 + 3 * k, 4 + 3 * k, 4 + 3 * k)] + [n - 3] * 4
    deps = ["nsubj", "ROOT", "punct"] + ["nsubj", "ROOT", "punct"] * PRONOUN_WINDOW + ["nsubj", "ROOT", "dobj", "punct"]
    pos = ["PROPN", "VERB", "PUNCT"] + ["PRON", "VERB", "PUNCT"] * PRONOUN_WINDOW + ["PRON", "VERB", "PROPN", "PUNCT"]
    doc = Doc(NLP.vocab, words=far, heads=heads, deps=deps, pos=pos, lemmas=[w.lower() for w in far],
              sent_starts=[w in ("Putin", "It", "He") for w in far])
    spans = [Span(doc, 0, 1, label="PERSON"), Span(doc, n - 2, n - 1, label="GPE")]
    doc.ents = spans
    assert candidates(doc, spans, ["PERSON", "GPE"], LEXICON, [], pronouns=True) == []


def _pronoun_examples(rng: random.Random, n: int, shuffle: bool) -> list[tuple[Candidate, str]]:
    """Pairs of PRONOUN-like docs: the pronoun-held pair is `favor`, the same words with the name held are `none`."""
    out = []
    for _ in range(n):
        verb = rng.choice(["met", "saw", "called"])
        doc, spans = pronoun_doc(*PRONOUN)
        pron = candidates(doc, spans, ["PERSON", "GPE"], LEXICON, [], pronouns=True)
        named, nspans = parsed(["Putin", verb, "Ukraine", "."], [1, 1, 1, 1], ["nsubj", "ROOT", "dobj", "punct"],
                               [(0, 1, "PERSON"), (2, 3, "GPE")])
        plain = candidates(named, nspans, ["PERSON", "GPE"], LEXICON, [])
        out += [(c, "favor" if c.holder == 0 else "none") for c in pron] + [(c, "none") for c in plain]
    if shuffle:
        labels = [lab for _, lab in out]
        rng.shuffle(labels)
        out = [(c, lab) for (c, _), lab in zip(out, labels, strict=True)]
    return out


def test_the_model_learns_what_a_pronoun_holder_shows_and_not_shuffled_labels() -> None:
    test = _pronoun_examples(random.Random(1), 10, shuffle=False)
    for shuffle, expected in ((False, True), (True, False)):
        model = fit(_pronoun_examples(random.Random(7), 40, shuffle), ["against", "favor"], c=1.0, min_count=1,
                    max_iter=2000, sources=("test",), gold_articles=0, licence="test")
        predicted = [model.labels[int(row.argmax())] for row in model.proba([c for c, _ in test])]
        assert (predicted == [lab for _, lab in test]) is expected


def test_a_pair_met_again_through_a_pronoun_is_proposed_once() -> None:
    # "Putin said he opposes NATO ." : (Putin, NATO) directly and through "he".
    words = ["Putin", "said", "he", "opposes", "NATO", "."]
    doc = Doc(NLP.vocab, words=words, heads=[1, 1, 3, 1, 3, 1], deps=["nsubj", "ROOT", "nsubj", "ccomp", "dobj", "punct"],
              pos=["PROPN", "VERB", "PRON", "VERB", "PROPN", "PUNCT"], lemmas=["putin", "say", "he", "oppose", "nato", "."],
              sent_starts=[True] + [False] * 5)
    spans = [Span(doc, 0, 1, label="PERSON"), Span(doc, 4, 5, label="ORG")]
    doc.ents = spans
    cands = candidates(doc, spans, ["PERSON", "ORG"], LEXICON, [], pronouns=True)
    assert sorted((c.holder, c.target) for c in cands) == [(0, 1), (0, 1), (1, 0), (1, 0)]
    # Every pair `against` (p 0.79), surer through a pronoun holder (p 0.99).
    model = StanceModel(("none", "against", "favor"), {"bias": (0.0, 2.0, 0.0), "h_pron": (0.0, 3.0, 0.0)},
                        (0.0, 0.0, 0.0), Training("x", ("test",), 0, 0, "test"))
    found = model_stances(doc, spans, [], LEXICON, ["PERSON", "ORG"], model, 0.5)
    assert sorted((s["holder"], s["target"], s["label"], s["score"]) for s in found) == [
        (0, 1, "against", 0.9867), (1, 0, "against", 0.7870)]


def _quote_doc(first: list[str], second: list[str], ents: list[tuple[int, int, str]]) -> tuple[Doc, list[Span]]:
    """Two sentences, each a flat parse under its verb (the token at the given lemma `say`/any second word)."""
    words = first + second
    def heads_deps(ws: list[str], offset: int) -> tuple[list[int], list[str]]:
        root = offset + next(i for i, w in enumerate(ws) if w in ("said", "condemned", "praised", "rained"))
        deps = ["nsubj" if offset + i == root - 1 else "ROOT" if offset + i == root else "dobj" if w[0].isupper() and
                offset + i > root else "punct" for i, w in enumerate(ws)]
        return [root] * len(ws), deps
    h1, d1 = heads_deps(first, 0)
    h2, d2 = heads_deps(second, len(first))
    pos = ["PROPN" if w[0].isupper() else "VERB" if w.isalpha() else "PUNCT" for w in words]
    lemmas = [{"said": "say", "condemned": "condemn", "praised": "praise"}.get(w, w.lower()) for w in words]
    doc = Doc(NLP.vocab, words=words, heads=h1 + h2, deps=d1 + d2, pos=pos, lemmas=lemmas,
              sent_starts=[i in (0, len(first)) for i in range(len(words))])
    spans = [Span(doc, s, e, label=lab) for s, e, lab in ents]
    doc.ents = spans
    return doc, spans


def test_a_quote_that_runs_on_takes_its_speaker_as_holder() -> None:
    # 'Putin said : " ...  .'  then  'condemned Ukraine . "' : the second sentence continues Putin's quote.
    doc, spans = _quote_doc(["Putin", "said", ":", '"', "."], ["Kyiv", "condemned", "Ukraine", ".", '"'],
                            [(0, 1, "PERSON"), (5, 6, "GPE"), (7, 8, "GPE")])
    plain = candidates(doc, spans, ["PERSON", "GPE"], LEXICON, [], pronouns=True)
    cands = candidates(doc, spans, ["PERSON", "GPE"], LEXICON, [], pronouns=True, speakers=True)
    added = [c for c in cands if c not in plain]
    assert sorted((c.holder, c.target) for c in added) == [(0, 1), (0, 2)]
    assert all({"h_speaker", "speaker=back"} <= set(c.features) and c.at == 6 for c in added)  # at the root
    assert not any("rule" in f for c in added for f in c.features)


def test_no_speaker_outside_a_quote_or_when_named_in_the_sentence() -> None:
    unquoted = _quote_doc(["Putin", "said", "."], ["Kyiv", "condemned", "Ukraine", "."],
                          [(0, 1, "PERSON"), (3, 4, "GPE"), (5, 6, "GPE")])
    named = _quote_doc(["Putin", "said", ":", '"', "."], ["Putin", "condemned", "Ukraine", ".", '"'],
                       [(0, 1, "PERSON"), (5, 6, "PERSON"), (7, 8, "GPE")])
    for doc, spans in (unquoted, named):
        assert candidates(doc, spans, ["PERSON", "GPE"], LEXICON, [], speakers=True) == \
            candidates(doc, spans, ["PERSON", "GPE"], LEXICON, [])


def test_a_quote_before_its_attribution_takes_the_speaker_ahead() -> None:
    # '" Kyiv condemned Ukraine .'  then  '" Putin said .' : the quote closes in the attribution sentence.
    doc, spans = _quote_doc(['"', "Kyiv", "condemned", "Ukraine", "."], ['"', "Putin", "said", "."],
                            [(1, 2, "GPE"), (3, 4, "GPE"), (6, 7, "PERSON")])
    added = [c for c in candidates(doc, spans, ["PERSON", "GPE"], LEXICON, [], speakers=True)
             if "h_speaker" in c.features]
    assert sorted((c.holder, c.target) for c in added) == [(2, 0), (2, 1)]
    assert all("speaker=ahead" in c.features for c in added)


def test_a_definite_title_noun_stands_for_the_entity_met_before() -> None:
    # "Putin spoke . The president condemned Ukraine ." : "the president" is Putin, only with `nominals`.
    words = ["Putin", "spoke", ".", "The", "president", "condemned", "Ukraine", "."]
    doc = Doc(NLP.vocab, words=words, heads=[1, 1, 1, 4, 5, 5, 5, 5],
              deps=["nsubj", "ROOT", "punct", "det", "nsubj", "ROOT", "dobj", "punct"],
              pos=["PROPN", "VERB", "PUNCT", "DET", "NOUN", "VERB", "PROPN", "PUNCT"],
              lemmas=["putin", "speak", ".", "the", "president", "condemn", "ukraine", "."],
              sent_starts=[True, False, False, True, False, False, False, False])
    spans = [Span(doc, 0, 1, label="PERSON"), Span(doc, 6, 7, label="GPE")]
    doc.ents = spans
    assert candidates(doc, spans, ["PERSON", "GPE"], LEXICON, [], pronouns=True) == []
    cands = sorted(candidates(doc, spans, ["PERSON", "GPE"], LEXICON, [], pronouns=True, nominals=True),
                   key=lambda c: c.holder)
    assert [(c.holder, c.target, c.at) for c in cands] == [(0, 1, 4), (1, 0, 6)]
    assert {"h_pron", "h_nominal", "pron=president:PERSON", "cue=against"} <= set(cands[0].features)
    # "a president" is no anaphor: only the definite noun is.
    indefinite = Doc(NLP.vocab, words=[*words[:3], "A", *words[4:]], heads=[1, 1, 1, 4, 5, 5, 5, 5],
                     deps=["nsubj", "ROOT", "punct", "det", "nsubj", "ROOT", "dobj", "punct"],
                     pos=["PROPN", "VERB", "PUNCT", "DET", "NOUN", "VERB", "PROPN", "PUNCT"],
                     lemmas=["putin", "speak", ".", "a", "president", "condemn", "ukraine", "."],
                     sent_starts=[True, False, False, True, False, False, False, False])
    ispans = [Span(indefinite, 0, 1, label="PERSON"), Span(indefinite, 6, 7, label="GPE")]
    indefinite.ents = ispans
    assert candidates(indefinite, ispans, ["PERSON", "GPE"], LEXICON, [], pronouns=True, nominals=True) == []


def _listed(n: int, cue: str = "attacked") -> tuple[Doc, list[Span]]:
    """ "A1 , A2 , ... A{n} attacked B ." in one sentence: A1 the subject, the others its conjuncts, B the object."""
    words: list[str] = []
    for k in range(1, n + 1):
        words += [f"A{k}", ","] if k < n else [f"A{k}"]
    verb = len(words)
    words += [cue, "B", "."]
    heads = [verb if i == 0 else 0 for i in range(verb)] + [verb, verb, verb]
    deps = ["nsubj" if i == 0 else "conj" if w != "," else "punct" for i, w in enumerate(words[:verb])]
    deps += ["ROOT", "dobj", "punct"]
    ents = [(i, i + 1, "GPE") for i, w in enumerate(words) if w[0] in "AB"]
    lemmas = [w.lower() if w != cue else "attack" for w in words]
    return parsed(words, heads, deps, ents, lemmas)


def test_an_ordinary_sentence_keeps_every_pair_under_the_neighbour_bound(monkeypatch) -> None:
    """Up to MAX_PAIR_NEIGHBOURS + 1 mentions in a sentence: every ordered pair, the same candidates as unbounded."""
    doc, spans = _listed(MAX_PAIR_NEIGHBOURS)  # with B: MAX_PAIR_NEIGHBOURS + 1 mentions
    rules = find_stances(doc, spans, LEXICON, ["GPE"])
    bounded = model_candidates(doc, spans, ["GPE"], LEXICON, rules)
    monkeypatch.setattr(features, "MAX_PAIR_NEIGHBOURS", 10**6)
    assert model_candidates(doc, spans, ["GPE"], LEXICON, rules) == bounded
    n = len(spans)
    assert sorted((c.holder, c.target) for c in bounded) == [(i, j) for i in range(n) for j in range(n) if i != j]


def test_1000_entities_in_one_sentence_cost_linear_time() -> None:
    """A list of 1,000 names in one sentence (a million pairs before the bound) gives each mention its nearest ones."""
    doc, spans = _listed(999)
    started = time.perf_counter()
    rules = find_stances(doc, spans, LEXICON, ["GPE"])
    cands = model_candidates(doc, spans, ["GPE"], LEXICON, rules)
    assert time.perf_counter() - started < 5
    assert len(spans) == 1000 and len(rules) == 999  # every name of the list attacked B
    pairs = {(c.holder, c.target) for c in cands}
    assert len(pairs) == len(cands) <= 2 * MAX_PAIR_NEIGHBOURS * len(spans)
    assert {(0, 1), (1, 0), (500, 500 + MAX_PAIR_NEIGHBOURS // 2), (500 + MAX_PAIR_NEIGHBOURS // 2, 500)} <= pairs
    assert (0, 998) not in pairs and (500, 0) not in pairs
    # the last name's neighbours include B right after it, and every rule stance's pair that is near stays a candidate
    assert (998, 999) in pairs and (999, 998) in pairs
    assert any("rule" in c.features for c in cands if (c.holder, c.target) == (998, 999))
