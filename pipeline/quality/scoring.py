"""Scoring shared by every evaluation: entity and stance P/R/F1, correction effort, inter-annotator agreement.

Pure functions over plain dicts in the contracts' form. A *document* is a mapping with
``entities`` (``{"start", "end", "label", ...}``, character offsets) and ``stances``
(``{"holder", "target", "label", ...}``, indexes into that document's ``entities``).

Matching, used throughout:

- **exact** entity match: same start, end and label.
- **overlap** entity match: one-to-one pairing of spans that share at least one character and have the
  same label; exact pairs first, then larger overlaps first (ties: earlier spans first).
- **stance ends** are paired label-blind (a stance on a mis-labelled but well-placed entity still counts):
  same span (``exact``), or same span first and then overlapping spans (``overlap``). A predicted stance
  matches a gold one when both ends pair and the stance labels are equal.

Degenerate values: precision, recall and F1 are ``None`` when there is nothing to score (no gold and no
predicted item); otherwise an empty denominator gives 0.0. Span F1 between two annotators who both tagged
nothing is 1.0. Cohen's kappa is ``None`` when there is no stance pair to compare (neither annotator drew a
stance) and 1.0 when chance agreement is 1 (both gave every pair the same single label, so they agree fully).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from typing import Any, Literal

Doc = Mapping[str, Any]
Match = Literal["exact", "overlap"]
NONE = "none"


# ---------------------------------------------------------------- counts


def prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    """Precision, recall and F1 from counts, with the counts and the gold support."""
    if tp + fp + fn == 0:
        p = r = f = None
    else:
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "support": tp + fn, "tp": tp, "fp": fp, "fn": fn}


def _scores(counts: Mapping[str, Counter]) -> dict[str, Any]:
    """Overall (micro) and per-label scores from per-label tp/fp/fn counters."""
    total: Counter[str] = Counter()
    for c in counts.values():
        total.update(c)
    return {
        **prf(total["tp"], total["fp"], total["fn"]),
        "per_label": {label: prf(c["tp"], c["fp"], c["fn"]) for label, c in sorted(counts.items())},
    }


# ---------------------------------------------------------------- span pairing


def _overlap(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
    return min(a["end"], b["end"]) - max(a["start"], b["start"])


def pair_spans(
    a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], match: Match = "overlap", same_label: bool = True
) -> dict[int, int]:
    """One-to-one pairing of spans of `a` with spans of `b` (index -> index): exact spans first, then overlaps."""
    pairs: dict[int, int] = {}
    used: set[int] = set()
    by_span: dict[tuple, list[int]] = {}
    for j, e in enumerate(b):
        by_span.setdefault((e["start"], e["end"], e["label"] if same_label else None), []).append(j)
    for i, e in enumerate(a):
        free = [j for j in by_span.get((e["start"], e["end"], e["label"] if same_label else None), []) if j not in used]
        if free:
            pairs[i] = free[0]
            used.add(free[0])
    if match == "exact":
        return pairs
    candidates = [
        (-_overlap(ea, eb), ea["start"], eb["start"], i, j)
        for i, ea in enumerate(a)
        if i not in pairs
        for j, eb in enumerate(b)
        if j not in used and _overlap(ea, eb) > 0 and (not same_label or ea["label"] == eb["label"])
    ]
    for *_, i, j in sorted(candidates):
        if i not in pairs and j not in used:
            pairs[i] = j
            used.add(j)
    return pairs


# ---------------------------------------------------------------- entities


def entity_counts(pred: Sequence[Mapping[str, Any]], gold: Sequence[Mapping[str, Any]], match: Match) -> dict[str, Counter]:
    """Per-label tp/fp/fn of predicted against gold entities of one document."""
    pairs = pair_spans(pred, gold, match, same_label=True)
    counts: dict[str, Counter] = {}
    for i, e in enumerate(pred):
        counts.setdefault(e["label"], Counter())["tp" if i in pairs else "fp"] += 1
    matched = set(pairs.values())
    for j, e in enumerate(gold):
        if j not in matched:
            counts.setdefault(e["label"], Counter())["fn"] += 1
        else:
            counts.setdefault(e["label"], Counter())
    return counts


def entity_scores(preds: Iterable[Sequence[Mapping]], golds: Iterable[Sequence[Mapping]], match: Match = "exact") -> dict:
    """Entity P/R/F1 overall and per label, micro-averaged over aligned per-article entity lists."""
    counts: dict[str, Counter] = {}
    for pred, gold in zip(preds, golds, strict=True):
        for label, c in entity_counts(pred, gold, match).items():
            counts.setdefault(label, Counter()).update(c)
    return _scores(counts)


# ---------------------------------------------------------------- stances


def _stance_items(pred: Doc, gold: Doc, match: Match) -> list[tuple[str, str]]:
    """(gold label or 'none', predicted label or 'none') for every stance pair of either document."""
    ends = pair_spans(pred["entities"], gold["entities"], match, same_label=False)
    gold_pairs = {(s["holder"], s["target"]): s["label"] for s in gold["stances"]}
    pred_by_pair: dict[tuple, list[str]] = {}
    for s in pred["stances"]:
        h, t = ends.get(s["holder"]), ends.get(s["target"])
        key = (h, t) if h is not None and t is not None else ("pred", s["holder"], s["target"])
        pred_by_pair.setdefault(key, []).append(s["label"])
    items = []
    for key, label in gold_pairs.items():
        labels = pred_by_pair.pop(key, [])
        if label in labels:
            labels.remove(label)
            items.append((label, label))
        elif labels:
            items.append((label, labels.pop(0)))
        else:
            items.append((label, NONE))
        items += [(NONE, extra) for extra in labels]
    items += [(NONE, label) for labels in pred_by_pair.values() for label in labels]
    return items


def stance_scores(preds: Iterable[Doc], golds: Iterable[Doc], match: Match = "exact") -> dict[str, Any]:
    """Stance P/R/F1 overall and per label, plus the label confusion (gold -> predicted, 'none' when absent)."""
    counts: dict[str, Counter] = {}
    confusion: Counter = Counter()
    for pred, gold in zip(preds, golds, strict=True):
        for g, p in _stance_items(pred, gold, match):
            confusion[(g, p)] += 1
            if g == p:
                counts.setdefault(g, Counter())["tp"] += 1
                continue
            if p != NONE:
                counts.setdefault(p, Counter())["fp"] += 1
            if g != NONE:
                counts.setdefault(g, Counter())["fn"] += 1
    labels = [*sorted({lab for pair in confusion for lab in pair} - {NONE}), NONE]
    return {
        **_scores(counts),
        "confusion": {g: {p: confusion[(g, p)] for p in labels} for g in labels},
    }


def preannotation_quality(pairs: Sequence[tuple[Doc, Doc]]) -> dict[str, dict[str, Any]]:
    """Predictions against final labels over (prediction, gold) document pairs: entities and stances, exact and overlap."""
    preds = [p for p, _ in pairs]
    golds = [g for _, g in pairs]
    return {
        "entities": entity_scores([p["entities"] for p in preds], [g["entities"] for g in golds], "exact"),
        "entities_overlap": entity_scores([p["entities"] for p in preds], [g["entities"] for g in golds], "overlap"),
        "stances": stance_scores(preds, golds, "exact"),
        "stances_overlap": stance_scores(preds, golds, "overlap"),
    }


# ---------------------------------------------------------------- correction effort


SPAN_OUTCOMES = ("unchanged", "relabelled", "moved", "deleted", "added")
STANCE_OUTCOMES = ("unchanged", "relabelled", "deleted", "added")


def correction_effort(pred: Doc, final: Doc) -> dict[str, Any]:
    """What an annotator did to the prediction: spans and stances unchanged, relabelled, moved, deleted, added.

    Spans: same offsets and label -> unchanged; same offsets, other label -> relabelled; overlapping with
    other offsets and the same label -> moved; no counterpart -> deleted (prediction) or added (final): a
    span deleted and another added over part of it with another label is a deletion and an addition. Per
    label by the predicted label, by the final label for added spans. Stances follow their ends through
    that span pairing.
    """
    p_ents, f_ents = pred["entities"], final["entities"]
    exact = pair_spans(p_ents, f_ents, "exact", same_label=False)
    rest_p = [i for i in range(len(p_ents)) if i not in exact]
    rest_f = [j for j in range(len(f_ents)) if j not in set(exact.values())]
    moved_local = pair_spans([p_ents[i] for i in rest_p], [f_ents[j] for j in rest_f], "overlap", same_label=True)
    moved = {rest_p[i]: rest_f[j] for i, j in moved_local.items()}
    ends = {**exact, **moved}

    spans = Counter(dict.fromkeys(SPAN_OUTCOMES, 0))
    by_label: dict[str, Counter] = {}

    def count(outcome: str, label: str) -> None:
        spans[outcome] += 1
        by_label.setdefault(label, Counter(dict.fromkeys(SPAN_OUTCOMES, 0)))[outcome] += 1

    for i, e in enumerate(p_ents):
        if i in exact:
            count("unchanged" if f_ents[exact[i]]["label"] == e["label"] else "relabelled", e["label"])
        elif i in moved:
            count("moved", e["label"])
        else:
            count("deleted", e["label"])
    paired = set(ends.values())
    for j, e in enumerate(f_ents):
        if j not in paired:
            count("added", e["label"])

    stances = Counter(dict.fromkeys(STANCE_OUTCOMES, 0))
    final_pairs: dict[tuple[int, int], str] = {(s["holder"], s["target"]): s["label"] for s in final["stances"]}
    for s in pred["stances"]:
        key = (ends.get(s["holder"]), ends.get(s["target"]))
        if key in final_pairs:
            stances["unchanged" if final_pairs.pop(key) == s["label"] else "relabelled"] += 1
        else:
            stances["deleted"] += 1
    stances["added"] += len(final_pairs)
    return {
        "entities": dict(spans),
        "entities_by_label": {label: dict(c) for label, c in sorted(by_label.items())},
        "stances": dict(stances),
    }


# ---------------------------------------------------------------- agreement


def span_f1(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], match: Match = "overlap") -> float:
    """Symmetric span F1 between two annotators' entities (same label; overlapping spans pair one-to-one)."""
    if not a and not b:
        return 1.0
    return 2 * len(pair_spans(a, b, match, same_label=True)) / (len(a) + len(b))


