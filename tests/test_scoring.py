"""Unit tests of pipeline.scoring on tiny fixtures, with every expected number worked out by hand."""

from __future__ import annotations

import pytest

from pipeline.quality import scoring


def ent(start: int, end: int, label: str, actor: str | None = None) -> dict:
    return {"start": start, "end": end, "label": label, "text": "x" * (end - start), "actor": actor}


def st(holder: int, target: int, label: str) -> dict:
    return {"holder": holder, "target": target, "label": label}


GOLD_ENTS = [ent(0, 5, "GPE"), ent(10, 15, "PERSON"), ent(20, 25, "ORG")]
# exact A; B with a shorter span; C with the wrong label; a spurious LOC
PRED_ENTS = [ent(0, 5, "GPE"), ent(10, 14, "PERSON"), ent(20, 25, "GPE"), ent(30, 35, "LOC")]


def test_prf_counts_and_degenerate() -> None:
    s = scoring.prf(1, 3, 2)
    assert s == {**s, "precision": 0.25, "support": 3, "tp": 1, "fp": 3, "fn": 2}
    assert s["recall"] == pytest.approx(1 / 3) and s["f1"] == pytest.approx(2 / 7)
    assert scoring.prf(0, 0, 0)["f1"] is None  # nothing to score: undefined, not 0 or 1
    assert scoring.prf(0, 0, 4)["precision"] == 0.0  # predicted nothing but there was gold


def test_entity_scores_exact_overall_and_per_label() -> None:
    s = scoring.entity_scores([PRED_ENTS], [GOLD_ENTS], "exact")
    # tp = A; fp = B', C' (GPE), D; fn = B, C
    assert (s["tp"], s["fp"], s["fn"]) == (1, 3, 2)
    assert s["precision"] == 0.25 and s["recall"] == pytest.approx(1 / 3) and s["f1"] == pytest.approx(2 / 7)
    per = s["per_label"]
    assert (per["GPE"]["tp"], per["GPE"]["fp"], per["GPE"]["fn"]) == (1, 1, 0)
    assert per["GPE"]["precision"] == 0.5 and per["GPE"]["recall"] == 1.0
    assert (per["PERSON"]["tp"], per["PERSON"]["fp"], per["PERSON"]["fn"]) == (0, 1, 1)
    assert per["ORG"]["recall"] == 0.0 and per["ORG"]["support"] == 1
    assert per["LOC"]["precision"] == 0.0 and per["LOC"]["support"] == 0


def test_entity_scores_overlap_is_lenient_on_boundaries_not_labels() -> None:
    s = scoring.entity_scores([PRED_ENTS], [GOLD_ENTS], "overlap")
    # tp = A, B~B'; fp = C' (label differs), D; fn = C
    assert (s["tp"], s["fp"], s["fn"]) == (2, 2, 1)
    assert s["precision"] == 0.5 and s["recall"] == pytest.approx(2 / 3) and s["f1"] == pytest.approx(4 / 7)
    assert s["per_label"]["PERSON"]["f1"] == 1.0


def test_overlap_pairing_is_one_to_one_and_prefers_larger_overlap() -> None:
    gold = [ent(0, 10, "ORG"), ent(12, 20, "ORG")]
    pred = [ent(0, 20, "ORG")]  # overlaps both gold spans: pairs with the larger overlap only
    assert scoring.pair_spans(pred, gold) == {0: 0}
    s = scoring.entity_scores([pred], [gold], "overlap")
    assert (s["tp"], s["fp"], s["fn"]) == (1, 0, 1)


def test_entity_scores_micro_average_over_articles() -> None:
    s = scoring.entity_scores([[ent(0, 5, "GPE")], []], [[ent(0, 5, "GPE")], [ent(3, 9, "NORP")]])
    assert (s["tp"], s["fp"], s["fn"]) == (1, 0, 1)
    assert s["precision"] == 1.0 and s["recall"] == 0.5


GOLD_DOC = {"entities": [ent(0, 5, "GPE"), ent(10, 15, "PERSON"), ent(20, 25, "ORG")],
            "stances": [st(0, 1, "against"), st(1, 2, "favor")]}
