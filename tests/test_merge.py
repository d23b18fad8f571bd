"""Unit tests of merge: Label Studio corrections over predictions, resolution, staleness, grouped splits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline import merge as stage
from pipeline.errors import BadRecords, InputError
from pipeline.jsonl import read_jsonl

FIXTURES = Path(__file__).parent / "fixtures" / "publish"
RULES = (Path("resources/entity_patterns.yaml"), Path("resources/actors.yaml"), Path("resources/stance_cues.yaml"))
CFG = stage.MergeConfig(seed=7, splits=stage.Splits(0.6, 0.2, 0.2), max_bad_share=0.5)


def no_link(text: str, label: str) -> str | None:
    """Stands in for the actor table in unit tests: spans that match no prediction stay unlinked."""
    return None


@pytest.fixture(scope="module")
def merged() -> tuple[dict[str, dict], stage.Report, BadRecords]:
    bad = BadRecords("merge", 1.0, quiet=True)
    report = stage.Report()
    snapshot = stage.newest_snapshot(FIXTURES / "annotations")
    assert snapshot is not None
    report.snapshot = snapshot.name
    tasks = stage.collect_tasks(snapshot, bad, report)
    arts = [a for _, a in read_jsonl(FIXTURES / "preannotated.jsonl")]
    out = list(stage.merge(arts, tasks, CFG, no_link, bad, report))
    return {r["title"].split()[0] + ("2" if "copy" in r["title"] else ""): r for r in out}, report, bad


def spans(record: dict, key: str = "entities") -> set[tuple]:
    return {(e["text"], e["label"]) for e in record[key]}


def stance_texts(record: dict) -> set[tuple]:
    ents = record["entities"]
    return {(ents[s["holder"]]["text"], ents[s["target"]]["text"], s["label"]) for s in record["stances"]}


def test_newest_snapshot_is_lexicographic_max(tmp_path: Path) -> None:
    assert stage.newest_snapshot(FIXTURES / "annotations").name == "20220112T093000Z.jsonl"
    (tmp_path / "README.md").write_text("not a snapshot")
    assert stage.newest_snapshot(tmp_path) is None
    with pytest.raises(InputError, match="not found"):
        stage.newest_snapshot(tmp_path / "missing")


def test_status_follows_human_annotation(merged) -> None:
    by, report, _ = merged
    assert {k: r["status"] for k, r in by.items()} == {
        "Russia": "gold", "Talks": "silver", "Blinken": "silver", "Moscow": "gold", "Moscow2": "silver"}
    assert all(e["origin"] == r["status"] for r in by.values() for e in r["entities"] + r["stances"])
    assert by["Talks"]["annotators"] == [] and by["Talks"]["agreement"] is None
    assert report.cancelled == 2  # annotator 3's cancelled annotation on A, the skipped task B


def test_stale_text_hash_is_reported_and_kept_out(merged) -> None:
    by, report, _ = merged
    assert [s["article_id"] for s in report.stale] == [by["Blinken"]["id"]]
    assert report.stale[0]["where"].endswith("20220112T093000Z.jsonl:3")
    assert by["Blinken"]["annotations"] == [] and by["Blinken"]["provenance"]["annotation_snapshot"] is None


def test_two_annotators_keep_each_version_and_resolve_by_majority_with_model_casting_vote(merged) -> None:
    by, report, _ = merged
    a = by["Russia"]
    assert a["annotators"] == ["annotator-1", "annotator-2"]
    assert [v["annotation_id"] for v in a["annotations"]] == [101, 102]
    assert ("United States", "GPE") in spans(a["annotations"][1])
    # both agree: kept; one each on "The United States"/"United States": the model's span wins; Geneva: model kept it
    assert spans(a) == {("Russia", "GPE"), ("NATO", "ORG"), ("The United States", "GPE"), ("Geneva", "GPE"),
                        ("Ryabkov", "PERSON"), ("Moscow", "GPE"), ("Stoltenberg", "PERSON"), ("Ukraine", "GPE")}
    # annotator 2's `left` relation a2->a1 is Russia->NATO; United States->Russia (one vote) was predicted: kept;
    # Ryabkov->NATO (one vote, not predicted) is dropped
    assert stance_texts(a) == {("Russia", "NATO", "against"), ("Stoltenberg", "Ukraine", "favor"),
                               ("Moscow", "NATO", "against"), ("The United States", "Russia", "against")}
    assert a["provenance"]["resolution"] == "majority"
    ties = [t for t in report.ties if t["article_id"] == a["id"]]
    assert {(t["kind"], t["kept"]) for t in ties} >= {("entity", True), ("entity", False), ("stance", False)}
    assert a["agreement"]["n_annotators"] == 2
    assert 0 < a["agreement"]["entity_f1"] < 1


def test_actor_is_taken_from_the_prediction_with_the_same_span(merged) -> None:
    by, _, _ = merged
    actors = {e["text"]: e["actor"] for e in by["Russia"]["entities"]}
    assert actors["Russia"] == "RUS" and actors["Geneva"] is None
    version2 = {e["text"]: e["actor"] for e in by["Russia"]["annotations"][1]["entities"]}
    assert version2["United States"] is None  # a new span: linked by the actor table (no_link here)


def test_bad_regions_and_relations_are_reported_and_skipped(merged) -> None:
    by, _, bad = merged
    d = by["Moscow"]
    errors = [p["error"] for p in bad.problems]
    assert any("out of range" in e for e in errors)
    assert any("unknown or skipped region id(s) zz" in e for e in errors)
    assert all(p["where"].startswith(str(FIXTURES / "annotations" / "20220112T093000Z.jsonl:4")) for p in bad.problems)
    # `bi` gives the stance both ways, `left` swaps holder and target
    assert stance_texts(d) == {("Moscow", "Washington", "against"), ("Kyiv", "NATO", "favor"),
                               ("NATO", "Kyiv", "favor"), ("Lavrov", "United States", "against")}
    assert d["agreement"] is None and d["annotations"][0]["lead_time"] == 80.25


def test_silver_article_keeps_the_model_proposals(merged) -> None:
    by, _, _ = merged
    e = by["Moscow2"]
    assert e["predictions"]["model_version"] == "3.8.0"
    assert [x["text"] for x in e["entities"]] == [x["text"] for x in e["predictions"]["entities"]]
    assert {"sentences", "story_id", "paragraphs", "near_duplicates", "split"} <= set(e)


def test_splits_are_grouped_by_story_and_deterministic(merged) -> None:
    by, _, _ = merged
    assert by["Moscow"]["split"] == by["Moscow2"]["split"]
    cfg = stage.MergeConfig(seed=1, splits=stage.Splits(0.5, 0.25, 0.25), max_bad_share=0.1)
    splits = [stage.assign_split(f"story-{i}", cfg) for i in range(2000)]
    assert splits == [stage.assign_split(f"story-{i}", cfg) for i in range(2000)]
    shares = {s: splits.count(s) / len(splits) for s in stage.SPLITS}
    assert abs(shares["train"] - 0.5) < 0.05 and abs(shares["test"] - 0.25) < 0.05
    other_seed = stage.MergeConfig(seed=2, splits=cfg.splits, max_bad_share=0.1)
    assert splits != [stage.assign_split(f"story-{i}", other_seed) for i in range(2000)]


def test_ground_truth_annotation_wins() -> None:
    v1 = stage.Version("annotator-1", 1, [{"start": 0, "end": 3, "label": "GPE", "text": "abc", "actor": None}], [],
                       None, False, "2022-01-01")
    v2 = stage.Version("annotator-2", 2, [], [], None, True, "2022-01-01")
    v3 = stage.Version("annotator-3", 3, v1.entities, [], None, False, "2022-01-01")
    final, rule, ties = stage.resolve([v1, v2, v3], {"entities": [], "stances": []})
    assert (final["entities"], rule, ties) == ([], "ground_truth", [])
    v2.ground_truth = False
    final, rule, _ = stage.resolve([v1, v2, v3], {"entities": [], "stances": []})
    assert rule == "majority" and [e["text"] for e in final["entities"]] == ["abc"]


def test_main_writes_labeled_and_report(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("merge:\n  seed: 7\n  splits: {train: 0.6, validation: 0.2, test: 0.2}\n  max_bad_share: 0.5\n")
    ann = tmp_path / "annotations"
    shutil.copytree(FIXTURES / "annotations", ann)
    out, rep = tmp_path / "labeled.jsonl", tmp_path / "merge_report.json"
    stage.main(FIXTURES / "preannotated.jsonl", ann, out, rep, params, RULES)
    first = out.read_bytes()
    report = json.loads(rep.read_text())
    assert report["articles"] == {"gold": 2, "silver": 3} and len(report["stale"]) == 1
    assert report["snapshot"].endswith("20220112T093000Z.jsonl")
    russia = next(r for _, r in read_jsonl(out) if r["title"].startswith("Russia"))
    # a span no model proposed is linked through the preannotate stage's actor table
    assert {e["text"]: e["actor"] for e in russia["annotations"][1]["entities"]}["United States"] == "USA"
    stage.main(FIXTURES / "preannotated.jsonl", ann, out, rep, params, RULES)
    assert out.read_bytes() == first


def test_too_many_bad_records_fail_the_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("merge:\n  seed: 7\n  splits: {train: 0.6, validation: 0.2, test: 0.2}\n  max_bad_share: 0.0\n")
    monkeypatch.setattr(stage, "_actor_linker", lambda *paths: no_link)
    with pytest.raises(InputError, match="max_bad_share"):
        stage.main(FIXTURES / "preannotated.jsonl", FIXTURES / "annotations", tmp_path / "l.jsonl",
                   tmp_path / "r.json", params, RULES)
