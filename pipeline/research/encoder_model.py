"""The encoder stance model (the `train-encoder` command): pair features and pretrained-encoder vectors, one model.

Training data: every judgeable candidate pair of SEESAW train (research/seesaw_model.py) and of re3d's tune
part (research/re3d.py; a pair is a stance when its holder and target overlap a gold stance's source and
target), each re3d pair repeated `re3d_weight` times so that a few in-domain documents count against
hundreds of US politics articles. Inputs are the sparse pair features of stance/features.py plus the dense
vectors of stance/vectors.py (one all-MiniLM-L6-v2 pass per sentence). The output is a model file like the
base model's (stance/model.py) with the dense weights beside the sparse ones: about 0.4 MB, no encoder weights.
Evaluation data only: nothing of SEESAW's or re3d's text is in the file, only weights learned from them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy

from pipeline import preannotate as pa
from pipeline import train as tr
from pipeline.common.errors import InputError
from pipeline.common.jsonl import write_json
from pipeline.entities.annotator import COMPONENT, Annotator
from pipeline.research import re3d
from pipeline.research.seesaw_model import FRACTIONS, Parsed, _load, add_vectors, story_order, tally
from pipeline.research.seesaw_model import LICENCE as SEESAW_LICENCE
from pipeline.stance.features import Candidate, model_candidates
from pipeline.stance.model import NONE, StanceModel, fit, save_model
from pipeline.stance.vectors import encoder_name, pair_vectors

RE3D_LICENCES = ("re3d tune part (dstl/re3d): CC BY 3.0 AU, CC BY-NC 3.0, public domain, Open Government Licence "
                 "v3.0, EEAS legal notice, CC BY-SA 3.0, by source folder")
LICENCE = f"{SEESAW_LICENCE}; {RE3D_LICENCES}"

Examples = tuple[list[tuple[Candidate, str]], numpy.ndarray]


def seesaw_examples(parsed: Sequence[Parsed]) -> Examples:
    """The judgeable pairs of parsed SEESAW articles and their vectors."""
    pairs: list[tuple[Candidate, str]] = []
    rows: list[numpy.ndarray] = []
    for p in parsed:
        assert p.vectors is not None
        keep = [i for i, lab in enumerate(p.labels) if lab is not None]
        pairs += [(p.cands[i], str(p.labels[i])) for i in keep]
        rows.append(p.vectors[keep])
    return pairs, numpy.vstack(rows) if rows else numpy.zeros((0, 0), dtype=numpy.float32)


def re3d_examples(docs: Sequence[re3d.Re3dDoc], pre: pa.Preannotator) -> Examples:
    """Every candidate pair of the documents, labelled from re3d's gold stances, and their vectors."""
    annotator = pre.nlp.get_pipe(COMPONENT)
    assert isinstance(annotator, Annotator)
    pairs: list[tuple[Candidate, str]] = []
    rows: list[numpy.ndarray] = []
    with pre.nlp.select_pipes(disable=[COMPONENT]):
        for doc, parsed in zip(docs, pre.nlp.pipe(d.text for d in docs), strict=True):
            kept, entities = annotator.entity_layer(parsed, doc.text)
            rules = annotator.rule_stances(parsed, doc.text, kept)
            cands = model_candidates(parsed, kept, pre.params.stance_ends, annotator.rules.lexicon, rules)
            for cand in cands:
                h, t = entities[cand.holder], entities[cand.target]
                pairs.append((cand, next((g.label for g in doc.stances
                                          if re3d.overlap((h["start"], h["end"]), g.source) > 0
                                          and re3d.overlap((t["start"], t["end"]), g.target) > 0), NONE)))
            rows.append(pair_vectors(parsed, cands))
    return pairs, numpy.vstack(rows) if rows else numpy.zeros((0, 0), dtype=numpy.float32)


def fit_encoder(parts: Sequence[tuple[Examples, int]], cfg: tr.Params, labels: Sequence[str], c: float,
                sources: tuple[str, ...]) -> StanceModel:
    """One model on the sparse features and vectors of every (examples, weight) part; a weight repeats its pairs."""
    pairs: list[tuple[Candidate, str]] = []
    blocks: list[numpy.ndarray] = []
    for (ex, vectors), weight in parts:
        for _ in range(weight):
            pairs += ex
            blocks.append(vectors)
    return fit(pairs, labels, c=c, min_count=cfg.min_feature_count, max_iter=cfg.max_iter, sources=sources,
               gold_articles=0, licence=LICENCE, vectors=numpy.vstack(blocks), encoder=encoder_name())


def learning_curve(train: Sequence[Parsed], valid: Sequence[Parsed], in_domain: Examples, cfg: tr.Params,
                   labels: Sequence[str], c: float, re3d_weight: int, threshold: float) -> list[dict[str, float]]:
    """SEESAW valid P/R/F1 after training on nested shares of SEESAW train stories (and all of re3d tune)."""
    order = story_order(train)
    rows = []
    for share in FRACTIONS:
        chosen = set(order[: max(1, round(share * len(order)))])
        subset = [p for p in train if p.story in chosen]
        model = fit_encoder([(seesaw_examples(subset), 1), (in_domain, re3d_weight)], cfg, labels, c, ("curve",))
        p, r, f = tally(valid, model, threshold).scores()
        rows.append({"train_share": share, "stories": len(chosen), "articles": len(subset),
                     "precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)})
        print(f"train-encoder: {len(chosen)} stories: valid P {p:.3f} R {r:.3f} F1 {f:.3f}", file=sys.stderr)
    return rows


def train_main(seesaw: Path, re3d_root: Path, output: Path, params: Path, patterns: Path, actors: Path, lexicon: Path,
               c: float, re3d_weight: int, limit: int | None = None, curve: Path | None = None) -> StanceModel:
    """Train the encoder model on SEESAW train and re3d tune and write it to `output` (and the learning curve)."""
    parsed, cfg, pre_cfg = _load(seesaw, params, patterns, actors, lexicon, None if curve else "train", limit,
                                 keep_docs=True)
    print(f"train-encoder: encoding the candidate sentences of {len(parsed)} SEESAW articles", file=sys.stderr)
    add_vectors(parsed)
    docs = re3d.split(re3d.load_documents(re3d_root)[0])["tune"]
    if not docs:
        raise InputError(f"{re3d_root}: no re3d documents in the tune part")
    pre = pa.load(pre_cfg.model_copy(update={"stance_model": False}), patterns, actors, lexicon)
    in_domain = re3d_examples(docs, pre)
    valid = [p for p in parsed if p.article.split == "valid"]
    parsed = [p for p in parsed if p.article.split == "train"]
    if curve is not None:
        write_json(curve, learning_curve(parsed, valid, in_domain, cfg, pre_cfg.stance_labels, c, re3d_weight,
                                         pre_cfg.stance_threshold), sort_keys=True)
    parts = [(seesaw_examples(parsed), 1), (in_domain, re3d_weight)]
    model = fit_encoder(parts, cfg, pre_cfg.stance_labels, c, ("seesaw:train", "re3d:tune"))
    save_model(model, output)
    print(f"train-encoder: {len(parsed)} SEESAW articles, {len(docs)} re3d documents (x{re3d_weight}), "
          f"{model.training.examples} pairs; model {model.version} -> {output}", file=sys.stderr)
    return model
