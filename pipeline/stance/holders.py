"""Who holds a cue's stance: the doer of a verb, the possessor of a noun, the speaker or demander around it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from spacy.tokens import Token

from pipeline.stance.lexicon import Cue
from pipeline.stance.parse import MAX_CLIMB, Context, Found, Mention, dative_like, negated

_THIRD_PERSON = frozenset({"he", "she", "it", "they", "him", "her", "them", "its", "their", "his", "this", "that"})
_RELATIVE = frozenset({"who", "which", "that", "whom"})
# Dependencies from an act up to the verb demanding it ("demands that X sign treaties to prevent Y ...").
_DEMANDED = frozenset({"relcl", "acl", "conj", "xcomp", "ccomp", "dobj", "pobj", "prep", "advcl"})


@dataclass
class Ends:
    """Entity mentions found for one end of a stance, and the rule that found them."""

    mentions: list[Mention]
    rule: str
    speech_ok: bool = False  # no explicit holder: the speaker of a reported clause may hold it
    negated: bool = False


def verb_holders(ctx: Context, verb: Token, hops: int = 0) -> Ends:
    """Who does what `verb` says: subject, passive agent, shared or controlling subject."""
    verb_negated = negated(verb)
    agent = next((c for c in verb.children if c.dep_ == "agent"), None)
    if agent is not None:
        pobj = next((c for c in agent.children if c.dep_ == "pobj"), None)
        return Ends(ctx.mentions(pobj), "passive", negated=verb_negated)
    subj = next((c for c in verb.children if c.dep_ in ("nsubj", "csubj")), None)
    if subj is not None:
        if verb.dep_ == "relcl" and subj.lower_ in _RELATIVE:
            mentions = ctx.mentions(verb.head)
            return Ends(mentions, "svo" if mentions else "control", negated=verb_negated)
        mentions = ctx.mentions(subj)
        speech_ok = not mentions and subj.lower_ not in _THIRD_PERSON
        return Ends(mentions, "svo", speech_ok=speech_ok, negated=verb_negated)
    if any(c.dep_ == "nsubjpass" for c in verb.children):
        return Ends([], "passive", speech_ok=True, negated=verb_negated)
    if hops >= MAX_CLIMB:
        return Ends([], "svo", negated=verb_negated)
    gov = verb.head
    if verb.dep_ == "pcomp" and gov.pos_ == "ADP":
        gov = gov.head
    if verb.dep_ == "conj" and gov.pos_ in ("VERB", "AUX"):
        ends = verb_holders(ctx, gov, hops + 1)
        ends.negated = ends.negated or verb_negated
        return ends
    if verb.dep_ == "acl" and gov.pos_ in ("NOUN", "PROPN"):
        ends = noun_holders(ctx, gov)
        return Ends(ends.mentions, "control", ends.speech_ok, verb_negated or ends.negated)
    if verb.dep_ in ("xcomp", "pcomp", "advcl") and gov.pos_ in ("VERB", "AUX") and gov is not verb:
        gov_negated = negated(gov) or gov.lemma_.lower() in ctx.lex.negators
        obj = next((c for c in gov.children if c.dep_ == "dobj"), None)
        if obj is not None and verb.dep_ in ("xcomp", "pcomp"):
            return Ends(ctx.mentions(obj), "control", negated=verb_negated or gov_negated)
        ends = verb_holders(ctx, gov, hops + 1)
        return Ends(ends.mentions, "control", ends.speech_ok, verb_negated or gov_negated)
    return Ends([], "svo", speech_ok=True, negated=verb_negated)


def noun_holders(ctx: Context, noun: Token) -> Ends:
    """Who holds a noun cue: possessor or modifier, `by`/`from` phrase, else the light verb's subject."""
    noun_negated = negated(noun)
    direct: list[Mention] = []
    for child in noun.children:
        ent = ctx.ent_of[child.i]
        if child.dep_ in ("poss", "compound", "amod", "nmod") and ent is not None and not dative_like(child):
            direct.append((ent, False))
        elif child.dep_ == "poss" and child.pos_ != "PRON":
            direct += ctx.mentions(child)  # "the Obama administration's sanctions against Russia"
        elif child.dep_ in ("prep", "agent") and child.lower_ in ("by", "from"):
            for pobj in child.children:
                if pobj.dep_ == "pobj":
                    direct += ctx.mentions(pobj)
    if direct:
        return Ends(direct, "possessive", negated=noun_negated)
    head = noun.head
    if noun.dep_ == "pobj" and head.pos_ == "ADP" and head.head.pos_ in ("VERB", "AUX"):
        head = head.head
    elif noun.dep_ not in ("dobj", "attr", "nsubjpass", "oprd", "conj") or head.pos_ not in ("VERB", "AUX"):
        return Ends([], "possessive", speech_ok=True, negated=noun_negated)
    if noun.dep_ == "conj":
        return noun_holders(ctx, head) if head.pos_ == "NOUN" else Ends([], "light_verb", negated=noun_negated)
    ends = verb_holders(ctx, head)
    verb_negated = ends.negated or head.lemma_.lower() in ctx.lex.negators
    return Ends(ends.mentions, "light_verb", ends.speech_ok, noun_negated or verb_negated)


