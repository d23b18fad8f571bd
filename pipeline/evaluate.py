"""evaluate stage: data/labeled.jsonl -> DVC metrics (metrics/*.json) and plot data (plots/*.json).

Pre-annotation quality against the human corrections, correction effort, inter-annotator agreement
and dataset statistics. All scoring comes from `pipeline.scoring`; this module only groups, sums and
writes. Output is deterministic (sorted keys and rows, rounded floats) so rebuilds are byte-identical.
"""

from __future__ import annotations

import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.common.config import section
from pipeline.common.contract import SPLITS, STATUSES, is_number, labeled_problem
from pipeline.common.errors import BadRecords, InputError
from pipeline.common.jsonl import read_jsonl, write_json
from pipeline.evaluation import scoring

STAGE = "evaluate"
METRICS = ("summary", "preannotation", "effort", "agreement", "dataset")
PLOTS = ("label_f1", "correction_effort", "label_distribution", "stance_confusion", "lead_time")


@dataclass(frozen=True)
class EvaluateConfig:
    """Params of the evaluate stage (params.yaml `evaluate:`)."""

    digits: int
    max_bad_share: float

    def validate(self) -> str | None:
        """Check cross-field constraints."""
        if not 1 <= self.digits <= 10:
            return f"digits must be between 1 and 10, got {self.digits}"
        if not 0 <= self.max_bad_share <= 1:
            return f"max_bad_share must be in [0, 1], got {self.max_bad_share}"
        return None


# ---------------------------------------------------------------- accumulators (one streaming pass)


class DatasetStats:
    """Articles, sentences, entities and stances per label, split and status (gold vs silver)."""

    KINDS = ("articles", "sentences", "entities", "stances")

    def __init__(self) -> None:
        self.by_split: dict[str, Counter[str]] = defaultdict(Counter)
        self.by_status: dict[str, Counter[str]] = defaultdict(Counter)
        self.entity_labels: dict[str, Counter[str]] = defaultdict(Counter)
        self.stance_labels: dict[str, Counter[str]] = defaultdict(Counter)

    def add(self, record: dict[str, Any]) -> None:
        """Count one article."""
        split, status = record["split"], record["status"]
        counts = Counter(
            articles=1,
            sentences=len(record.get("sentences") or []),
            entities=len(record["entities"]),
            stances=len(record["stances"]),
        )
        self.by_split[split].update(counts)
        self.by_split[split][f"{status}_articles"] += 1
        self.by_status[status].update(counts)
        for entity in record["entities"]:
            self.entity_labels[str(entity.get("label"))][split] += 1
        for stance in record["stances"]:
            self.stance_labels[str(stance.get("label"))][split] += 1

    def result(self) -> dict[str, Any]:
        """The metrics document (metrics/dataset.json)."""
        total = sum((self.by_status[s] for s in STATUSES), Counter())
        return {
            "total": {k: total[k] for k in self.KINDS},
            "by_status": {s: {k: self.by_status[s][k] for k in self.KINDS} for s in STATUSES},
            "by_split": {
                split: {k: self.by_split[split][k] for k in (*self.KINDS, "gold_articles", "silver_articles")}
                for split in sorted(set(SPLITS) | set(self.by_split))
            },
            "entity_labels": {label: _with_total(c) for label, c in sorted(self.entity_labels.items())},
            "stance_labels": {label: _with_total(c) for label, c in sorted(self.stance_labels.items())},
        }

    def plot(self) -> list[dict[str, Any]]:
        """Label distribution rows: one per (kind, label, split)."""
        rows = [
            {"label": f"{kind}:{label}", "split": split, "count": n}
            for kind, labels in (("entity", self.entity_labels), ("stance", self.stance_labels))
            for label, per_split in labels.items()
            for split, n in per_split.items()
        ]
        return sorted(rows, key=lambda r: (r["label"], r["split"]))


def _with_total(per_split: Counter[str]) -> dict[str, int]:
    """Counts per split (every standard split present) plus their total."""
    return {**{s: per_split[s] for s in sorted(set(SPLITS) | set(per_split))}, "total": sum(per_split.values())}


