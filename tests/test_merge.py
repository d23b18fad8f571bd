"""Unit tests of merge: Label Studio corrections over predictions, resolution, staleness, grouped splits."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline import merge as stage
from pipeline.common.contract import SPLITS, stage_config
from pipeline.common.errors import BadRecords, ConfigError, InputError
from pipeline.common.jsonl import read_jsonl
from pipeline.common.provenance import sha256_text
from pipeline.human.identity import stamp
from pipeline.human.resolve import resolve
from pipeline.human.snapshots import Version, annotator_id, collect_tasks, newest_snapshot, snapshots
from pipeline.human.splits import Splits

FIXTURES = Path(__file__).parent / "fixtures" / "publish"
SNAPSHOT = "20220112T093000Z.jsonl"
RULES = (Path("resources/entity_patterns.yaml"), Path("resources/actors.yaml"), Path("resources/stance_cues.yaml"))
ENTITY_LABELS = ("PERSON", "NORP", "ORG", "GPE", "LOC")
STANCE_LABELS = ("against", "favor")
CFG = stage.MergeConfig(seed=7, splits=Splits(train=0.6, validation=0.2, test=0.2), max_bad_share=0.5,
                        entity_labels=ENTITY_LABELS, stance_labels=STANCE_LABELS)


def write_params(folder: Path, max_bad_share: float = 0.5, stance_labels: str = "[against, favor]") -> Path:
    """params.yaml with the merge section of the fixtures and the label sets of the preannotate section."""
    path = folder / "params.yaml"
    path.write_text(f"preannotate:\n  entity_labels: [PERSON, NORP, ORG, GPE, LOC]\n  stance_labels: {stance_labels}\n"
                    f"merge:\n  seed: 7\n  splits: {{train: 0.6, validation: 0.2, test: 0.2}}\n  max_bad_share: {max_bad_share}\n")
    return path


def no_link(text: str, label: str) -> str | None:
    """Stands in for the actor table in unit tests: spans that match no prediction stay unlinked."""
    return None


@pytest.fixture(scope="module")
def merged() -> tuple[dict[str, dict], stage.Report, BadRecords]:
    bad = BadRecords("merge", 1.0, quiet=True)
    report = stage.Report()
    found = snapshots(FIXTURES / "annotations")
    report.snapshot = found[-1].name
    tasks, report.tasks = collect_tasks(found, bad)
    arts = [a for _, a in read_jsonl(FIXTURES / "preannotated.jsonl")]
    out = list(stage.merge(arts, tasks, CFG, no_link, bad, report))
    return {r["title"].split()[0] + ("2" if "copy" in r["title"] else ""): r for r in out}, report, bad


def spans(record: dict, key: str = "entities") -> set[tuple]:
    return {(e["text"], e["label"]) for e in record[key]}


def stance_texts(record: dict) -> set[tuple]:
    ents = record["entities"]
    return {(ents[s["holder"]]["text"], ents[s["target"]]["text"], s["label"]) for s in record["stances"]}


def test_newest_snapshot_is_lexicographic_max(tmp_path: Path) -> None:
    newest = newest_snapshot(FIXTURES / "annotations")
    assert newest is not None and newest.name == "20220112T093000Z.jsonl"
    (tmp_path / "README.md").write_text("not a snapshot")
    assert newest_snapshot(tmp_path) is None
    with pytest.raises(InputError, match="not found"):
        newest_snapshot(tmp_path / "missing")


def test_collect_tasks_groups_by_article_and_counts_every_task_read(tmp_path: Path) -> None:
    tasks = fixture_lines(f"annotations/{SNAPSHOT}")
    lines = [*tasks, {"data": {"text": "no article id"}}, {"data": {"article_id": "x"}, "annotations": 5}, tasks[0]]
    snapshot = tmp_path / SNAPSHOT
    snapshot.write_text("".join(json.dumps(t) + "\n" for t in lines))
    bad = BadRecords("merge", 1.0, quiet=True)
    grouped, read = collect_tasks(snapshot, bad)
    assert read == len(lines)
    assert [p["error"] for p in bad.problems] == ["task has no data.article_id", "task annotations is not a list"]
    first = tasks[0]["data"]["article_id"]
    assert [where for where, _ in grouped[first]] == [f"{snapshot}:1", f"{snapshot}:{len(lines)}"]
    assert sum(map(len, grouped.values())) == len(tasks) + 1


def keyed(identity: str, key: bytes = b"test-key") -> str:
    return "annotator-" + hmac.new(key, identity.encode(), hashlib.sha256).hexdigest()[:12]


@pytest.mark.parametrize(
    ("completed_by", "expected"),
    [(7, "annotator-7"), ({"id": 7, "email": "a@b.c"}, "annotator-7"), (None, "annotator-unknown"),
     (True, "annotator-unknown"), ("12", "annotator-12"),
     # an identity that is not a numeric id (a hand-made snapshot) is pseudonymised with the secret key
     ({"email": "a@b.c"}, keyed("a@b.c")), ("Ann@Example.org", keyed("ann@example.org"))],
)
def test_annotator_ids_are_pseudonymous(completed_by: Any, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_PSEUDONYM_KEY", "test-key")
    assert annotator_id(completed_by) == expected
    if isinstance(completed_by, str) and not completed_by.isdigit():  # unkeyed, anyone could confirm a guess
        assert expected != "annotator-" + sha256_text(completed_by.lower())[:12]


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
    cfg = stage.MergeConfig(seed=1, splits=Splits(train=0.5, validation=0.25, test=0.25), max_bad_share=0.1,
                            entity_labels=ENTITY_LABELS, stance_labels=STANCE_LABELS)
    splits = [stage.assign_split(f"story-{i}", cfg) for i in range(2000)]
    assert splits == [stage.assign_split(f"story-{i}", cfg) for i in range(2000)]
    shares = {s: splits.count(s) / len(splits) for s in SPLITS}
    assert abs(shares["train"] - 0.5) < 0.05 and abs(shares["test"] - 0.25) < 0.05
    other_seed = stage.MergeConfig(seed=2, splits=cfg.splits, max_bad_share=0.1,
                                   entity_labels=ENTITY_LABELS, stance_labels=STANCE_LABELS)
    assert splits != [stage.assign_split(f"story-{i}", other_seed) for i in range(2000)]


def test_ground_truth_annotation_wins() -> None:
    v1 = Version("annotator-1", 1, [{"start": 0, "end": 3, "label": "GPE", "text": "abc", "actor": None}], [],
                 None, False, "2022-01-01")
    v2 = Version("annotator-2", 2, [], [], None, True, "2022-01-01")
    v3 = Version("annotator-3", 3, v1.entities, [], None, False, "2022-01-01")
    final, rule, ties = resolve([v1, v2, v3], {"entities": [], "stances": []})
    assert (final["entities"], rule, ties) == ([], "ground_truth", [])
    v2.ground_truth = False
    final, rule, _ = resolve([v1, v2, v3], {"entities": [], "stances": []})
    assert rule == "majority" and [e["text"] for e in final["entities"]] == ["abc"]


def test_main_writes_labeled_and_report(tmp_path: Path) -> None:
    params = write_params(tmp_path)
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


def test_too_many_bad_records_fail_the_stage_keep_the_old_output_and_write_the_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = write_params(tmp_path, max_bad_share=0.0)
    monkeypatch.setattr(stage, "_actor_linker", lambda *args: no_link)
    out, rep = tmp_path / "l.jsonl", tmp_path / "r.json"
    out.write_text("the previous run's output\n")
    with pytest.raises(InputError, match="max_bad_share"):
        stage.main(FIXTURES / "preannotated.jsonl", FIXTURES / "annotations", out, rep, params, RULES)
    assert out.read_text() == "the previous run's output\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".l.jsonl")] == []  # no temporary file left
    report = json.loads(rep.read_text())
    assert report["articles"] == {"gold": 2, "silver": 3}
    assert any("out of range" in p["error"] for p in report["bad_records"])


def test_config_takes_the_label_sets_from_the_preannotate_section(tmp_path: Path) -> None:
    cfg = stage_config(stage.MergeConfig, "merge", write_params(tmp_path, stance_labels="[against, favor, neutral]"))
    assert cfg.stance_labels == ("against", "favor", "neutral") and cfg.entity_labels == ENTITY_LABELS
    with pytest.raises(ConfigError, match="must not contain 'none'"):
        stage_config(stage.MergeConfig, "merge", write_params(tmp_path, stance_labels="[against, none]"))
    path = tmp_path / "params.yaml"
    path.write_text(path.read_text().replace("  max_bad_share: 0.5\n", "  max_bad_share: 0.5\n  stance_labels: [x]\n"))
    with pytest.raises(ConfigError, match="come from the preannotate section"):
        stage_config(stage.MergeConfig, "merge", path)


def run_main(tmp_path: Path, articles: list[dict], tasks: list[dict], **params: Any) -> tuple[list[dict], dict]:
    """Run merge.main on the given pre-annotated articles and snapshot tasks; return its output records and report."""
    pre, ann = tmp_path / "preannotated.jsonl", tmp_path / "annotations"
    ann.mkdir(exist_ok=True)
    pre.write_text("".join(json.dumps(a) + "\n" for a in articles))
    (ann / SNAPSHOT).write_text("".join(json.dumps(t) + "\n" for t in tasks))
    out, rep = tmp_path / "labeled.jsonl", tmp_path / "merge_report.json"
    stage.main(pre, ann, out, rep, write_params(tmp_path, **params), RULES)
    return [r for _, r in read_jsonl(out)], json.loads(rep.read_text())


def fixture_lines(name: str) -> list[dict]:
    """The records of a fixture file, as fresh dicts a test may change."""
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a["entities"][0].pop("start"), "entities[0] has no 'start'"),
        (lambda a: a["entities"][1].update(start="0"), "entities[1].start must be an integer, got str '0'"),
        (lambda a: a["entities"][0].update(end=True), "entities[0].end must be an integer, got bool True"),
        (lambda a: a["entities"].append("Russia"), "entities[10] must be an object, got str 'Russia'"),
        (lambda a: a["stances"][0].update(holder=99), "stances[0].holder must index one of the 10 entities"),
        (lambda a: a.update(provenance="spaCy"), "field 'provenance' must be an object, got str 'spaCy'"),
        (lambda a: a["sentences"].__setitem__(0, [0, 5]), "sentences[0] must be an object"),
        (lambda a: a.update(story_id=7), "field 'story_id' must be a string or null, got int 7"),
    ],
)
def test_a_preannotated_article_breaking_the_contract_is_reported_and_skipped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], change, message: str) -> None:
    monkeypatch.setattr(stage, "_actor_linker", lambda *args: no_link)
    articles = fixture_lines("preannotated.jsonl")
    change(articles[0])
    out, report = run_main(tmp_path, articles, fixture_lines(f"annotations/{SNAPSHOT}"))
    assert [r["id"] for r in out] == [a["id"] for a in articles[1:]]
    where = f"{tmp_path / 'preannotated.jsonl'}:1"
    assert {"where": where, "error": report["bad_records"][0]["error"]} == report["bad_records"][0]
    assert message in report["bad_records"][0]["error"]
    err = capsys.readouterr().err
    assert f"merge: skipped {where}: {message}" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ann: ann.update(result=5), "annotation 106: result must be a list, got int 5"),
        (lambda ann: ann["result"][-1].update(labels=5),
         "annotation 106: relation d6->d5 by annotator-4: expected one label of preannotate.stance_labels (against, favor), got 5"),
        (lambda ann: ann["result"][0]["value"].update(labels=["DATE"]), "label 'DATE' is not in preannotate.entity_labels"),
        (lambda ann: ann["result"][0]["value"].update(start="3"), "offsets are not integers: '3'"),
    ],
)
def test_a_bad_label_studio_annotation_is_reported_and_skipped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], change, message: str) -> None:
    monkeypatch.setattr(stage, "_actor_linker", lambda *args: no_link)
    tasks = fixture_lines(f"annotations/{SNAPSHOT}")
    change(tasks[3]["annotations"][0])  # article D, annotation 106
    out, report = run_main(tmp_path, fixture_lines("preannotated.jsonl"), tasks)
    assert len(out) == 5
    errors = [p["error"] for p in report["bad_records"] if message in f"{p['where']}: {p['error']}"]
    assert errors, report["bad_records"]
    assert all(p["where"].startswith(f"{tmp_path / 'annotations' / SNAPSHOT}:4") for p in report["bad_records"])
    assert "Traceback" not in capsys.readouterr().err


def test_a_non_list_result_skips_that_annotation_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage, "_actor_linker", lambda *args: no_link)
    tasks = fixture_lines(f"annotations/{SNAPSHOT}")
    tasks[0]["annotations"][1]["result"] = "Russia"  # article A: annotator 2's version is unusable
    out, report = run_main(tmp_path, fixture_lines("preannotated.jsonl"), tasks)
    russia = next(r for r in out if r["title"].startswith("Russia"))
    assert russia["annotators"] == ["annotator-1"] and russia["provenance"]["resolution"] == "single"
    assert report["bad_records"][0]["error"].endswith("result must be a list, got str 'Russia'")


def test_a_neutral_relation_survives_when_neutral_is_a_stance_label(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage, "_actor_linker", lambda *args: no_link)
    tasks = fixture_lines(f"annotations/{SNAPSHOT}")
    relation = next(r for r in tasks[3]["annotations"][0]["result"] if r["type"] == "relation")
    relation["labels"] = ["neutral"]
    _, rejected = run_main(tmp_path, fixture_lines("preannotated.jsonl"), tasks)
    assert any("got ['neutral']" in p["error"] for p in rejected["bad_records"])
    out, report = run_main(tmp_path, fixture_lines("preannotated.jsonl"), tasks, stance_labels="[against, favor, neutral]")
    assert not any("neutral" in p["error"] for p in report["bad_records"])
    moscow = next(r for r in out if r["title"] == "Moscow warns")
    assert [s["label"] for s in moscow["stances"]].count("neutral") == 1


def test_the_report_lists_ties_in_the_same_order_whatever_the_hash_seed(tmp_path: Path) -> None:
    params = write_params(tmp_path)
    reports = []
    for seed in ("5", "6"):  # two seeds that ordered the ties differently when votes were iterated as sets
        report = tmp_path / f"report-{seed}.json"
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline", "merge", "--preannotated", str(FIXTURES / "preannotated.jsonl"),
             "--annotations", str(FIXTURES / "annotations"), "--output", str(tmp_path / f"labeled-{seed}.jsonl"),
             "--report", str(report), "--params", str(params), "--patterns", str(RULES[0]), "--actors", str(RULES[1]),
             "--lexicon", str(RULES[2])],
            cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True, text=True, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        reports.append(report.read_bytes())
    assert len(json.loads(reports[0])["ties"]) >= 3
    assert reports[0] == reports[1]


def test_a_text_edited_in_label_studio_is_stale_although_its_hash_is_not() -> None:
    """merge checks `data.text` itself, not only the `text_hash` written at push time."""
    art = next(a for _, a in read_jsonl(FIXTURES / "preannotated.jsonl"))
    edited = art["text"].replace(" ", "  ", 1)
    ann = {"id": 1, "completed_by": 9, "updated_at": "2022-01-12T09:00:00Z", "lead_time": 3.0, "result": []}
    tasks = {art["id"]: [("snap.jsonl:1", {"data": {"text": edited, "text_hash": sha256_text(art["text"]),
                                                    "article_id": art["id"]}, "annotations": [ann]})]}
    bad, report = BadRecords("merge", 1.0, quiet=True), stage.Report()
    (record,) = stage.merge([art], tasks, CFG, no_link, bad, report)
    assert record["status"] == "silver" and record["annotations"] == []
    assert report.stale == [{"where": "snap.jsonl:1", "article_id": art["id"],
                             "reason": "the task's text differs from the article's current text"}]


@pytest.mark.parametrize("change", [lambda ann: ann.pop("result"), lambda ann: ann.update(result=None)])
def test_an_annotation_without_result_is_reported_not_gold_with_no_entities(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change) -> None:
    monkeypatch.setattr(stage, "_actor_linker", lambda *args: no_link)
    tasks = fixture_lines(f"annotations/{SNAPSHOT}")
    change(tasks[3]["annotations"][0])  # article D's only annotation
    out, report = run_main(tmp_path, fixture_lines("preannotated.jsonl"), tasks)
    moscow = next(r for r in out if r["title"] == "Moscow warns")
    assert moscow["status"] == "silver" and moscow["entities"]
    assert any("result must be a list, got NoneType" in p["error"] for p in report["bad_records"])


def test_duplicate_region_ids_are_reported_and_neither_region_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage, "_actor_linker", lambda *args: no_link)
    tasks = fixture_lines(f"annotations/{SNAPSHOT}")
    result = tasks[3]["annotations"][0]["result"]
    regions = [r for r in result if r["type"] == "labels"]
    regions[1]["id"] = regions[0]["id"]
    out, report = run_main(tmp_path, fixture_lines("preannotated.jsonl"), tasks)
    moscow = next(r for r in out if r["title"] == "Moscow warns")
    texts = {e["text"] for e in moscow["annotations"][0]["entities"]}
    assert regions[0]["value"]["text"] not in texts or regions[1]["value"]["text"] not in texts
    assert any(f"region id {regions[0]['id']} is used by more than one region" in p["error"]
               for p in report["bad_records"])


def test_ground_truth_must_be_the_boolean_true() -> None:
    bad = BadRecords("merge", 1.0, quiet=True)
    ann = {"id": 1, "completed_by": 1, "result": [], "ground_truth": "false"}
    version = stage.parse_annotation(ann, "text", {}, no_link, "x", bad, entity_labels=ENTITY_LABELS,
                                     stance_labels=STANCE_LABELS)
    assert version is not None and version.ground_truth is False
    ann["ground_truth"] = True
    version = stage.parse_annotation(ann, "text", {}, no_link, "x", bad, entity_labels=ENTITY_LABELS,
                                     stance_labels=STANCE_LABELS)
    assert version is not None and version.ground_truth is True


@pytest.mark.parametrize(("fields", "started"), [
    ({"parent_prediction": 7}, True),  # the annotator opened the task's prediction and edited it
    ({"parent_prediction": None}, False),  # drawn on the bare text
    ({}, None),  # an export without the field says nothing
    ({"parent_prediction": None, "import_id": 3}, None),  # re-imported through the API: the original server knew
])
def test_each_version_records_whether_it_started_from_a_prediction(fields: dict, started: bool | None) -> None:
    bad = BadRecords("merge", 1.0, quiet=True)
    ann = {"id": 1, "completed_by": 1, "result": [], "ground_truth": True, **fields}
    version = stage.parse_annotation(ann, "text", {}, no_link, "x", bad, entity_labels=ENTITY_LABELS,
                                     stance_labels=STANCE_LABELS)
    assert version is not None and version.from_prediction is started
    assert version.record()["from_prediction"] is started and version.record()["ground_truth"] is True


def test_a_reimported_version_keeps_how_the_original_began(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage, "_actor_linker", lambda *args: no_link)
    arts = fixture_lines("preannotated.jsonl")
    tasks = fixture_lines(f"annotations/{SNAPSHOT}")[3:4]  # article D, annotator 4
    original = tasks[0]["annotations"][0]
    original["parent_prediction"] = 11
    again = {**original, "id": 900, "parent_prediction": None, "completed_by": 77, "updated_by": 1,
             "updated_at": "2023-01-01T00:00:00Z"}  # the same work, submitted again on a fresh server
    tasks.append({**tasks[0], "id": 9, "annotations": [again], "pipeline_origin": {"project": "fresh"},
                  "meta": {"pipeline_annotators": [stamp("annotator-4", 900, "fresh", again["result"])]}})
    records, report = run_main(tmp_path, arts, tasks, max_bad_share=1.0)  # D's bad region is another test's
    (d,) = [r for r in records if r["status"] == "gold"]
    assert report["superseded"] == 1 and [a["annotation_id"] for a in d["annotations"]] == [900]
    assert d["annotations"][0]["from_prediction"] is True


def test_a_relation_with_two_labels_is_reported_by_task_and_annotator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage, "_actor_linker", lambda *args: no_link)
    tasks = fixture_lines(f"annotations/{SNAPSHOT}")
    relation = next(r for r in tasks[3]["annotations"][0]["result"] if r["type"] == "relation")
    relation["labels"] = ["against", "favor"]
    _, report = run_main(tmp_path, fixture_lines("preannotated.jsonl"), tasks)
    [dropped] = report["dropped_relations"]
    assert dropped["annotator"] == "annotator-4" and dropped["where"].endswith(f"{SNAPSHOT}:4 annotation 106")
    assert "['against', 'favor']" in dropped["reason"]


def test_every_snapshot_is_merged_whatever_server_it_came_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An old snapshot's gold survives a newer snapshot (another server) that never saw it; per annotator the latest wins."""
    monkeypatch.setattr(stage, "_actor_linker", lambda *args: no_link)
    tasks = fixture_lines(f"annotations/{SNAPSHOT}")
    old, new = [tasks[0], tasks[3]], [json.loads(json.dumps(tasks[0]))]
    new[0]["id"] = 1  # another server numbers its tasks and annotations afresh
    new[0]["annotations"] = [{**new[0]["annotations"][1], "id": 1, "updated_at": "2022-02-01T00:00:00Z",
                              "completed_by": {"id": 2, "email": "b@x.org"}}]
    new[0]["annotations"][0]["result"] = [r for r in new[0]["annotations"][0]["result"] if r["type"] == "labels"][:1]
    ann = tmp_path / "annotations"
    ann.mkdir()
    (ann / "20220201T000000Z.jsonl").write_text("".join(json.dumps(t) + "\n" for t in new))
    out, report = run_main(tmp_path, fixture_lines("preannotated.jsonl"), old)  # old goes to SNAPSHOT (older name)
    by = {r["title"]: r for r in out}
    russia = next(r for r in out if r["title"].startswith("Russia"))
    assert by["Moscow warns"]["status"] == "gold"  # only in the older snapshot
    assert by["Moscow warns"]["provenance"]["annotation_snapshot"].endswith(SNAPSHOT)
    a2 = next(v for v in russia["annotations"] if v["annotator"] == "annotator-2")
    assert len(a2["entities"]) == 1  # the newer correction replaced annotator 2's older version
    assert russia["provenance"]["annotation_snapshot"].endswith("20220201T000000Z.jsonl")
    assert report["gold_sources"][russia["id"]]["annotator-2"].endswith("20220201T000000Z.jsonl")
    assert report["gold_sources"][russia["id"]]["annotator-1"].endswith(SNAPSHOT)
    assert [Path(s["path"]).name for s in report["snapshots"]] == [SNAPSHOT, "20220201T000000Z.jsonl"]
    assert "b@x.org" not in (tmp_path / "labeled.jsonl").read_text()


