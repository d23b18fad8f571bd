"""evaluate stage: data/labeled.jsonl -> DVC metrics (metrics/*.json) and plot data (plots/*.json).

Pre-annotation quality against the human corrections, correction effort, inter-annotator agreement
and dataset statistics. All scoring comes from `pipeline.quality.scoring`, the accumulators of one
streaming pass are `pipeline.quality.metrics`; this module runs them and writes. Output is deterministic
(sorted keys and rows, rounded floats) so rebuilds are byte-identical.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, model_validator

from pipeline.common.config import Count, Section, Share, Workers, section
from pipeline.common.contract import label_sets, labeled_problem
from pipeline.common.errors import BadRecords, InputError
from pipeline.common.executor import Engine, run_shards
from pipeline.common.jsonl import read_jsonl, write_json
from pipeline.human.pairs import NO_REVIEW, review_effort
from pipeline.human.snapshots import REVIEW_DIR
from pipeline.quality.metrics import Evaluation

STAGE = "evaluate"
METRICS = ("summary", "preannotation", "effort", "agreement", "dataset")
PLOTS = ("label_f1", "correction_effort", "label_distribution", "stance_confusion", "lead_time")
SHARD_SIZE = 20000  # articles per task: a shard of records is what a process holds
ONE_PROCESS = Engine(n_workers=1, shard_size=SHARD_SIZE)


class EvaluateConfig(Section):
    """Params of the evaluate stage (params.yaml `evaluate:`)."""

    digits: Annotated[int, Field(ge=1, le=10)]
    max_bad_share: Share
    n_workers: Workers = 1
    shard_size: Count = SHARD_SIZE

    @model_validator(mode="after")
    def _runnable(self) -> Self:
        if problem := Engine(self.n_workers, self.shard_size).problem():
            raise ValueError(problem)
        return self


# ---------------------------------------------------------------- output


def rounded(obj: Any, digits: int) -> Any:
    """Round every float in a nested structure, so tiny float noise never changes an output file."""
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded(v, digits) for v in obj]
    return obj


# ---------------------------------------------------------------- stage


def evaluate(records: Iterable[dict[str, Any]], review: dict[str, Any] | None = None,
             engine: Engine = ONE_PROCESS) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Every metrics document (by file stem) and every plot's rows (by file stem), from partial counts per shard;
    `review` is the review queue's time (pipeline.human.pairs.review_effort)."""
    total = Evaluation()
    todo = iter(records)
    # the first record read before the progress bar starts: an unreadable input is its one-line error alone
    if (first := next(todo, None)) is not None:
        for partial in run_shards(chain([first], todo), evaluate_shard, engine, desc=STAGE):
            total.merge(partial)  # in input order: the figures are those of one pass
    preannotation = total.quality.result()
    if total.learned_from:
        preannotation |= {"excluded_train_gold_articles": total.learned_from, "scored_splits": ["validation", "test"]}
    metrics = {
        "preannotation": preannotation,
        "effort": {**total.effort.result(), "time": total.times.result(), "review_queue": review or NO_REVIEW},
        "agreement": total.agree.result(),
        "dataset": total.stats.result(),
    }
    metrics["summary"] = summary(metrics)
    plots = {
        "label_f1": total.quality.plot(),
        "stance_confusion": total.quality.confusion_plot(),
        "correction_effort": total.effort.plot(),
        "label_distribution": total.stats.plot(),
        "lead_time": total.times.plot(),
    }
    return metrics, plots


def evaluate_shard(records: list[dict[str, Any]]) -> list[Evaluation]:
    """The accumulators of one shard (a Dask task: module-level, so it pickles by name)."""
    part = Evaluation()
    for record in records:
        part.add(record)
    return [part]


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline figures, one flat level, so `dvc metrics show metrics/summary.json` fits on a screen."""
    pre, effort, agree, data = (metrics[k] for k in ("preannotation", "effort", "agreement", "dataset"))

    def get(doc: Any, *keys: str) -> Any:
        for key in keys:
            doc = doc.get(key) if isinstance(doc, dict) else None
        return doc

    return {
        "articles": data["total"]["articles"],
        "gold_articles": data["by_status"]["gold"]["articles"],
        "silver_articles": data["by_status"]["silver"]["articles"],
        # gold (human) and silver (model) labels apart: a total would pass silver off as gold
        "gold_entities": data["by_status"]["gold"]["entities"],
        "gold_stances": data["by_status"]["gold"]["stances"],
        "silver_entities": data["by_status"]["silver"]["entities"],
        "silver_stances": data["by_status"]["silver"]["stances"],
        "entity_precision": get(pre, "entities", "precision"),
        "entity_recall": get(pre, "entities", "recall"),
        "entity_f1": get(pre, "entities", "f1"),
        "entity_f1_overlap": get(pre, "entities_overlap", "f1"),
        "stance_precision": get(pre, "stances", "precision"),
        "stance_recall": get(pre, "stances", "recall"),
        "stance_f1": get(pre, "stances", "f1"),
        "entities_unchanged_share": get(effort, "entities", "unchanged_share"),
        "stances_unchanged_share": get(effort, "stances", "unchanged_share"),
        "seconds_per_article": get(effort, "time", "mean_seconds_per_article"),
        "seconds_per_review_pair": get(effort, "review_queue", "seconds_per_decided_pair"),
        "agreement_entity_f1": agree["entity_f1"],
        "agreement_stance_kappa": agree["stance_kappa"],
    }


def main(input: Path, metrics: Path, plots: Path, params: Path, annotations: Path | None = None) -> None:
    """Read labeled.jsonl (and the review queue's answers under `annotations`/review/), write metrics/<name>.json
    and plots/<name>.json."""
    cfg = section(EvaluateConfig, STAGE, params)
    review = (review_effort(annotations / REVIEW_DIR, label_sets(params).stance_labels, cfg.max_bad_share, STAGE)
              if annotations else None)
    bad = BadRecords(STAGE, cfg.max_bad_share)

    def checked() -> Iterator[dict[str, Any]]:
        for lineno, record in read_jsonl(input, bad):
            if problem := labeled_problem(record):
                bad.add(f"{input}:{lineno}", problem)
                continue
            yield record

    metric_docs, plot_rows = evaluate(checked(), review, Engine(cfg.n_workers, cfg.shard_size))
    bad.check()
    if bad.seen == 0:
        raise InputError(f"{input}: no articles to evaluate")
    # sorted keys and rounded floats: byte-identical files for equal content
    for name, doc in metric_docs.items():
        write_json(metrics / f"{name}.json", rounded(doc, cfg.digits), sort_keys=True)
    for name, rows in plot_rows.items():
        write_json(plots / f"{name}.json", rounded(rows, cfg.digits), sort_keys=True)
    head = metric_docs["summary"]
    print(
        f"{STAGE}: {head['articles']} articles ({head['gold_articles']} gold); pre-annotation entity F1 "
        f"{_show(head['entity_f1'])}, stance F1 {_show(head['stance_f1'])}; agreement on "
        f"{metric_docs['agreement']['articles']} article(s); {len(bad)} bad record(s) -> {metrics}/, {plots}/",
        file=sys.stderr,
    )


def _show(value: float | None) -> str:
    """A headline figure for the log line: three decimals, or n/a."""
    return "n/a" if value is None else f"{value:.3f}"
