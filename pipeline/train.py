"""train stage: the learned stance model from the human gold of annotations/, train split only.

Reads every Label Studio snapshot of annotations/ (pipeline/human/snapshots.py) and data/articles/:
an article's human versions count when their text hash matches the article's current text and merge's
story split (`human.splits.assign_split`) puts its story in `train`, so validation and test gold stay unseen.
Each such article is parsed by the pre-annotator's spaCy pipeline; every ordered pair of its gold
entities in one sentence is a training pair, labelled with the gold stance or `none`, with the
features of pipeline/stance/features.py (the rules that fire among them included). With
`train.use_base`, the model is stacked on the committed base model (resources/stance_model/, learned
from SEESAW by `python -m pipeline train-seesaw`), so it keeps that model's licence.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field
from spacy.tokens import Doc, Span
from spacy.util import filter_spans

from pipeline.common.config import Count, Section, Share, section
from pipeline.common.errors import BadRecords, ConfigError, InputError
from pipeline.common.jsonl import write_json
from pipeline.common.provenance import sha256_text
from pipeline.common.shards import exists, read_objects
from pipeline.entities import loader as pa
from pipeline.entities.annotator import COMPONENT, Annotator
from pipeline.human.pairs import Decisions, apply_decisions, decision_labels, read_decisions
from pipeline.human.resolve import resolve
from pipeline.human.snapshots import REVIEW_DIR, Linker, Tasks, Version, collect_tasks, parse_annotation, snapshots
from pipeline.human.splits import MergeConfig, assign_split
from pipeline.human.tombstones import drop_deleted
from pipeline.stance.features import Candidate, model_candidates
from pipeline.stance.model import NONE, StanceModel, fit, load_model, save_model

STAGE = "train"
GOLD_LICENCE = "CC BY 4.0 (learned from this project's annotations)"


class Params(Section):
    """The `train:` section of params.yaml."""

    use_base: bool  # stack on the base model (--base): its weights come from SEESAW, CC BY-NC-SA 4.0
    c: Annotated[float, Field(gt=0, le=1_000_000)]  # inverse L2 regularisation strength of the logistic regression
    min_feature_count: Count  # features seen in fewer training pairs are dropped
    max_iter: Count
    max_bad_share: Share


@dataclass(frozen=True)
class Gold:
    """One train-split article's resolved human labels."""

    id: str
    text: str
    entities: list[dict[str, Any]]
    stances: list[dict[str, Any]]
    only_pairs: frozenset[tuple[int, int]] | None = None  # known only from review decisions: just these pairs


def configs(path: Path) -> tuple[Params, pa.Params, MergeConfig]:
    """This stage's section, and the preannotate and merge sections it shares (model, labels, split)."""
    from pipeline.common.contract import stage_config

    return section(Params, STAGE, path), section(pa.Params, "preannotate", path), stage_config(MergeConfig, "merge", path)


def gold_articles(
    articles: Iterable[dict[str, Any]], tasks: Tasks, merge_cfg: MergeConfig, link: Linker, bad: BadRecords,
    counts: Counter[str], decisions: Decisions | None = None,
) -> Iterator[Gold]:
    """The human labels of each article whose story is in the train split, stance review decisions applied
    (pipeline/human/pairs.py); other splits are counted, never read."""
    for art in articles:
        versions = tasks.get(art["id"], [])
        decided = (decisions or {}).get(art["id"])
        if not versions and not decided:
            continue
        split = assign_split(art.get("story_id") or art["id"], merge_cfg)
        if split != "train":
            counts[f"held_out_{split}"] += 1
            continue
        text, text_hash = art["text"], sha256_text(art["text"])
        latest: dict[str, Version] = {}
        for where, task in versions:
            data = task["data"]
            task_text = data.get("text")
            if (isinstance(task_text, str) and sha256_text(task_text) != text_hash) or \
                    (data.get("text_hash") or text_hash) != text_hash:
                counts["stale_tasks"] += 1  # annotated on another text: its offsets mean nothing here
                continue
            for ann in task.get("annotations") or []:
                if not isinstance(ann, dict) or ann.get("was_cancelled"):
                    continue
                version = parse_annotation(ann, text, {}, link, f"{where} annotation {ann.get('id')}", bad,
                                           entity_labels=merge_cfg.entity_labels, stance_labels=merge_cfg.stance_labels,
                                           task=task)
                if version is not None and (version.annotator not in latest
                                            or latest[version.annotator].time <= version.time):
                    latest[version.annotator] = version
        if latest:
            # Several annotators: merge's rule; a tie has no model proposal to break it here, so it is left out.
            final, _, _ = resolve([latest[a] for a in sorted(latest)], {"entities": [], "stances": []})
            review: Counter[str] = Counter()
            final = apply_decisions(final, decided, text_hash, True, review)
            counts.update({f"review_{k}": v for k, v in review.items()})
            counts["gold_articles"] += 1
            yield Gold(art["id"], text, final["entities"], final["stances"])
        elif decided:
            entities, stances, pairs = decision_labels(decided, text_hash)
            counts["review_stale"] += len(decided) - len(pairs)
            if pairs:  # an article no annotator labelled: only its reviewed pairs, `none` ones as negatives
                counts["review_articles"] += 1
                yield Gold(art["id"], text, entities, stances, pairs)