def test_the_latest_version_is_the_latest_instant_not_the_largest_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`10:30+02:00` is 08:30 UTC: older than `09:00Z` although it sorts after it as text."""
    monkeypatch.setattr(stage, "_actor_linker", lambda *args: no_link)
    tasks = fixture_lines(f"annotations/{SNAPSHOT}")
    newer = tasks[3]["annotations"][0]  # article D's only annotation, by annotator 4, stamped 09:00Z
    older = {**newer, "id": 107, "updated_at": "2022-01-12T10:30:00+02:00",
             "result": [r for r in newer["result"] if r["type"] == "labels"][:1]}
    tasks[3]["annotations"].append(older)  # read after the newer one
    out, report = run_main(tmp_path, fixture_lines("preannotated.jsonl"), tasks)
    moscow = next(r for r in out if r["title"] == "Moscow warns")
    [version] = moscow["annotations"]
    assert version["annotation_id"] == 106 and len(version["entities"]) > 1
    assert not report["bad_records"] or all("updated_at" not in p["error"] for p in report["bad_records"])


def test_ground_truth_latest_compares_instants() -> None:
    entity = {"start": 0, "end": 3, "label": "GPE", "text": "abc", "actor": None}
    older = Version("annotator-1", 1, [], [], None, True, "2022-01-12T10:30:00+02:00")
    newer = Version("annotator-2", 2, [entity], [], None, True, "2022-01-12T09:00:00.000000Z")
    final, rule, _ = resolve([older, newer], {"entities": [], "stances": []})
    assert rule == "ground_truth" and final["entities"] == [entity]


def test_an_unparseable_timestamp_is_a_bad_record_naming_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage, "_actor_linker", lambda *args: no_link)
    tasks = fixture_lines(f"annotations/{SNAPSHOT}")
    tasks[3]["annotations"][0]["updated_at"] = "12/01/2022 09:00"
    out, report = run_main(tmp_path, fixture_lines("preannotated.jsonl"), tasks)
    assert next(r for r in out if r["title"] == "Moscow warns")["status"] == "silver"
    [problem] = [p for p in report["bad_records"] if "updated_at" in p["error"]]
    assert problem["where"].endswith(f"{SNAPSHOT}:4 annotation 106")
    assert problem["error"] == "updated_at '12/01/2022 09:00' is not an ISO-8601 timestamp; annotation skipped"


# Issue 29 item 5: human gold never vanishes with exit 0.

def merge_cli(tmp_path: Path, annotations: Path, max_bad_share: float = 0.5) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline merge` on the fixture articles and `annotations`, as dvc repro runs it."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "merge", "--preannotated", str(FIXTURES / "preannotated.jsonl"),
         "--annotations", str(annotations), "--output", str(tmp_path / "labeled.jsonl"),
         "--report", str(tmp_path / "merge_report.json"), "--params", str(write_params(tmp_path, max_bad_share)),
         "--patterns", str(RULES[0]), "--actors", str(RULES[1]), "--lexicon", str(RULES[2])],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, check=False,
    )


def test_truncated_task_lines_count_per_line_and_fail_the_stage_naming_them(tmp_path: Path) -> None:
    """4 of 5 task lines truncated: 80% of the task lines are bad, however few that is among regions and articles."""
    ann = tmp_path / "annotations"
    ann.mkdir()
    lines = [json.dumps(t) for t in fixture_lines(f"annotations/{SNAPSHOT}")]
    lines += [json.dumps(t) for t in fixture_lines("annotations/20220110T090000Z.jsonl")]
    assert len(lines) == 5
    snapshot = ann / SNAPSHOT
    snapshot.write_text("".join((line if i == 0 else line[: len(line) // 2]) + "\n" for i, line in enumerate(lines)))
    proc = merge_cli(tmp_path, ann)
    assert proc.returncode == 4, proc.stderr
    [error] = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "4 of 5 snapshot task lines are bad (80% > max_bad_share 50%)" in error
    assert f"{snapshot}:2, {snapshot}:3, {snapshot}:4, {snapshot}:5;" in error
    assert not (tmp_path / "labeled.jsonl").exists()
    report = json.loads((tmp_path / "merge_report.json").read_text())
    assert report["bad_task_lines"] == [f"{snapshot}:{n}" for n in (2, 3, 4, 5)] and report["tasks"] == 5


def test_one_bad_region_makes_its_task_line_one_bad_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture's line 4 has a bad region and a bad relation: one bad task line of five, not two bad records."""
    monkeypatch.setattr(stage, "_actor_linker", lambda *args: no_link)
    _, report = run_main(tmp_path, fixture_lines("preannotated.jsonl"), fixture_lines(f"annotations/{SNAPSHOT}"),
                         max_bad_share=0.25)
    assert report["bad_task_lines"] == [f"{tmp_path / 'annotations' / SNAPSHOT}:4"] and len(report["bad_records"]) == 2
    with pytest.raises(InputError, match=rf"1 of 4 snapshot task lines are bad .*{SNAPSHOT}:4; first: .*:4 annotation 106"):
        run_main(tmp_path, fixture_lines("preannotated.jsonl"), fixture_lines(f"annotations/{SNAPSHOT}"),
                 max_bad_share=0.2)


