"""Tests of the gold loader: anchors resolve to offsets, mistakes fail loudly, the seed gold is complete and valid."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.common.contract import LabelSets, label_sets
from pipeline.common.errors import ConfigError
from pipeline.gold import compare as gold_eval
from pipeline.gold.files import GoldError, load_gold
from pipeline.labelstudio.tasks import gold_result

ROOT = Path(__file__).resolve().parents[1]

TEXT = (
    'Blinken warned Moscow on Friday. "Russia will pay," said Blinken.\n\n'
    "Russia and the United States met in Geneva; Russia    said nothing."
)
ARTICLE = {"id": "a1", "text": TEXT, "source_file": "a.txt"}


def write(tmp_path: Path, doc: dict | str, name: str = "a.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


GOOD = {
    "source_file": "a.txt",
    "sentences": [
        {"sentence": "Blinken warned Moscow on Friday.",
         "entities": [["Blinken", "PERSON", "USA"], ["Moscow", "GPE", "RUS"]],
         "stances": [["Blinken", "against", "Moscow"]]},
        # curly quotes in the gold, straight ones in the text: matched all the same
        {"sentence": "“Russia will pay,” said Blinken.",
         "entities": [["Russia", "GPE", "RUS"], ["Blinken", "PERSON", "USA"]],
         "stances": [["Blinken", "against", "Russia"]]},
        # a whitespace run in the text, single spaces in the gold; "#2" picks the second Russia
        {"sentence": "Russia and the United States met in Geneva; Russia said nothing.",
         "entities": [["Russia#1", "GPE", "RUS"], ["United States", "GPE", "USA"], ["Geneva", "GPE"],
                      ["Russia#2", "GPE", "RUS"]]},
    ],
}


def test_resolves_anchors_to_sorted_offsets(tmp_path: Path) -> None:
    (rec,) = load_gold(write(tmp_path, GOOD), [ARTICLE])
    assert rec["id"] == "a1" and rec["text"] == TEXT
    ents = rec["entities"]
    assert [e["start"] for e in ents] == sorted(e["start"] for e in ents)
    assert all(TEXT[e["start"]:e["end"]] == e["text"] for e in ents)
    assert [e["text"] for e in ents] == ["Blinken", "Moscow", "Russia", "Blinken", "Russia", "United States", "Geneva",
                                         "Russia"]
    assert ents[7]["start"] == TEXT.rindex("Russia") and ents[6]["actor"] is None
    by = {(ents[s["holder"]]["start"], ents[s["target"]]["start"]): s["label"] for s in rec["stances"]}
    assert by == {(0, TEXT.index("Moscow")): "against", (TEXT.rindex("Blinken"), TEXT.index("Russia")): "against"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["sentences"][0].update(sentence="Blinken warned Kyiv"), "not found in article a.txt"),
        (lambda d: d["sentences"][0].update(sentence="Blinken"), "found 2 times"),
        (lambda d: d["sentences"][2]["entities"].append(["Russia", "GPE"]), "occurs 2 times; write 'Russia#n'"),
        (lambda d: d["sentences"][2]["entities"].append(["Russia#3", "GPE"]), "only 2 occurrence(s)"),
        (lambda d: d["sentences"][0]["entities"].append(["Blink", "PERSON"]), "entity 'Blink' not found"),
        (lambda d: d["sentences"][0]["entities"].append(["Friday", "DATE"]), "label 'DATE' not in"),
        (lambda d: d["sentences"][0]["entities"].append(["Friday", "GPE", "usa"]), "not an upper-case id"),
        (lambda d: d["sentences"][0]["stances"].append(["Blinken", "against", "Russia"]), "target 'Russia' is not an entity"),
        (lambda d: d["sentences"][0]["stances"].append(["Blinken", "hates", "Moscow"]), "stance label 'hates'"),
        (lambda d: d["sentences"][0]["stances"].append(["Blinken", "favor", "Moscow"]), "given twice"),
        (lambda d: d["sentences"][2]["entities"].append(["United", "GPE"]), "overlaps"),
        (lambda d: d["sentences"][1].update(entities=d["sentences"][1]["entities"][1:], stances=[]),
         "'Russia' at text line 1"),
        (lambda d: d.update(source_file="b.txt"), "source_file 'b.txt' is not among the articles"),
        (lambda d: d["sentences"][0].update(note="x"), "unknown key(s) note"),
        # a YAML list where a text belongs: `[[Blinken], PERSON]` (unhashable, once a TypeError)
        (lambda d: d["sentences"][0]["entities"].append([["Friday"], "GPE"]),
         "entity text must be a non-empty string, got ['Friday']"),
        (lambda d: d["sentences"][0]["entities"].append(["Friday", ["GPE"]]), "label ['GPE'] not in"),
        (lambda d: d["sentences"][0]["stances"].append([["Blinken"], "favor", "Moscow"]),
         "stance holder must be an entity text (a string), got ['Blinken']"),
        (lambda d: d["sentences"][0]["stances"].append(["Blinken", "favor", {"Moscow": 1}]),
         "stance target must be an entity text (a string)"),
        (lambda d: d["sentences"][0]["stances"].append(["Blinken", ["favor"], "Moscow"]), "stance label ['favor'] not in"),
        (lambda d: d["sentences"][0].update(skip="Friday"), "'skip' must be a list, got 'Friday'"),
    ],
)
def test_mistakes_fail_with_file_and_line(tmp_path: Path, change, message: str) -> None:
    doc = json.loads(json.dumps(GOOD))
    change(doc)
    path = write(tmp_path, doc)
    with pytest.raises(GoldError) as info:
        list(load_gold(path, [ARTICLE]))
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def test_error_names_the_yaml_line_of_the_entry(tmp_path: Path) -> None:
    path = write(tmp_path, (
        "source_file: a.txt\n"
        "sentences:\n"
        '  - sentence: "Blinken warned Moscow on Friday."\n'
        "    entities:\n"
        "      - [Blinken, PERSON, USA]\n"
        "      - [Moscowx, GPE, RUS]\n"
    ))
    with pytest.raises(GoldError, match=rf"^{path}:6: sentence 'Blinken warned Moscow on Friday\.': entity 'Moscowx'"):
        list(load_gold(path, [ARTICLE]))


SENTENCE = '  - sentence: "Blinken warned Moscow on Friday."\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("source_file: a.txt\nsentences: []\nno: 1\nzeta: 2\n", ": key False (bool) is not a string: quote it"),
        ("source_file: a.txt\nsentences:\n" + SENTENCE + "    on: [x]\n    zeta: 2\n",
         ":3: key True (bool) is not a string: quote it"),
        ("source_file: a.txt\nsentences:\n" + SENTENCE + "    2: [x]\n", ":3: key 2 (int) is not a string"),
    ],
)
def test_non_string_yaml_keys_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(GoldError) as info:
        list(load_gold(path, [ARTICLE]))
    assert str(info.value).startswith(f"{path}{message}") and "\n" not in str(info.value)


def test_unreadable_gold_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_bytes(b"source_file: a.txt\nsentences: []\n# caf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(GoldError, match=rf"^{path}: not valid UTF-8 \(invalid continuation byte at byte 38\)$"):
        list(load_gold(path, [ARTICLE]))
    (tmp_path / "b.yaml").mkdir()
    path.write_text("source_file: a.txt\nsentences: []\n", encoding="utf-8")
    with pytest.raises(GoldError, match=rf"^{tmp_path / 'b.yaml'}: cannot read \(Is a directory\)$"):
        list(load_gold(tmp_path, [ARTICLE]))


@pytest.mark.parametrize("field", ["text", "id"])
def test_article_without_text_or_id_names_the_gold_file(tmp_path: Path, field: str) -> None:
    path = write(tmp_path, GOOD)
    article = {k: v for k, v in ARTICLE.items() if k != field}
    with pytest.raises(GoldError, match=rf"^{path}: article 'a.txt' has no '{field}' \(got None\)$"):
        list(load_gold(path, [article]))


def test_labels_come_from_params(tmp_path: Path) -> None:
    assert label_sets(ROOT / "params.yaml") == LabelSets(entity_labels=("PERSON", "NORP", "ORG", "GPE", "LOC"),
                                                              stance_labels=("against", "favor"))
    doc = json.loads(json.dumps(GOOD))
    doc["sentences"][0]["entities"].append(["Friday", "DATE"])
    doc["sentences"][0]["stances"] = [["Blinken", "con", "Moscow"]]
    doc["sentences"][1]["stances"] = [["Blinken", "pro", "Russia"]]
    path = write(tmp_path, doc)
    params = tmp_path / "params.yaml"
    params.write_text("preannotate: {entity_labels: [PERSON, GPE, DATE], stance_labels: [con, pro]}\n", encoding="utf-8")
    (rec,) = load_gold(path, [ARTICLE], label_sets(params))
    assert {e["label"] for e in rec["entities"]} == {"PERSON", "GPE", "DATE"}
    assert {s["label"] for s in rec["stances"]} == {"con", "pro"}
    with pytest.raises(GoldError, match=r"label 'DATE' not in PERSON, NORP, ORG, GPE, LOC \(preannotate.entity_labels\)"):
        list(load_gold(path, [ARTICLE], label_sets(ROOT / "params.yaml")))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ingest: {}\n", ": missing section 'preannotate'"),
        ("preannotate: {entity_labels: [PERSON]}\n", ":preannotate: missing key 'stance_labels'"),
        ("preannotate: {entity_labels: [PERSON, PERSON], stance_labels: [con]}\n", ":preannotate.entity_labels: expected names without duplicates, got PERSON twice"),
        ("preannotate: {entity_labels: [], stance_labels: [con]}\n", ":preannotate.entity_labels: expected at least 1 item(s), got list []"),
        ("preannotate: {entity_labels: [PERSON], stance_labels: [yes]}\n", ":preannotate.stance_labels[0]: expected str"),
    ],
)
def test_bad_label_params_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        label_sets(params)
    assert str(info.value).startswith(f"{params}{message}")


def test_skip_excuses_a_deliberately_untagged_mention(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(GOOD))
    doc["sentences"][1]["entities"].pop(0)
    doc["sentences"][1]["stances"] = []
    doc["sentences"][1]["skip"] = ["Russia"]
    (rec,) = load_gold(write(tmp_path, doc), [ARTICLE])
    assert [e["text"] for e in rec["entities"]].count("Russia") == 2


def test_labelstudio_result_regions_and_relations(tmp_path: Path) -> None:
    (rec,) = load_gold(write(tmp_path, GOOD), [ARTICLE])
    result = gold_result(rec)
    regions = [r for r in result if r["type"] == "labels"]
    relations = [r for r in result if r["type"] == "relation"]
    assert len(regions) == len(rec["entities"]) and len(relations) == len(rec["stances"])
    assert len({r["id"] for r in regions}) == len(regions)
    first = regions[0]
    assert first["from_name"] == "label" and first["to_name"] == "text"
    assert first["value"] == {"start": 0, "end": 7, "text": "Blinken", "labels": ["PERSON"]}
    ids = {r["id"]: r["value"]["text"] for r in regions}
    assert {(ids[r["from_id"]], ids[r["to_id"]], r["labels"][0], r["direction"]) for r in relations} == {
        ("Blinken", "Moscow", "against", "right"), ("Blinken", "Russia", "against", "right")}
    assert gold_result(rec) == result  # stable ids


# ---------------------------------------------------------------- the seed gold


@pytest.fixture(scope="module")
def seed_articles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed corpus cleaned by the real ingest stage."""
    from pipeline import ingest

    out = tmp_path_factory.mktemp("ingest")
    ingest.main(corpus=ROOT / "corpus", output=out / "articles.jsonl", report=out / "report.json",
                patterns=ROOT / "resources/boilerplate.yaml", params=ROOT / "params.yaml")
    return out / "articles.jsonl"


