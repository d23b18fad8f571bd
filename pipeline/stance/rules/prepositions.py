"""Rules of cue prepositions: `measures against Russia`."""

from __future__ import annotations

from collections.abc import Iterator

from spacy.tokens import Token

from pipeline.stance.holders import noun_holders, settle, verb_holders
from pipeline.stance.lexicon import Cue
from pipeline.stance.parse import Context, Found
from pipeline.stance.registry import cue_rule


@cue_rule("prepositions", pos="ADP", emits=("prep_against", "speech", "symmetric"))
def preposition_stances(ctx: Context, tok: Token, cue: Cue) -> Iterator[Found]:
    """The holder of the word a cue preposition modifies against or for the preposition's object."""
    head = tok.head
    if ctx.lex.match(head) is not None:
        return  # the head cue handles it
    holders = noun_holders(ctx, head) if head.pos_ in ("NOUN", "PROPN") else verb_holders(ctx, head)
    targets = [m for pobj in tok.children if pobj.dep_ == "pobj" for m in ctx.mentions(pobj)]
    yield from settle(ctx, tok, cue, holders, targets, "prep_against")