def label_studio_export(tasks: list[dict]) -> str:
    """Tasks as Label Studio's JSON export (the UI's Export > JSON download): one indented JSON array."""
    return json.dumps(tasks, indent=2)


@pytest.mark.parametrize("name", ["export.jsonl", "X.JSONL", "X (1).jsonl", "export.json", "project-1-at-2024.JSON"])
def test_a_snapshot_of_any_name_and_label_studios_json_export_are_merged(
        tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage, "_actor_linker", lambda *args: no_link)
    ann = tmp_path / "annotations"
    ann.mkdir()
    tasks = fixture_lines(f"annotations/{SNAPSHOT}")
    (ann / name).write_text(label_studio_export(tasks) if name.lower().endswith(".json")
                            else "".join(json.dumps(t) + "\n" for t in tasks))
    (ann / ".gitignore").write_text("/*.tmp\n")  # hidden files and README* are skipped by rule
    (ann / "README.md").write_text("# annotations\n")
    out, rep = tmp_path / "labeled.jsonl", tmp_path / "merge_report.json"
    stage.main(FIXTURES / "preannotated.jsonl", ann, out, rep, write_params(tmp_path), RULES)
    report = json.loads(rep.read_text())
    assert report["articles"] == {"gold": 2, "silver": 3}, report["articles"]
    assert [s["path"] for s in report["snapshots"]] == [(ann / name).as_posix()]
    where = next(p["where"] for p in report["bad_records"])
    assert where.startswith(f"{ann / name}:" + ("task 4" if name.lower().endswith(".json") else "4"))


