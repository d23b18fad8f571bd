"""The stance rules by name, as in spaCy's registries: each family of rules registers itself with a decorator.

A cue rule finds the ends of the stances of one cue token of its part of speech (`Cue.pos`); a doc
rule runs once over the whole doc after every cue rule, seeing what they found. Rules run in ORDER;
adding one means a small module in rules/ that registers it, its name in ORDER, the precision of the
names it emits in scores.py and its import in finder.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from spacy.tokens import Token

from pipeline.stance.lexicon import SECTIONS, Cue
from pipeline.stance.parse import Context, Found
from pipeline.stance.scores import RULE_PRECISION

# The registered rules in the order they are applied (the cue rules' order only matters between rules
# of the same part of speech; the doc rules come after every cue rule whatever their place here).
ORDER = ("verbs", "nouns", "roles", "adjectives", "prepositions", "speech_sentiment")

CueFind = Callable[[Context, Token, Cue], Iterator[Found]]
DocFind = Callable[[Context, Mapping[tuple[int, int], dict]], Iterator[dict]]


class UnknownRule(LookupError):
    """A stance rule name that is not registered, or not in ORDER."""


@dataclass(frozen=True)
class CueRule:
    """A family of rules applied to each cue token whose part of speech is `pos`."""

    name: str
    pos: str
    emits: tuple[str, ...]  # the `rule` names its stances can carry
    find: CueFind


@dataclass(frozen=True)
class DocRule:
    """A family of rules applied once per doc, after the cue rules, to what they found."""

    name: str
    emits: tuple[str, ...]
    find: DocFind


_RULES: dict[str, CueRule | DocRule] = {}


def _register(entry: CueRule | DocRule) -> None:
    """Add a rule, refusing a name out of ORDER, a second rule of one name and a stance rule with no precision."""
    if entry.name not in ORDER:
        raise UnknownRule(f"stance rule {entry.name!r} is not in registry.ORDER ({', '.join(ORDER)})")
    if entry.name in _RULES:
        raise ValueError(f"stance rule {entry.name!r} is registered twice")
    if unscored := [name for name in entry.emits if name not in RULE_PRECISION]:
        raise ValueError(f"stance rule {entry.name!r}: {', '.join(unscored)} has no precision in scores.RULE_PRECISION")
    _RULES[entry.name] = entry


def cue_rule(name: str, *, pos: str, emits: tuple[str, ...]) -> Callable[[CueFind], CueFind]:
    """Register the decorated function as the cue rule `name` for cues of part of speech `pos`."""
    if pos not in SECTIONS.values():
        raise ValueError(f"stance rule {name!r}: no lexicon section has cues of part of speech {pos!r}")

    def register(find: CueFind) -> CueFind:
        _register(CueRule(name, pos, emits, find))
        return find

    return register


def doc_rule(name: str, *, emits: tuple[str, ...]) -> Callable[[DocFind], DocFind]:
    """Register the decorated function as the doc rule `name`."""

    def register(find: DocFind) -> DocFind:
        _register(DocRule(name, emits, find))
        return find

    return register


def get(name: str) -> CueRule | DocRule:
    """The rule registered as `name`."""
    try:
        return _RULES[name]
    except KeyError:
        registered = ", ".join(known for known in ORDER if known in _RULES) or "none"
        raise UnknownRule(f"unknown stance rule {name!r}; registered: {registered}") from None


def rules() -> tuple[CueRule | DocRule, ...]:
    """Every rule in ORDER (each must be registered: its module imported)."""
    return tuple(get(name) for name in ORDER)


def rule_names() -> tuple[str, ...]:
    """Every `rule` name a stance can carry, in the order of the rules that emit them."""
    return tuple(dict.fromkeys(name for entry in rules() for name in entry.emits))


def cue_matches(ctx: Context, tok: Token, cue: Cue) -> Iterator[Found]:
    """What the cue rules for the cue's part of speech find at `tok`, rule by rule in ORDER."""
    for entry in rules():
        if isinstance(entry, CueRule) and entry.pos == cue.pos:
            yield from entry.find(ctx, tok, cue)


def doc_stances(ctx: Context, found: Mapping[tuple[int, int], dict]) -> Iterator[dict]:
    """The stances the doc rules add to those `found` by the cue rules (keyed by holder and target), in ORDER."""
    for entry in rules():
        if isinstance(entry, DocRule):
            yield from entry.find(ctx, found)
