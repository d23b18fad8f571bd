"""The learned stance model on SEESAW: the base model's training, rules vs model on valid, a learning curve.

Every article is parsed once by the pre-annotator (entity layer and stance rules); each candidate pair
(pipeline/stance/features.py) is labelled from SEESAW's triplets of the holder's sentence when both ends
match a listed name (`seesaw.match_name`), and left out of training when one does not (SEESAW cannot
say whether such a pair holds a stance). Scoring is `seesaw.score`'s: triplets per sentence against all
of SEESAW's. Splits are SEESAW's own; tuning (`--cv`) is by story on train only. SEESAW is CC BY-NC-SA
4.0: so is a model learned from it, and nothing of its text is written anywhere.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
from spacy.tokens import Doc

from pipeline import preannotate as pa
from pipeline import train as tr
from pipeline.common.errors import ConfigError, InputError
from pipeline.common.jsonl import write_json
from pipeline.entities.annotator import COMPONENT, Annotator
from pipeline.research.seesaw import Article, Tally, load_articles, match_name, predicted_triplets, seesaw_labels
from pipeline.stance.features import Candidate, model_candidates
from pipeline.stance.lexicon import load_lexicon
from pipeline.stance.model import NONE, StanceModel, fit, save_model

LICENCE = "CC BY-NC-SA 4.0 (weights learned from SEESAW, launchnlp/SEESAW: non-commercial, share alike)"
FRACTIONS = (0.10, 0.25, 0.50, 1.00)


@dataclass
class Parsed:
    """One SEESAW article after the pre-annotator: entities, rule stances, candidate pairs and their labels."""

    article: Article
    story: str
    entities: list[dict[str, Any]]
    rule_stances: list[dict[str, Any]]
    spans: list[tuple[int, int, str]]
    cands: list[Candidate]
    labels: list[str | None]  # None: an end matches no SEESAW name, the pair cannot be judged
    keys: list[tuple[str, str, str] | None]  # (sentence id, holder name, target name) of each candidate
    doc: Doc | None = None  # the parse, kept only when asked (the diagnosis and the encoder read it)
    vectors: numpy.ndarray | None = None  # the candidates' dense vectors, for a model with an encoder


def add_vectors(parsed: Sequence[Parsed]) -> None:
    """Compute each article's candidate vectors from its kept parse (one encoder pass per sentence)."""
    from pipeline.stance.vectors import pair_vectors

    for p in parsed:
        assert p.doc is not None, "parse with keep_docs=True to encode"
        p.vectors = pair_vectors(p.doc, p.cands)


def parse(articles: Sequence[Article], pre: pa.Preannotator, keep_docs: bool = False,
          mentions: frozenset[str] = frozenset()) -> list[Parsed]:
    """Parse every article once and label its candidate pairs from SEESAW's triplets.

    `mentions` may add the opt-in kinds of mention of features.model_candidates: "speakers", "nominals".
    """
    from pipeline.research.seesaw import to_record

    annotator = pre.nlp.get_pipe(COMPONENT)
    assert isinstance(annotator, Annotator)
    prepared = [to_record(a) for a in articles]
    out = []
    with pre.nlp.select_pipes(disable=[COMPONENT]):
        docs = pre.nlp.pipe((r["text"] for r, _ in prepared), batch_size=pre.params.batch_size)
        for article, (record, spans), doc in zip(articles, prepared, docs, strict=True):
            text = record["text"]
            kept, entities = annotator.entity_layer(doc, text)
            rules = annotator.rule_stances(doc, text, kept)
            cands = model_candidates(doc, kept, pre.params.stance_ends, annotator.rules.lexicon, rules,
                                     speakers="speakers" in mentions, nominals="nominals" in mentions)
            gold = {(s, h, t): lab for s, h, lab, t in sorted(article.gold)}
            labels: list[str | None] = []
            keys: list[tuple[str, str, str] | None] = []
            for c in cands:
                start = doc[c.at].idx  # the pair's sentence: where its holder is mentioned (maybe as a pronoun)
                sid = next((s for a, b, s in spans if a <= start < b), None)
                h = match_name(entities[c.holder]["text"], article.names)
                t = match_name(entities[c.target]["text"], article.names)
                key = (sid, h, t) if sid is not None and h is not None and t is not None and h != t else None
                keys.append(key)
                labels.append(gold.get(key, NONE) if key is not None else None)
            out.append(Parsed(article, article.id.split("_DOCUMENT_")[0], entities, rules, spans, cands, labels,
                              keys, doc if keep_docs else None))
    return out


def examples(parsed: Sequence[Parsed]) -> list[tuple[Candidate, str]]:
    """The judgeable training pairs of the articles, in order."""
    return [(c, lab) for p in parsed for c, lab in zip(p.cands, p.labels, strict=True) if lab is not None]