@pytest.fixture(scope="module")
def seed_gold(seed_articles: Path) -> list[dict]:
    articles = [json.loads(line) for line in seed_articles.read_text(encoding="utf-8").splitlines()]
    return list(load_gold(ROOT / "gold", articles))


def test_seed_gold_covers_every_seed_article(seed_gold: list[dict]) -> None:
    assert len(seed_gold) == len(list((ROOT / "corpus").glob("*.txt"))) == 5
    assert all(len(r["entities"]) >= 50 and r["stances"] for r in seed_gold)


def test_seed_gold_is_valid(seed_gold: list[dict]) -> None:
    actors = {a["id"] for a in yaml.safe_load((ROOT / "resources/actors.yaml").read_text())["actors"]}
    for rec in seed_gold:
        ents, text = rec["entities"], rec["text"]
        assert all(text[e["start"]:e["end"]] == e["text"] == e["text"].strip() for e in ents)
        assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(ents))
        assert {e["actor"] for e in ents} - {None} <= actors
        for s in rec["stances"]:
            h, t = ents[s["holder"]], ents[s["target"]]
            assert s["holder"] != s["target"] and s["label"] in ("against", "favor")
            lo, hi = min(h["start"], t["start"]), max(h["end"], t["end"])
            assert "\n" not in text[lo:hi]  # both ends in one paragraph, so one sentence at most


