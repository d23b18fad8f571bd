"""Geopolitical actors (resources/actors.yaml) and the index that links an entity's text to an actor id."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.common.errors import ConfigError


@dataclass(frozen=True)
class Name:
    """A name with its own label (an actor's capital or institution)."""

    text: str
    label: str


@dataclass(frozen=True)
class Actor:
    """One geopolitical actor of resources/actors.yaml."""

    id: str
    name: str
    label: str
    aliases: tuple[str | Name, ...] = ()
    demonyms: tuple[str | Name, ...] = ()
    people: tuple[str, ...] = ()
    seats: tuple[str, ...] = ()
    link_only: tuple[str, ...] = ()


@dataclass(frozen=True)
class Actors:
    """resources/actors.yaml."""

    actors: tuple[Actor, ...]


def normalise(text: str) -> str:
    """Lower-case `text` and drop a leading "the", a possessive "'s", edge punctuation and extra spaces."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").lower()
    text = " ".join(text.split()).strip(" \"'“”.,;:()[]")
    text = text.removeprefix("the ")
    text = text.removesuffix("'s")
    return text.strip(" \"'“”.,;:()[]")


def _deletions(word: str) -> set[str]:
    """The word and all its one-character deletions (symmetric-delete fuzzy matching at distance 1)."""
    return {word} | {word[:i] + word[i + 1 :] for i in range(len(word))}


class ActorIndex:
    """Precompiled look-ups from entity text to actor id."""

    FUZZY_MIN = 6  # last names at least this long also match one typo away ("Blnken", "Rybkov")
    PREFIX_LABELS = frozenset({"ORG", "FAC", "NORP"})

    def __init__(self, actors: Actors, titles: Iterable[str], where: str) -> None:
        self.titles = frozenset(t.lower() for t in titles)
        self.names: dict[str, str] = {}
        self.entity_names: list[tuple[str, str, bool]] = []  # (text, label, may create an entity)
        self.prefixes: dict[str, str] = {}  # country names and demonyms that make "Russian Foreign Ministry" Russian
        self.seats: set[str] = set()
        surnames: dict[str, set[str]] = {}
        labels: dict[str, str] = {}
        for actor in actors.actors:
            if actor.id in labels:
                raise ConfigError(f"{where}: actor id {actor.id!r} appears twice")
            labels[actor.id] = actor.label
            named = [(n, actor.label) if isinstance(n, str) else (n.text, n.label) for n in actor.aliases]
            named += [(n, "NORP") if isinstance(n, str) else (n.text, n.label) for n in actor.demonyms]
            named += [(p, "PERSON") for p in actor.people]
            named += [(c, "GPE") for c in actor.seats]
            self.seats.update(normalise(c) for c in actor.seats)
            for text, label in named:
                self._add(normalise(text), actor.id, where)
                self.entity_names.append((text, label, True))
                if label in ("GPE", "NORP") and len(text.split()) <= 3:
                    self.prefixes[normalise(text)] = actor.id
            for text in (actor.name, *actor.link_only):
                self._add(normalise(text), actor.id, where)
            for person in actor.people:
                surnames.setdefault(normalise(person).split()[-1], set()).add(actor.id)
        self.surnames = {s: next(iter(ids)) for s, ids in surnames.items() if len(ids) == 1}
        for surname in self.surnames:
            if surname not in self.names:
                person = next(p for a in actors.actors for p in a.people if normalise(p).split()[-1] == surname)
                self.entity_names.append((person.split()[-1], "PERSON", False))
        fuzzy: dict[str, set[str]] = {}
        for surname, actor_id in self.surnames.items():
            if len(surname) >= self.FUZZY_MIN:
                for variant in _deletions(surname):
                    fuzzy.setdefault(variant, set()).add(actor_id)
        self.fuzzy = {v: next(iter(ids)) for v, ids in fuzzy.items() if len(ids) == 1}

    def _add(self, key: str, actor_id: str, where: str) -> None:
        if not key:
            return
        other = self.names.setdefault(key, actor_id)
        if other != actor_id:
            raise ConfigError(f"{where}: name {key!r} belongs to both {other} and {actor_id}")

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one index per run, entity strings repeat a lot
    def link(self, text: str, label: str) -> str | None:
        """The actor id an entity refers to, or None."""
        key = normalise(text)
        if key in self.names:
            return self.names[key]
        words = key.split()
        if not words:
            return None
        if label == "PERSON":
            while len(words) > 1 and words[0] in self.titles:
                words = words[1:]
            if (rest := " ".join(words)) in self.names:
                return self.names[rest]
            last = words[-1]
            if last in self.surnames:
                return self.surnames[last]
            if len(last) >= self.FUZZY_MIN - 1:
                for variant in _deletions(last):
                    if variant in self.fuzzy:
                        return self.fuzzy[variant]
            return None
        if label in self.PREFIX_LABELS and len(words) > 1:
            for k in range(min(3, len(words) - 1), 0, -1):
                if (head := " ".join(words[:k])) in self.prefixes:
                    return self.prefixes[head]
            if "of" in words[:-1]:
                tail = " ".join(words[len(words) - words[::-1].index("of") :])
                return self.names.get(tail)
        return None
