"""The domain layer over the model's NER (resources/entity_patterns.yaml): entity patterns, cleanup lists, scores."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pattern:
    """One domain entity pattern: a phrase and the label it takes."""

    label: str
    pattern: str


@dataclass(frozen=True)
class Penalties:
    """Score multipliers for odd-looking model-only entities."""

    lowercase: float
    short: float
    digits: float
    long: float


@dataclass(frozen=True)
class Scores:
    """Entity scores by where the entity comes from (see docs/preannotation.md)."""

    agreed: float
    domain: float
    linked: float
    model: dict[str, float]
    model_default: float
    penalties: Penalties


@dataclass(frozen=True)
class Patterns:
    """resources/entity_patterns.yaml: the domain layer over the model's NER."""

    entities: tuple[Pattern, ...]
    not_inside: tuple[str, ...]
    drop: tuple[str, ...]
    strip_leading: tuple[str, ...]
    titles: tuple[str, ...]
    scores: Scores
