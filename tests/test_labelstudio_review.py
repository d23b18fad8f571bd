"""The stance review queue: golden config and task, which pairs are queued, the precedence of decisions, and the
round trip through a real Label Studio (push --review, answer by API, pull --review, merge).

Regenerate the golden files after an intended change with `UPDATE_GOLDEN=1 pytest tests/test_labelstudio_review.py`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
import yaml

from pipeline import merge as merge_stage
from pipeline.common.errors import BadShareError, ConfigError
from pipeline.common.jsonl import read_jsonl
from pipeline.common.provenance import sha256_text
from pipeline.human.pairs import Decision, apply_decisions, decision_labels, read_decisions
from pipeline.human.snapshots import snapshots
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.commands import pull_main, push_main
from pipeline.labelstudio.params import Config, load_config
from pipeline.labelstudio.review import label_config, pull_review_main, push_review_main, review_tasks
from pipeline.labelstudio.tasks import gold_result

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"
PREANNOTATED = GOLDEN / "preannotated.jsonl"
GUIDELINES = ROOT / "resources" / "guidelines.md"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def _golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == actual, f"{name} changed; UPDATE_GOLDEN=1 if intended"


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config(GOLDEN / "params.yaml")


def _records() -> list[dict]:
    return [r for _, r in read_jsonl(PREANNOTATED)]


def _with(cfg: Config, **review) -> Config:
    ls = cfg.ls.model_copy(update={"review": cfg.ls.review.model_copy(update=review)})
    return Config(ls, cfg.entity_labels, cfg.stance_labels)


# -- config and tasks (no server) ------------------------------------------------------------------


def test_review_config_golden(cfg):
    _golden("review_config.xml", label_config(cfg) + "\n")


def test_review_tasks_golden(cfg):
    _golden("review_tasks.json", json.dumps(review_tasks(_records(), cfg), ensure_ascii=False, indent=2) + "\n")


def test_queue_is_least_certain_first_with_floor_and_cap(cfg):
    scores = [t["predictions"][0]["score"] for t in review_tasks(_records(), cfg)]
    assert scores == [0.55, 0.72]
    floored = review_tasks(_records(), _with(cfg, min_score=0.6))
    assert [t["data"]["proposed"] for t in floored] == ["against"]
    capped = review_tasks(_records(), _with(cfg, max_pairs=1))
    assert [t["predictions"][0]["score"] for t in capped] == [0.55]


def test_a_hotkey_for_an_unknown_answer_is_a_config_error(tmp_path):
    params = yaml.safe_load((GOLDEN / "params.yaml").read_text())
    params["labelstudio"]["review"]["hotkeys"] = {"against": "a", "maybe": "m"}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=r"labelstudio\.review\.hotkeys: maybe not in"):
        load_config(path)


def test_pronoun_pair_shows_the_sentence_before(cfg):
    text = "Russia rejected the offer. It also warned NATO on Monday. Nothing else happened."
    record = {
        "id": "pron", "text": text, "provenance": _records()[0]["provenance"],
        "sentences": [{"start": 0, "end": 26}, {"start": 27, "end": 56}, {"start": 57, "end": len(text)}],
        "entities": [{"start": 0, "end": 6, "label": "GPE", "text": "Russia", "actor": "RUS"},
                     {"start": 42, "end": 46, "label": "ORG", "text": "NATO", "actor": "NATO"}],
        # the pronoun "It" stands for Russia: the holder is in the sentence before the cue
        "stances": [{"holder": 0, "target": 1, "label": "against", "score": 0.4, "cue": {"start": 35, "end": 41,
                                                                                          "text": "warned"}}],
    }
    [task] = review_tasks([record], cfg)
    context = task["data"]["context"]
    assert "rejected the offer. It also warned" in context and "Nothing else" not in context
    assert task["data"]["reason"] == "proposed: AGAINST (model, cue “warned”, score 0.40)"
    assert task["data"]["pair_id"] == "pron:0-6>42-46"


# -- precedence (no server) --------------------------------------------------------------------------


def _decision(label: str, proposed: str, text_hash: str = "h") -> Decision:
    holder = {"start": 0, "end": 6, "label": "GPE", "text": "Russia", "actor": "RUS"}
    target = {"start": 14, "end": 18, "label": "ORG", "text": "NATO", "actor": "NATO"}
    return Decision(holder, target, label, proposed, text_hash, "annotator-1", "2026-01-01T00:00:00Z", "x:1")


ENTS = [{"start": 0, "end": 6, "label": "GPE"}, {"start": 14, "end": 18, "label": "ORG"}]


@pytest.mark.parametrize(("human", "labels", "decided", "expected", "outcome"), [
    (False, [("against", 0, 1)], "none", [], "applied_none"),  # a decision wins over a prediction
    (False, [("against", 0, 1)], "favor", [("favor", 0, 1)], "applied_favor"),
    (False, [], "against", [("against", 0, 1)], "applied_against"),  # a proposal since withdrawn: still decided
    (True, [("against", 0, 1)], "none", [], "applied_none"),  # a human kept the proposal as is: not an edit
    (True, [("favor", 0, 1)], "none", [("favor", 0, 1)], "article_edit_wins"),  # the human changed it
    (True, [], "favor", [], "article_edit_wins"),  # the human removed it
])
def test_precedence(human, labels, decided, expected, outcome):
    final = {"entities": ENTS, "stances": [{"holder": h, "target": t, "label": lab} for lab, h, t in labels]}
    decision = _decision(decided, "against")
    counts: Counter[str] = Counter()
    out = apply_decisions(final, {decision.pair: decision}, "h", human, counts)
    assert [(s["label"], s["holder"], s["target"]) for s in out["stances"]] == expected
    assert counts == {outcome: 1}


def test_stale_decision_and_missing_entity_are_not_applied():
    decision = _decision("none", "against", text_hash="other")
    final = {"entities": ENTS, "stances": [{"holder": 0, "target": 1, "label": "against"}]}
    counts: Counter[str] = Counter()
    assert apply_decisions(final, {decision.pair: decision}, "h", False, counts) == final
    fresh = _decision("favor", "against")
    assert apply_decisions({"entities": ENTS[:1], "stances": []}, {fresh.pair: fresh}, "h", False, counts)["stances"] == []
    assert counts == {"stale": 1, "entity_missing": 1}


def test_decision_labels_keep_none_pairs_as_negatives():
    decision = _decision("none", "against")
    entities, stances, pairs = decision_labels({decision.pair: decision}, "h")
    assert [e["text"] for e in entities] == ["Russia", "NATO"] and stances == [] and pairs == {(0, 1)}


def test_review_folder_is_not_an_article_snapshot(tmp_path):
    (tmp_path / "review").mkdir()
    (tmp_path / "review" / "20260101T000000Z.jsonl").write_text("{}\n")
    assert snapshots(tmp_path) == []


# -- a real server -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def team_params(tmp_path_factory) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["labelstudio"]["project_title"] = "Review round trip articles"
    params["labelstudio"]["review"]["project_title"] = "Review round trip pairs"
    path = tmp_path_factory.mktemp("review") / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _tasks(api: LabelStudioAPI, project_id: int) -> list[dict]:
    return list(api.pages("/api/tasks", what="tasks", page_size=100, params={"project": project_id, "fields": "all"}))


def _project(api: LabelStudioAPI, title: str) -> dict:
    [project] = [p for p in api.projects(title) if p["title"] == title]
    return project


@pytest.mark.integration
@pytest.mark.usefixtures("no_env_server")
def test_review_round_trip_with_precedence(label_studio_server, env_file, team_params, tmp_path):
    api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=30, retries=2)
    assert push_review_main(PREANNOTATED, GUIDELINES, team_params, env_file).created == 2
    again = push_review_main(PREANNOTATED, GUIDELINES, team_params, env_file)
    assert (again.created, again.unchanged) == (0, 2)
    project = _project(api, "Review round trip pairs")
    assert project["label_config"] == label_config(load_config(team_params))
    pairs = sorted(_tasks(api, project["id"]), key=lambda t: t["id"])
    assert [t["data"]["pair_id"] for t in pairs] == ["6603f6d8a3090a3a:40-50>72-76", "32f6ef891b72e343:0-6>14-18"]
    assert pairs[0]["predictions"][0]["result"][0]["value"] == {"choices": ["favor"]}

    # the articles: a human corrects Washington -> Kyiv from favor to against, and leaves Russia's article alone
    push_main(PREANNOTATED, GUIDELINES, team_params, env_file)
    articles = {t["data"]["article_id"]: t for t in _tasks(api, _project(api, "Review round trip articles")["id"])}
    edited = next(r for r in _records() if r["id"] == "6603f6d8a3090a3a")
    edited = {**edited, "stances": [{**edited["stances"][0], "label": "against"}]}
    api.post(f"/api/tasks/{articles[edited['id']]['id']}/annotations", {"result": gold_result(edited)},
             what="annotating the article")
    # the review: both pairs answered `none`
    for task in pairs:
        api.post(f"/api/tasks/{task['id']}/annotations", {"result": [
            {"from_name": "stance", "to_name": "context", "type": "choices", "value": {"choices": ["none"]}}],
            "lead_time": 2.0}, what="answering")

    out = tmp_path / "annotations"
    pull_main(out, team_params, env_file=env_file)
    report = pull_review_main(out, team_params, env_file=env_file)
    assert report.annotations == 2 and report.stale == []
    assert len(list((out / "review").glob("*.jsonl"))) == 1 and len(snapshots(out)) == 1
    decisions = read_decisions(out / "review", ("against", "favor"), 0.0, "merge")
    assert {d.label for ds in decisions.values() for d in ds.values()} == {"none"}

    merge_stage.main(preannotated=PREANNOTATED, annotations=out, output=tmp_path / "labeled.jsonl",
                     report=tmp_path / "merge.json", params=team_params,
                     rules=(ROOT / "resources/entity_patterns.yaml", ROOT / "resources/actors.yaml",
                            ROOT / "resources/stance_cues.yaml"))
    labeled = {r["id"]: r for _, r in read_jsonl(tmp_path / "labeled.jsonl")}
    # the pair decision wins over the prediction: Russia's proposed stance is gone from a silver article
    assert labeled["32f6ef891b72e343"]["status"] == "silver" and labeled["32f6ef891b72e343"]["stances"] == []
    # the article-level edit wins over the pair decision
    gold = labeled["6603f6d8a3090a3a"]
    assert gold["status"] == "gold"
    assert [(s["label"], s["origin"]) for s in gold["stances"]] == [("against", "gold")]
    merged = json.loads((tmp_path / "merge.json").read_text())
    assert merged["review_decisions"] == {"applied_none": 1, "article_edit_wins": 1}
    assert sha256_text(edited["text"]) == next(iter(decisions[edited["id"]].values())).text_hash


def test_bad_review_line_is_reported(tmp_path):
    review = tmp_path / "review"
    review.mkdir()
    (review / "20260101T000000Z.jsonl").write_text(json.dumps({"data": {"article_id": "a"}, "annotations": []}) + "\n")
    with pytest.raises(BadShareError, match="holder, target"):
        read_decisions(review, ("against", "favor"), 0.0, "merge")