PRED_DOC = {"entities": [ent(0, 5, "GPE"), ent(10, 15, "ORG"), ent(20, 25, "ORG")],  # B mislabelled: ends still pair
            "stances": [st(0, 1, "against"), st(1, 2, "against"), st(2, 0, "favor")]}


def test_stance_scores_and_confusion() -> None:
    s = scoring.stance_scores([PRED_DOC], [GOLD_DOC], "exact")
    # 0->1 against matches; 1->2 against vs gold favor (fp against, fn favor); 2->0 favor spurious
    assert (s["tp"], s["fp"], s["fn"]) == (1, 2, 1)
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == 0.5 and s["f1"] == pytest.approx(0.4)
    assert s["per_label"]["against"]["precision"] == 0.5 and s["per_label"]["against"]["recall"] == 1.0
    assert s["per_label"]["favor"]["tp"] == 0 and s["per_label"]["favor"]["fn"] == 1
    assert s["confusion"] == {
        "against": {"against": 1, "favor": 0, "none": 0},
        "favor": {"against": 1, "favor": 0, "none": 0},
        "none": {"against": 0, "favor": 1, "none": 0},
    }


def test_stance_ends_exact_or_overlapping() -> None:
    pred = {"entities": [ent(0, 5, "GPE"), ent(9, 15, "PERSON")], "stances": [st(0, 1, "against")]}
    gold = {"entities": [ent(0, 5, "GPE"), ent(10, 15, "PERSON")], "stances": [st(0, 1, "against")]}
    exact = scoring.stance_scores([pred], [gold], "exact")
    assert (exact["tp"], exact["fp"], exact["fn"]) == (0, 1, 1)
    assert exact["confusion"]["against"]["none"] == 1 and exact["confusion"]["none"]["against"] == 1
    overlap = scoring.stance_scores([pred], [gold], "overlap")
    assert (overlap["tp"], overlap["fp"], overlap["fn"]) == (1, 0, 0)


def test_preannotation_quality_has_a_prf_block_per_task() -> None:
    q = scoring.preannotation_quality([(PRED_DOC, GOLD_DOC)])
    assert set(q) == {"entities", "entities_overlap", "stances", "stances_overlap"}
    assert q["entities"]["f1"] == pytest.approx(2 / 3)  # 2 of 3 exact on both sides
    assert all({"precision", "recall", "f1", "support"} <= set(v) for v in q.values())


def test_correction_effort_spans_and_stances() -> None:
    pred = {
        "entities": [ent(0, 5, "GPE"), ent(10, 15, "ORG"), ent(20, 25, "PERSON"), ent(30, 35, "LOC")],
        "stances": [st(0, 1, "against"), st(0, 2, "favor"), st(0, 3, "against")],
    }
    final = {
        # A unchanged; B relabelled; C moved (boundary); D deleted; E added
        "entities": [ent(0, 5, "GPE"), ent(10, 15, "PERSON"), ent(19, 25, "PERSON"), ent(40, 45, "NORP")],
        # A->B kept; A->C relabelled; A->D gone with D; E->A added
        "stances": [st(0, 1, "against"), st(0, 2, "against"), st(3, 0, "against")],
    }
    e = scoring.correction_effort(pred, final)
    assert e["entities"] == {"unchanged": 1, "relabelled": 1, "moved": 1, "deleted": 1, "added": 1}
    assert e["stances"] == {"unchanged": 1, "relabelled": 1, "deleted": 1, "added": 1}
    assert e["entities_by_label"]["ORG"]["relabelled"] == 1  # by the predicted label
    assert e["entities_by_label"]["NORP"]["added"] == 1  # by the final label
    assert e["entities_by_label"]["PERSON"]["moved"] == 1


