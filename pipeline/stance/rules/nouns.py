"""Rules of cue nouns and role nouns: `Russia's aggression against Ukraine`, `X drew criticism from Y`, `a Trump ally`."""

from __future__ import annotations

from collections.abc import Iterator

from spacy.tokens import Token

from pipeline.stance.holders import Ends, noun_holders, settle, verb_holders
from pipeline.stance.lexicon import Cue
from pipeline.stance.parse import Context, Found, Mention, dative_like, negated
from pipeline.stance.registry import cue_rule


@cue_rule("nouns", pos="NOUN", emits=("possessive", "light_verb", "undergo", "symmetric", "speech", "demand"))
def noun_stances(ctx: Context, tok: Token, cue: Cue) -> Iterator[Found]:
    """The possessor or light verb's subject of a cue noun against or for its prepositional object."""
    holders = noun_holders(ctx, tok)
    rule = holders.rule
    targets = ctx.prep_objects(tok, cue.preps)
    if not targets and rule == "light_verb" and tok.dep_ == "dobj":
        targets = ctx.prep_objects(tok.head, cue.preps)  # "give guarantees to Russia"
        for child in tok.head.children:  # "give Russia guarantees", "promised Moscow sanctions"
            if child.dep_ == "dative":
                targets += ctx.mentions(child)
        targets += [(e, False) for c in tok.children if dative_like(c) if (e := ctx.ent_of[c.i]) is not None]
    if cue.symmetric:
        between = ctx.prep_objects(tok, frozenset({"between"}))
        if len(between) > 1:
            yield Found(between, between, "symmetric", negated(tok))
            return
    if not targets and rule == "possessive" and holders.mentions:
        targets = undergoer(ctx, tok)  # "the FBI faces attacks from Trump"
    if tok.dep_ == "dobj" and tok.head.lemma_.lower() in ctx.lex.undergo_verbs:
        # "X drew criticism from Y", "X won the support of Y": the giver holds it, the receiver is its target
        givers = ctx.prep_objects(tok.head, frozenset({"from", "by"})) or ctx.prep_objects(tok, frozenset({"of"}))
        if givers and not ctx.ent_of[tok.i] and not cue.symmetric:
            holders, rule, targets = Ends(givers, "undergo"), "undergo", undergoer(ctx, tok)
    yield from settle(ctx, tok, cue, holders, targets, rule)


def undergoer(ctx: Context, noun: Token) -> list[Mention]:
    """Subject of a verb of undergoing whose object is the noun cue: `X faced criticism from Y`."""
    head = noun.head
    if noun.dep_ == "pobj" and head.pos_ == "ADP":
        head = head.head  # "came under attack from"
    if head.pos_ in ("VERB", "AUX") and head.lemma_.lower() in ctx.lex.undergo_verbs:
        return verb_holders(ctx, head).mentions
    return []


@cue_rule("roles", pos="ROLE", emits=("role", "symmetric"))
def role_stances(ctx: Context, tok: Token, cue: Cue) -> Iterator[Found]:
    """Holder and target of a role noun: `King, an avid opponent of Bush`, `Pecker is a Trump ally`."""
    targets = ctx.prep_objects(tok, cue.preps)
    if not targets:
        targets = ctx.children_entities(tok, ("compound", "poss", "amod"))
    holders = ctx.children_entities(tok, ("appos",))
    if not holders:
        if tok.dep_ == "appos" or (tok.dep_ == "compound" and ctx.ent_of[tok.head.i] is not None):
            holders = ctx.mentions(tok.head)
        elif tok.dep_ in ("attr", "oprd") and tok.head.pos_ in ("VERB", "AUX"):
            holders = verb_holders(ctx, tok.head).mentions
    yield from settle(ctx, tok, cue, Ends(holders, "role", negated=negated(tok)), targets, "role")