def coverage(parsed: Sequence[Parsed]) -> tuple[int, int]:
    """Gold triplets of the articles, and how many of them some candidate pair could propose (the recall bound)."""
    gold = covered = 0
    for p in parsed:
        reachable = {(k[0], k[1], lab, k[2]) for k, lab in zip(p.keys, p.labels, strict=True)
                     if k is not None and lab is not None and lab != NONE}
        gold += len(p.article.gold)
        covered += len(p.article.gold & reachable)
    return gold, covered


def recall_bound(parsed: Sequence[Parsed]) -> None:
    """Print how many gold triplets some candidate pair could propose."""
    gold, covered = coverage(parsed)
    print(f"train-seesaw: {covered} of {gold} gold triplets ({covered / max(1, gold):.1%}) are candidate pairs "
          f"(both ends entities of stance_ends matching a SEESAW name, in one sentence or through a pronoun)",
          file=sys.stderr)


def fit_seesaw(parsed: Sequence[Parsed], cfg: tr.Params, labels: Sequence[str], sources: tuple[str, ...]) -> StanceModel:
    """A model trained on the articles' judgeable pairs with the `train:` params."""
    return fit(examples(parsed), labels, c=cfg.c, min_count=cfg.min_feature_count, max_iter=cfg.max_iter,
               sources=sources, gold_articles=0, licence=LICENCE)


def tally(parsed: Sequence[Parsed], model: StanceModel | None, threshold: float) -> Tally:
    """Triplet counts of the rules (model None) or of the model's proposals over the articles."""
    t = Tally()
    for p in parsed:
        if model is None:
            predicted, unmatched = predicted_triplets({"entities": p.entities, "stances": p.rule_stances}, p.spans,
                                                      p.article.names)
        else:
            predicted, unmatched = model_triplets(p, model, threshold)
        t.articles += 1
        t.gold += len(p.article.gold)
        t.predicted += len(predicted)
        t.unmatched += unmatched
        for triplet, rule in predicted.items():
            hit = triplet in p.article.gold
            t.correct += hit
            t.by_rule[(rule, "tp" if hit else "fp")] += 1
    return t


def model_triplets(p: Parsed, model: StanceModel, threshold: float) -> tuple[dict[tuple[str, str, str, str], str], int]:
    """The model's triplets (sentence, holder, label, target) -> rule or `model`, and proposals matching no name."""
    if not p.cands:
        return {}, 0
    fired = {(s["holder"], s["target"]): s["label"] for s in p.rule_stances}
    best: dict[tuple[str, str, str, str], tuple[float, str]] = {}
    unmatched = 0
    for cand, key, row in zip(p.cands, p.keys, model.proba(p.cands, p.vectors if model.uses_encoder else None),
                              strict=True):
        k = 1 + int(row[1:].argmax())
        if row[k] < threshold:
            continue
        if key is None:
            unmatched += 1
            continue
        label = model.labels[k]
        triplet = (key[0], key[1], label, key[2])
        rule = "rule+model" if fired.get((cand.holder, cand.target)) == label else "model"
        if triplet not in best or row[k] > best[triplet][0]:
            best[triplet] = (float(row[k]), rule)
    return {t: rule for t, (_, rule) in best.items()}, unmatched


def story_order(parsed: Sequence[Parsed]) -> list[str]:
    """The stories of the articles in a fixed pseudo-random order (by hash), for nested subsets."""
    return sorted({p.story for p in parsed}, key=lambda s: hashlib.sha256(s.encode()).hexdigest())


