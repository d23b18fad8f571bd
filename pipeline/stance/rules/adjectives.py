"""Rules of cue adjectives: `Warsaw is furious with Berlin`, `Orban is close to Putin`."""

from __future__ import annotations

from collections.abc import Iterator

from spacy.tokens import Token

from pipeline.stance.holders import Ends, settle, verb_holders
from pipeline.stance.lexicon import Cue
from pipeline.stance.parse import Context, Found, negated
from pipeline.stance.registry import cue_rule


@cue_rule("adjectives", pos="ADJ", emits=("adjective", "speech", "symmetric"))
def adjective_stances(ctx: Context, tok: Token, cue: Cue) -> Iterator[Found]:
    """The subject of a cue adjective's verb against or for the adjective's prepositional object."""
    head = tok.head if tok.dep_ in ("acomp", "amod") else tok
    holders = verb_holders(ctx, head) if head.pos_ in ("VERB", "AUX") else Ends([], "adjective")
    holders.negated = holders.negated or negated(tok)
    yield from settle(ctx, tok, cue, holders, ctx.prep_objects(tok, cue.preps), "adjective")