def test_snapshots_order_timestamped_names_first_then_others_by_name(tmp_path: Path) -> None:
    for name in ["export.json", "20220112T093000Z.json", "X (1).jsonl", "20220110T090000Z.jsonl", "A.JSONL",
                 ".DS_Store", "README"]:
        (tmp_path / name).write_text("[]" if name.endswith(".json") else "")
    assert [p.name for p in snapshots(tmp_path)] == [
        "20220110T090000Z.jsonl", "20220112T093000Z.json", "A.JSONL", "X (1).jsonl", "export.json"]
    assert newest_snapshot(tmp_path) == tmp_path / "export.json"


@pytest.mark.parametrize(("name", "content", "message"), [
    ("notes.txt", "annotator notes", r"notes\.txt: not a Label Studio snapshot"),
    ("export.json", '[{"data": {"article_id": "a"}},\n {"data": ', r"export\.json:2: invalid JSON"),
    ("export.json", '[{"data": {"article_id": "a"}, "x": NaN}]', r"export\.json: invalid JSON: NaN is not a JSON number"),
])
def test_a_file_that_is_no_readable_snapshot_is_one_error_line_naming_it(
        tmp_path: Path, name: str, content: str, message: str) -> None:
    ann = tmp_path / "annotations"
    ann.mkdir()
    shutil.copy(FIXTURES / "annotations" / SNAPSHOT, ann / SNAPSHOT)
    (ann / name).write_text(content)
    proc = merge_cli(tmp_path, ann)
    assert proc.returncode == InputError.exit_code, proc.stderr
    assert "Traceback" not in proc.stderr
    [error] = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert re.search(message, error), error
    (ann / name).unlink()
    (ann / "sub").mkdir()
    with pytest.raises(InputError, match=r"sub: not a file"):
        snapshots(ann)


