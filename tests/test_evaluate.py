"""Unit tests of the evaluate stage on tiny labeled.jsonl fixtures (tests/fixtures/evaluate/make_fixtures.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline import evaluate
from pipeline.common.contract import labeled_problem
from pipeline.common.errors import ConfigError, InputError
from pipeline.common.jsonl import write_json
from pipeline.quality.metrics import Preannotation

FIXTURES = Path(__file__).parent / "fixtures" / "evaluate"
LABELED = FIXTURES / "labeled.jsonl"
ROOT = Path(__file__).resolve().parent.parent


def _records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in LABELED.read_text(encoding="utf-8").splitlines()]


def _params(tmp_path: Path, **override: Any) -> Path:
    path = tmp_path / "params.yaml"
    cfg = {"digits": 4, "max_bad_share": 0.0, **override}
    path.write_text("evaluate:\n" + "".join(f"  {k}: {v}\n" for k, v in cfg.items()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def result() -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    return evaluate.evaluate(_records())


def test_dataset_statistics_per_split_status_and_label(result) -> None:
    dataset = result[0]["dataset"]
    assert dataset["total"] == {"articles": 3, "sentences": 5, "entities": 11, "stances": 5}
    assert dataset["by_status"]["gold"] == {"articles": 2, "sentences": 4, "entities": 9, "stances": 4}
    assert dataset["by_status"]["silver"] == {"articles": 1, "sentences": 1, "entities": 2, "stances": 1}
    assert dataset["by_split"]["test"] == {
        "articles": 1, "sentences": 1, "entities": 2, "stances": 1, "gold_articles": 0, "silver_articles": 1,
    }
    assert dataset["entity_labels"]["GPE"] == {"test": 2, "train": 2, "validation": 4, "total": 8}
    assert dataset["entity_labels"]["PERSON"]["total"] == 2
    assert dataset["stance_labels"]["against"] == {"test": 0, "train": 2, "validation": 1, "total": 3}
    assert dataset["stance_labels"]["favor"]["total"] == 2


def test_annotation_time_totals_and_per_article(result) -> None:
    time = result[0]["effort"]["time"]
    assert time["articles_timed"] == 2
    assert time["total_seconds"] == 90.0
    assert time["mean_seconds_per_article"] == 45.0
    assert time["per_annotator_seconds"] == {"alice": 50.0, "bob": 40.0}
    assert result[1]["lead_time"] == [
        {"article": "a1", "annotations": 1, "seconds": 30.0},
        {"article": "a2", "annotations": 2, "seconds": 60.0},
    ]


def test_label_distribution_plot_rows(result) -> None:
    rows = result[1]["label_distribution"]
    assert {"label": "entity:NORP", "split": "validation", "count": 0} not in rows
    assert {"label": "entity:GPE", "split": "validation", "count": 4} in rows
    assert {"label": "stance:favor", "split": "test", "count": 1} in rows
    assert sum(r["count"] for r in rows) == 11 + 5


def test_preannotation_scores_gold_articles_only_and_by_model_version(result) -> None:
    pre = result[0]["preannotation"]
    assert pre["gold_articles"] == 2  # a3 is silver: its final labels are the predictions, never scored
    # a1: Russia, NATO right; "Biden met" and Putin/GPE wrong; Biden, Putin/PERSON, Geneva missed. a2: all 4 right.
    assert (pre["entities"]["tp"], pre["entities"]["fp"], pre["entities"]["fn"]) == (6, 2, 3)
    assert pre["entities"]["per_label"]["PERSON"]["f1"] == 0.0
    assert pre["entities_overlap"]["per_label"]["PERSON"]["tp"] == 1  # "Biden met" overlaps "Biden"
    # Biden->Putin, favor predicted, against annotated: its holder moved, so only overlap matching pairs it.
    assert pre["stances"]["confusion"]["against"] == {"against": 2, "favor": 0, "none": 1}
    assert pre["stances_overlap"]["confusion"]["against"] == {"against": 2, "favor": 1, "none": 0}
    assert pre["by_model_version"]["m2"] == {
        "gold_articles": 1,
        **{kind: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": n}
           for kind, n in (("entities", 4), ("entities_overlap", 4), ("stances", 2), ("stances_overlap", 2))},
    }
    assert pre["by_model_version"]["m1"]["entities"]["support"] == 5


def test_label_f1_and_confusion_plot_rows(result) -> None:
    f1 = {row["label"]: row["f1"] for row in result[1]["label_f1"]}
    assert set(f1) == {"entity:GPE", "entity:ORG", "entity:PERSON", "stance:against", "stance:favor"}
    assert f1["entity:ORG"] == 1.0 and f1["entity:PERSON"] == 0.0
    confusion = result[1]["stance_confusion"]
    assert sorted((r["annotated"], r["predicted"]) for r in confusion) == [
        ("against", "against"), ("against", "against"), ("against", "none"), ("favor", "favor"), ("none", "favor"),
    ]


def test_correction_effort_per_annotator_and_label(result) -> None:
    effort = result[0]["effort"]
    assert effort["annotations"] == 3
    alice, bob = effort["by_annotator"]["alice"], effort["by_annotator"]["bob"]
    assert alice["annotations"] == 2 and bob["annotations"] == 1
    assert {k: alice["entities"][k] for k in ("unchanged", "relabelled", "moved", "deleted", "added")} == {
        "unchanged": 6, "relabelled": 1, "moved": 1, "deleted": 0, "added": 1,
    }
    assert alice["entities"]["unchanged_share"] == 6 / 8  # of the 8 proposals alice saw
    assert {k: bob["stances"][k] for k in ("unchanged", "relabelled", "deleted", "added")} == {
        "unchanged": 1, "relabelled": 0, "deleted": 1, "added": 0,
    }
    assert effort["entities"]["relabelled"] == 2  # alice's Putin and bob's China
    assert effort["entities_by_label"]["PERSON"]["moved"] == 1
    assert effort["stances"]["relabelled"] == 1
    rows = {row["outcome"]: row["count"] for row in result[1]["correction_effort"]}
    assert rows["entity added"] == 1 and rows["stance deleted"] == 1 and len(rows) == 9


def test_agreement_on_articles_with_two_annotators(result) -> None:
    agree = result[0]["agreement"]
    assert agree["articles"] == 1 and agree["annotator_pairs"] == 1
    assert agree["entity_f1"] == 0.75  # bob's China is NORP: 3 of 4 spans pair on both sides
    assert agree["stance_kappa"] is not None and agree["stance_kappa"] < 1
    assert agree["stance_kappa_pooled"] == agree["stance_kappa"]


def test_agreement_is_null_with_a_reason_without_two_annotators() -> None:
    single = [r for r in _records() if len(r["annotations"]) < 2]
    agree = evaluate.evaluate(single)[0]["agreement"]
    assert agree["entity_f1"] is None and agree["stance_kappa"] is None
    assert agree["reason"] == "no gold article has more than one annotator"


def test_no_gold_article_gives_null_quality_and_empty_plots() -> None:
    silver = [r for r in _records() if r["status"] == "silver"]
    metrics, plots = evaluate.evaluate(silver)
    assert metrics["preannotation"]["gold_articles"] == 0 and "reason" in metrics["preannotation"]
    assert metrics["summary"]["entity_f1"] is None and metrics["summary"]["articles"] == 1
    assert plots["label_f1"] == [] and plots["stance_confusion"] == [] and plots["lead_time"] == []


def test_an_accumulator_works_without_the_stage_as_the_card_uses_it(result) -> None:
    scored = Preannotation()
    for record in _records():
        if record["status"] == "gold":
            scored.add(record)
    assert scored.result() == result[0]["preannotation"]


def test_summary_is_flat_and_agrees_with_the_detailed_metrics(result) -> None:
    metrics = result[0]
    summary = metrics["summary"]
    assert all(not isinstance(v, dict | list) for v in summary.values())
    assert summary["entity_f1"] == metrics["preannotation"]["entities"]["f1"]
    assert summary["stances_unchanged_share"] == metrics["effort"]["stances"]["unchanged_share"]
    assert summary["agreement_entity_f1"] == metrics["agreement"]["entity_f1"]
    # gold and silver named apart (the fixture has 9 gold and 2 silver entities, 4 and 1 stances)
    assert (summary["gold_entities"], summary["silver_entities"]) == (9, 2) and "entities" not in summary
    assert (summary["gold_stances"], summary["silver_stances"]) == (4, 1)


def test_rounded_floats_and_sorted_json_are_stable(tmp_path: Path) -> None:
    assert evaluate.rounded({"a": [1 / 3, 2], "b": 0.1 + 0.2}, 4) == {"a": [0.3333, 2], "b": 0.3}
    out = tmp_path / "m.json"
    write_json(out, {"b": 1, "a": {"d": None, "c": 0.5}}, sort_keys=True)
    assert out.read_text(encoding="utf-8") == '{\n  "a": {\n    "c": 0.5,\n    "d": null\n  },\n  "b": 1\n}\n'


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": "bronze"}, "field 'status' must be one of gold, silver, got str 'bronze'"),
        ({"split": None}, "field 'split' must be one of train, validation, test, got NoneType None"),
        ({"entities": None}, "field 'entities' and 'stances' must be lists"),
        ({"predictions": {"entities": []}}, "field 'predictions.entities' and 'predictions.stances' must be lists"),
        ({"annotations": [{"annotator": "x"}]}, "field 'annotations[0].entities' and"),
        ({"annotations": {"alice": {}}}, "field 'annotations' must be a list, got dict"),
        ({"entities": [{"start": 3, "end": 1, "label": "GPE", "text": ""}]},
         "entities[0] offsets 3-1 must satisfy 0 <= start < end in a text of 46 characters"),
        ({"entities": [{"start": True, "end": 1, "label": "GPE", "text": "R"}]}, "entities[0].start must be an integer, got bool"),
        ({"entities": [{"start": 0, "end": 6, "label": 1, "text": "Russia"}]}, "entities[0].label must be a string, got int 1"),
        ({"stances": [{"holder": 0, "target": 99, "label": "favor"}]}, "stances[0].target must index one of the 5 entities"),
        ({"annotations": [{"entities": [], "stances": [{"holder": 0, "target": 1, "label": "x"}]}]},
         "annotations[0].stances[0].holder must index one of the 0 annotations[0].entities"),
        ({"sentences": [{"start": 0, "end": 99}]}, "sentences[0] offsets 0-99 must satisfy"),
        ({"provenance": []}, "field 'provenance' must be an object, got list []"),
        ({"agreement": {"entity_f1": "high"}}, "field 'agreement.entity_f1' must be a number or null"),
    ],
)
def test_the_record_contract_names_the_bad_field(change: dict[str, Any], message: str) -> None:
    record = {**_records()[0], **change}
    assert message in (labeled_problem(record) or "")
    assert all(labeled_problem(r) is None for r in _records())


def test_main_writes_every_metrics_and_plot_file_byte_identically(tmp_path: Path) -> None:
    params = _params(tmp_path)
    first, second = tmp_path / "one", tmp_path / "two"
    for out in (first, second):
        evaluate.main(input=LABELED, metrics=out / "metrics", plots=out / "plots", params=params)
    for kind, names in (("metrics", evaluate.METRICS), ("plots", evaluate.PLOTS)):
        assert sorted(p.stem for p in (first / kind).iterdir()) == sorted(names)
        for name in names:
            a, b = (first / kind / f"{name}.json").read_bytes(), (second / kind / f"{name}.json").read_bytes()
            assert a == b, f"{kind}/{name}.json differs between two runs"
            assert a.endswith(b"\n") and json.loads(a) is not None


def test_bad_record_fails_past_max_bad_share_and_is_skipped_below(tmp_path: Path, capsys) -> None:
    labeled = tmp_path / "labeled.jsonl"
    shutil.copy(LABELED, labeled)
    with labeled.open("a", encoding="utf-8") as out:
        out.write('{"id": "bad", "status": "gold"}\n')
    with pytest.raises(InputError, match="1 of 4 records are bad"):
        evaluate.main(input=labeled, metrics=tmp_path / "m", plots=tmp_path / "p", params=_params(tmp_path))
    evaluate.main(input=labeled, metrics=tmp_path / "m", plots=tmp_path / "p", params=_params(tmp_path, max_bad_share=0.5))
    assert f"evaluate: skipped {labeled}:4: field 'text' must be a string, got NoneType None" in capsys.readouterr().err
    assert json.loads((tmp_path / "m" / "dataset.json").read_text())["total"]["articles"] == 3


def test_unparseable_lines_count_in_the_bad_share(tmp_path: Path) -> None:
    labeled = tmp_path / "labeled.jsonl"
    labeled.write_bytes(b"{broken\n" + LABELED.read_bytes() + b"\xff\n")
    # 2 bad of 5 lines (not of the 3 parsed ones): passes at 0.4, fails below
    evaluate.main(input=labeled, metrics=tmp_path / "m", plots=tmp_path / "p", params=_params(tmp_path, max_bad_share=0.4))
    assert json.loads((tmp_path / "m" / "dataset.json").read_text())["total"]["articles"] == 3
    with pytest.raises(InputError, match="2 of 5 records are bad"):
        evaluate.main(input=labeled, metrics=tmp_path / "m", plots=tmp_path / "p", params=_params(tmp_path, max_bad_share=0.39))


def test_bad_params_stop_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"evaluate\.digits: must be in \[1, 10\], got 0$"):
        evaluate.main(input=LABELED, metrics=tmp_path / "m", plots=tmp_path / "p", params=_params(tmp_path, digits=0))
    assert not (tmp_path / "m").exists()


def test_cli_reports_missing_input_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "evaluate", "--input", str(tmp_path / "none.jsonl"),
         "--metrics", str(tmp_path / "m"), "--plots", str(tmp_path / "p"), "--params", str(_params(tmp_path))],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 3
    assert proc.stderr.strip() == f"error: {tmp_path / 'none.jsonl'}: file not found"


def test_effort_and_model_versions_use_the_predictions_the_annotator_was_shown() -> None:
    """Effort compares with the snapshot's predictions, not today's; versions are the full Label Studio strings."""
    records = _records()
    gold = next(r for r in records if r["id"] == "a2")
    ann = gold["annotations"][0]
    shown_entities = [dict(e) for e in ann["entities"]]
    shown_entities[0]["label"] = "ORG" if shown_entities[0]["label"] != "ORG" else "GPE"  # the old rules got one wrong
    ann["seen_predictions"] = {"entities": shown_entities, "stances": ann["stances"],
                               "model_version": "en_core_web_sm@3.8.0+rules.old+code.x"}
    others = [dict(a, seen_predictions={"entities": a["entities"], "stances": a["stances"],
                                         "model_version": "en_core_web_sm@3.8.0+rules.new+code.x"})
              for a in gold["annotations"][1:]]
    gold["annotations"] = [ann, *others]
    metrics, _ = evaluate.evaluate(records)
    today, _ = evaluate.evaluate(_records())
    by_annotator = metrics["effort"]["by_annotator"][ann["annotator"]]["entities"]
    assert by_annotator["relabelled"] == today["effort"]["by_annotator"][ann["annotator"]]["entities"]["relabelled"] + 1
    versions = metrics["preannotation"]["by_model_version"]
    assert "en_core_web_sm@3.8.0+rules.old+code.x" in versions and "m2" not in versions
    assert versions["en_core_web_sm@3.8.0+rules.old+code.x"]["entities"]["precision"] < 1.0


def _review_task(article: str, holder: int, answers: list[dict[str, Any]]) -> dict[str, Any]:
    span = {"start": holder, "end": holder + 6, "label": "GPE", "text": "Russia", "actor": "RUS"}
    target = {"start": 40, "end": 44, "label": "ORG", "text": "NATO", "actor": "NATO"}
    return {"id": holder, "data": {"article_id": article, "holder": span, "target": target, "text_hash": "h",
                                   "proposed": "against", "pair_id": f"{article}:{holder}-{holder + 6}>40-44"},
            "annotations": [{"id": 100 * holder + i, "completed_by": a.get("by", 1), "was_cancelled": a.get("skip", False),
                             "result": [{"type": "choices", "from_name": "stance", "to_name": "context",
                                         "value": {"choices": ["none"]}}],
                             "created_at": "2026-01-01T00:00:00Z", "updated_at": a.get("at", "2026-01-01T00:00:00Z"),
                             **({"lead_time": a["lead"]} if "lead" in a else {})} for i, a in enumerate(answers)]}


def test_review_queue_seconds_per_decided_pair_reach_the_effort_metrics(tmp_path: Path) -> None:
    review = tmp_path / "annotations" / "review"
    review.mkdir(parents=True)
    first = [_review_task("a", 0, [{"lead": 2.0}]), _review_task("a", 10, [{"lead": 3.0}, {"by": 2, "lead": 5.0}])]
    # a later snapshot holds every answer again: reviewer 1 has since changed pair 0 (Label Studio adds up its time)
    later = [_review_task("a", 0, [{"lead": 6.0, "at": "2026-01-02T00:00:00Z"}]), first[1],
             _review_task("b", 0, [{"lead": 9.0, "skip": True}]),  # skipped: decides nothing
             _review_task("c", 0, [{}])]  # decided, but Label Studio recorded no time
    for name, tasks in (("20260101T000000Z", first), ("20260102T000000Z", later)):
        (review / f"{name}.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    params = _params(tmp_path)
    params.write_text(params.read_text() + "preannotate:\n  entity_labels: [GPE, ORG]\n  stance_labels: [against, favor]\n")
    evaluate.main(input=LABELED, metrics=tmp_path / "m", plots=tmp_path / "p", params=params,
                  annotations=tmp_path / "annotations")
    effort = json.loads((tmp_path / "m" / "effort.json").read_text())
    assert effort["review_queue"] == {"decided_pairs": 3, "pairs_timed": 2, "total_seconds": 14.0,
                                      "seconds_per_decided_pair": 7.0}
    assert json.loads((tmp_path / "m" / "summary.json").read_text())["seconds_per_review_pair"] == 7.0
    assert effort["time"] == evaluate.evaluate(_records())[0]["effort"]["time"]  # the articles' own figure apart


def test_no_review_queue_answers_give_no_review_seconds(result) -> None:
    assert result[0]["effort"]["review_queue"]["decided_pairs"] == 0
    assert result[0]["summary"]["seconds_per_review_pair"] is None
