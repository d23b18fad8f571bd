"""Entity-to-entity stance: explainable rules over spaCy's dependency parse, driven by a cue lexicon.

A stance goes from a HOLDER entity mention to a TARGET entity mention inside one sentence and is
labelled by the cue word that carries it (resources/stance_cues.yaml, pipeline/stance/lexicon.py).
Each rule (pipeline/stance/rules/, registered in pipeline/stance/registry.py) finds the holder and
the target of one cue in one syntactic pattern; the stance records the rule and the cue, and is
scored by the rule's precision (pipeline/stance/scores.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy
from spacy.tokens import Doc, Span

from pipeline.stance import registry
from pipeline.stance.features import model_candidates
from pipeline.stance.lexicon import DEFAULT_STANCE_ENDS, Lexicon
from pipeline.stance.model import StanceModel
from pipeline.stance.parse import Context, conditional
from pipeline.stance.rules import adjectives, nouns, prepositions, speech_sentiment, verbs
from pipeline.stance.scores import rule_score, stance
from pipeline.stance.vectors import pair_vectors

# The rule families register themselves in the registry when imported; naming them here imports them.
RULE_MODULES = (verbs, nouns, adjectives, prepositions, speech_sentiment)


def find_stances(
    doc: Doc, entities: Sequence[Span], lexicon: Lexicon, ends: Iterable[str] = DEFAULT_STANCE_ENDS
) -> list[dict]:
    """Stances between those `entities` (spans of `doc`, in document order) labelled one of `ends`, by the rules.

    One stance per (holder, target): the best-scored (the first found on a tie), in cue order.
    """
    ctx = Context(doc, entities, lexicon, ends)
    best: dict[tuple[int, int], dict] = {}
    for i in lexicon.cue_positions(doc):
        tok = doc[i]
        cue = lexicon.match(tok)
        if cue is None or conditional(tok) or ctx.unasserted(tok):
            continue
        above = ctx.negated_above(tok)
        for holders, targets, rule, negated in registry.cue_matches(ctx, tok, cue):
            label = cue.label
            if negated or above:
                if cue.negated == "drop":
                    continue
                label = lexicon.flip(label)
            for holder, h_indirect in holders:
                for target, t_indirect in targets:
                    if not ctx.valid_pair(tok, holder, target):
                        continue
                    found = stance(holder, target, label, rule_score(rule, cue.weight, h_indirect + t_indirect), rule, tok)
                    key = (holder, target)
                    if key not in best or found["score"] > best[key]["score"]:
                        best[key] = found
    for found in registry.doc_stances(ctx, best):
        best.setdefault((found["holder"], found["target"]), found)
    return sorted(best.values(), key=lambda s: (s["cue"]["start"], s["holder"], s["target"]))


def model_stances(
    doc: Doc,
    entities: Sequence[Span],
    rule_stances: Sequence[dict],
    lexicon: Lexicon,
    ends: Iterable[str],
    model: StanceModel,
    threshold: float,
) -> list[dict]:
    """Stances the learned model proposes among `entities`, the rules' stances being its features and explanation.

    Pronouns count as mentions of the entity they stand for (features.model_candidates), so one pair of
    entities may be met in several sentences: it is proposed once, where the model is surest. A pair
    is proposed with its most probable label other than `none` when that probability is at least
    `threshold`; `score` is that probability, `rule` and `cue` the rule's when one fired with that label,
    else `model` and the pair's strongest cue word (or the word joining the two ends).
    """
    cands = model_candidates(doc, entities, ends, lexicon, rule_stances)
    if not cands:
        return []
    fired = {(s["holder"], s["target"]): s for s in rule_stances}
    probs = model.proba(cands, pair_vectors(doc, cands) if model.uses_encoder else None)
    best_of: dict[tuple[int, int], dict] = {}
    for cand, row in zip(cands, probs, strict=True):
        best = 1 + int(numpy.argmax(row[1:]))
        if row[best] < threshold:
            continue
        label = model.labels[best]
        rule = fired.get((cand.holder, cand.target))
        if rule is not None and rule["label"] == label:
            found = {**rule, "score": round(float(row[best]), 4)}
        else:
            found = stance(cand.holder, cand.target, label, round(float(row[best]), 4), "model",
                           doc[cand.cue_for(label)])
        key = (cand.holder, cand.target)  # a pair met again through a pronoun: its most probable stance
        if key not in best_of or found["score"] > best_of[key]["score"]:
            best_of[key] = found
    return sorted(best_of.values(), key=lambda s: (s["cue"]["start"], s["holder"], s["target"]))
