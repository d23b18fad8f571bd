"""The dataset card's prose sections of the Hub template, each figure derived from the published records and rows."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection
from typing import Any

from pipeline.common.contract import SPLITS
from pipeline.dataset.source import Source

# Below this many gold articles a quality figure is an anecdote, not an estimate: the card says so.
SMALL_SAMPLE = 30
# The placeholder of the Quick start; tests/test_publish_card.py runs the snippet with a local folder in its place.
REPO_PLACEHOLDER = "<repo id or local folder>"
# Items of a list shown in the data-instance example before it is cut.
EXAMPLE_ITEMS = 8
# The oldest `datasets` that loads a release: the features are written with `datasets.List` and the Quick start
# reads `features["ner_tags"].feature`, both new in 4.0 (3.x fails on them); the tests run the pinned version.
MIN_DATASETS = "4.0.0"


def _n(count: int, noun: str) -> str:
    """`1 article`, `2 articles`."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def sources(records: Collection[dict[str, Any]]) -> str:
    """Named sources with their article counts; articles with no recorded source are counted apart, not as a source."""
    named = Counter(r["source"] for r in records if r.get("source"))
    missing = sum(1 for r in records if not r.get("source"))
    text = (f"{_n(len(named), 'named source')} ({', '.join(f'{s}: {n}' for s, n in sorted(named.items()))})" if named
            else "no named source")
    if missing:
        text += f"; {missing} of {_n(len(records), 'article')} record no source"
    wires = Counter(r["wire"] for r in records if r.get("wire"))
    if wires:
        text += "; datelines credit a news agency: " + ", ".join(f"{w}: {n}" for w, n in sorted(wires.items()))
    return text


def date_range(records: Collection[dict[str, Any]]) -> str:
    """`dated A to B`, with how many articles record no date."""
    first = last = None
    n_dated = 0
    for r in records:  # one pass, nothing held: the records may be a million summaries on disk
        if date := r.get("date"):
            first = date if first is None else min(first, date)
            last = date if last is None else max(last, date)
            n_dated += 1
    text = f"dated {first} to {last}" if n_dated else "with no recorded date"
    missing = len(records) - n_dated
    return text + (f" ({missing} of {_n(len(records), 'article')} record no date)" if n_dated and missing else "")


def release_year(records: Collection[dict[str, Any]]) -> str | None:
    """The year of the newest Label Studio snapshot (named by its UTC pull time), else of the newest article; never the clock."""
    snapshots = (str((r.get("provenance") or {}).get("annotation_snapshot") or "") for r in records)
    year = max((m.group(1) for s in snapshots if (m := re.search(r"(\d{4})\d{4}T\d{6}Z", s))), default=None)
    return year if year is not None else max((str(r["date"])[:4] for r in records if r.get("date")), default=None)


def translation(records: Collection[dict[str, Any]]) -> str:
    """What the records say about translation: counts of `translated_from`, or that they say nothing."""
    langs = Counter(str(r["translated_from"]) for r in records if r.get("translated_from"))  # ISO codes
    if not langs:
        return ("No article records a translation: the corpus formats have no translation field (ingest keeps "
                "`title`, `date`, `url` and `source`), so which texts, if any, are translations cannot be derived "
                "from the records; any text may be one, with the translation's wording, names and quotes. A "
                "record's `translated_from` (ISO code), when present, is counted here.")
    n = sum(langs.values())
    return (f"{n} of {len(records)} article(s) record that they were translated into English "
            f"(from {', '.join(f'`{lang}`: {k}' for lang, k in sorted(langs.items()))}); their wording, names and "
            "quotes are the translation's and may carry its errors.")


def stance_sources(records: Collection[dict[str, Any]]) -> dict[str, int]:
    """Licence of the learned stance model -> silver articles whose stances it proposed; empty when the rules alone did."""
    found: Counter[str] = Counter()
    for r in records:
        prov = r.get("provenance") or {}
        if r["status"] == "silver" and prov.get("stance_model"):
            found[str(prov.get("stance_model_licence") or "unknown")] += 1
    return dict(sorted(found.items()))


