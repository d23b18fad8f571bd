"""Rules of the tone of reported speech: `Lew said Russia's dangerous actions are illegal` -> Lew against Russia."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from spacy.tokens import Token

from pipeline.stance.holders import verb_holders
from pipeline.stance.lexicon import lemma_positions
from pipeline.stance.parse import Context, Mention, conditional, negated
from pipeline.stance.registry import doc_rule
from pipeline.stance.scores import rule_score, stance

TONE_MIN = 1
# Prepositions introducing what a tone word of reported speech is about; never a venue (`in`, `at`).
_ABOUT = frozenset({"of", "against", "about", "with", "toward", "towards"})
# Adverbial clauses that are the writer's narration beside a reported clause, not part of it.
_NARRATION = frozenset({"while", "whereas", "as", "after", "before", "when", "since"})

# A tone vote for a target: (polarity, the tone word, the rule that found the target).
Vote = tuple[int, Token, str]


@doc_rule("speech_sentiment", emits=("speech_sentiment", "speech_agent", "speech_tone"))
def speech_sentiment(ctx: Context, found: Mapping[tuple[int, int], dict]) -> Iterator[dict]:
    """A named speaker's stance towards what a tone word of their reported clause evaluates.

    "Lew said Russia's dangerous actions are illegal" -> Lew against Russia (cue "dangerous"): the
    target is an argument of the tone word (the noun it qualifies or its possessor, the subject of
    its predicate or verb, its `of`/`against`/`about` object), never any entity the clause names.
    """
    against, favor = ctx.lex.negative_label, ctx.lex.positive_label
    if against is None or favor is None:
        return
    for i in lemma_positions(ctx.doc, ctx.lex.speech_verbs):
        verb = ctx.doc[i]
        if verb.pos_ not in ("VERB", "AUX"):
            continue
        speakers = verb_holders(ctx, verb).mentions
        if not speakers or conditional(verb) or negated(verb):
            continue
        clause = reported_clause(verb)
        for target, tones in _votes(ctx, clause).items():
            total = sum(p for p, _, _ in tones)
            if not total:
                continue
            label = against if total < 0 else favor
            _, cue, rule = min((t for t in tones if (t[0] < 0) == (total < 0)), key=lambda t: t[2] != "speech_sentiment")
            for holder, indirect in speakers:
                if (holder, target) in found or not ctx.valid_pair(verb, holder, target):
                    continue
                yield stance(holder, target, label, rule_score(rule, 1.0, indirect), rule, cue)


def reported_clause(verb: Token) -> list[Token]:
    """The tokens of the clause a speech verb reports, without the writer's narration beside it."""
    clause = [t for c in verb.children if c.dep_ == "ccomp" for t in c.subtree]
    if verb.dep_ == "parataxis" and not clause:
        inside = {t.i for t in verb.subtree}
        clause = [t for t in verb.head.subtree if t.i not in inside]
    narration = {
        t.i for c in clause if c.dep_ == "advcl" and any(m.dep_ == "mark" and m.lower_ in _NARRATION for m in c.children)
        for t in c.subtree
    }
    return [t for t in clause if t.i not in narration]


def _votes(ctx: Context, clause: list[Token]) -> dict[int, list[Vote]]:
    """The tone votes of a reported clause per target: each tone word for what it is about, else the clause's tone."""
    inside = {t.i for t in clause}
    votes: dict[int, list[Vote]] = {}
    for tok in clause:
        polarity = _polarity(ctx, tok)
        if not polarity or conditional(tok) or ctx.unasserted(tok) or ctx.negated_above(tok):
            continue
        rule, targets = "speech_sentiment", _evaluated(ctx, tok)
        if not targets:
            rule, targets = "speech_agent", _agent(ctx, tok, inside)
        for target, _ in targets:
            votes.setdefault(target, []).append((polarity, tok, rule))
    tone = [(p, t) for t in clause if (p := _polarity(ctx, t)) and not ctx.negated_above(t)]
    net = sum(p for p, _ in tone)
    if abs(net) >= TONE_MIN and not votes:
        cue = next(t for p, t in tone if (p < 0) == (net < 0))
        for tok in clause:  # named subjects and objects of the clause's verbs, not its other mentions
            ent = ctx.ent_of[tok.i]
            if ent is not None and tok.dep_ in ("nsubj", "dobj") and tok.head.i in inside and not ctx.unasserted(tok):
                votes.setdefault(ent, []).append((net, cue, "speech_tone"))
    return votes


def _polarity(ctx: Context, tok: Token) -> int:
    """-1 or +1 for a negative or positive tone word that is not itself negated, else 0."""
    if ctx.ent_of[tok.i] is not None or tok.pos_ not in ("ADJ", "NOUN", "VERB", "ADV"):
        return 0
    words = (tok.lemma_.lower(), tok.lower_)
    polarity = -1 if any(w in ctx.lex.negative for w in words) else 1 if any(w in ctx.lex.positive for w in words) else 0
    predicate = tok.head if tok.dep_ in ("acomp", "attr", "oprd", "advmod") else tok
    return 0 if negated(tok) or negated(predicate) else polarity


def _agent(ctx: Context, tok: Token, clause: set[int]) -> list[Mention]:
    """The named subject of the nearest verb above a tone word in the clause: `Mr. Lavrov is pushing a dangerous agenda`."""
    node = tok
    for _ in range(4):
        if node.head is node or node.head.i not in clause or node.dep_ in ("relcl", "advcl", "ccomp", "parataxis"):
            return []
        node = node.head
        if node.pos_ in ("VERB", "AUX"):
            subj = next((c for c in node.children if c.dep_ == "nsubj"), None)
            if subj is not None:
                return ctx.mentions(subj)
    return []


def _evaluated(ctx: Context, tok: Token) -> list[Mention]:
    """Entities a tone word is about: the noun it qualifies, its predicate's subject, possessor or object."""
    out: list[Mention] = []
    if tok.dep_ == "amod" and tok.head.pos_ in ("NOUN", "PROPN"):
        out += ctx.mentions(tok.head)  # "Russia's dangerous actions"
    elif tok.dep_ in ("acomp", "attr", "oprd") and tok.head.pos_ in ("VERB", "AUX"):
        subj = next((c for c in tok.head.children if c.dep_ in ("nsubj", "nsubjpass")), None)
        out += ctx.mentions(subj)  # "Beau Biden was an original", "it was unfair for Mr. Obama"
        out += ctx.prep_objects(tok.head, frozenset({"for"})) if subj is not None and subj.lower_ == "it" else []
    elif tok.pos_ == "VERB":
        holders = verb_holders(ctx, tok)
        out += holders.mentions if holders.rule == "svo" else []  # "Obama has failed"
    if tok.pos_ in ("NOUN", "ADJ"):
        out += ctx.children_entities(tok, ("poss", "compound"))
        out += ctx.prep_objects(tok, _ABOUT)
    return out
