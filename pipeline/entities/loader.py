"""The spaCy pipeline with the annotator component, as the `preannotate:` section of params.yaml configures it.

Shared by the preannotate stage (which runs it) and the train stage (which reads pair features off its parse).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, model_validator
from spacy.language import Language

from pipeline.common.config import Count, Section, Share, Threshold, Workers
from pipeline.common.contract import EntityLabels, StanceEnds, StanceLabels
from pipeline.common.executor import Engine
from pipeline.entities.annotator import COMPONENT, Annotator, load_model

# The committed base stance model (learned from SEESAW, CC BY-NC-SA 4.0), used when no --stance-model is given.
BASE_MODEL = Path(__file__).resolve().parents[2] / "resources" / "stance_model" / "seesaw.json"


class Params(Section):
    """The `preannotate:` section of params.yaml."""

    model: Annotated[str, Field(min_length=1)]
    entity_labels: EntityLabels
    stance_ends: StanceEnds
    stance_labels: StanceLabels
    batch_size: Count
    n_process: Workers
    n_workers: Workers
    shard_size: Count
    records_per_shard: Count  # records per output shard file (data/preannotated/); independent of the Dask shard_size
    max_bad_share: Share
    stance_model: bool  # score entity pairs with the learned model (--stance-model FILE); false: rules alone
    stance_threshold: Threshold  # the model's probability from which a pair is proposed as a stance

    @model_validator(mode="after")
    def _runnable(self) -> Self:
        if problem := Engine(self.n_workers, self.shard_size).problem():
            raise ValueError(problem)
        if self.n_workers > 1 and self.n_process > 1:
            raise ValueError("n_process > 1 needs n_workers: 1 (a Dask worker cannot start nlp.pipe's processes)")
        return self


@dataclass
class Preannotator:
    """A loaded spaCy pipeline with the annotator component, and what goes into provenance and cache keys."""

    nlp: Language
    params: Params
    provenance: dict[str, str]
    fingerprint: str

    def cache_key(self, text: str) -> str:
        """Content address of a text's annotation under this model, these rules and this code."""
        return hashlib.sha256(f"{self.fingerprint}\0{text}".encode()).hexdigest()


def load(params: Params, patterns: Path, actors: Path, lexicon: Path, stance_model: Path | None = None,
         revision: str = "") -> Preannotator:
    """Load the model and add the annotator component to the end of its pipeline.

    With `params.stance_model`, the learned stance model `stance_model` (default: the committed base model)
    proposes the stances; else the rules do. `revision` is the calling stage's code revision, for provenance.
    """
    if params.stance_model and stance_model is None:
        stance_model = BASE_MODEL
    nlp = load_model(params.model)
    if not {"parser", "senter", "sentencizer"} & set(nlp.pipe_names):
        nlp.add_pipe("sentencizer")  # sentences are part of the output contract
    # The parser keeps boundaries set before it; a sentencizer or senter would overwrite them.
    if "parser" in nlp.pipe_names:
        nlp.add_pipe("paragraph_sentences", before="parser")
    else:
        nlp.add_pipe("paragraph_sentences", after=next(n for n in ("senter", "sentencizer") if n in nlp.pipe_names))
    config: dict[str, Any] = {
        "patterns": str(patterns),
        "actors": str(actors),
        "lexicon": str(lexicon),
        "entity_labels": list(params.entity_labels),
        "stance_ends": list(params.stance_ends),
        "stance_labels": list(params.stance_labels),
    }
    if params.stance_model:
        config |= {"stance_model": str(stance_model), "stance_threshold": params.stance_threshold}
    annotator = nlp.add_pipe(COMPONENT, config=config, last=True)
    assert isinstance(annotator, Annotator)  # spaCy types add_pipe as any callable; the factory makes an Annotator
    provenance = {
        "model": params.model,
        "model_version": str(nlp.meta.get("version", "unknown")),
        "rules_version": annotator.rules.version,
        "code_revision": revision,
    }
    if (model := annotator.stance_model) is not None:  # absent without a model: outputs stay exactly the rules'
        provenance |= {
            "stance_model": model.version,
            "stance_training_data": model.training.data_hash[:12],
            "stance_threshold": str(params.stance_threshold),
            "stance_model_licence": model.training.licence,
            "stance_trained_on": ",".join(model.training.sources),
        }
    fingerprint = json.dumps([provenance, config["entity_labels"], config["stance_ends"], config["stance_labels"]])
    return Preannotator(nlp, params, provenance, fingerprint)