def stance_licence(records: Collection[dict[str, Any]]) -> str:
    """Who proposed the machine stances of this release and which licence those predictions carry."""
    by_licence = stance_sources(records)
    if not by_licence:
        return ("Every machine-proposed stance in this release (the `_silver` configs) comes from the project's "
                "rules alone (params `preannotate.stance_model: false`), so the annotations' licence covers them.")
    parts = []
    for licence, n in by_licence.items():
        text = f"the stances of {_n(n, 'silver article')} were proposed by a learned stance model (licence: {licence})"
        if "NC-SA" in licence:
            text += (": its weights were trained on SEESAW (CC BY-NC-SA 4.0), so those predictions are under CC "
                     "BY-NC-SA 4.0 — non-commercial use only, shared alike — not under the annotations' CC BY 4.0")
        parts.append(text)
    return "In this release " + "; ".join(parts) + ". Human (gold) labels are not affected."


def translated(records: Collection[dict[str, Any]]) -> int:
    """How many articles record that they were translated (`translated_from`)."""
    return sum(1 for r in records if r.get("translated_from"))


def sizes(records: Collection[dict[str, Any]]) -> dict[str, int]:
    """Articles, sentences, entities and annotated stances, gold and silver, from article summaries (publish.summarize)."""
    out: Counter[str] = Counter()
    for r in records:
        st = r["status"]
        out[f"{st} articles"] += 1
        out[f"{st} sentences"] += r["n_sentences"]
        out[f"{st} entities"] += len(r["entities"])
        out[f"{st} stances"] += len(r["stances"])
    return {k: out[k] for k in (f"{st} {kind}" for st in ("gold", "silver")
                                for kind in ("articles", "sentences", "entities", "stances"))}


def gold_origin(records: Collection[dict[str, Any]]) -> str:
    """How the gold articles were labelled: from the machine's proposals or from scratch (each version's `from_prediction`)."""
    kinds: Counter[str] = Counter()
    for r in records:
        if r["status"] != "gold":
            continue
        started = {a.get("from_prediction") for a in r.get("annotations") or []}
        kinds["unknown" if None in started or not started else "proposals" if started == {True}
              else "scratch" if started == {False} else "both"] += 1
    if not kinds:
        return "No article has a human version yet."
    parts = [f"{kinds['proposals']} corrected from the proposals (every annotator started from them)",
             f"{kinds['scratch']} labelled from scratch (no annotator did)"]
    if kinds["both"]:
        parts.append(f"{kinds['both']} by annotators of both kinds")
    if kinds["unknown"]:
        parts.append(f"{kinds['unknown']} not recorded (a version whose snapshot does not say)")
    n = sum(kinds.values())
    return (f"How the {_n(n, 'gold article')} {'was' if n == 1 else 'were'} labelled, from Label Studio's "
            "`parent_prediction` (kept per version as `from_prediction` in the `annotations` column of the "
            "`articles` config): " + ", ".join(parts) + ".")


def adjudicated(records: Collection[dict[str, Any]]) -> int:
    """Gold articles whose annotators were compared (an `agreement`) and whose labels a reviewer's ground truth settled."""
    return sum(1 for r in records if r["status"] == "gold" and r.get("agreement")
               and (r.get("provenance") or {}).get("resolution") == "ground_truth")


def small_sample(n_articles: int, what: str) -> str | None:
    """A warning when `what` rests on fewer than SMALL_SAMPLE gold articles, else None."""
    if n_articles >= SMALL_SAMPLE:
        return None
    return (f"> **Small sample.** {what} rests on {n_articles} gold article(s) (fewer than {SMALL_SAMPLE}): "
            "read it as an indication, not an estimate; a single article can move it a lot.")


