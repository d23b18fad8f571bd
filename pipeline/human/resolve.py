"""Resolution of several annotators' versions of one article into its published labels, and their agreement.

The rule (documented in docs/publishing.md and the dataset card):
1. an annotation a reviewer marked `ground_truth` in Label Studio wins (the latest one if several);
2. otherwise an item (entity = start, end, label; stance = holder span, target span, label) is kept
   when more than half of the annotators have it; on an exact tie the machine's proposal is the
   casting vote (kept if the model proposed it), and every tie is listed in the merge report.
A stance is kept only if both its entities are kept.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pipeline.human.snapshots import Version
from pipeline.quality import scoring


def _keys(version: dict[str, Any]) -> tuple[set[tuple], set[tuple]]:
    """Entity keys (start, end, label) and stance keys (holder span, target span, label) of a version."""
    ents = version["entities"]
    ekeys = {(e["start"], e["end"], e["label"]) for e in ents}
    skeys = {
        ((ents[s["holder"]]["start"], ents[s["holder"]]["end"]), (ents[s["target"]]["start"], ents[s["target"]]["end"]), s["label"])
        for s in version["stances"]
    }
    return ekeys, skeys


def resolve(versions: list[Version], prediction: dict[str, Any]) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """The resolved version of several annotators, the rule used and the ties it broke (see module docstring)."""
    if len(versions) == 1:
        v = versions[0]
        return {"entities": v.entities, "stances": v.stances}, "single", []
    reviewed = [v for v in versions if v.ground_truth]
    if reviewed:
        v = max(reviewed, key=lambda v: (v.time, str(v.annotation_id)))
        return {"entities": v.entities, "stances": v.stances}, "ground_truth", []
    n = len(versions)
    pred_e, pred_s = _keys(prediction)
    votes_e: Counter[tuple] = Counter()
    votes_s: Counter[tuple] = Counter()
    actors: dict[tuple, str | None] = {}
    for v in versions:
        ek, sk = _keys({"entities": v.entities, "stances": v.stances})
        votes_e.update(ek)
        votes_s.update(sk)
        actors.update({(e["start"], e["end"], e["label"]): e["actor"] for e in v.entities})
    ties: list[dict[str, Any]] = []

    def kept(key: tuple, votes: int, predicted: set[tuple], kind: str) -> bool:
        if 2 * votes == n:
            ties.append({"kind": kind, "item": list(key), "votes": votes, "of": n, "kept": key in predicted})
            return key in predicted
        return 2 * votes > n

    # votes in sorted order, so the ties are listed in the same order whatever the hash seed of the process
    ekeys = [k for k, c in sorted(votes_e.items()) if kept(k, c, pred_e, "entity")]
    index = {(s, e): i for i, (s, e, _) in enumerate(ekeys)}
    stances = sorted(
        (index[h], index[t], label)
        for (h, t, label), c in sorted(votes_s.items())
        if kept((h, t, label), c, pred_s, "stance") and h in index and t in index
    )
    if len(index) != len(ekeys):
        # two labels for one span both won (possible only through the casting vote): stances can't tell them apart
        ties.append({"kind": "entity", "item": "same span kept with two labels", "votes": 0, "of": n, "kept": True})
    text_of = {(e["start"], e["end"]): e["text"] for v in versions for e in v.entities}
    entities = [
        {"start": s, "end": e, "label": lab, "text": text_of[(s, e)], "actor": actors[(s, e, lab)]} for s, e, lab in ekeys
    ]
    return (
        {"entities": entities, "stances": [{"holder": h, "target": t, "label": lab} for h, t, lab in stances]},
        "majority",
        ties,
    )


def agreement(versions: list[Version]) -> dict[str, Any] | None:
    """Mean pairwise entity span F1 and stance Cohen's kappa between annotators before adjudication.

    A ground-truth version is a reviewer's verdict, not one more annotator's opinion: it is left out."""
    versions = [v for v in versions if not v.ground_truth]
    if len(versions) < 2:
        return None
    result = scoring.agreement([v.record() for v in versions])
    return {"entity_f1": result["entity_f1"], "stance_kappa": result["stance_kappa"], "n_annotators": len(versions)}