class LeadTimes:
    """Time annotators spent on each gold article (Label Studio's lead_time, seconds)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.per_annotator: dict[str, list[float]] = defaultdict(list)

    def add(self, record: dict[str, Any]) -> None:
        """Add the annotation times of one article."""
        if record["status"] != "gold":
            return
        seconds = []
        for ann in record.get("annotations") or []:
            if is_number(ann.get("lead_time")):
                seconds.append(float(ann["lead_time"]))
                self.per_annotator[str(ann.get("annotator"))].append(float(ann["lead_time"]))
        if seconds:
            self.rows.append({"article": record["id"], "annotations": len(seconds), "seconds": sum(seconds)})

    def result(self) -> dict[str, Any]:
        """Totals, mean and median per article, and totals per annotator."""
        per_article = [row["seconds"] for row in self.rows]
        return {
            "articles_timed": len(per_article),
            "total_seconds": float(sum(per_article)),
            "mean_seconds_per_article": statistics.fmean(per_article) if per_article else None,
            "median_seconds_per_article": float(statistics.median(per_article)) if per_article else None,
            "per_annotator_seconds": {a: float(sum(s)) for a, s in sorted(self.per_annotator.items())},
        }

    def plot(self) -> list[dict[str, Any]]:
        """One row per timed gold article."""
        return sorted(self.rows, key=lambda r: r["article"])


class Preannotation:
    """The model's proposals against the final human labels of every gold article, overall and by model_version."""

    def __init__(self) -> None:
        self.pairs: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
        self._quality: dict[str, Any] | None = None

    def add(self, record: dict[str, Any]) -> None:
        """Keep one gold article's proposals and final labels (entities and stances only, never the text)."""
        pred = record.get("predictions")
        if pred is None:
            return
        final = {"entities": record["entities"], "stances": record["stances"]}
        self.pairs[str(pred.get("model_version"))].append((pred, final))

    def _all(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [pair for version in sorted(self.pairs) for pair in self.pairs[version]]

    def quality(self) -> dict[str, Any]:
        """scoring.preannotation_quality over every gold article (computed once)."""
        if self._quality is None:
            self._quality = scoring.preannotation_quality(self._all())
        return self._quality

    def result(self) -> dict[str, Any]:
        """The metrics document (metrics/preannotation.json)."""
        pairs = self._all()
        if not pairs:
            return {"gold_articles": 0, "reason": "no gold article with predictions: nothing to compare with"}
        headline = ("precision", "recall", "f1", "support")
        return {
            "gold_articles": len(pairs),
            **self.quality(),
            "actors": scoring.actor_accuracy(pairs),
            "by_model_version": {
                version: {
                    "gold_articles": len(p),
                    **{kind: {k: v[k] for k in headline} for kind, v in scoring.preannotation_quality(p).items()},
                }
                for version, p in sorted(self.pairs.items())
            },
        }

    def plot(self) -> list[dict[str, Any]]:
        """Per-label F1 rows (exact match), entity labels then stance labels; labels never scored are left out."""
        if not self.pairs:
            return []
        quality = self.quality()
        return [
            {"label": f"{kind}:{label}", **{k: s[k] for k in ("f1", "precision", "recall", "support")}}
            for kind, key in (("entity", "entities"), ("stance", "stances"))
            for label, s in sorted(quality[key]["per_label"].items())
            if s["f1"] is not None
        ]

    def confusion_plot(self) -> list[dict[str, Any]]:
        """One row per stance pair of predictions or final labels: annotated and predicted label ('none' when absent)."""
        if not self.pairs:
            return []
        confusion = self.quality()["stances"]["confusion"]
        return [
            {"annotated": annotated, "predicted": predicted}
            for annotated, row in sorted(confusion.items())
            for predicted, n in sorted(row.items())
            for _ in range(n)
            if (annotated, predicted) != (scoring.NONE, scoring.NONE)
        ]


class Effort:
    """Correction effort: from each prediction to each annotator's version, what was kept, changed, removed, added."""

    def __init__(self) -> None:
        self.entities: Counter[str] = Counter()
        self.stances: Counter[str] = Counter()
        self.by_label: dict[str, Counter[str]] = defaultdict(Counter)
        self.tasks: Counter[str] = Counter()
        self.by_annotator: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))

    def add(self, record: dict[str, Any]) -> None:
        """Count the corrections of every annotator of one gold article."""
        pred = record.get("predictions")
        if pred is None:
            return
        for ann in record.get("annotations") or []:
            effort = scoring.correction_effort(pred, ann)
            annotator = str(ann.get("annotator"))
            self.tasks[annotator] += 1
            mine = self.by_annotator[annotator]
            for kind in ("entities", "stances"):
                getattr(self, kind).update(effort[kind])
                mine[kind].update(effort[kind])
            for label, counts in effort["entities_by_label"].items():
                self.by_label[label].update(counts)

    def result(self) -> dict[str, Any]:
        """The metrics document (metrics/effort.json), without the time (added by the caller)."""
        return {
            "annotations": sum(self.tasks.values()),
            "entities": _outcomes(self.entities, scoring.SPAN_OUTCOMES + ("moved_relabelled",)),
            "stances": _outcomes(self.stances, scoring.STANCE_OUTCOMES),
            "entities_by_label": {label: _outcomes(c, scoring.SPAN_OUTCOMES) for label, c in sorted(self.by_label.items())},
            "by_annotator": {
                name: {
                    "annotations": self.tasks[name],
                    "entities": _outcomes(a["entities"], scoring.SPAN_OUTCOMES),
                    "stances": _outcomes(a["stances"], scoring.STANCE_OUTCOMES),
                }
                for name, a in sorted(self.by_annotator.items())
            },
        }

    def plot(self) -> list[dict[str, Any]]:
        """One row per (kind, outcome): entity/stance x unchanged/relabelled/moved/deleted/added."""
        return [
            {"outcome": f"{kind} {outcome}", "count": counts[outcome]}
            for kind, counts, outcomes in (
                ("entity", self.entities, scoring.SPAN_OUTCOMES),
                ("stance", self.stances, scoring.STANCE_OUTCOMES),
            )
            for outcome in outcomes
        ]