def stance_pairs(a: Doc, b: Doc) -> list[tuple[str, str]]:
    """(label of a, label of b) for every holder/target pair either annotator drew; 'none' where one did not."""
    ends = pair_spans(a["entities"], b["entities"], "overlap", same_label=False)
    b_pairs = {(s["holder"], s["target"]): s["label"] for s in b["stances"]}
    items = []
    for s in a["stances"]:
        key = (ends.get(s["holder"]), ends.get(s["target"]))
        items.append((s["label"], b_pairs.pop(key, NONE)))
    items += [(NONE, label) for label in b_pairs.values()]
    return items


def cohen_kappa(items: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two raters' labels; None without items, 1.0 when chance agreement is 1."""
    n = len(items)
    if n == 0:
        return None
    observed = sum(x == y for x, y in items) / n
    left, right = Counter(x for x, _ in items), Counter(y for _, y in items)
    expected = sum(left[k] * right[k] for k in left) / (n * n)
    if expected == 1:
        return 1.0
    return (observed - expected) / (1 - expected)


def stance_kappa(a: Doc, b: Doc) -> float | None:
    """Cohen's kappa on the stance labels (against/favor/none) of the holder/target pairs of two annotators."""
    return cohen_kappa(stance_pairs(a, b))


def agreement(versions: Sequence[Doc]) -> dict[str, Any]:
    """Mean pairwise span F1 and stance kappa among two or more annotators' versions of one article."""
    f1s, kappas, pairs = [], [], 0
    for a, b in combinations(versions, 2):
        f1s.append(span_f1(a["entities"], b["entities"]))
        items = stance_pairs(a, b)
        pairs += len(items)
        kappa = cohen_kappa(items)
        if kappa is not None:
            kappas.append(kappa)
    return {
        "entity_f1": sum(f1s) / len(f1s) if f1s else None,
        "stance_kappa": sum(kappas) / len(kappas) if kappas else None,
        "annotator_pairs": len(f1s),
        "stance_pairs": pairs,
    }


def actor_accuracy(pairs: Sequence[tuple[Doc, Doc]]) -> dict[str, Any]:
    """Share of overlapping (prediction, gold) entity pairs whose actor ids agree (both null counts as agreeing)."""
    paired = correct = 0
    for pred, gold in pairs:
        for i, j in pair_spans(pred["entities"], gold["entities"], "overlap", same_label=False).items():
            paired += 1
            correct += pred["entities"][i].get("actor") == gold["entities"][j].get("actor")
    return {"paired": paired, "correct": correct, "accuracy": correct / paired if paired else None}