def test_seed_gold_spot_checks(seed_gold: list[dict]) -> None:
    """A few decisions of gold/README.md, read back from the resolved records."""
    triples = {(r["entities"][s["holder"]]["text"], s["label"], r["entities"][s["target"]]["text"])
               for r in seed_gold for s in r["stances"]}
    assert {("Blinken", "against", "Moscow"), ("Western", "against", "Russia"), ("Vladimir Putin", "favor", "Belarus"),
            ("Europe", "favor", "Americans"), ("Russia", "against", "Ukraine")} <= triples
    labels = {(e["text"], e["label"]) for r in seed_gold for e in r["entities"]}
    assert {("Crimea", "GPE"), ("Stoltenberg", "PERSON"), ("Sky News Arabia", "ORG"), ("West", "LOC"),
            ("Western", "NORP")} <= labels
    assert not {t for t, _ in labels} & {"Secretary of State", "State", "the United States"}


def test_gold_and_evaluate_gold_commands(seed_articles: Path, tmp_path: Path) -> None:
    out = tmp_path / "gold.jsonl"
    run = subprocess.run([sys.executable, "-m", "pipeline", "gold", "--gold", "gold", "--articles", str(seed_articles),
                          "--output", str(out)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 5 and "5 articles" in run.stdout
    # the gold scored as its own prediction is perfect; a broken anchor is one clear line
    preds = tmp_path / "pred.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = gold_eval.evaluate(ROOT / "gold", seed_articles, preds)
    assert result["entities"]["f1"] == 1.0 and result["stances"]["f1"] == 1.0
    assert "entities, exact span+label" in gold_eval.report(result)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.yaml").write_text('source_file: 000_26aa7dedf783269b.txt\nsentences:\n  - sentence: "No such words"\n')
    run = subprocess.run([sys.executable, "-m", "pipeline", "gold", "--gold", str(bad), "--articles",
                          str(seed_articles), "--output", str(out)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert run.returncode == 3 and run.stderr.startswith("error: ") and run.stderr.count("\n") == 1
    assert "x.yaml:3" in run.stderr and "Traceback" not in run.stderr