def _outcomes(counts: Counter[str], outcomes: tuple[str, ...]) -> dict[str, Any]:
    """Counts of every outcome (zeros kept, so metrics diffs line up) and the share of proposals kept unchanged."""
    out: dict[str, Any] = {k: counts[k] for k in outcomes}
    proposed = sum(counts[k] for k in outcomes if k not in ("added", "moved_relabelled"))
    out["unchanged_share"] = counts["unchanged"] / proposed if proposed else None
    return out


class Agreement:
    """Inter-annotator agreement on the gold articles that more than one annotator labelled."""

    def __init__(self) -> None:
        self.per_article: list[dict[str, Any]] = []
        self.stance_items: list[tuple[str, str]] = []

    def add(self, record: dict[str, Any]) -> None:
        """Score one article if it has two or more annotators."""
        versions = record.get("annotations") or []
        if len(versions) < 2:
            return
        self.per_article.append(scoring.agreement(versions))
        for i, a in enumerate(versions):
            for b in versions[i + 1 :]:
                self.stance_items += scoring.stance_pairs(a, b)

    def result(self) -> dict[str, Any]:
        """The metrics document (metrics/agreement.json): null figures with a reason when nothing to compare."""
        if not self.per_article:
            return {"articles": 0, "entity_f1": None, "stance_kappa": None, "stance_kappa_pooled": None,
                    "reason": "no gold article has more than one annotator"}
        f1 = [a["entity_f1"] for a in self.per_article if a["entity_f1"] is not None]
        kappa = [a["stance_kappa"] for a in self.per_article if a["stance_kappa"] is not None]
        return {
            "articles": len(self.per_article),
            "annotator_pairs": sum(a["annotator_pairs"] for a in self.per_article),
            "stance_pairs": len(self.stance_items),
            "entity_f1": statistics.fmean(f1) if f1 else None,
            "stance_kappa": statistics.fmean(kappa) if kappa else None,
            "stance_kappa_pooled": scoring.cohen_kappa(self.stance_items),
        }


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


def evaluate(records: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Every metrics document (by file stem) and every plot's rows (by file stem), in one pass over the records."""
    stats, times = DatasetStats(), LeadTimes()
    quality, effort, agree = Preannotation(), Effort(), Agreement()
    for record in records:
        stats.add(record)
        times.add(record)
        if record["status"] == "gold":
            quality.add(record)
            effort.add(record)
            agree.add(record)
    metrics = {
        "preannotation": quality.result(),
        "effort": {**effort.result(), "time": times.result()},
        "agreement": agree.result(),
        "dataset": stats.result(),
    }
    metrics["summary"] = summary(metrics)
    plots = {
        "label_f1": quality.plot(),
        "stance_confusion": quality.confusion_plot(),
        "correction_effort": effort.plot(),
        "label_distribution": stats.plot(),
        "lead_time": times.plot(),
    }
    return metrics, plots


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline figures, one flat level, so `dvc metrics show metrics/summary.json` fits on a screen."""
    pre, effort, agree, data = (metrics[k] for k in ("preannotation", "effort", "agreement", "dataset"))

    def get(doc: dict[str, Any], *keys: str) -> Any:
        for key in keys:
            doc = doc.get(key) if isinstance(doc, dict) else None
        return doc

    return {
        "articles": data["total"]["articles"],
        "gold_articles": data["by_status"]["gold"]["articles"],
        "silver_articles": data["by_status"]["silver"]["articles"],
        "entities": data["total"]["entities"],
        "stances": data["total"]["stances"],
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
        "agreement_entity_f1": agree["entity_f1"],
        "agreement_stance_kappa": agree["stance_kappa"],
    }


def main(input: Path, metrics: Path, plots: Path, params: Path) -> None:
    """Read labeled.jsonl, write metrics/<name>.json and plots/<name>.json."""
    cfg = section(EvaluateConfig, STAGE, params)
    bad = BadRecords(STAGE, cfg.max_bad_share)

    def checked() -> Iterator[dict[str, Any]]:
        for lineno, record in read_jsonl(input, bad):
            if problem := labeled_problem(record):
                bad.add(f"{input}:{lineno}", problem)
                continue
            yield record

    metric_docs, plot_rows = evaluate(checked())
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
    return "n/a" if value is None else f"{value:.3f}"