def test_a_delete_and_an_add_with_another_label_are_not_a_move_and_nothing_changed() -> None:
    pred = {"entities": [ent(0, 5, "ORG")], "stances": []}
    final = {"entities": [ent(0, 7, "GPE")], "stances": []}
    e = scoring.correction_effort(pred, final)
    assert e["entities"] == {"unchanged": 0, "relabelled": 0, "moved": 0, "deleted": 1, "added": 1}
    moved = scoring.correction_effort(pred, {"entities": [ent(0, 7, "ORG")], "stances": []})
    assert moved["entities"]["moved"] == 1 and moved["entities"]["deleted"] == 0
    same = scoring.correction_effort(PRED_DOC, PRED_DOC)
    assert same["entities"]["unchanged"] == 3 and same["stances"]["unchanged"] == 3
    assert sum(same["entities"].values()) == 3 and sum(same["stances"].values()) == 3


def test_span_f1_ignores_order_and_handles_overlaps() -> None:
    a = [ent(0, 5, "GPE"), ent(10, 15, "PERSON"), ent(20, 25, "ORG")]
    b = [ent(11, 15, "PERSON"), ent(0, 5, "GPE")]  # other order, one boundary differs, one span missing
    assert scoring.span_f1(a, b) == pytest.approx(2 * 2 / 5)
    assert scoring.span_f1(a, b, "exact") == pytest.approx(2 * 1 / 5)
    assert scoring.span_f1([], []) == 1.0
    assert scoring.span_f1(a, []) == 0.0


def test_cohen_kappa_on_matched_pairs_with_none_for_missing() -> None:
    ents = [ent(0, 5, "GPE"), ent(10, 15, "GPE"), ent(20, 25, "GPE"), ent(30, 35, "GPE")]
    a = {"entities": ents, "stances": [st(0, 1, "against"), st(0, 2, "against"), st(1, 2, "favor")]}
    b = {"entities": list(reversed(ents)),  # order must not matter: indexes differ, spans agree
         "stances": [st(3, 2, "against"), st(3, 1, "favor"), st(3, 0, "against")]}
    # pairs: 0->1 (against, against), 0->2 (against, favor), 1->2 (favor, none), 0->3 (none, against)
    assert sorted(scoring.stance_pairs(a, b)) == sorted(
        [("against", "against"), ("against", "favor"), ("favor", "none"), ("none", "against")])
    # po = 1/4; marginals 2/1/1 each: pe = (4 + 1 + 1) / 16 = 0.375; kappa = (0.25 - 0.375) / 0.625
    assert scoring.stance_kappa(a, b) == pytest.approx(-0.2)


def test_kappa_degenerate_cases() -> None:
    assert scoring.cohen_kappa([]) is None  # no pair to compare
    assert scoring.cohen_kappa([("against", "against")] * 3) == 1.0  # one label only: full agreement
    assert scoring.cohen_kappa([("against", "against"), ("favor", "favor")]) == 1.0
    assert scoring.cohen_kappa([("against", "favor"), ("favor", "against")]) == pytest.approx(-1.0)


def test_agreement_means_pairwise_figures() -> None:
    e = [ent(0, 5, "GPE"), ent(10, 15, "PERSON")]
    v1 = {"entities": e, "stances": [st(0, 1, "against")]}
    v2 = {"entities": e, "stances": [st(0, 1, "against")]}
    v3 = {"entities": e[:1], "stances": []}
    r = scoring.agreement([v1, v2, v3])
    # F1: v1-v2 1, v1-v3 2/3, v2-v3 2/3; kappa: v1-v2 1.0 (one label), v1-v3 and v2-v3 0.0 (against vs none)
    assert r["entity_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert r["stance_kappa"] == pytest.approx(1 / 3)
    assert r["annotator_pairs"] == 3 and r["stance_pairs"] == 3
    none = scoring.agreement([{"entities": [], "stances": []}] * 2)
    assert none["entity_f1"] == 1.0 and none["stance_kappa"] is None


def test_actor_accuracy() -> None:
    pred = {"entities": [ent(0, 5, "GPE", "RUS"), ent(10, 15, "ORG", None)], "stances": []}
    gold = {"entities": [ent(0, 5, "GPE", "RUS"), ent(10, 16, "ORG", "NATO")], "stances": []}
    assert scoring.actor_accuracy([(pred, gold)]) == {"paired": 2, "correct": 1, "accuracy": 0.5}