def quick_start(counts: dict[str, dict[str, int]]) -> list[str]:
    """Python that runs on this release: it loads the configs that exist and never names a split that may be absent."""
    have = set(counts)
    suffix = "" if "entities" in have else "_silver"
    lines = ["```python", "from datasets import get_dataset_config_names, load_dataset", "",
             f'REPO = "{REPO_PLACEHOLDER}"',
             "configs = get_dataset_config_names(REPO)  # the configs of this release (see the table below)",
             f'ner = load_dataset(REPO, "entities{suffix}")  # a DatasetDict of the splits this release has',
             'train = ner["train"] if "train" in ner else next(iter(ner.values()))  # only splits with rows exist',
             'labels = train.features["ner_tags"].feature.names  # ["O", "B-PERSON", "I-PERSON", ...]',
             "row = train[0]",
             "# every token carries its character offsets into the article's text (config articles);",
             "# an entity starts at a B- tag and runs over the I- tags that follow it",
             'entity_starts = [(row["token_starts"][k], labels[t][2:])',
             '                 for k, t in enumerate(row["ner_tags"]) if labels[t].startswith("B-")]']
    if f"stance{suffix}" in have:
        lines += [f'stance = load_dataset(REPO, "stance{suffix}")  # sentence + (holder, target) -> label',
                  "pairs = next(iter(stance.values()))  # any split",
                  'stance_names = pairs.features["label"].names  # ["none", "against", "favor"]',
                  '# `text` marks the holder [E1]...[/E1] and the target [E2]...[/E2]: ready for a sequence classifier',
                  'pair = (pairs[0]["text"], stance_names[pairs[0]["label"]])']
    lines.append(f'articles = load_dataset(REPO, "articles{suffix}")  # full texts, sentence offsets, entities, stances')
    if suffix == "":
        lines += ['if "entities_silver" in configs:  # machine-only rows: never evaluation data',
                  '    silver = load_dataset(REPO, "entities_silver")']
    lines.append("```")
    return lines


def data_instance(examples: dict[str, dict[str, Any]]) -> list[str]:
    """One published row per row-level config as JSON, long lists cut after EXAMPLE_ITEMS items."""
    out = []
    for name, row in examples.items():
        shown = {k: ([*v[:EXAMPLE_ITEMS], "..."] if isinstance(v, list) and len(v) > EXAMPLE_ITEMS else v)
                 for k, v in row.items()}
        body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in shown.items())
        out += [f"A row of `{name}`:", "", "```json", "{\n" + body + "\n}", "```", ""]
    if out:
        out.append("Class labels are stored as ids (`ner_tags`, the stance `label`); their names are in the label "
                   "schema above and in `features[...].names`.")
    return out


def configs_note(counts: dict[str, dict[str, int]], all_configs: list[str]) -> str:
    """Which configs and splits this release has and why an absent one is not declared."""
    absent = [f"`{c}`" for c in all_configs if c not in counts]
    empty = [f"`{c}` {s}" for c in all_configs if c in counts for s in SPLITS if s not in counts[c]]
    text = ("A config or split with no rows is **not declared** in this release: `datasets` 5.2.0 cannot load an "
            "empty split (an empty Parquet file fails to load, even with the right schema), so it is left out "
            "rather than shipped broken. The splits that exist are machine-readable in the card's metadata: "
            "`configs[].data_files` (what `get_dataset_split_names(REPO, config)` reads) and "
            "`dataset_info[].splits` (rows as `num_examples`). Code that must run on every version should ask "
            "`get_dataset_config_names(REPO)` which configs exist and look a split up in the `DatasetDict` "
            "(`\"train\" in ner`) before naming it.")
    if absent:
        text += f" Not in this release: configs {', '.join(absent)}."
    if empty:
        text += f" Splits absent from a config: {', '.join(empty)}."
    return text