def learning_curve(train: Sequence[Parsed], valid: Sequence[Parsed], cfg: tr.Params, labels: Sequence[str],
                   threshold: float) -> list[dict[str, Any]]:
    """Valid P/R/F1 after training on the first 10/25/50/100% of train stories (nested subsets)."""
    order = story_order(train)
    rows = []
    for fraction in FRACTIONS:
        chosen = set(order[: max(1, round(fraction * len(order)))])
        subset = [p for p in train if p.story in chosen]
        model = fit_seesaw(subset, cfg, labels, ("seesaw:train",))
        p, r, f = tally(valid, model, threshold).scores()
        rows.append({"train_share": fraction, "stories": len(chosen), "articles": len(subset),
                     "precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)})
    return rows


def cross_validate(train: Sequence[Parsed], cfg: tr.Params, labels: Sequence[str], cs: Sequence[float],
                   thresholds: Sequence[float], folds: int = 5) -> list[dict[str, Any]]:
    """Pooled triplet P/R/F1 of `folds`-fold cross-validation by story on train, per C and threshold."""
    order = story_order(train)
    fold_of = {s: k % folds for k, s in enumerate(order)}
    rows = []
    for c in cs:
        tallies = {th: Tally() for th in thresholds}
        for k in range(folds):
            model = fit_seesaw([p for p in train if fold_of[p.story] != k], cfg.model_copy(update={"c": c}), labels, ("cv",))
            held = [p for p in train if fold_of[p.story] == k]
            for th in thresholds:
                t, acc = tally(held, model, th), tallies[th]
                acc.gold, acc.predicted, acc.correct = acc.gold + t.gold, acc.predicted + t.predicted, acc.correct + t.correct
        for th in thresholds:
            p, r, f = tallies[th].scores()
            rows.append({"c": c, "threshold": th, "precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)})
    return rows


def _load(folder: Path, params: Path, patterns: Path, actors: Path, lexicon: Path, split: str | None,
          limit: int | None, keep_docs: bool = False,
          mentions: frozenset[str] = frozenset()) -> tuple[list[Parsed], tr.Params, pa.Params]:
    """Parse the SEESAW articles of `split` (both when None) with the params' pre-annotator (rules only)."""
    cfg, pre_cfg, _ = tr.configs(params)
    labels = seesaw_labels(load_lexicon(lexicon, labels=pre_cfg.stance_labels))
    articles = list(load_articles(folder, split, limit, labels))
    if not articles:
        raise InputError(f"{folder}: no articles{f' in split {split}' if split else ''}")
    pre = pa.load(pre_cfg.model_copy(update={"stance_model": False}), patterns, actors, lexicon)
    print(f"seesaw: parsing {len(articles)} articles of {folder}", file=sys.stderr)
    return parse(articles, pre, keep_docs, mentions), cfg, pre_cfg


def train_main(folder: Path, output: Path, params: Path, patterns: Path, actors: Path, lexicon: Path,
               cv: bool = False, limit: int | None = None, mentions: frozenset[str] = frozenset()) -> StanceModel | None:
    """Train the base model on SEESAW train (or, with `cv`, only print the cross-validation by story).

    `mentions` (opt-in kinds of mention, see `parse`) is for measuring: the pre-annotator uses none of them.
    """
    if mentions and not cv:
        raise ConfigError("extra kinds of mention are for --cv or --diagnose: the pre-annotator does not use them")
    parsed, cfg, pre_cfg = _load(folder, params, patterns, actors, lexicon, "train", limit, mentions=mentions)
    recall_bound(parsed)
    if cv:
        print(f"{'C':>6} {'threshold':>9}   P      R      F1")
        for row in cross_validate(parsed, cfg, pre_cfg.stance_labels, (0.03, 0.1, 0.3, 1.0),
                                  (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)):
            print(f"{row['c']:>6} {row['threshold']:>9}   {row['precision']:.3f}  {row['recall']:.3f}  {row['f1']:.3f}")
        return None
    model = fit_seesaw(parsed, cfg, pre_cfg.stance_labels, ("seesaw:train",))
    save_model(model, output)
    print(f"train-seesaw: {len(parsed)} articles, {model.training.examples} pairs, {len(model.weights)} features; "
          f"model {model.version} -> {output}", file=sys.stderr)
    return model


def compare_main(folder: Path, model_path: Path, params: Path, patterns: Path, actors: Path, lexicon: Path,
                 curve: Path | None = None, limit: int | None = None) -> dict[str, dict[str, Tally]]:
    """Print rules vs model triplet P/R/F1 per split from one parse; optionally the learning curve on valid."""
    from pipeline.stance.model import load_model

    model = load_model(model_path)
    parsed, cfg, pre_cfg = _load(folder, params, patterns, actors, lexicon, None, limit)
    threshold = pre_cfg.stance_threshold
    by_split = {s: [p for p in parsed if p.article.split == s] for s in ("train", "valid")}
    result: dict[str, dict[str, Tally]] = {}
    print(f"evaluate-seesaw: model {model.version} ({', '.join(model.training.sources)}), threshold {threshold}")
    print(f"{'split':<7}{'system':<8}{'articles':>9}{'gold':>7}{'pred':>7}{'correct':>8}   P      R      F1")
    for split, group in by_split.items():
        if not group:
            continue
        result[split] = {"rules": tally(group, None, threshold), "model": tally(group, model, threshold)}
        for system, t in result[split].items():
            p, r, f = t.scores()
            print(f"{split:<7}{system:<8}{t.articles:>9}{t.gold:>7}{t.predicted:>7}{t.correct:>8}"
                  f"   {p:.3f}  {r:.3f}  {f:.3f}")
    if curve is not None:
        if not by_split["train"] or not by_split["valid"]:
            raise ConfigError("--learning-curve needs both SEESAW splits")
        rows = learning_curve(by_split["train"], by_split["valid"], cfg, pre_cfg.stance_labels, threshold)
        print(f"{'train stories':>14} {'share':>6}   P      R      F1 (valid)")
        for row in rows:
            print(f"{row['stories']:>14} {row['train_share']:>6.0%}   {row['precision']:.3f}  {row['recall']:.3f}  "
                  f"{row['f1']:.3f}")
        write_json(curve, rows, sort_keys=True)
    return result
