"""train learns from the stance review queue's decisions: `none` ones as negatives, an article edit winning."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pipeline import preannotate as pa
from pipeline import train as tr
from pipeline.common.config import section
from pipeline.common.errors import BadRecords
from pipeline.common.provenance import sha256_text
from pipeline.human.pairs import Decision
from pipeline.human.splits import MergeConfig, Splits

ROOT = Path(__file__).resolve().parents[1]
RULES = (ROOT / "resources" / "entity_patterns.yaml", ROOT / "resources" / "actors.yaml",
         ROOT / "resources" / "stance_cues.yaml")
CFG = MergeConfig(seed=2, splits=Splits(train=1.0, validation=0.0, test=0.0), max_bad_share=0.0,
                  entity_labels=("PERSON", "GPE"), stance_labels=("against", "favor"))
TEXT = "Liz Truss warned Belarus on Monday. Antony Blinken visited Ukraine on Tuesday."
ENTS = [{"start": s, "end": s + len(w), "label": lab, "text": w, "actor": None}
        for w, lab in (("Liz Truss", "PERSON"), ("Belarus", "GPE"), ("Antony Blinken", "PERSON"), ("Ukraine", "GPE"))
        for s in [TEXT.index(w)]]


def _decision(holder: int, target: int, label: str, proposed: str) -> Decision:
    return Decision(ENTS[holder], ENTS[target], label, proposed, sha256_text(TEXT), "annotator-1",
                    "2026-01-01T00:00:00Z", "review.jsonl:1")


def _decisions(*items: Decision) -> dict:
    return {"art": {d.pair: d for d in items}}


def _article_task(stances: list[tuple[int, int, str]]) -> dict:
    result = [{"id": f"r{i}", "type": "labels", "value": {"start": e["start"], "end": e["end"],
                                                         "labels": [e["label"]], "text": e["text"]}}
              for i, e in enumerate(ENTS)]
    result += [{"type": "relation", "from_id": f"r{h}", "to_id": f"r{t}", "labels": [lab], "direction": "right"}
               for h, t, lab in stances]
    return {"art": [("snap.jsonl:1", {"data": {"article_id": "art", "text": TEXT, "text_hash": sha256_text(TEXT)},
                                      "annotations": [{"id": 1, "completed_by": 1, "result": result}]})]}


def _golds(tasks: dict, decisions: dict) -> tuple[list[tr.Gold], Counter[str]]:
    counts: Counter[str] = Counter()
    art = {"id": "art", "text": TEXT, "story_id": "s"}
    golds = list(tr.gold_articles([art], tasks, CFG, lambda text, label: None, BadRecords("t", 0.0), counts,
                                  decisions))
    return golds, counts


def test_an_article_known_only_from_decisions_trains_on_its_decided_pairs():
    golds, counts = _golds({}, _decisions(_decision(0, 1, "none", "against"), _decision(2, 3, "favor", "favor")))
    [gold] = golds
    assert [e["text"] for e in gold.entities] == ["Liz Truss", "Belarus", "Antony Blinken", "Ukraine"]
    assert gold.stances == [{"holder": 2, "target": 3, "label": "favor"}]
    assert gold.only_pairs == {(0, 1), (2, 3)} and counts["review_articles"] == 1


def test_decisions_apply_to_an_annotated_article_unless_its_annotator_edited_the_pair():
    tasks = _article_task([(0, 1, "against"), (2, 3, "against")])  # kept Truss's proposal, changed Blinken's
    golds, counts = _golds(tasks, _decisions(_decision(0, 1, "none", "against"), _decision(2, 3, "none", "favor")))
    [gold] = golds
    assert gold.stances == [{"holder": 2, "target": 3, "label": "against"}] and gold.only_pairs is None
    assert counts["review_applied_none"] == 1 and counts["review_article_edit_wins"] == 1


@pytest.fixture(scope="module")
def pre() -> pa.Preannotator:
    cfg = section(pa.Params, "preannotate", ROOT / "params.yaml")
    return pa.load(cfg.model_copy(update={"stance_model": False}), *RULES)


def test_a_none_decision_is_a_negative_example_and_no_other_pair_is_guessed(pre):
    [gold], _ = _golds({}, _decisions(_decision(0, 1, "none", "against"), _decision(2, 3, "favor", "favor")))
    annotator = pre.nlp.get_pipe("geonews_preannotate")
    with pre.nlp.select_pipes(disable=["geonews_preannotate"]):
        doc = pre.nlp(TEXT)
    examples = tr.gold_examples(doc, gold, annotator, pre.params.stance_ends, Counter())
    # without the restriction the reverse pairs (Belarus -> Liz Truss, ...) would be `none` examples nobody decided
    assert sorted((c.holder, c.target, lab) for c, lab in examples) == [(0, 1, "none"), (2, 3, "favor")]
