"""Stance review decisions (annotations/review/<timestamp>.jsonl, `pull --review`) and the precedence applying them.

A decision is one reviewer's answer (`against`, `favor` or `none`) on one proposed holder→target pair; per
article and pair (holder span, target span) the latest decision counts, by `updated_at` (a later snapshot wins
a tie). Precedence, per pair:
1. an article-level human edit of the pair wins: the article's human labels (its annotators' resolved version)
   give the pair another label than the one the review task proposed (`none` when the pair is absent);
2. otherwise the pair decision wins over the prediction: `none` removes the stance, a label sets it;
3. a pair without a decision keeps what the article has (the prediction, or the human labels).
A decision made on another text (its task's text hash is not the article's) is stale and ignored; one whose
holder or target is not among the article's entities is not applied either. Every outcome is counted.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.common.contract import is_int, is_number
from pipeline.common.errors import BadRecords
from pipeline.human.identity import credit
from pipeline.human.snapshots import EARLIEST, collect_tasks, parse_time, snapshots

NONE = "none"
REVIEW = "review"  # the origin of a stance set by a pair decision
Span = tuple[int, int]
Pair = tuple[Span, Span]


def pair_id(article_id: str, holder: Span, target: Span) -> str:
    """The id of one ordered pair of an article: `ARTICLE:HS-HE>TS-TE`."""
    return f"{article_id}:{holder[0]}-{holder[1]}>{target[0]}-{target[1]}"


@dataclass(frozen=True)
class Decision:
    """One reviewer's latest answer on one pair."""

    holder: dict[str, Any]
    target: dict[str, Any]
    label: str
    proposed: str
    text_hash: str
    annotator: str
    updated_at: str
    where: str
    lead_time: float | None = None  # Label Studio's seconds on the answer

    @property
    def pair(self) -> Pair:
        """(holder span, target span)."""
        return (self.holder["start"], self.holder["end"]), (self.target["start"], self.target["end"])

    @property
    def time(self) -> datetime:
        """When the answer was last updated."""
        return parse_time(self.updated_at) or EARLIEST


Decisions = dict[str, dict[Pair, Decision]]  # article id -> pair -> latest decision


def _end(value: Any) -> dict[str, Any] | None:
    """A task's holder or target entity, if it has integer offsets and a label."""
    if not isinstance(value, dict) or not (is_int(value.get("start")) and is_int(value.get("end"))):
        return None
    if not isinstance(value.get("label"), str) or not 0 <= value["start"] < value["end"]:
        return None
    return {k: value.get(k) for k in ("start", "end", "label", "text", "actor")}


def _choice(ann: Mapping[str, Any], labels: tuple[str, ...]) -> str | None:
    """The one answer of a review annotation, or None."""
    picked = [c for item in ann.get("result") or [] if isinstance(item, dict) and item.get("type") == "choices"
              for c in (item.get("value") or {}).get("choices") or []]
    return picked[0] if len(picked) == 1 and picked[0] in labels else None


def _answers(folder: Path, labels: tuple[str, ...], bad: BadRecords) -> Iterator[tuple[str, Decision]]:
    """(article id, answer) of every submitted review answer of every snapshot in `folder`, oldest snapshot first."""
    tasks, _ = collect_tasks(snapshots(folder), bad)
    for article_id, items in tasks.items():
        for where, task in items:
            data = task["data"]
            holder, target = _end(data.get("holder")), _end(data.get("target"))
            if holder is None or target is None or not isinstance(data.get("text_hash"), str):
                bad.add(where, "review task lacks holder, target (start, end, label) or text_hash")
                continue
            for ann in task.get("annotations") or []:
                if not isinstance(ann, dict) or ann.get("was_cancelled"):
                    continue
                label = _choice(ann, labels)
                stamp = ann.get("updated_at") or ann.get("created_at") or ""
                if label is None or parse_time(stamp) is None:
                    bad.add(f"{where} annotation {ann.get('id')}",
                            f"expected one choice of {', '.join(labels)} and an ISO-8601 updated_at")
                    continue
                seconds = float(ann["lead_time"]) if is_number(ann.get("lead_time")) else None
                yield article_id, Decision(holder, target, label, str(data.get("proposed")), data["text_hash"],
                                           credit(ann, task)[0], str(stamp), where, seconds)


