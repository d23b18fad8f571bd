"""Scoring pre-annotations against the seed gold of `gold/` (the `evaluate-gold` command)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.common.config import DEFAULT_PARAMS
from pipeline.common.contract import label_sets
from pipeline.common.errors import InputError
from pipeline.common.jsonl import write_json
from pipeline.common.shards import read_objects, read_records
from pipeline.gold.files import load_gold
from pipeline.quality import scoring


def evaluate(gold: Path, articles: Path, predictions: Path, params: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Score pre-annotations (data/preannotated/) against the gold: entities and stances, exact and overlap."""
    labels = label_sets(params)
    records = list(load_gold(gold, read_objects(articles), labels))
    wanted = {r["id"]: r for r in records}
    found: dict[Any, dict[str, Any]] = {}  # keyed like `wanted`, by article id (str or int)
    for file, lineno, pred in read_records(predictions):
        rid = pred.get("id")
        if rid in wanted:
            if pred.get("text") != wanted[rid]["text"]:
                raise InputError(f"{file}:{lineno}: article {rid} has another text than in {articles}")
            if not isinstance(pred.get("entities"), list) or not isinstance(pred.get("stances"), list):
                raise InputError(f"{file}:{lineno}: article {rid} lacks 'entities' or 'stances' lists")
            found[rid] = pred
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise InputError(f"{predictions}: no prediction for gold article(s) {', '.join(missing)}")
    pairs = [(found[r["id"]], r) for r in records]
    return {
        "articles": len(pairs),
        **scoring.preannotation_quality(pairs),
        "actor_accuracy": scoring.actor_accuracy(pairs),
    }


def _fmt(x: float | None) -> str:
    return "   -  " if x is None else f"{x:6.3f}"


def report(result: Mapping[str, Any]) -> str:
    """A plain-text table of an `evaluate` result."""
    lines = [f"gold articles: {result['articles']}"]
    for key, title in (("entities", "entities, exact span+label"), ("entities_overlap", "entities, overlapping span+label"),
                       ("stances", "stances, exact ends"), ("stances_overlap", "stances, overlapping ends")):
        block = result[key]
        lines += ["", f"{title:36}  precision  recall      F1  gold  pred"]
        for name, s in [("all", block), *block["per_label"].items()]:
            lines.append(f"  {name:34}  {_fmt(s['precision'])}  {_fmt(s['recall'])}  {_fmt(s['f1'])}  "
                         f"{s['support']:4}  {s['tp'] + s['fp']:4}")
    for key in ("stances", "stances_overlap"):
        conf = result[key]["confusion"]
        labels = list(conf)
        lines += ["", f"{key} confusion (rows gold, columns predicted)", "  " + " " * 9 + "".join(f"{lab:>9}" for lab in labels)]
        lines += ["  " + f"{g:>9}" + "".join(f"{conf[g][p]:9}" for p in labels) for g in labels]
    acc = result["actor_accuracy"]
    lines += ["", f"actor ids right on {acc['correct']} of {acc['paired']} overlapping entity pairs ({_fmt(acc['accuracy']).strip()})"]
    return "\n".join(lines)


def evaluate_main(
    gold: Path, articles: Path, predictions: Path, output: Path | None = None, params: Path = DEFAULT_PARAMS
) -> dict[str, Any]:
    """Print the seed evaluation and optionally write it as JSON."""

    result = evaluate(gold, articles, predictions, params)
    print(report(result))
    if output is not None:
        write_json(output, result)
    return result
