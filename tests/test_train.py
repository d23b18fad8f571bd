"""The learned stance model: it learns what it is shown, train split only, disk round trip, model versions."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from pipeline import preannotate as pa
from pipeline import train as tr
from pipeline.common.config import section
from pipeline.common.errors import BadRecords, ConfigError
from pipeline.common.provenance import sha256_text
from pipeline.entities.loader import BASE_MODEL
from pipeline.human.splits import MergeConfig, Splits, assign_split
from pipeline.labelstudio.tasks import model_version
from pipeline.stance.features import Candidate, model_candidates
from pipeline.stance.model import fit, load_model, save_model

ROOT = Path(__file__).resolve().parents[1]
RULES = (ROOT / "resources" / "entity_patterns.yaml", ROOT / "resources" / "actors.yaml",
         ROOT / "resources" / "stance_cues.yaml")
TRAIN = tr.Params(use_base=False, c=1.0, min_feature_count=1, max_iter=2000, max_bad_share=0.0)
# Verbs the cue lexicon does not know, so that only training can tie them to a label.
SHOWN = {"visited": "favor", "inspected": "against", "phoned": "none"}
HOLDERS = ("Antony Blinken", "Sergei Lavrov", "Jens Stoltenberg", "Wendy Sherman", "Dmytro Kuleba", "Liz Truss")
TARGETS = ("Ukraine", "Germany", "Belarus", "Poland", "France", "Georgia")


@pytest.fixture(scope="module")
def pre() -> pa.Preannotator:
    """The real model with the project's rules and no stance model (its features are the rules' and the parse's)."""
    cfg = section(pa.Params, "preannotate", ROOT / "params.yaml")
    return pa.load(cfg.model_copy(update={"stance_model": False}), *RULES)


def gold_of(sentences: list[tuple[str, str, str, str]], article_id: str) -> tr.Gold:
    """A gold article from (holder, verb, target, label) sentences: entities at their offsets, the stances given."""
    text, entities, stances = "", [], []
    for holder, verb, target, label in sentences:
        start = len(text)
        sentence = f"{holder} {verb} {target} on Monday. "
        entities.append({"start": start, "end": start + len(holder), "label": "PERSON", "text": holder, "actor": None})
        t = start + len(holder) + len(verb) + 2
        entities.append({"start": t, "end": t + len(target), "label": "GPE", "text": target, "actor": None})
        if label != "none":
            stances.append({"holder": len(entities) - 2, "target": len(entities) - 1, "label": label})
        text += sentence
    return tr.Gold(article_id, text.strip(), entities, stances)


def shown_golds(rng: random.Random, n: int, shuffle: bool = False) -> list[tr.Gold]:
    """`n` articles of six sentences whose verb says the stance (labels shuffled across sentences if asked)."""
    rows = [(rng.choice(HOLDERS), verb, rng.choice(TARGETS), label)
            for _ in range(n * 6) for verb, label in [rng.choice(sorted(SHOWN.items()))]]
    if shuffle:
        labels = [r[3] for r in rows]
        rng.shuffle(labels)
        rows = [(h, v, t, lab) for (h, v, t, _), lab in zip(rows, labels, strict=True)]
    return [gold_of(rows[k : k + 6], f"a{k}") for k in range(0, len(rows), 6)]


def test_training_learns_the_pattern_it_is_shown_and_not_shuffled_labels(tmp_path: Path, pre: pa.Preannotator) -> None:
    test = shown_golds(random.Random(99), 6)
    expected = Counter()
    for gold in test:
        for s in gold.stances:
            expected[(gold.id, s["holder"], s["target"], s["label"])] += 1

    def correct(model_path: Path) -> tuple[int, int]:
        cfg = pre.params.model_copy(update={"stance_model": True, "stance_threshold": 0.5})
        with_model = pa.load(cfg, *RULES, stance_model=model_path)
        annotator = with_model.nlp.get_pipe("geonews_preannotate")
        hits = proposed = 0
        for gold, doc in zip(test, with_model.nlp.pipe(g.text for g in test), strict=True):
            found = annotator.annotate(doc)
            spans = [(e["start"], e["end"]) for e in gold.entities]
            for st in found["stances"]:
                ends = ((found["entities"][st["holder"]]["start"], found["entities"][st["holder"]]["end"]),
                        (found["entities"][st["target"]]["start"], found["entities"][st["target"]]["end"]))
                proposed += 1
                if ends[0] in spans and ends[1] in spans:
                    hits += expected[(gold.id, spans.index(ends[0]), spans.index(ends[1]), st["label"])] > 0
        return hits, proposed

    results = {}
    for shuffle in (False, True):
        model = tr.train(shown_golds(random.Random(1), 20, shuffle), pre, TRAIN, None, Counter())
        path = tmp_path / f"model-shuffled-{shuffle}.json"
        save_model(model, path)
        results[shuffle] = correct(path)
    gold_total = sum(expected.values())
    hits, proposed = results[False]
    assert hits >= 0.9 * gold_total and proposed <= gold_total + 2, results  # learned: visited=favor, inspected=against
    assert results[True][0] <= 0.6 * gold_total, results  # shuffled labels: no pattern to learn


