"""How far a stance is trusted: its rule's precision on SEESAW train, the cue's weight and indirect ends.

Score = RULE_PRECISION[rule] x cue weight x INDIRECT_FACTOR per end reached through an affiliation
("NATO foreign ministers" -> NATO). RULE_PRECISION is each rule's triplet precision measured on
SEESAW train (`python -m pipeline evaluate-seesaw DIR --split train --by-rule`), so a score
estimates the chance that an annotator keeps the proposal and orders the queue accordingly.
"""

from __future__ import annotations

import types
from collections.abc import Mapping

from spacy.tokens import Token

# Triplet precision of each rule on SEESAW train, Laplace-smoothed ((tp + 1) / (tp + fp + 2)) so that
# rare rules are not over-trusted; re-measure with `evaluate-seesaw --by-rule` when rules change.
RULE_PRECISION: Mapping[str, float] = types.MappingProxyType(
    {
        "svo": 0.71,
        "passive": 0.83,
        "clause": 0.67,
        "control": 0.56,
        "adjective": 0.83,
        "symmetric": 0.75,
        "possessive": 0.62,
        "role": 0.53,
        "prep_against": 0.42,
        "speech": 0.37,
        "light_verb": 0.54,
        "speech_sentiment": 0.45,
        "speech_agent": 0.40,
        "speech_tone": 0.36,
        "demand": 0.33,
        "adjacent": 0.90,
        "undergo": 0.69,
    }
)
INDIRECT_FACTOR = 0.85


def rule_score(rule: str, weight: float, indirect: int) -> float:
    """The score of a stance found by `rule` from a cue of `weight` with `indirect` ends reached indirectly."""
    return round(min(max(RULE_PRECISION[rule] * weight * INDIRECT_FACTOR**indirect, 0.0), 1.0), 4)


def stance(holder: int, target: int, label: str, score: float, rule: str, cue: Token) -> dict:
    """The stance record of the pre-annotated data (`holder` and `target` index the record's entities)."""
    return {
        "holder": holder,
        "target": target,
        "label": label,
        "score": score,
        "rule": rule,
        "cue": {"start": cue.idx, "end": cue.idx + len(cue.text), "text": cue.text},
    }