def test_train_and_reimport_read_the_same_snapshots_as_merge(tmp_path: Path) -> None:
    from pipeline import train
    from pipeline.labelstudio import reimport

    assert train.snapshots is snapshots and train.collect_tasks is collect_tasks
    (tmp_path / "export.json").write_text(label_studio_export(fixture_lines(f"annotations/{SNAPSHOT}")))
    latest = reimport.latest_versions(tmp_path)
    assert {who for _, _, who in latest} == {"annotator-1", "annotator-2", "annotator-4"}


def test_gold_of_the_previous_output_that_is_not_gold_now_is_reported(tmp_path: Path) -> None:
    ann = tmp_path / "annotations"
    shutil.copytree(FIXTURES / "annotations", ann)
    assert merge_cli(tmp_path, ann).returncode == 0
    gold = sorted(r["id"] for _, r in read_jsonl(tmp_path / "labeled.jsonl") if r["status"] == "gold")
    assert len(gold) == 2
    for snapshot in ann.iterdir():  # the snapshots moved away (or renamed to a name merge once ignored)
        snapshot.rename(tmp_path / snapshot.name)
    proc = merge_cli(tmp_path, ann)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "merge_report.json").read_text())
    assert [(g["article_id"], g["now"]) for g in report["lost_gold"]] == [(g, "silver") for g in gold]
    for article_id in gold:
        assert f"merge: lost gold: article {article_id} was gold in the previous" in proc.stderr
    assert "2 gold article(s) of the previous output lost" in proc.stderr
    assert json.loads((tmp_path / "merge_report.json").read_text())["lost_gold"]
    proc = merge_cli(tmp_path, ann)  # compared with the previous build only: nothing more is lost
    assert json.loads((tmp_path / "merge_report.json").read_text())["lost_gold"] == []


def test_dvc_keeps_the_previous_labeled_output_for_the_comparison() -> None:
    """DVC deletes a stage's outputs before running it unless they persist; merge needs the previous labeled.jsonl."""
    import yaml

    outs = yaml.safe_load((Path(__file__).resolve().parent.parent / "dvc.yaml").read_text())["stages"]["merge"]["outs"]
    assert {"data/labeled.jsonl": {"persist": True}} in outs
