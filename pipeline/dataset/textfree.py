"""A release without the articles' text (`publish.include_text: false`): ids, URLs, dates, hashes, offsets, labels.

Only string columns named in KEEP survive (ids, metadata, labels, actors, provenance); every other string
column is dropped, so a text-bearing column added later (tokens, sentences, entity or marked texts) is left
out by default. The articles gain the sha256 of their text and title, and the folder a recipe (HYDRATE_FILE)
with what rebuilding the rows needs beyond the rows themselves: `python -m pipeline hydrate`
(pipeline/dataset/hydrate.py) rebuilds the full release from a user's own copies of the articles.
"""

from __future__ import annotations

from typing import Any, Protocol

from pipeline.common.errors import InputError
from pipeline.common.provenance import sha256_text
from pipeline.dataset.rows import Schema

# String columns that carry no text of an article, at any depth (`label` of an entity, `annotator` of a version ...).
KEEP = frozenset({
    "id", "article_id", "date", "source", "url", "story_id", "label", "actor", "annotator", "annotators",
    "status", "resolution", "annotation_snapshot", "model", "model_version", "rules_version", "code_revision",
    "holder_label", "holder_actor", "target_label", "target_actor",
})
HASHES = ("text_sha256", "title_sha256")  # added to the articles after `url`
HYDRATE_FILE = "hydrate.json"
FORMAT = "geonews-text-free/1"
FULL = ("**Full release.** The articles' texts are included (column `text` of the `articles` configs, tokens and "
        "sentences in the others).")
TEXT_FREE = ("**Text-free release.** No text of any article is included: ids, URLs, dates, the sha256 of each "
             "article's text and title, character offsets and labels only (no `text`, `title`, tokens or sentences). "
             f"Rebuild the full dataset from your own copies of the articles with `python -m pipeline hydrate` "
             f"(the GeoNews pipeline; `{HYDRATE_FILE}` holds what it needs): it checks every text against its hash.")
HYDRATED = "**Hydrated release.**"


class Recipe(Schema, Protocol):
    """What hydration needs of the publish config (publish.PublishConfig): rows.Schema and the version."""

    @property
    def version(self) -> str: ...


def kind(text_free: bool) -> str:
    """The card's statement of which kind of release it is."""
    return TEXT_FREE if text_free else FULL


def recipe(cfg: Recipe) -> dict[str, Any]:
    """The HYDRATE_FILE of a text-free release: the row schema's parameters."""
    return {"format": FORMAT, "version": cfg.version, "bio_tags": list(cfg.bio_tags),
            "stance_classes": list(cfg.stance_classes), "stance_ends": list(cfg.stance_ends),
            "max_candidates_per_sentence": cfg.max_candidates_per_sentence, "rows_per_shard": cfg.rows_per_shard}


def _strip(feature: Any, name: str) -> Any | None:
    """`feature` without its text-bearing string columns; None when nothing is left of it."""
    from datasets import Features, List, Value

    if isinstance(feature, dict):
        kept = {k: f for k, v in feature.items() if (f := _strip(v, k)) is not None}
        return (Features(kept) if isinstance(feature, Features) else kept) if kept else None
    if isinstance(feature, List):
        inner = _strip(feature.feature, name)
        return List(inner) if inner is not None else None
    if isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
        return feature if name in KEEP else None
    return feature


def features(full: dict[str, Any]) -> dict[str, Any]:
    """Each config's features in a text-free release: KEEP's strings, every other type, the articles' hashes."""
    from datasets import Features, Value

    out = {name: _strip(feats, name) for name, feats in full.items()}
    articles = list((out["articles"] or {}).items())
    at = [k for k, _ in articles].index("url") + 1
    out["articles"] = Features(dict(articles[:at] + [(h, Value("string")) for h in HASHES] + articles[at:]))
    return out


def _project(value: Any, feature: Any) -> Any:
    """`value` cut down to the fields of `feature`."""
    from datasets import List

    if value is None:
        return None
    if isinstance(feature, dict):
        return {k: _project(value.get(k), f) for k, f in feature.items()}
    if isinstance(feature, List):
        return [_project(v, feature.feature) for v in value]
    return value


class Shape:
    """Turns a config's full row into its text-free row (publish's `write_configs` hook)."""

    def __init__(self, text_free: dict[str, Any]) -> None:
        self.features = text_free

    def __call__(self, config: str, row: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
        if config == "articles":
            text = rec["text"]
            for e in [*rec["entities"], *(e for a in rec.get("annotations") or [] for e in a["entities"])]:
                if text[e["start"] : e["end"]] != e.get("text"):  # hydration rebuilds entity texts from offsets
                    raise InputError(f"article {rec['id']}: entity {e.get('text')!r} is not the text at its offsets "
                                     f"{e['start']}-{e['end']}: a text-free release could not be hydrated exactly")
            row = row | {"text_sha256": sha256_text(text),
                         "title_sha256": sha256_text(rec["title"]) if rec.get("title") is not None else None}
        return _project(row, self.features[config])