def speaker(ctx: Context, tok: Token) -> list[Mention]:
    """The entity reporting the clause around `tok` (its `say`-verb subject), if any.

    Attribution ("according to the New York Times") names a source, never a holder.
    """
    node = tok
    for _ in range(MAX_CLIMB):
        for child in node.children:
            if child.dep_ == "parataxis" and child.lemma_.lower() in ctx.lex.speech_verbs:
                return verb_holders(ctx, child).mentions
        parent = node.head
        if parent is node:
            return []
        if node.dep_ in ("ccomp", "xcomp") and parent.lemma_.lower() in ctx.lex.speech_verbs:
            speakers = verb_holders(ctx, parent).mentions
            if speakers:
                return speakers
        node = parent
    return []


def demander(ctx: Context, tok: Token) -> list[Mention]:
    """Who demands the act `tok` is part of: `Russia demands guarantees that would prevent X ...`."""
    node, demanded_thing = tok, False
    for _ in range(MAX_CLIMB):
        parent = node.head
        if parent is node or node.dep_ not in _DEMANDED:
            return []
        demanded_thing = demanded_thing or node.dep_ in ("relcl", "acl")
        if parent.pos_ in ("VERB", "AUX") and parent.lemma_.lower() in ctx.lex.demand_verbs:
            if not demanded_thing:
                return []  # "seeking to press X" is the seeker's own act, found by the control rule
            ends = verb_holders(ctx, parent)
            return ends.mentions or (speaker(ctx, parent) if ends.speech_ok else [])
        node = parent
    return []


def settle(ctx: Context, tok: Token, cue: Cue, holders: Ends, targets: list[Mention], rule: str) -> Iterator[Found]:
    """The stances a cue rule's ends give, after the rules every cue shares: `speech`, `demand`, `symmetric`.

    With no named holder, the speaker of the reported clause holds it (`speech`); the demander of a
    demanded act of opposition holds it (`demand`); a symmetric cue also goes the other way.
    """
    if not targets:
        return
    if not holders.mentions and holders.speech_ok:
        speakers = speaker(ctx, tok)
        if speakers:
            yield Found(speakers, targets, "speech", holders.negated)
        return
    cue_negated = holders.negated or negated(tok)
    if rule in ("control", "light_verb") and cue.label == ctx.lex.negative_label:
        demanders = demander(ctx, tok)  # "demanding guarantees that would prevent X from expanding"
        if demanders:
            holders.mentions, rule = demanders, "demand"
    yield Found(holders.mentions, targets, rule, cue_negated)
    if cue.symmetric and rule != "symmetric":
        yield Found(targets, holders.mentions, "symmetric", cue_negated)