def gold_examples(doc: Doc, gold: Gold, annotator: Annotator, ends: Iterable[str],
                  counts: Counter[str]) -> list[tuple[Candidate, str]]:
    """Training pairs of one gold article parsed as `doc`: every candidate pair of its gold entities and its label."""
    spans: list[Span] = []
    index_of: dict[int, int] = {}
    for k, e in enumerate(gold.entities):
        span = doc.char_span(e["start"], e["end"], label=e["label"], alignment_mode="expand")
        if span is None:
            counts["entities_not_aligned"] += 1
            continue
        if e.get("actor"):
            span.kb_id_ = e["actor"]
        spans.append(span)
        index_of[k] = len(spans) - 1
    kept = sorted(filter_spans(spans), key=lambda s: s.start)
    position = {(s.start, s.end): i for i, s in enumerate(kept)}
    remap = {k: position[(spans[i].start, spans[i].end)] for k, i in index_of.items()
             if (spans[i].start, spans[i].end) in position}
    doc.ents = kept
    labels = {(remap[s["holder"]], remap[s["target"]]): s["label"] for s in gold.stances
              if s["holder"] in remap and s["target"] in remap}
    # The pairs the pre-annotator scores (pronouns as mentions): a pronoun pair's ends are the entities the
    # pronouns stand for, so it takes the gold label of that entity pair, as its proposal would be judged.
    cands = model_candidates(doc, kept, ends, annotator.rules.lexicon, annotator.rule_stances(doc, gold.text, kept))
    only = None if gold.only_pairs is None else \
        {(remap[h], remap[t]) for h, t in gold.only_pairs if h in remap and t in remap}
    out = [(c, labels.get((c.holder, c.target), NONE)) for c in cands if only is None or (c.holder, c.target) in only]
    counts["gold_stances"] += len(gold.stances)
    counts["gold_stances_in_pairs"] += len({(c.holder, c.target) for c, label in out if label != NONE})
    return out


def train(
    golds: Iterable[Gold], pre: pa.Preannotator, cfg: Params, base: StanceModel | None, counts: Counter[str]
) -> StanceModel:
    """The model learned from the gold articles (stacked on `base` if given); `base` itself when there is no gold."""
    annotator = pre.nlp.get_pipe(COMPONENT)
    assert isinstance(annotator, Annotator)
    examples: list[tuple[Candidate, str]] = []
    golds = list(golds)
    with pre.nlp.select_pipes(disable=[COMPONENT]):
        for gold, doc in zip(golds, pre.nlp.pipe(g.text for g in golds), strict=True):
            examples += gold_examples(doc, gold, annotator, pre.params.stance_ends, counts)
    counts["pairs"] = len(examples)
    if not any(label != NONE for _, label in examples):
        if base is not None:
            counts["base_only"] = 1
            return base  # nothing to learn from yet: the base model as it is
        raise InputError("no gold stance in the train split to learn from (annotate some articles, or set "
                         "train.use_base: true)")
    licence = GOLD_LICENCE if base is None else f"{base.training.licence}; {GOLD_LICENCE}"
    sources = (*(base.training.sources if base else ()), "gold:train")
    return fit(examples, pre.params.stance_labels, c=cfg.c, min_count=cfg.min_feature_count, max_iter=cfg.max_iter,
               sources=sources, gold_articles=len(golds), licence=licence, base=base)


def main(articles: Path, annotations: Path, output: Path, report: Path, params: Path, base: Path | None,
         patterns: Path, actors: Path, lexicon: Path) -> None:
    """Train the stance model from the train-split gold and write it with a report."""
    cfg, pre_cfg, merge_cfg = configs(params)
    if cfg.use_base and base is None:
        raise ConfigError("train.use_base is true but no --base model file was given")
    base_model = load_model(base) if cfg.use_base and base is not None else None
    if not exists(articles):
        raise InputError(f"{articles}: input not found")
    bad = BadRecords(STAGE, cfg.max_bad_share)
    found = snapshots(Path(annotations))
    tasks, _ = collect_tasks(found, bad)
    drop_deleted(tasks, found, bad)  # merge reports them
    decisions = read_decisions(Path(annotations) / REVIEW_DIR, merge_cfg.stance_labels, cfg.max_bad_share, STAGE)
    pre = pa.load(pre_cfg.model_copy(update={"stance_model": False}), patterns, actors, lexicon)  # features: rules only
    annotator = pre.nlp.get_pipe(COMPONENT)
    assert isinstance(annotator, Annotator)
    counts: Counter[str] = Counter()
    records = (obj for obj in read_objects(articles, bad) if isinstance(obj.get("id"), str)
               and isinstance(obj.get("text"), str))
    golds = list(gold_articles(records, tasks, merge_cfg, annotator.rules.actors.link, bad, counts, decisions))
    model = train(golds, pre, cfg, base_model, counts)
    bad.check()
    save_model(model, output)
    write_json(report, {
        "model": {"version": model.version, "sources": list(model.training.sources), "licence": model.training.licence,
                  "training_data": model.training.data_hash, "examples": model.training.examples,
                  "features": len(model.weights)},
        "base": base_model.version if base_model is not None else None,
        "snapshots": [p.as_posix() for p in found],
        "train_articles": [g.id for g in golds],
        "counts": dict(sorted(counts.items())),
        "bad_records": bad.problems,
    }, sort_keys=True)
    print(f"{STAGE}: {counts['gold_articles']} train-split gold article(s), {counts['pairs']} pairs "
          f"({counts['gold_stances_in_pairs']} stances); model {model.version} "
          f"({', '.join(model.training.sources)}) -> {output}", file=sys.stderr)