def uses() -> list[str]:
    """The template's Uses section."""
    return ["## Uses", "", "### Direct Use", "",
            "- Training and evaluating named-entity recognition on geopolitical news (`entities`, BIO `ner_tags`).",
            ("- Entity-to-entity stance detection: given a sentence and an ordered (holder, target) pair, predict "
            "`favor`, `against` or `none` (`stance`)."),
            ("- Studying who is for or against whom across articles (`articles`: full texts with every label and "
            "every annotator's version)."),
            ("- Measuring how much human correction machine pre-annotation needs (per-annotator versions, lead "
            "times, agreement)."), "",
            "### Out-of-Scope Use", "",
            "- Redistributing or commercially exploiting the article texts: they are copyrighted by their publishers.",
            ("- Claims about what an actor actually said or thinks: the texts are scraped news, possibly translated, "
            "and a stance is the annotators' reading of one sentence."),
            ("- Measuring media bias or public opinion: the selection of outlets and events is small and not "
            "representative."),
            "- Profiling individuals named in the news.",
            "- Evaluating a model on the `_silver` configs: they are the machine's own proposals."]


def curation_rationale() -> str:
    """Why the dataset exists."""
    return ("Entity-level stance in news — which actor supports or opposes which other actor — is rarely annotated: "
            "stance datasets mostly label a text's stance towards a fixed topic. This dataset pairs named entities "
            "linked to canonical actors with directed stances between them, and keeps annotation cheap by having "
            "humans correct machine proposals instead of labelling from scratch; every correction is kept, so the "
            "cost and the quality of that trade-off can be measured.")


def personal_information(records: Collection[dict[str, Any]]) -> str:
    """Personal and sensitive information in the texts and the annotations."""
    people = {e["text"] for r in records for e in r["entities"] if e["label"] == "PERSON"}
    n_people = sum(1 for r in records for e in r["entities"] if e["label"] == "PERSON")
    return (f"The texts are published news and name people: {n_people} `PERSON` entities ({len(people)} distinct "
            "names), mostly public figures (officials, politicians, commentators), with the political opinions the "
            "articles attribute to them — a stance row records such an opinion. Nothing was anonymised: the names "
            "are the news. Quoted private individuals may appear. Annotators are pseudonymous "
            "(`annotator-<Label Studio user id>`); per annotator the dataset keeps their labels and the time spent "
            "per article (`lead_time`), nothing else about them.")


def bias(records: Collection[dict[str, Any]]) -> str:
    """Bias, risks and limitations, with the figures they rest on."""
    gold = [r for r in records if r["status"] == "gold"]
    single = sum(1 for r in gold if len(r.get("annotators") or []) <= 1)
    return (
        "- **The gold follows spaCy's conventions.** Where annotators start from the proposals of a spaCy model and "
        "the project's rules (Label Studio shows them), span boundaries (\"the Kremlin\" vs "
        "\"Kremlin\"), the OntoNotes label set and what counts as an entity follow the model where annotators "
        "accepted it, and an entity or stance the model missed is more likely to stay missed (anchoring). Scores "
        "of spaCy-like models on this gold are therefore optimistic.\n"
        f"- **Few annotators per article.** {single} of {len(gold)} gold article(s) were labelled by a single "
        "annotator: their labels are one person's reading.\n"
        f"- **Narrow coverage.** {_n(len(records), 'article')} {date_range(records)}: a handful of events seen by a "
        f"handful of outlets, in English. Sources: {sources(records)}.\n"
        f"- **Translation.** {translation(records)}\n"
        "- **Stance candidates.** `none` pairs are generated (same sentence, both ends able to hold a stance), so "
        "their share depends on that rule and the candidate cap, not on the news.")


def recommendations() -> str:
    """What a user should do about the limitations."""
    return ("Report results per split with the number of gold articles they rest on; keep the `_silver` configs "
            "out of evaluation; keep splits grouped by `story_id` (near-duplicate reprints share a story) when "
            "re-splitting; test a model trained here on independently annotated data before trusting it on other "
            "outlets or events; quote the dataset version (the Hub tag `v<version>`) with every result.")