def candidate(rng: random.Random, label: str) -> Candidate:
    signal = {"against": "cue=against", "favor": "cue=favor", "none": "top=meet"}[label]
    noise = [f"noise={rng.randrange(30)}" for _ in range(4)]
    return Candidate(0, 1, ("bias", signal, *noise), (), 0)


def small_model(seed: int, n: int = 300):
    rng = random.Random(seed)
    examples = [(candidate(rng, lab), lab) for lab in rng.choices(["none", "against", "favor"], k=n)]
    return fit(examples, ("against", "favor"), c=1.0, min_count=1, max_iter=1000, sources=("test",), gold_articles=0,
               licence="test")


def test_model_round_trips_to_disk_with_identical_predictions(tmp_path: Path) -> None:
    model = small_model(3)
    path = tmp_path / "m.json"
    save_model(model, path)
    again = load_model(path)
    rng = random.Random(5)
    probe = [candidate(rng, lab) for lab in ("none", "against", "favor") * 10]
    assert (again.proba(probe) == model.proba(probe)).all()
    assert again.dumps() == path.read_text(encoding="utf-8") and again.version == model.version
    save_model(again, tmp_path / "m2.json")
    assert (tmp_path / "m2.json").read_bytes() == path.read_bytes()
    assert small_model(3).dumps() == model.dumps()  # retraining on the same data: byte-identical file


def test_stacked_model_round_trips_and_keeps_the_base_licence(tmp_path: Path) -> None:
    base = small_model(3)
    rng = random.Random(8)
    examples = [(candidate(rng, lab), lab) for lab in rng.choices(["none", "against", "favor"], k=60)]
    stacked = fit(examples, ("against", "favor"), c=1.0, min_count=1, max_iter=1000, sources=("gold:train",),
                  gold_articles=1, licence="x", base=base)
    save_model(stacked, tmp_path / "s.json")
    again = load_model(tmp_path / "s.json")
    probe = [candidate(rng, lab) for lab in ("none", "against", "favor") * 5]
    assert (again.proba(probe) == stacked.proba(probe)).all() and again.base is not None
    assert again.base.version == base.version


def test_a_retrain_changes_the_label_studio_model_version(tmp_path: Path, pre: pa.Preannotator) -> None:
    versions = []
    for seed in (3, 4, 3):
        path = tmp_path / f"model-{seed}.json"
        save_model(small_model(seed), path)
        loaded = pa.load(pre.params.model_copy(update={"stance_model": True}), *RULES, stance_model=path)
        assert loaded.provenance["stance_model"] == load_model(path).version
        versions.append(model_version(loaded.provenance))
    assert versions[0] != versions[1] and versions[0] == versions[2]
    assert "+stance." in versions[0] and "+stance." not in model_version(pre.provenance)


def test_no_gold_article_outside_the_train_split_reaches_training() -> None:
    cfg = MergeConfig(seed=2, splits=Splits(train=0.5, validation=0.25, test=0.25), max_bad_share=0.0,
                      entity_labels=("PERSON", "GPE"), stance_labels=("against", "favor"))
    articles, tasks = [], {}
    for k in range(40):
        gold = gold_of([("Liz Truss", "visited", "Ukraine", "favor")], f"art{k}")
        art = {"id": gold.id, "text": gold.text, "story_id": f"story{k // 2}"}  # two reprints per story
        articles.append(art)
        result = [{"id": f"r{i}", "type": "labels", "value": {"start": e["start"], "end": e["end"],
                                                                 "labels": [e["label"]], "text": e["text"]}}
                  for i, e in enumerate(gold.entities)]
        result.append({"type": "relation", "from_id": "r0", "to_id": "r1", "labels": ["favor"], "direction": "right"})
        tasks[gold.id] = [(f"snap.jsonl:{k + 1}", {"data": {"article_id": gold.id, "text": gold.text,
                                                             "text_hash": sha256_text(gold.text)},
                                                    "annotations": [{"id": k, "completed_by": 1, "result": result}]})]
    counts: Counter[str] = Counter()
    used = list(tr.gold_articles(articles, tasks, cfg, lambda text, label: None, BadRecords("t", 0.0), counts))
    splits = {a["id"]: assign_split(a["story_id"], cfg) for a in articles}
    assert {g.id for g in used} == {i for i, s in splits.items() if s == "train"}
    assert counts["held_out_validation"] + counts["held_out_test"] == sum(s != "train" for s in splits.values()) > 0
    assert all(g.stances == [{"holder": 0, "target": 1, "label": "favor"}] for g in used)


