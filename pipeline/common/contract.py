"""The record contract between stages: one validator of articles, entities, stances, sentences and provenance.

preannotate writes the articles merge reads; merge writes the labeled records evaluate and publish
read. Each reader checks its records here, so a bad record is reported (naming the field at fault),
skipped and counted instead of failing the stage with a traceback. The label sets are owned by the
`preannotate:` section of params.yaml (what Label Studio offers); stages that check labels read them
from there with `stage_config`.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, Field, ValidationInfo

from pipeline.common.config import Names, Section, load_params, validated
from pipeline.common.errors import ConfigError

S = TypeVar("S", bound=Section)

SPLITS = ("train", "validation", "test")
STATUSES = ("gold", "silver")
NO_STANCE = "none"  # the stance class of a candidate pair without a stance; never a stance label
LABEL_KEYS = ("entity_labels", "stance_ends", "stance_labels")  # owned by params `preannotate:`
# Article fields that are strings or null (publish declares them as string features).
OPTIONAL_STRINGS = ("title", "date", "source", "url", "story_id")
PROVENANCE_STRINGS = ("model", "model_version", "rules_version", "code_revision", "annotation_snapshot",
                      "annotation_snapshot_sha256", "resolution")
AGREEMENT_NUMBERS = ("entity_f1", "stance_kappa", "n_annotators")


def is_int(value: Any) -> bool:
    """An integer, not a bool (JSON true/false load as bools, which are ints in Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool (NaN and Infinity are not numbers a record may hold)."""
    return is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _shown(value: Any) -> str:
    """A value as a message shows it: type and a short repr."""
    return f"{type(value).__name__} {value!r:.40}"


def _string_or_null(obj: dict[str, Any], keys: tuple[str, ...], prefix: str) -> str | None:
    """Why one of `keys` present in `obj` is neither a string nor null, or None."""
    for key in keys:
        if obj.get(key) is not None and not isinstance(obj[key], str):
            return f"field '{prefix}{key}' must be a string or null, got {_shown(obj[key])}"
    return None


def _span_problem(span: Any, name: str, text: str | None) -> str | None:
    """Why `span` is not an object with integer offsets 0 <= start < end (<= len(text) when known), or None."""
    if not isinstance(span, dict):
        return f"{name} must be an object, got {_shown(span)}"
    for key in ("start", "end"):
        if key not in span:
            return f"{name} has no '{key}'"
        if not is_int(span[key]):
            return f"{name}.{key} must be an integer, got {_shown(span[key])}"
    start, end = span["start"], span["end"]
    if not 0 <= start < end or (text is not None and end > len(text)):
        size = "" if text is None else f" in a text of {len(text)} characters"
        return f"{name} offsets {start}-{end} must satisfy 0 <= start < end{size}"
    return None


def document_problem(doc: Any, prefix: str = "", *, text: str | None = None,
                     entity_labels: Collection[str] | None = None,
                     stance_labels: Collection[str] | None = None) -> str | None:
    """Why `doc` is not a document of entities (offsets, label, text) and stances (indexes into them), or None.

    Offsets are checked against `text` when given, labels against the label sets when given.
    """
    if not isinstance(doc, dict):
        return f"field '{prefix.rstrip('.')}' must be an object, got {_shown(doc)}"
    if not prefix and (problem := _string_or_null(doc, OPTIONAL_STRINGS, "")):  # an article: its metadata too
        return problem
    entities, stances = doc.get("entities"), doc.get("stances")
    if not isinstance(entities, list) or not isinstance(stances, list):
        return f"field '{prefix}entities' and '{prefix}stances' must be lists"
    for i, e in enumerate(entities):
        name = f"{prefix}entities[{i}]"
        if problem := _span_problem(e, name, text):
            return problem
        if not isinstance(e.get("label"), str):
            return f"{name}.label must be a string, got {_shown(e.get('label'))}"
        if entity_labels is not None and e["label"] not in entity_labels:
            return f"{name}.label {e['label']!r} is not in preannotate.entity_labels"
        if not isinstance(e.get("text"), str):
            return f"{name}.text must be a string, got {_shown(e.get('text'))}"
        if problem := _string_or_null(e, ("actor",), f"{name}."):
            return problem
    for i, s in enumerate(stances):
        name = f"{prefix}stances[{i}]"
        if not isinstance(s, dict):
            return f"{name} must be an object, got {_shown(s)}"
        for key in ("holder", "target"):
            if not (is_int(s.get(key)) and 0 <= s[key] < len(entities)):
                return f"{name}.{key} must index one of the {len(entities)} {prefix}entities, got {_shown(s.get(key))}"
        if not isinstance(s.get("label"), str):
            return f"{name}.label must be a string, got {_shown(s.get('label'))}"
        if stance_labels is not None and s["label"] not in stance_labels:
            return f"{name}.label {s['label']!r} is not in preannotate.stance_labels"
    return None


def sentences_problem(sentences: Any, text: str) -> str | None:
    """Why `sentences` is not a list of non-overlapping spans of `text` in order, or None."""
    if not isinstance(sentences, list):
        return f"field 'sentences' must be a list, got {_shown(sentences)}"
    previous_end = 0
    for i, sent in enumerate(sentences):
        if problem := _span_problem(sent, f"sentences[{i}]", text):
            return problem
        if sent["start"] < previous_end:
            return f"sentences[{i}] starts at {sent['start']}, before the end of the previous sentence ({previous_end})"
        previous_end = sent["end"]
    return None


def provenance_problem(provenance: Any) -> str | None:
    """Why `provenance` is not an object of string-or-null fields (model, versions, snapshot, resolution), or None."""
    if not isinstance(provenance, dict):
        return f"field 'provenance' must be an object, got {_shown(provenance)}"
    return _string_or_null(provenance, PROVENANCE_STRINGS, "provenance.")


def article_problem(record: dict[str, Any], *, entity_labels: Collection[str] | None = None,
                    stance_labels: Collection[str] | None = None) -> str | None:
    """Why a pre-annotated article (preannotate's output, merge's input) breaks the contract, or None."""
    if not (isinstance(record.get("id"), str) and record["id"]):
        return f"field 'id' must be a non-empty string, got {_shown(record.get('id'))}"
    if not isinstance(record.get("text"), str):
        return f"field 'text' must be a string, got {_shown(record.get('text'))}"
    text = record["text"]
    return (
        _string_or_null(record, OPTIONAL_STRINGS, "")
        or sentences_problem(record.get("sentences"), text)
        or provenance_problem(record.get("provenance"))
        or document_problem(record, text=text, entity_labels=entity_labels, stance_labels=stance_labels)
    )


def labeled_problem(record: dict[str, Any], *, entity_labels: Collection[str] | None = None,
                    stance_labels: Collection[str] | None = None) -> str | None:
    """Why a labeled.jsonl record (merge's output) breaks the contract, or None; labels checked on the final labels."""
    if problem := article_problem(record, entity_labels=entity_labels, stance_labels=stance_labels):
        return problem
    if record.get("split") not in SPLITS:
        return f"field 'split' must be one of {', '.join(SPLITS)}, got {_shown(record.get('split'))}"
    if record.get("status") not in STATUSES:
        return f"field 'status' must be one of {', '.join(STATUSES)}, got {_shown(record.get('status'))}"
    text = record["text"]
    predictions = record.get("predictions")
    if predictions is not None:
        if problem := document_problem(predictions, "predictions.", text=text):
            return problem
        if problem := _string_or_null(predictions, ("model_version",), "predictions."):
            return problem
    annotations = record.get("annotations")
    if annotations is not None and not isinstance(annotations, list):
        return f"field 'annotations' must be a list, got {_shown(annotations)}"
    for i, ann in enumerate(annotations or []):
        prefix = f"annotations[{i}]."
        if problem := document_problem(ann, prefix, text=text):
            return problem
        if problem := _string_or_null(ann, ("annotator",), prefix):
            return problem
        if ann.get("lead_time") is not None and not is_number(ann["lead_time"]):
            return f"field '{prefix}lead_time' must be a number or null, got {_shown(ann['lead_time'])}"
        for key in ("ground_truth", "from_prediction"):
            if ann.get(key) is not None and not isinstance(ann[key], bool):
                return f"field '{prefix}{key}' must be true, false or null, got {_shown(ann[key])}"
    agreement = record.get("agreement")
    if agreement is not None:
        if not isinstance(agreement, dict):
            return f"field 'agreement' must be an object or null, got {_shown(agreement)}"
        for key in AGREEMENT_NUMBERS:
            if agreement.get(key) is not None and not is_number(agreement[key]):
                return f"field 'agreement.{key}' must be a number or null, got {_shown(agreement[key])}"
    return None


def _distinct(names: tuple[str, ...]) -> tuple[str, ...]:
    """`names`, if none is given twice."""
    if twice := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"expected names without duplicates, got {', '.join(twice)} twice")
    return names


def _no_none(labels: tuple[str, ...]) -> tuple[str, ...]:
    """`labels`, if `none` (the class of pairs without a stance) is not one of them."""
    if NO_STANCE in labels:
        raise ValueError(f"must not contain {NO_STANCE!r}, the class of pairs without a stance")
    return labels


def _entity_labels_only(ends: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
    """`ends`, if each is one of the entity labels validated before them."""
    if extra := sorted(set(ends) - set(info.data.get("entity_labels", ends))):
        raise ValueError(f"{extra} are not in entity_labels")
    return ends


# The label sets of params `preannotate:`, as every section that holds them checks them.
EntityLabels = Annotated[Names, Field(min_length=1), AfterValidator(_distinct)]
StanceLabels = Annotated[Names, Field(min_length=1), AfterValidator(_distinct), AfterValidator(_no_none)]
StanceEnds = Annotated[Names, AfterValidator(_entity_labels_only)]  # declared after entity_labels


class LabelSets(Section):
    """The label sets of params `preannotate:`: what Label Studio offers and what gold and labels are checked against."""

    entity_labels: EntityLabels
    stance_labels: StanceLabels


def label_sets(params: Path) -> LabelSets:
    """The validated label sets of params.yaml's `preannotate:` section."""
    pre = load_params(params).get("preannotate")
    if not isinstance(pre, dict):
        raise ConfigError(f"{params}: missing section 'preannotate'")
    return validated(LabelSets, {k: pre[k] for k in LabelSets.model_fields if k in pre}, f"{params}:preannotate")


def stage_config(cls: type[S], stage: str, params: Path) -> S:
    """The `stage` section of params.yaml into `cls`, with the label sets (LABEL_KEYS) `cls` has from `preannotate:`."""
    raw = load_params(params)
    own, pre = raw.get(stage), raw.get("preannotate")
    if not isinstance(own, dict) or not isinstance(pre, dict):
        raise ConfigError(f"{params}: sections '{stage}' and 'preannotate' must both be mappings")
    keys = [name for name in cls.model_fields if name in LABEL_KEYS]
    if clash := sorted(set(keys) & set(own)):
        raise ConfigError(f"{params}:{stage}: {', '.join(clash)} come from the preannotate section; remove them here")
    if missing := [k for k in keys if k not in pre]:
        raise ConfigError(f"{params}:preannotate: missing key '{missing[0]}'")
    owners = dict.fromkeys(keys, f"{params}:preannotate")
    return validated(cls, {**own, **{k: pre[k] for k in keys}}, f"{params}:{stage}", owners)