def citation(pretty_name: str, version: str, year: str | None, url: str | None = None) -> list[str]:
    """BibTeX and APA entries for this version; `year` from the data (release_year) and `url` (the repository's) left out when unknown."""
    key = "geonews_" + version.replace(".", "_")
    return ["**BibTeX:**", "", "```bibtex", f"@misc{{{key},", f"  title = {{{{{pretty_name}}}}},",
            "  author = {{GeoNews pipeline contributors}},", *([f"  year = {{{year}}},"] if year else []),
            f"  note = {{Dataset version {version}}},", *([f"  url = {{{url}}},"] if url else []),
            "  howpublished = {Hugging Face dataset, tag v" + version + "}", "}", "```", "",
            (f"**APA:** GeoNews pipeline contributors. ({year or 'n.d.'}). *{pretty_name}* (Version {version}) "
             "[Data set]. Hugging Face." + (f" {url}" if url else ""))]


def code_source(source: Source) -> list[list[str]]:
    """The provenance table's rows for the code: its git commit (and uncommitted changes) and the repository URL."""
    if source.commit is None:
        commit = "none: not built in a git checkout"
    else:
        commit = (f"`{source.commit}`: the newest commit that changed the publish stage's code (`pipeline/publish.py`, "
                  "the modules it imports, the card template)")
        if source.modified:
            commit += "; **built with uncommitted changes** to " + ", ".join(f"`{m}`" for m in source.modified)
    where = {"params": "params `publish.repository_url`", "origin": "`git remote get-url origin`"}
    url = (f"<{source.url}> (from {where[source.url_from or 'params']})" if source.url else
           "none: params `publish.repository_url` is null and the checkout has no web `origin` remote")
    return [["code: git commit", commit], ["code: repository", url]]


def contact() -> str:
    """Where questions and corrections go."""
    return ("Open a discussion in the Community tab of this dataset's Hub repository; for a wrong label, quote the "
            "row `id` (or `article_id`) and the version.")


def stance_definition(guidelines: str | None) -> str | None:
    """The guidelines' section defining stance (first heading below the title mentioning 'stance'), without its heading."""
    if not guidelines:
        return None
    lines = guidelines.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(#+)\s+(.*)", line)
        if m and len(m.group(1)) > 1 and "stance" in m.group(2).lower():
            level, body = len(m.group(1)), []
            for nxt in lines[i + 1 :]:
                n = re.match(r"^(#+)\s", nxt)
                if n and len(n.group(1)) <= level:
                    break
                body.append(nxt)
            text = "\n".join(body).strip()
            # demote nested headings so they sit under the card's own section
            return re.sub(r"^(#+)", lambda h: "#" * min(6, len(h.group(1)) + 2), text, flags=re.MULTILINE) or None
    return None


def feature_type(feature: Any) -> str:
    """A short human name of a datasets feature type."""
    name = type(feature).__name__
    if name == "Value":
        return feature.dtype
    if name == "ClassLabel":
        return "class label"
    if name == "List":
        return f"list of {feature_type(feature.feature)}"
    if isinstance(feature, dict):
        return "{" + ", ".join(feature) + "}"
    return name


def changelog(version: str, change: dict[str, Any] | None) -> str:
    """The changelog section: first version, or counts, label deltas and up to 20 ids per kind of change."""
    if change is None:
        return f"- **{version}**: first published version (no earlier release recorded in `releases/`)."
    lines = [(f"- **{version}** (against {change['previous_version']}): {len(change['added'])} article(s) added, "
              f"{len(change['removed'])} removed, {len(change['changed'])} with changed labels, status or split "
              f"({len(change['newly_gold'])} newly human-annotated).")]
    for kind, deltas in change["label_deltas"].items():
        if deltas:
            lines.append(f"  - gold {kind}: " + ", ".join(f"`{k}` {v:+d}" for k, v in deltas.items()))
    for key in ("added", "removed", "changed"):
        if change[key]:
            ids = change[key]
            lines.append(f"  - {key}: " + ", ".join(f"`{a}`" for a in ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else ""))
    return "\n".join(lines)
