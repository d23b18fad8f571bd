"""The dataset card: README.md with the Hub's YAML header (configs, features, tags) and a body for ML practitioners.

Everything in the card comes from the pipeline's own records (labeled.jsonl, params, the evaluate
stage's metrics, the annotation guidelines), never from the clock, so rebuilds are identical.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

import jinja2

from pipeline.common.contract import NO_STANCE, SPLITS
from pipeline.dataset import sections, textfree
from pipeline.dataset.license import LICENSE_FILE
from pipeline.dataset.rows import CONFIGS, SILVER, Schema, data_files
from pipeline.dataset.source import Source
from pipeline.quality.metrics import Preannotation

ENTITY_DEFINITIONS = {
    "PERSON": "People, including fictional ones and named officials (\"Sergei Ryabkov\", \"Blinken\").",
    "NORP": "Nationalities, religious or political groups (\"Russian\", \"Ukrainians\").",
    "ORG": "Organisations: alliances, ministries, companies, agencies (\"NATO\", \"the Kremlin\").",
    "GPE": "Geopolitical entities: countries, cities, states, also as actors (\"Russia\", \"Moscow\").",
    "LOC": "Non-GPE locations: regions, bodies of water, mountain ranges (\"Black Sea\").",
    "FAC": "Facilities: buildings, airports, bridges.",
    "EVENT": "Named events: wars, summits, talks (\"the Geneva talks\").",
    "LAW": "Named treaties and laws (\"the INF Treaty\").",
}
STANCE_DEFINITIONS = {
    "none": "A candidate pair (both entities can hold a stance, same sentence) with no annotated stance.",
    "against": "The holder opposes, criticises, threatens or rejects the target.",
    "favor": "The holder supports, endorses, defends or agrees with the target.",
}
# A label of params `preannotate:` with no built-in definition above.
UNDEFINED = "Defined in the annotation guidelines."
# A card built outside any git checkout and with no repository URL.
NO_SOURCE = Source(None, (), None, None)
# What one row of each config is, for the table of configurations.
ROW_IS = {"articles": "article", "entities": "sentence", "stance": "entity pair"}
# The card's text, in pipeline/dataset/templates/.
TEMPLATE = "README.md.j2"
RESOLUTION_RULE = (
    "Where several annotators labelled one article, each annotator's version is kept (column `annotations` "
    "of the `articles` config) and the published labels are resolved as follows: (1) an annotation a "
    "reviewer marked as *ground truth* in Label Studio wins; (2) otherwise an entity (start, end, label) "
    "or stance (holder span, target span, label) is kept when more than half of the annotators have it; "
    "on an exact tie (e.g. one of two annotators) the machine's proposal casts the deciding vote — kept "
    "if the model proposed it, dropped if not — and every tie is listed in the merge report. A stance is "
    "kept only if both its entities are. A relation drawn in both directions (`bi`) is a stance each way."
)


class CardConfig(Schema, Protocol):
    """What the card needs of the publish config (publish.PublishConfig) beyond the rows' schema."""

    @property
    def version(self) -> str: ...
    @property
    def pretty_name(self) -> str: ...
    @property
    def license(self) -> str: ...
    @property
    def license_name(self) -> str: ...
    @property
    def entity_labels(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class CardContext:
    """What the card is rendered from."""

    cfg: CardConfig
    records: Collection[dict[str, Any]]
    counts: dict[str, dict[str, int]]
    features: dict[str, Any]
    stats: dict[str, int]
    metrics: dict[str, Any]
    changelog: dict[str, Any] | None
    labeled_md5: str
    labeled_path: str
    guidelines: str | None
    guidelines_path: str | None
    figure: str
    examples: dict[str, dict[str, Any]] = field(default_factory=dict)  # a published row per config, for the card
    split_bytes: dict[str, dict[str, int]] = field(default_factory=dict)  # Arrow size per config and split (num_bytes)
    text_free: bool = False  # publish.include_text false: no article text in the release (textfree.py)
    source: Source = NO_SOURCE  # the code's git commit and the repository URL


# ---------------------------------------------------------------- YAML header


def size_category(n: int) -> str:
    """The Hub's size_categories bucket for `n` rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def largest_config(ctx: CardContext) -> int:
    """The dataset's size for size_categories: the rows of its largest config (all splits)."""
    return max((sum(splits.values()) for splits in ctx.counts.values()), default=0)


def config_names(counts: dict[str, dict[str, int]]) -> list[str]:
    """The configs with rows, gold first, in CONFIGS order."""
    return sorted(counts, key=lambda n: (n.endswith(SILVER), CONFIGS.index(n.removesuffix(SILVER))))


def configs_yaml(counts: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """The card's `configs`: each config's splits with their data files, `articles` the default."""
    configs = []
    for name in config_names(counts):
        cfg: dict[str, Any] = {"config_name": name,
                               "data_files": [{"split": s, "path": data_files(name, s)} for s in SPLITS if s in counts[name]]}
        if name == "articles":
            cfg["default"] = True
        configs.append(cfg)
    return configs


def dataset_infos(features: dict[str, Any], counts: dict[str, dict[str, int]],
                  split_bytes: dict[str, dict[str, int]]) -> Any:
    """The card's `dataset_info` (a datasets DatasetInfosDict): features, rows and Arrow bytes per config and split."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict

    # `splits` (name, rows) is the machine-readable list of the splits this release has; absent ones are not declared
    return DatasetInfosDict({
        name: DatasetInfo(features=features[name.removesuffix(SILVER)], config_name=name,
                          splits=SplitDict({s: SplitInfo(name=s, num_examples=n, num_bytes=split_bytes.get(name, {}).get(s, 0))
                                           for s, n in counts[name].items()}))
        for name in config_names(counts)
    })


def header(ctx: CardContext) -> str:
    """The card's YAML metadata: configs with data files, features, license, language, task and size tags."""
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(
        pretty_name=ctx.cfg.pretty_name,
        license=ctx.cfg.license,
        license_name=ctx.cfg.license_name,
        license_link=LICENSE_FILE,  # the Hub spec for `license: other`: a link to the licence text, shipped alongside
        language=["en"],
        language_creators=["found", "machine-generated"] if sections.translated(ctx.records) else ["found"],
        multilinguality=["monolingual"],
        annotations_creators=["expert-generated", "machine-generated"],
        source_datasets=["original"],
        task_categories=["token-classification", "text-classification"],
        task_ids=["named-entity-recognition", "multi-class-classification"],  # entities; stance
        size_categories=[size_category(largest_config(ctx))],
        tags=["news", "geopolitics", "stance-detection", "named-entity-recognition", "relation-extraction"],
        configs=configs_yaml(ctx.counts),
    )
    dataset_infos(ctx.features, ctx.counts, ctx.split_bytes).to_dataset_card_data(data)
    return data.to_yaml()


# ---------------------------------------------------------------- body


def _table(head: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; None cells are left empty."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(x: Any) -> str:
    """A figure as the card shows it: floats to three decimals, None as a dash."""
    return f"{x:.3f}" if isinstance(x, float) else ("–" if x is None else str(x))


def _distinct(records: Collection[dict[str, Any]], key: str) -> str:
    """The distinct values of a provenance field over the records, as inline code."""
    values = sorted({str((r.get("provenance") or {}).get(key)) for r in records})
    return ", ".join(f"`{v}`" for v in values)


def quality(ctx: CardContext) -> dict[str, Any] | None:
    """Pre-annotation quality against the human corrections and inter-annotator agreement; None with no gold article."""
    gold = [r for r in ctx.records if r["status"] == "gold"]
    if not gold:
        return None
    pre = ctx.metrics.get("preannotation")
    from_metrics = bool(pre)
    if not pre:
        scored = Preannotation()
        for rec in gold:
            scored.add(rec)
        pre = scored.quality()
    kinds = [k for k in ("entities", "entities_overlap", "stances", "stances_overlap") if isinstance(pre.get(k), dict)]
    table = _table(["task", "precision", "recall", "F1", "gold items"],
                   [[k.replace("_", " "), _fmt(pre[k].get("precision")), _fmt(pre[k].get("recall")),
                     _fmt(pre[k].get("f1")), pre[k].get("support")] for k in kinds])
    per_label = (pre.get("entities") or {}).get("per_label") or {}
    actors = pre.get("actors")
    multi = [r for r in gold if r.get("agreement")]
    agreement = None
    if multi:
        f1 = [r["agreement"]["entity_f1"] for r in multi if r["agreement"].get("entity_f1") is not None]
        kappa = [r["agreement"]["stance_kappa"] for r in multi if r["agreement"].get("stance_kappa") is not None]
        agreement = {"n": len(multi), "adjudicated": sections.adjudicated(gold), "f1": sum(f1) / len(f1) if f1 else None,
                     "kappa": sum(kappa) / len(kappa) if kappa else None,
                     "warning": sections.small_sample(len(multi), "Agreement")}
    return {
        "from_metrics": from_metrics,
        "scored": pre.get("gold_articles", len(gold)),  # the evaluate stage leaves out what the stance model trained on
        "excluded": pre.get("excluded_train_gold_articles", 0),
        "table": table,
        "warning": sections.small_sample(pre.get("gold_articles", len(gold)), "This table"),
        "per_label": ", ".join(f"`{lab}` F1 {_fmt(v.get('f1'))} ({v.get('support')})" for lab, v in sorted(per_label.items())),
        "actors": actors if isinstance(actors, dict) and actors.get("accuracy") is not None else None,
        "agreement": agreement,
    }


@cache
def _template() -> jinja2.Template:
    """The card's template (templates/README.md.j2), shipped as package data."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("pipeline.dataset", "templates"), autoescape=False,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    env.filters["codes"] = lambda values: ", ".join(f"`{v}`" for v in values)
    return env.get_template(TEMPLATE)


def render(ctx: CardContext) -> str:
    """The whole card, by the sections of huggingface_hub's dataset card template: YAML header and Markdown body."""
    cfg, records = ctx.cfg, ctx.records
    gold = [r for r in records if r["status"] == "gold"]
    ent_counts = {st: Counter(e["label"] for r in records if r["status"] == st for e in r["entities"]) for st in ("gold", "silver")}
    stance_counts = {st: Counter(s["label"] for r in records if r["status"] == st for s in r["stances"]) for st in ("gold", "silver")}
    every = [n + sfx for sfx in ("", SILVER) for n in CONFIGS]
    guidelines_link = f"[{ctx.guidelines_path}]({ctx.guidelines_path})" if ctx.guidelines_path else None
    snapshots = sorted({r["provenance"].get("annotation_snapshot") for r in gold if r["provenance"].get("annotation_snapshot")})
    snapshot_hashes = sorted({r["provenance"].get("annotation_snapshot_sha256") for r in gold} - {None})
    provenance = [["`" + ctx.labeled_path + "` (md5, as in dvc.lock)", f"`{ctx.labeled_md5}`"],
                  ["Label Studio snapshot", ", ".join(f"`{s}`" for s in snapshots) or "none"],
                  ["snapshot sha256", ", ".join(f"`{h}`" for h in snapshot_hashes) or "none"],
                  ["pre-annotation model", _distinct(records, "model") + " " + _distinct(records, "model_version")],
                  ["rules version", _distinct(records, "rules_version")],
                  *sections.code_source(ctx.source)]
    if any((r.get("provenance") or {}).get("stance_model") for r in records):  # the stances came from a learned model
        provenance += [["stance model (trained on; training data sha256)", _distinct(records, "stance_model") + " ("
                        + _distinct(records, "stance_trained_on") + "; " + _distinct(records, "stance_training_data") + ")"],
                       ["stance model licence", _distinct(records, "stance_model_licence")]]
    text = _template().render(
        yaml_header=header(ctx), cfg=cfg, records=records, n_gold=len(gold), release_kind=textfree.kind(ctx.text_free),
        n_silver=sum(1 for r in records if r["status"] == "silver"),
        annotators=sorted({a for r in gold for a in r.get("annotators") or []}), snapshots=snapshots,
        dates=sections.date_range(records),
        size=sections.sizes(records), sources=sections.sources(records), guidelines_link=guidelines_link,
        quick_start="\n".join(sections.quick_start(ctx.counts)), silver=SILVER,
        configs_table=_table(["config", *SPLITS, "row ="],
                             [[f"`{name}`", *(ctx.counts.get(name, {}).get(s, "–") for s in SPLITS),
                               "one " + ROW_IS[name.removesuffix(SILVER)]] for name in every]),
        configs_note=sections.configs_note(ctx.counts, every),
        entity_table=_table(["label", "definition", "gold", "silver"],
                            [[f"`{lab}`", ENTITY_DEFINITIONS.get(lab, UNDEFINED), ent_counts["gold"][lab],
                              ent_counts["silver"][lab]] for lab in cfg.entity_labels]),
        bio_ids=", ".join(f"{t}={i}" for i, t in enumerate(cfg.bio_tags)),
        stance_definition=sections.stance_definition(ctx.guidelines),
        stance_table=_table(["label", "id", "definition", "gold", "silver"],
                            [[f"`{lab}`", i, STANCE_DEFINITIONS.get(lab, UNDEFINED),
                              stance_counts["gold"][lab] if lab != NO_STANCE else "",
                              stance_counts["silver"][lab] if lab != NO_STANCE else ""]
                             for i, lab in enumerate(cfg.stance_classes)]),
        stance_ends=", ".join(f"`{lab}`" for lab in cfg.stance_ends),
        capped=ctx.stats.get("candidate pairs beyond the cap", 0), min_datasets=sections.MIN_DATASETS,
        gold_origin=sections.gold_origin(records),
        data_fields=[(name, ", ".join(f"`{k}` ({sections.feature_type(v)})" for k, v in ctx.features[name].items()))
                     for name in CONFIGS],
        data_instances="\n".join(sections.data_instance(ctx.examples)) if ctx.examples else "",
        translation=sections.translation(records), resolution_rule=RESOLUTION_RULE,
        stance_licence=sections.stance_licence(records),
        prov={k: _distinct(records, k) for k in ("model", "model_version", "rules_version", "code_revision")},
        personal_information=sections.personal_information(records), quality=quality(ctx),
        stats_table=_table(["count", "n"], [[k, v] for k, v in ctx.stats.items()]) if ctx.stats else "",
        figure=ctx.figure, bias=sections.bias(records), citation="\n".join(sections.citation(cfg.pretty_name, cfg.version, sections.release_year(records), ctx.source.url)),
        source=ctx.source,
        changelog=sections.changelog(cfg.version, ctx.changelog), provenance_table=_table(["input", "value"], provenance),
    )
    return text.rstrip() + "\n"
