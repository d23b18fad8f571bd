"""One table of stance quality on validation from the domain and beside it (the `compare-stances` command).

Every system (the rules alone, and each stance model file given) is scored on: the held-out part of re3d
(defence and security news, `research/re3d.py`: overlap ends, strict labels, recall over all gold stances),
the project's seed gold (`gold/`, exact stance triplets, every article: only models that never saw the gold
belong here, so never the train stage's output) and SEESAW valid (the project's lenient triplet metric).
re3d's tune part and SEESAW train are what models and thresholds are tuned on: they are not in the table.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline import preannotate as pa
from pipeline.common.config import section
from pipeline.common.jsonl import write_json, write_jsonl
from pipeline.common.shards import read_objects
from pipeline.gold import compare
from pipeline.research import re3d, re3d_eval
from pipeline.stance.model import StanceModel, load_model

STAGE = "compare-stances"
SETS = ("re3d heldout", "seed gold", "SEESAW valid")


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where the evaluation data and the resources are."""

    params: Path
    patterns: Path
    actors: Path
    lexicon: Path
    re3d: Path | None
    gold: Path | None
    articles: Path | None
    seesaw: Path | None


def _system(cfg: pa.Params, model: Path | None, paths: Paths) -> pa.Preannotator:
    """The pre-annotator of one system: rules alone (no model) or with the model file at its threshold."""
    params = cfg.model_copy(update={"stance_model": model is not None, "n_process": 1})
    return pa.load(params, paths.patterns, paths.actors, paths.lexicon, model)


def _gold_scores(pre: pa.Preannotator, records: Sequence[dict[str, Any]], paths: Paths) -> dict[str, Any]:
    """Exact stance P/R/F1 of one system on the seed gold articles (`records`: the articles the gold quotes)."""
    assert paths.gold is not None and paths.articles is not None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "predictions.jsonl"
        write_jsonl(out, pa.preannotate(records, pre))
        result = compare.evaluate(paths.gold, paths.articles, out, paths.params)
    s = result["stances"]
    return {"p": s["precision"], "r": s["recall"], "f1": s["f1"], "gold": s["support"], "articles": result["articles"]}


def _seesaw_scores(models: Sequence[tuple[str, StanceModel | None]], paths: Paths, threshold: float,
                   limit: int | None) -> dict[str, dict[str, Any]]:
    """SEESAW valid triplet P/R/F1 of every system from one parse."""
    from pipeline.research import seesaw_model

    assert paths.seesaw is not None
    encode = any(m is not None and m.uses_encoder for _, m in models)
    parsed, _, _ = seesaw_model._load(paths.seesaw, paths.params, paths.patterns, paths.actors, paths.lexicon, "valid",
                                      limit, keep_docs=encode)
    if encode:
        seesaw_model.add_vectors(parsed)
    out = {}
    for name, model in models:
        t = seesaw_model.tally(parsed, model, threshold)
        p, r, f = t.scores()
        out[name] = {"p": p, "r": r, "f1": f, "gold": t.gold, "predicted": t.predicted, "correct": t.correct}
    return out


def compare_systems(models: Sequence[Path], paths: Paths, limit: int | None = None) -> dict[str, dict[str, Any]]:
    """Scores per system and evaluation set; a set whose data is absent is left out."""
    cfg = section(pa.Params, pa.STAGE, paths.params)
    systems: list[tuple[str, Path | None]] = [("rules", None), *((f"model {m.name}", m) for m in models)]
    table: dict[str, dict[str, Any]] = {name: {} for name, _ in systems}
    heldout = re3d.split(re3d.load_documents(paths.re3d)[0])["heldout"] if paths.re3d is not None else []
    seeds = list(read_objects(paths.articles)) if paths.gold is not None and paths.articles is not None else []
    for name, model in systems:
        pre = _system(cfg, model, paths)
        print(f"{STAGE}: {name}", file=sys.stderr)
        if heldout:
            s = re3d_eval.evaluate(pre, heldout)["stances"]
            table[name]["re3d heldout"] = {"p": s["p"], "r": s["r_all"], "f1": s["f1_all"], "gold": s["gold"],
                                           "predicted": s["predicted"], "correct": s["tp"]}
        if paths.gold is not None and paths.articles is not None:
            table[name]["seed gold"] = _gold_scores(pre, seeds, paths)
    if paths.seesaw is not None:
        loaded = [(name, load_model(m) if m is not None else None) for name, m in systems]
        for name, scores in _seesaw_scores(loaded, paths, cfg.stance_threshold, limit).items():
            table[name]["SEESAW valid"] = scores
    return table


def render(table: dict[str, dict[str, Any]]) -> str:
    """The table as Markdown: one row per system, P / R / F1 per evaluation set."""
    sets = [s for s in SETS if any(s in row for row in table.values())]
    head = "| system | " + " | ".join(f"{s} P / R / F1" for s in sets) + " |"
    lines = [head, "|---|" + "---|" * len(sets)]
    for name, row in table.items():
        cells = [f"{row[s]['p']:.3f} / {row[s]['r']:.3f} / {row[s]['f1']:.3f}" if s in row else "-" for s in sets]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(models: Sequence[Path], paths: Paths, output: Path | None = None, limit: int | None = None) -> None:
    """Print the table (and write it as JSON)."""
    table = compare_systems(models, paths, limit)
    print(render(table))
    if output is not None:
        write_json(output, table, sort_keys=True)