def read_decisions(folder: Path, stance_labels: tuple[str, ...], max_bad_share: float, stage: str) -> Decisions:
    """The latest decision per article and pair of every review snapshot in `folder` (none if there is no folder)."""
    if not folder.is_dir():
        return {}
    bad = BadRecords(stage, max_bad_share)
    out: Decisions = defaultdict(dict)
    for article_id, decision in _answers(folder, (*stance_labels, NONE), bad):
        prev = out[article_id].get(decision.pair)
        if prev is None or prev.time <= decision.time:
            out[article_id][decision.pair] = decision
    bad.check()
    return dict(out)


NO_REVIEW: dict[str, Any] = {"decided_pairs": 0, "pairs_timed": 0, "total_seconds": 0.0, "seconds_per_decided_pair": None}


def review_effort(folder: Path, stance_labels: tuple[str, ...], max_bad_share: float, stage: str) -> dict[str, Any]:
    """The review queue's time: Label Studio's lead_time of each reviewer's latest answer, summed per decided pair.

    As for articles (the evaluate stage's `time`), a pair's seconds add up its reviewers; skipped tasks decide
    nothing and are left out. Every snapshot holds every answer again, hence one (the latest) per reviewer."""
    latest: dict[tuple[str, Pair, str], Decision] = {}
    if folder.is_dir():
        bad = BadRecords(stage, max_bad_share)
        for article_id, answer in _answers(folder, (*stance_labels, NONE), bad):
            key = (article_id, answer.pair, answer.annotator)
            if key not in latest or latest[key].time <= answer.time:
                latest[key] = answer
        bad.check()
    per_pair: dict[tuple[str, Pair], list[float]] = defaultdict(list)
    for (article_id, pair, _), answer in latest.items():
        per_pair[(article_id, pair)].extend([answer.lead_time] if answer.lead_time is not None else [])
    timed = [sum(s) for s in per_pair.values() if s]
    return {
        "decided_pairs": len(per_pair),
        "pairs_timed": len(timed),
        "total_seconds": float(sum(timed)),
        "seconds_per_decided_pair": statistics.fmean(timed) if timed else None,
    }


def _span(entity: Mapping[str, Any]) -> Span:
    return entity["start"], entity["end"]


def apply_decisions(final: dict[str, Any], decisions: Mapping[Pair, Decision] | None, text_hash: str,
                    human: bool, counts: Counter[str]) -> dict[str, Any]:
    """`final` (entities, stances) with the pair decisions applied by the precedence of the module docstring.

    `human`: `final` is the article's human labels, whose edits win; else it is the prediction."""
    if not decisions:
        return final
    ents = final["entities"]
    index = {_span(e): i for i, e in enumerate(ents)}
    stances = {(_span(ents[s["holder"]]), _span(ents[s["target"]])): s for s in final["stances"]}
    for pair, decision in sorted(decisions.items()):
        current = stances[pair]["label"] if pair in stances else NONE
        if decision.text_hash != text_hash:
            counts["stale"] += 1
        elif human and current != decision.proposed:
            counts["article_edit_wins"] += 1
        elif pair[0] not in index or pair[1] not in index:
            counts["entity_missing"] += 1
        else:
            counts[f"applied_{decision.label}"] += 1
            if decision.label == NONE:
                stances.pop(pair, None)
            else:
                stances[pair] = {"holder": index[pair[0]], "target": index[pair[1]], "label": decision.label,
                                 "origin": REVIEW}
    ordered = sorted(stances.values(), key=lambda s: (s["holder"], s["target"], s["label"]))
    return {**final, "stances": ordered}


def decision_labels(decisions: Mapping[Pair, Decision],
                    text_hash: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], frozenset[tuple[int, int]]]:
    """The entities, stances and decided index pairs of an article known only from its pair decisions (to train on)."""
    current = {p: d for p, d in decisions.items() if d.text_hash == text_hash}
    ends = {_span(e): e for d in current.values() for e in (d.holder, d.target)}
    entities = [ends[s] for s in sorted(ends)]
    index = {s: i for i, s in enumerate(sorted(ends))}
    stances = [{"holder": index[h], "target": index[t], "label": d.label}
               for (h, t), d in sorted(current.items()) if d.label != NONE]
    return entities, stances, frozenset((index[h], index[t]) for h, t in current)
