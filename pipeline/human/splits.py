"""The story split every stage agrees on, and the `merge:` section of params.yaml that sets it."""

from __future__ import annotations

import hashlib
from typing import Annotated, Self

from pydantic import Field, model_validator

from pipeline.common.config import MAX_INT, Section, Share
from pipeline.common.contract import EntityLabels, StanceLabels


class Splits(Section):
    """Share of stories in each split."""

    train: Share
    validation: Share
    test: Share

    @model_validator(mode="after")
    def _sum_to_one(self) -> Self:
        shares = (self.train, self.validation, self.test)
        if abs(sum(shares) - 1.0) > 1e-9:
            raise ValueError(f"split shares must sum to 1, got {shares}")
        return self


class MergeConfig(Section):
    """The `merge:` section of params.yaml, plus the label sets owned by `preannotate:` (one source of truth)."""

    seed: Annotated[int, Field(ge=0, le=MAX_INT)]
    splits: Splits
    max_bad_share: Share
    entity_labels: EntityLabels  # from preannotate.entity_labels: the entity labels Label Studio offers
    stance_labels: StanceLabels  # from preannotate.stance_labels: the relation labels Label Studio offers


def assign_split(story_id: str, cfg: MergeConfig) -> str:
    """Deterministic split of a story: a stable hash of seed and story id, so near-duplicates stay together."""
    digest = hashlib.sha256(f"{cfg.seed}\x00{story_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < cfg.splits.train:
        return "train"
    if u < cfg.splits.train + cfg.splits.validation:
        return "validation"
    return "test"
