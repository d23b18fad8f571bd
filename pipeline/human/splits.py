"""The story split every stage agrees on, and the `merge:` section of params.yaml that sets it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pipeline.common.contract import labels_problem


@dataclass(frozen=True)
class Splits:
    """Share of stories in each split."""

    train: float
    validation: float
    test: float

    def validate(self) -> str | None:
        """Why the shares can't be used (negative, or not summing to 1), or None."""
        shares = (self.train, self.validation, self.test)
        if any(s < 0 for s in shares) or abs(sum(shares) - 1.0) > 1e-9:
            return f"split shares must be >= 0 and sum to 1, got {shares}"
        return None


@dataclass(frozen=True)
class MergeConfig:
    """The `merge:` section of params.yaml, plus the label sets owned by `preannotate:` (one source of truth)."""

    seed: int
    splits: Splits
    max_bad_share: float
    entity_labels: tuple[str, ...]  # from preannotate.entity_labels: the entity labels Label Studio offers
    stance_labels: tuple[str, ...]  # from preannotate.stance_labels: the relation labels Label Studio offers

    def validate(self) -> str | None:
        """Why the section can't be used (bad share or label sets), or None."""
        if not 0 <= self.max_bad_share <= 1:
            return f"max_bad_share must be in [0, 1], got {self.max_bad_share}"
        return labels_problem(self.entity_labels, None, self.stance_labels)


def assign_split(story_id: str, cfg: MergeConfig) -> str:
    """Deterministic split of a story: a stable hash of seed and story id, so near-duplicates stay together."""
    digest = hashlib.sha256(f"{cfg.seed}\x00{story_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < cfg.splits.train:
        return "train"
    if u < cfg.splits.train + cfg.splits.validation:
        return "validation"
    return "test"
