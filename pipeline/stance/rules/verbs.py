"""Rules of cue verbs: `NATO warned Moscow`, `Russia was warned by NATO`, `wants to blame Ukraine`."""

from __future__ import annotations

from collections.abc import Iterator

from spacy.tokens import Token

from pipeline.stance.holders import settle, verb_holders
from pipeline.stance.lexicon import Cue
from pipeline.stance.parse import Context, Found, Mention
from pipeline.stance.registry import cue_rule

# Words before a name that a verb's misparsed object may start with ("slammed President Barack Obama").
_TITLES = frozenset({"the", "president", "sen", "senator", "rep", "representative", "gov", "governor", "mr", "mrs",
                     "ms", "dr", "former", "then", "vice", "speaker", "secretary", "house", "senate", "gen", "general",
                     "prime", "minister", "leader", "majority", "minority", "chancellor", "attorney", "judge"})


@cue_rule("verbs", pos="VERB",
          emits=("svo", "passive", "control", "clause", "adjacent", "symmetric", "speech", "demand"))
def verb_stances(ctx: Context, tok: Token, cue: Cue) -> Iterator[Found]:
    """The doer of a cue verb against or for its object, passive subject, prepositional object or reported subject."""
    holders = verb_holders(ctx, tok)
    rule = holders.rule
    if any(c.dep_ == "nsubjpass" for c in tok.children) or (tok.tag_ == "VBN" and tok.dep_ == "acl"):
        subj = next((c for c in tok.children if c.dep_ == "nsubjpass"), None)
        targets = ctx.mentions(subj) if subj is not None else ctx.mentions(tok.head)
        rule = "passive" if holders.mentions else rule
    else:
        targets = []
        if cue.object:
            for child in tok.children:
                if child.dep_ == "dobj":
                    targets += ctx.mentions(child)
    targets += ctx.prep_objects(tok, cue.preps)
    if not targets and cue.object and holders.mentions and rule == "svo":
        targets = adjacent(ctx, tok)  # "Republicans slammed President Barack Obama", misparsed
        rule = "adjacent" if targets else rule
    if not targets and cue.clause:
        targets = clause_subjects(ctx, tok)
        rule = "clause" if rule == "svo" else rule
    if cue.symmetric and not targets and len(holders.mentions) > 1:
        targets = holders.mentions  # "Cruz and Rubio have been fighting"
        rule = "symmetric"
    yield from settle(ctx, tok, cue, holders, targets, rule)


def adjacent(ctx: Context, verb: Token) -> list[Mention]:
    """The entity named right after a verb, past titles: spaCy's misparse of `slammed President Barack Obama`."""
    for tok in ctx.doc[verb.i + 1 : min(verb.i + 5, verb.sent.end)]:
        ent = ctx.ent_of[tok.i]
        if ent is not None:
            return [(ent, False)]
        if tok.lower_.rstrip(".") not in _TITLES:
            return []
    return []


def clause_subjects(ctx: Context, verb: Token) -> list[Mention]:
    """Subjects of the clause a verb of warning/accusing reports: `warned (of the risk) that X ...`."""
    out: list[Mention] = []
    clauses = [c for c in verb.children if c.dep_ == "ccomp"]
    for prep in verb.children:
        if prep.dep_ == "prep" and prep.lower_ in ("of", "about", "against"):
            for pobj in prep.children:
                clauses += [c for c in pobj.children if c.dep_ in ("acl", "relcl", "ccomp")]
                clauses += [pobj] if pobj.dep_ == "pcomp" else []
    for clause in clauses:
        subj = next((c for c in clause.children if c.dep_ in ("nsubj", "nsubjpass")), None)
        out += ctx.mentions(subj)
    return out
