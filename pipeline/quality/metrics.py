"""The evaluate stage's accumulators: each takes labeled records one at a time and gives a metrics document and plot rows.

Dataset statistics, annotation time, pre-annotation quality, correction effort and inter-annotator agreement.
All scoring comes from `pipeline.quality.scoring`; these classes only group and sum.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from typing import Any

from pipeline.common.contract import SPLITS, STATUSES, is_number
from pipeline.quality import scoring


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

    def merge(self, other: DatasetStats) -> None:
        """Add the counts of another shard's statistics."""
        for mine, theirs in ((self.by_split, other.by_split), (self.by_status, other.by_status),
                             (self.entity_labels, other.entity_labels), (self.stance_labels, other.stance_labels)):
            for key, counts in theirs.items():
                mine[key].update(counts)

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

    def merge(self, other: LeadTimes) -> None:
        """Append a later shard's times (in order: float sums stay those of one pass)."""
        self.rows += other.rows
        for annotator, seconds in other.per_annotator.items():
            self.per_annotator[annotator] += seconds

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
        self.current: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.pairs: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
        self._quality: dict[str, Any] | None = None

    def add(self, record: dict[str, Any]) -> None:
        """Keep one gold article's proposals and final labels (entities and stances only, never the text).

        Overall figures score today's proposals; `by_model_version` scores, per full Label Studio model_version,
        the proposals annotators were shown (in their snapshot), so rule versions are not lumped together.
        """
        pred = record.get("predictions")
        if pred is None:
            return
        final = {"entities": record["entities"], "stances": record["stances"]}
        self.current.append((pred, final))
        shown = [a["seen_predictions"] for a in record.get("annotations") or [] if a.get("seen_predictions")]
        if shown:
            for seen in {s["model_version"]: s for s in shown}.values():  # one pair per version shown
                self.pairs[seen["model_version"]].append((seen, final))
        else:
            self.pairs[str(pred.get("model_version"))].append((pred, final))  # a snapshot without them: today's

    def merge(self, other: Preannotation) -> None:
        """Append a later shard's pairs."""
        self.current += other.current
        for version, pairs in other.pairs.items():
            self.pairs[version] += pairs
        self._quality = None

    def _all(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Every (today's proposals, final labels) pair."""
        return self.current

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
        if not self.current:
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
        if not self.current:
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
        self.by_annotator: dict[str, dict[str, Counter[str]]] = defaultdict(_counters)

    def add(self, record: dict[str, Any]) -> None:
        """Count the corrections of every annotator of one gold article."""
        pred = record.get("predictions")
        if pred is None:
            return
        for ann in record.get("annotations") or []:
            # against what the annotator was shown (in the snapshot), not today's re-computed proposals
            effort = scoring.correction_effort(ann.get("seen_predictions") or pred, ann)
            annotator = str(ann.get("annotator"))
            self.tasks[annotator] += 1
            mine = self.by_annotator[annotator]
            for kind in ("entities", "stances"):
                getattr(self, kind).update(effort[kind])
                mine[kind].update(effort[kind])
            for label, counts in effort["entities_by_label"].items():
                self.by_label[label].update(counts)

    def merge(self, other: Effort) -> None:
        """Add the counts of another shard's corrections."""
        self.entities.update(other.entities)
        self.stances.update(other.stances)
        self.tasks.update(other.tasks)
        for label, counts in other.by_label.items():
            self.by_label[label].update(counts)
        for annotator, kinds in other.by_annotator.items():
            for kind, counts in kinds.items():
                self.by_annotator[annotator][kind].update(counts)

    def result(self) -> dict[str, Any]:
        """The metrics document (metrics/effort.json), without the time (added by the caller)."""
        return {
            "annotations": sum(self.tasks.values()),
            "entities": _outcomes(self.entities, scoring.SPAN_OUTCOMES),
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


def _counters() -> defaultdict[str, Counter[str]]:
    """An empty Counter per key (a module-level function: a shard's Effort travels pickled between Dask workers)."""
    return defaultdict(Counter)


def _outcomes(counts: Counter[str], outcomes: tuple[str, ...]) -> dict[str, Any]:
    """Counts of every outcome (zeros kept, so metrics diffs line up) and the share of proposals kept unchanged."""
    out: dict[str, Any] = {k: counts[k] for k in outcomes}
    proposed = sum(counts[k] for k in outcomes if k != "added")
    out["unchanged_share"] = counts["unchanged"] / proposed if proposed else None
    return out


class Agreement:
    """Inter-annotator agreement on the gold articles that more than one annotator labelled."""

    def __init__(self) -> None:
        self.per_article: list[dict[str, Any]] = []
        self.stance_items: list[tuple[str, str]] = []
        self.adjudicated = 0

    def add(self, record: dict[str, Any]) -> None:
        """Score one article if it has two or more annotators (before adjudication: ground-truth versions left out)."""
        versions = [a for a in record.get("annotations") or [] if not a.get("ground_truth")]
        if len(versions) < 2:
            return
        self.adjudicated += (record.get("provenance") or {}).get("resolution") == "ground_truth"
        self.per_article.append(scoring.agreement(versions))
        for i, a in enumerate(versions):
            for b in versions[i + 1 :]:
                self.stance_items += scoring.stance_pairs(a, b)

    def merge(self, other: Agreement) -> None:
        """Append a later shard's articles."""
        self.per_article += other.per_article
        self.stance_items += other.stance_items
        self.adjudicated += other.adjudicated

    def result(self) -> dict[str, Any]:
        """The metrics document (metrics/agreement.json): null figures with a reason when nothing to compare."""
        if not self.per_article:
            return {"articles": 0, "entity_f1": None, "stance_kappa": None, "stance_kappa_pooled": None,
                    "adjudicated": 0, "reason": "no gold article has more than one annotator"}
        f1 = [a["entity_f1"] for a in self.per_article if a["entity_f1"] is not None]
        kappa = [a["stance_kappa"] for a in self.per_article if a["stance_kappa"] is not None]
        return {
            "articles": len(self.per_article),
            "annotator_pairs": sum(a["annotator_pairs"] for a in self.per_article),
            "stance_pairs": len(self.stance_items),
            "entity_f1": statistics.fmean(f1) if f1 else None,
            "stance_kappa": statistics.fmean(kappa) if kappa else None,
            "stance_kappa_pooled": scoring.cohen_kappa(self.stance_items),
            "adjudicated": self.adjudicated,  # of those articles, how many a reviewer settled (ground truth)
        }


class Evaluation:
    """Every accumulator of the evaluate stage over some records: one pass, or shards merged in input order.

    Merging appends lists and adds counts, so the figures of merged shards are those of one pass, float sums
    included, whatever the shard size or the number of workers.
    """

    def __init__(self) -> None:
        self.stats, self.times = DatasetStats(), LeadTimes()
        self.quality, self.effort, self.agree = Preannotation(), Effort(), Agreement()
        self.learned_from = 0  # gold articles kept out of the quality figures: the stance model was trained on them

    def add(self, record: dict[str, Any]) -> None:
        """Count one labelled article."""
        self.stats.add(record)
        self.times.add(record)
        if record["status"] == "gold":
            if trained_on(record):
                self.learned_from += 1
            else:
                self.quality.add(record)
            self.effort.add(record)
            self.agree.add(record)

    def merge(self, other: Evaluation) -> None:
        """Take in the accumulators of the records that follow ours."""
        self.stats.merge(other.stats)
        self.times.merge(other.times)
        self.quality.merge(other.quality)
        self.effort.merge(other.effort)
        self.agree.merge(other.agree)
        self.learned_from += other.learned_from


def trained_on(record: dict[str, Any]) -> bool:
    """Whether the record's stance model learned from this article: it was trained on gold and the article is train."""
    sources = str((record.get("provenance") or {}).get("stance_trained_on") or "")
    return record.get("split") == "train" and "gold:train" in sources.split(",")
