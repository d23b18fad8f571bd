"""The dataset card: README.md with the Hub's YAML header (configs, features, tags) and a body for ML practitioners.

Everything in the card comes from the pipeline's own records (labeled.jsonl, params, the evaluate
stage's metrics, the annotation guidelines), never from the clock, so rebuilds are identical.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.common.contract import SPLITS
from pipeline.dataset import sections
from pipeline.dataset.license import LICENSE_FILE
from pipeline.dataset.rows import CONFIGS, SILVER, Schema, data_files
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
    records: list[dict[str, Any]]
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


# ---------------------------------------------------------------- YAML header


def size_category(n: int) -> str:
    """The Hub's size_categories bucket for `n` rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def annotated_size(ctx: CardContext) -> int:
    """The dataset's size for size_categories: the largest count of articles, sentences or annotated stances (generated `none` pairs not counted)."""
    size = sections.sizes(ctx.records)
    return max(sum(size[f"{st} {kind}"] for st in ("gold", "silver")) for kind in ("articles", "sentences", "stances"))


def header(ctx: CardContext) -> str:
    """The card's YAML metadata: configs with data files, features, license, language, task and size tags."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    names = sorted(ctx.counts, key=lambda n: (n.endswith(SILVER), CONFIGS.index(n.removesuffix(SILVER))))
    configs = []
    for name in names:
        cfg: dict[str, Any] = {"config_name": name,
                               "data_files": [{"split": s, "path": data_files(name, s)} for s in SPLITS if s in ctx.counts[name]]}
        if name == "articles":
            cfg["default"] = True
        configs.append(cfg)
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
        task_ids=["named-entity-recognition"],
        size_categories=[size_category(annotated_size(ctx))],
        tags=["news", "geopolitics", "stance-detection", "named-entity-recognition", "relation-extraction"],
        configs=configs,
    )
    # `splits` (name, rows) is the machine-readable list of the splits this release has; absent ones are not declared
    infos = DatasetInfosDict({
        name: DatasetInfo(features=ctx.features[name.removesuffix(SILVER)], config_name=name,
                          splits=SplitDict({s: SplitInfo(name=s, num_examples=n, num_bytes=ctx.split_bytes.get(name, {}).get(s, 0))
                                           for s, n in ctx.counts[name].items()}))
        for name in names
    })
    infos.to_dataset_card_data(data)
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


def _distinct(records: list[dict[str, Any]], key: str) -> str:
    """The distinct values of a provenance field over the records, as inline code."""
    values = sorted({str((r.get("provenance") or {}).get(key)) for r in records})
    return ", ".join(f"`{v}`" for v in values)


def quality_section(ctx: CardContext) -> str:
    """Pre-annotation quality against the human corrections and inter-annotator agreement."""
    gold = [r for r in ctx.records if r["status"] == "gold"]
    if not gold:
        return "No article has been annotated by a human yet, so there is nothing to measure the pre-annotation against."
    out = []
    pre = ctx.metrics.get("preannotation")
    if pre:
        out.append("From the pipeline's evaluate stage (`metrics/preannotation.json`): the model's proposals against "
                   f"the final human labels of the {len(gold)} gold articles (exact = same span and label; overlap = "
                   "spans sharing a character, same label):\n")
    else:
        scored = Preannotation()
        for rec in gold:
            scored.add(rec)
        pre = scored.quality()
        out.append(f"The model's proposals compared with the final human labels of the {len(gold)} gold articles "
                   "(exact = same span and label; overlap = spans sharing a character, same label):\n")
    kinds = [k for k in ("entities", "entities_overlap", "stances", "stances_overlap") if isinstance(pre.get(k), dict)]
    out.append(_table(["task", "precision", "recall", "F1", "gold items"],
                      [[k.replace("_", " "), _fmt(pre[k].get("precision")), _fmt(pre[k].get("recall")),
                        _fmt(pre[k].get("f1")), pre[k].get("support")] for k in kinds]))
    if warning := sections.small_sample(len(gold), "This table"):
        out += ["", warning]
    per_label = (pre.get("entities") or {}).get("per_label") or {}
    if per_label:
        out.append("\nEntities per label (exact): " + ", ".join(
            f"`{lab}` F1 {_fmt(v.get('f1'))} ({v.get('support')})" for lab, v in sorted(per_label.items())) + ".")
    actors = pre.get("actors")
    if isinstance(actors, dict) and actors.get("accuracy") is not None:
        out.append(f"Actor links of matched entities: accuracy {_fmt(actors['accuracy'])} over {actors.get('paired')} pairs.")
    multi = [r for r in gold if r.get("agreement")]
    out.append("")
    if multi:
        f1 = [r["agreement"]["entity_f1"] for r in multi if r["agreement"].get("entity_f1") is not None]
        kappa = [r["agreement"]["stance_kappa"] for r in multi if r["agreement"].get("stance_kappa") is not None]
        mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
        out.append(f"**Agreement** on the {len(multi)} article(s) labelled by more than one annotator: mean entity "
                   f"span F1 {_fmt(mean(f1))}, mean Cohen's kappa on the stance labels of matched pairs "
                   f"{_fmt(mean(kappa))} (per article in the `agreement` column of the `articles` config).")
        if warning := sections.small_sample(len(multi), "Agreement"):
            out += ["", warning]
    else:
        out.append("**Agreement**: no article has more than one annotator yet, so agreement is not measured.")
    return "\n".join(out)


def render(ctx: CardContext) -> str:
    """The whole card, by the sections of huggingface_hub's dataset card template: YAML header and Markdown body."""
    cfg, records = ctx.cfg, ctx.records
    gold = [r for r in records if r["status"] == "gold"]
    silver = [r for r in records if r["status"] == "silver"]
    annotators = sorted({a for r in gold for a in r.get("annotators") or []})
    snapshots = sorted({r["provenance"].get("annotation_snapshot") for r in gold if r["provenance"].get("annotation_snapshot")})
    dates = sorted(r["date"] for r in records if r.get("date"))
    size = sections.sizes(records)
    ent_counts = {st: Counter(e["label"] for r in records if r["status"] == st for e in r["entities"]) for st in ("gold", "silver")}
    stance_counts = {st: Counter(s["label"] for r in records if r["status"] == st for s in r["stances"]) for st in ("gold", "silver")}
    parts = [f"---\n{header(ctx)}\n---", f"# Dataset Card for {cfg.pretty_name}", ""]
    parts.append(
        f"**Version {cfg.version}.** English news articles on geopolitics with **named entities** (linked to "
        f"canonical actors) and **entity-to-entity stances** — who is *for* or *against* whom. "
        f"**{len(gold)} gold** articles ({size['gold sentences']} sentences, {size['gold entities']} entities, "
        f"{size['gold stances']} stances; corrected by {len(annotators)} human annotator(s) in Label Studio) and "
        f"{len(silver)} silver ({size['silver sentences']} sentences; machine proposals no human has checked yet, "
        "published separately)."
    )
    if not gold:
        parts += ["", "> **No human-annotated article yet**: only the `_silver` configs exist in this version."]
    parts += ["", "## Dataset Details", "", "### Dataset Description", "",
              ("Articles are cleaned, pre-annotated by a spaCy model with the project's rules, corrected by annotators "
              "and published as three views of the same labels: whole articles, token-classified sentences and "
              "(holder, target) pairs. Every row aligns back to its article by character offsets."), "",
              "- **Curated by:** the GeoNews pipeline contributors (annotators are pseudonymous)",
              (f"- **Language(s) (NLP):** English ({size['gold articles'] + size['silver articles']} articles, "
              f"{size['gold sentences'] + size['silver sentences']} sentences)"),
              f"- **License:** `{cfg.license}` — {cfg.license_name}", "",
              "### Dataset Sources", "",
              f"- **Articles:** dated {dates[0] if dates else '?'} to {dates[-1] if dates else '?'}; {sections.sources(records)}",
              "- **Annotation guidelines:** " + (f"[{ctx.guidelines_path}]({ctx.guidelines_path})" if ctx.guidelines_path else "not shipped"),
              ""]
    parts += ["## Quick start", "", *sections.quick_start(ctx.counts), "",
              ("Gold (human-annotated) rows are in `articles`, `entities` and `stance`. Machine-only rows are in the "
               f"configs ending in `{SILVER}` — use them for pre-training or analysis, never as evaluation data. "
               "Splits are shared by all configs and grouped by story: an article, its sentences, its pairs and its "
               "near-duplicates are always in the same split (for gold and silver alike), so nothing leaks across splits."),
              "", *sections.uses()]
    parts += ["", "## Dataset Structure", "", "### Configurations and splits", ""]
    every = [n + sfx for sfx in ("", SILVER) for n in CONFIGS]
    rows = [[f"`{name}`", *(ctx.counts.get(name, {}).get(s, "–") for s in SPLITS),
             "one " + {"articles": "article", "entities": "sentence", "stance": "entity pair"}[name.removesuffix(SILVER)]]
            for name in every]
    parts.append(_table(["config", *SPLITS, "row ="], rows))
    parts.append(f"\n{sections.configs_note(ctx.counts, every)} Each split is one or more Parquet shards "
                 f"`<config>/<split>-00000-of-0000N.parquet` of at most {cfg.rows_per_shard:,} rows "
                 "(`datasets.push_to_hub` naming; the card's `data_files` globs match every shard). Split assignment: "
                 "a stable SHA-256 hash of the story id and a seed (params `merge.seed`, `merge.splits`), so an "
                 "article keeps its split in later versions.")
    parts += ["", "### Alignment back to the article", "",
              ("*The article's entities* are the `entities` list of its row in `articles` (or `articles_silver`), in "
               "that order; `stances[].holder`/`target` there and `holder_index`/`target_index` in `stance` are "
               "indexes into it. All offsets are character offsets into the article's `text`: `sentences` in "
               "`articles`; `sentence_start`/`sentence_end` and per-token `token_starts`/`token_ends` in `entities` "
               "(`article_id` + `sentence_index` name the sentence); `sentence_start`/`sentence_end` of the "
               "`sentence` field in `stance`, whose `holder_start`/`target_start` are relative to that sentence. So "
               "every entity (BIO spans of `entities` rows) and every stance (non-`none` `stance` rows) of an "
               "article can be rebuilt from those two configs alone.")]
    parts += ["", "### Label schema", "", "#### Entities", ""]
    parts.append(_table(["label", "definition", "gold", "silver"],
                        [[f"`{lab}`", ENTITY_DEFINITIONS.get(lab, UNDEFINED), ent_counts["gold"][lab], ent_counts["silver"][lab]]
                         for lab in cfg.entity_labels]))
    parts.append(f"\n`ner_tags` is a `ClassLabel` sequence in BIO: `O`=0, then `B-`/`I-` per label in the order above "
                 f"({', '.join(f'{t}={i}' for i, t in enumerate(cfg.bio_tags))}). Entities also carry `actor`, a "
                 f"canonical id from the project's actor table (e.g. `RUS`, `NATO`; null when unlinked).")
    parts += ["", "#### Stances", ""]
    definition = sections.stance_definition(ctx.guidelines)
    if definition:
        parts += [f"From the annotation guidelines ([{ctx.guidelines_path}]({ctx.guidelines_path})):", "", definition, ""]
    else:
        parts.append("A stance is a directed relation from a *holder* entity to a *target* entity.\n")
        if ctx.guidelines_path:
            parts += [f"The full definition is in the annotation guidelines, [{ctx.guidelines_path}]({ctx.guidelines_path}).", ""]
    parts.append(_table(["label", "id", "definition", "gold", "silver"],
                        [[f"`{lab}`", i, STANCE_DEFINITIONS.get(lab, UNDEFINED), stance_counts["gold"][lab] if lab != "none" else "",
                          stance_counts["silver"][lab] if lab != "none" else ""] for i, lab in enumerate(cfg.stance_classes)]))
    caps = ", ".join(f"`{lab}`" for lab in cfg.stance_ends)
    parts.append(f"\nIn the `stance` config every annotated stance is a row; `none` rows are candidate pairs: all ordered "
                 f"pairs of entities labelled {caps} in one sentence with no stance (at most "
                 f"{cfg.max_candidates_per_sentence} per sentence, in document order; pairs of the same name skipped). "
                 "A stance whose entities are in different sentences uses the span of sentences covering both.")
    parts += ["", "### Data fields", ""]
    for name in CONFIGS:
        parts.append(f"- **`{name}`**: " + ", ".join(f"`{k}` ({sections.feature_type(v)})" for k, v in ctx.features[name].items()))
    if ctx.examples:
        parts += ["", "### Data instances", "", *sections.data_instance(ctx.examples)]
    parts += ["", "## Dataset Creation", "", "### Curation Rationale", "", sections.curation_rationale()]
    parts += ["", "### Source Data", "", "#### Data Collection and Processing", ""]
    parts.append(
        f"{len(records)} news articles ({size['gold sentences'] + size['silver sentences']} sentences) dated "
        f"{dates[0] if dates else '?'} to {dates[-1] if dates else '?'}, scraped and cleaned by the pipeline (site "
        "furniture removed, near-duplicates grouped into stories, sentences split by the spaCy model). Sources: "
        f"{sections.sources(records)}.\n\n" + sections.translation(records) + "\n\n"
        "#### Who are the source data producers?\n\n"
        "The journalists and editors of the outlets above (and, for a translated text, its unknown translator). The "
        f"texts are copyrighted by their publishers: the dataset is released under `{cfg.license}` "
        f"({cfg.license_name}); do not redistribute the texts commercially."
    )
    parts += ["", "### Annotations", "", "#### Annotation process", ""]
    parts.append(
        f"1. **Pre-annotation.** spaCy model {_distinct(records, 'model')} (version {_distinct(records, 'model_version')}) "
        f"with the project's entity and stance rules (rules version {_distinct(records, 'rules_version')}, code revision "
        f"{_distinct(records, 'code_revision')}) proposes entities, actor links and stances.\n"
        "2. **Correction.** Annotators correct the proposals in Label Studio following the annotation guidelines"
        + (f" ([{ctx.guidelines_path}]({ctx.guidelines_path}), shipped with the data)" if ctx.guidelines_path else "") + ". Cancelled and skipped tasks are not gold; "
        "annotations made on an older version of a text are detected by a text hash and left out.\n"
        f"3. **Merge.** {RESOLUTION_RULE}\n\n"
        f"Gold labels come from the Label Studio snapshot {', '.join(f'`{s}`' for s in snapshots) or '(none yet)'}. "
        "The `articles` config records per article its status, resolution rule, annotators and agreement."
    )
    parts += ["", "#### Who are the annotators?", "",
              (f"{len(annotators)} annotator(s), pseudonymous (`annotator-<Label Studio user id>`): "
              f"{', '.join(f'`{a}`' for a in annotators) or 'none yet'}. No demographic information is collected.")]
    parts += ["", "#### Personal and Sensitive Information", "", sections.personal_information(records)]
    parts += ["", "### Quality", "", quality_section(ctx)]
    if ctx.stats:
        parts += ["", "How the token (`entities`) and pair (`stance`) views were built, gold and silver articles together:", "",
                  _table(["count", "n"], [[k, v] for k, v in ctx.stats.items()])]
    parts += ["", "### Who is for or against whom", "",
              f"![Actor-by-actor stance matrix of the gold stances]({ctx.figure})", "",
              ("Rows are stance holders, columns targets, both as canonical actors (quoted text when unlinked). A "
               "cell's colour is its **net count of gold stances, favour minus against**: blue when favour "
               "stances outnumber against ones, red when against ones do, white when they balance; grey cells "
               "have no gold stance. The text in a cell gives both counts (+favour/−against). "
               f"It rests on {size['gold stances']} gold stance(s) in {len(gold)} article(s).")]
    parts += ["", "## Bias, Risks, and Limitations", "", sections.bias(records), "",
              "### Recommendations", "", sections.recommendations()]
    parts += ["", "## Citation", "", *sections.citation(cfg.pretty_name, cfg.version)]
    parts += ["", "## More Information", "", "### Changelog", ""]
    parts.append(sections.changelog(cfg.version, ctx.changelog))
    parts += ["", "### Provenance", ""]
    snapshot_hashes = sorted({r["provenance"].get("annotation_snapshot_sha256") for r in gold} - {None})
    prov = [["`" + ctx.labeled_path + "` (md5, as in dvc.lock)", f"`{ctx.labeled_md5}`"]]
    prov += [["Label Studio snapshot", ", ".join(f"`{s}`" for s in snapshots) or "none"],
             ["snapshot sha256", ", ".join(f"`{h}`" for h in snapshot_hashes) or "none"],
             ["pre-annotation model", _distinct(records, "model") + " " + _distinct(records, "model_version")],
             ["rules version", _distinct(records, "rules_version")]]
    if any((r.get("provenance") or {}).get("stance_model") for r in records):  # the stances came from a learned model
        prov += [["stance model (trained on; training data sha256)", _distinct(records, "stance_model") + " ("
                  + _distinct(records, "stance_trained_on") + "; " + _distinct(records, "stance_training_data") + ")"],
                 ["stance model licence", _distinct(records, "stance_model_licence")]]
    parts.append(_table(["input", "value"], prov))
    parts.append("\nRebuild with `dvc repro` from the repository at a commit with these hashes; the Parquet files, "
                 "this card and the figure are byte-identical for identical inputs.")
    parts += ["", "## Dataset Card Contact", "", sections.contact()]
    return "\n".join(parts).rstrip() + "\n"