def test_train_stage_on_the_seed_snapshot_reads_train_split_gold_only(tmp_path: Path) -> None:
    """The real snapshot in annotations/ and the seeds cleaned by ingest: only train-split articles are used."""
    def cli(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=ROOT, capture_output=True,
                              text=True, timeout=900, check=False)

    articles = tmp_path / "articles.jsonl"
    run = cli("ingest", "--corpus", "corpus", "--output", articles, "--report", tmp_path / "i.json",
              "--patterns", "resources/boilerplate.yaml")
    assert run.returncode == 0, run.stderr
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text(encoding="utf-8").replace("use_base: true", "use_base: false"),
                      encoding="utf-8")
    out, report = tmp_path / "model.json", tmp_path / "report.json"
    run = cli("train", "--articles", articles, "--annotations", "annotations", "--output", out, "--report", report,
              "--params", params)
    assert run.returncode == 0, run.stderr
    rep = json.loads(report.read_text(encoding="utf-8"))
    merge_cfg = tr.configs(params)[2]
    records = [json.loads(line) for line in articles.read_text(encoding="utf-8").splitlines()]
    split = {r["id"]: assign_split(r.get("story_id") or r["id"], merge_cfg) for r in records}
    assert rep["train_articles"] and all(split[a] == "train" for a in rep["train_articles"])
    assert rep["counts"]["held_out_validation"] + rep["counts"]["held_out_test"] == sum(
        s != "train" for s in split.values())
    model = load_model(out)
    assert model.training.sources == ("gold:train",) and model.training.gold_articles == len(rep["train_articles"])
    again = tmp_path / "again.json"
    assert cli("train", "--articles", articles, "--annotations", "annotations", "--output", again, "--report",
               tmp_path / "r2.json", "--params", params).returncode == 0
    assert again.read_bytes() == out.read_bytes()  # byte-identical on rebuild


def test_a_missing_or_broken_model_is_a_one_line_error(tmp_path: Path, pre: pa.Preannotator) -> None:
    cfg = pre.params.model_copy(update={"stance_model": True})
    assert pa.load(cfg, *RULES).provenance["stance_model"] == load_model(BASE_MODEL).version  # the default
    with pytest.raises(ConfigError, match="stance model not found"):
        pa.load(cfg, *RULES, stance_model=tmp_path / "none.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "geonews-stance-model/1", "labels": ["none"]', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.json:1: invalid JSON"):
        pa.load(cfg, *RULES, stance_model=broken)


def test_training_pairs_are_the_served_pairs_pronouns_included(pre: pa.Preannotator) -> None:
    text = "Antony Blinken arrived in Kyiv on Monday. He visited Ukraine on Tuesday."
    t = text.index("Ukraine")
    gold = tr.Gold("p1", text, [
        {"start": 0, "end": 14, "label": "PERSON", "text": "Antony Blinken", "actor": None},
        {"start": t, "end": t + 7, "label": "GPE", "text": "Ukraine", "actor": None},
    ], [{"holder": 0, "target": 1, "label": "favor"}])
    annotator = pre.nlp.get_pipe("geonews_preannotate")
    counts: Counter[str] = Counter()
    with pre.nlp.select_pipes(disable=["geonews_preannotate"]):
        doc = pre.nlp(text)
    examples = tr.gold_examples(doc, gold, annotator, pre.params.stance_ends, counts)
    # The stance is said through "He": only a pronoun pair reaches it, as in the pre-annotator.
    assert sorted((c.holder, c.target, lab) for c, lab in examples) == [(0, 1, "favor"), (1, 0, "none")]
    held = next(c for c, lab in examples if lab == "favor")
    assert "h_pron" in held.features, held.features
    assert counts["gold_stances_in_pairs"] == 1
    served = model_candidates(doc, list(doc.ents), pre.params.stance_ends, annotator.rules.lexicon,
                              annotator.rule_stances(doc, text, list(doc.ents)))
    assert [c.features for c, _ in examples] == [c.features for c in served]
