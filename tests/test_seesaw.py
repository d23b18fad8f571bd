"""SEESAW evaluation: name matching and triplet scoring on a synthetic fixture, and one real run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.common.errors import ConfigError
from pipeline.research import seesaw
from pipeline.stance.lexicon import load_lexicon

ROOT = Path(__file__).parents[1]
# Beside the clone, never inside it (CC BY-NC-SA): a user's clone has nothing there, so the real run is then skipped.
SEESAW = Path(os.environ.get("SEESAW_DIR", Path(__file__).parents[2] / "shared" / "eval" / "seesaw"))
needs_seesaw = pytest.mark.skipif(
    not (SEESAW / "articles").is_dir(),
    reason=f"SEESAW data not found at {SEESAW} (set SEESAW_DIR); the same command runs on a fixture in test_command_on_fixture",
)


def write_article(folder: Path, story: str, doc: int, split: str, sentences: list[str], entities, stances) -> None:
    """One article in the SEESAW layout (articles/, annotations/, meta/)."""
    for sub in ("articles", "annotations", "meta"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    name = f"TRIPLET_{story}_DOCUMENT_{doc}.json"
    text = [{"id": i, "text": s} for i, s in enumerate(sentences)]
    (folder / "articles" / name).write_text(json.dumps({"title": "t", "text": text}))
    lists = [[n, [t], ["Main"], ["A"]] for n, t in entities]
    by_sentence: dict[str, list] = {}
    for sid, subj, sentiment, obj in stances:
        by_sentence.setdefault(str(sid), []).append(
            {"id": len(by_sentence.get(str(sid), [])), "subject": subj, "sentiment": sentiment, "object": obj, "annotators": ["A"]}
        )
    (folder / "annotations" / name).write_text(json.dumps({"entity lists": lists, "sentence-level stances": by_sentence}))
    (folder / "meta" / f"TRIPLET_{story}.json").write_text(json.dumps({"Split": split}))


@pytest.fixture()
def fixture_dir(tmp_path: Path) -> Path:
    """Two synthetic articles: one train, one valid."""
    write_article(
        tmp_path, "000", 0, "train",
        ["Mr. Obama blasted Republicans.", "The GOP praised Ms. Lynch.", "Obamacare is a topic."],
        [("Barack Obama", "People"), ("Republican Party", "People"), ("Loretta Lynch", "People"),
         ("Obamacare", "Topic")],
        [(0, "Barack Obama", "NEG", "Republican Party"), (1, "Republican Party", "POS", "Loretta Lynch"),
         (2, "Barack Obama", "POS", "Obamacare"), (2, "Not in the list", "NEG", "Barack Obama")],
    )
    write_article(
        tmp_path, "001", 0, "valid",
        ["Moscow warned Kiev."],
        [("Russia", "GPE"), ("Ukraine", "GPE")],
        [(0, "Russia", "NEG", "Ukraine")],
    )
    return tmp_path


def test_match_name_is_lenient_and_documented():
    names = ["Barack Obama", "Republican Party", "Mitch McConnell", "United States", "Obama administration"]
    assert seesaw.match_name("Mr. Obama", names) == "Barack Obama"  # title dropped, last name contained
    assert seesaw.match_name("obama", names) == "Barack Obama"  # shortest containing name wins
    assert seesaw.match_name("Republicans", names) == "Republican Party"  # inflection
    assert seesaw.match_name("GOP", names) == "Republican Party"  # alias
    assert seesaw.match_name("the U.S.", names) == "United States"  # alias after dots and determiner
    assert seesaw.match_name("Senate Majority Leader Mitch McConnell", names) == "Mitch McConnell"
    assert seesaw.match_name("Lynch", names) is None


def test_gold_keeps_only_people_organisation_gpe(fixture_dir):
    (train,) = seesaw.load_articles(fixture_dir, split="train")
    assert train.names == ("Barack Obama", "Republican Party", "Loretta Lynch")
    assert train.gold == {("0", "Barack Obama", "against", "Republican Party"),
                          ("1", "Republican Party", "favor", "Loretta Lynch")}
    record, spans = seesaw.to_record(train)
    assert record["text"] == "Mr. Obama blasted Republicans. The GOP praised Ms. Lynch. Obamacare is a topic."
    assert spans[1] == (31, 57, "1")


def test_scoring_by_hand(fixture_dir):
    train, valid = seesaw.load_articles(fixture_dir)
    t_record, t_spans = seesaw.to_record(train)
    entities = [{"text": "Mr. Obama"}, {"text": "Republicans"}, {"text": "GOP"}, {"text": "Ms. Lynch"}, {"text": "Obamacare"}]

    def stance(h, t, label, cue, rule="svo", score=0.5):
        return {"holder": h, "target": t, "label": label, "score": score, "rule": rule, "cue": {"start": cue}}

    t_out = {**t_record, "entities": entities, "stances": [
        stance(0, 1, "against", 10),                 # correct (sentence 0)
        stance(2, 3, "against", 40, rule="speech"),  # wrong label (sentence 1): a false positive
        stance(3, 2, "favor", 40),                   # wrong direction: false positive
        stance(0, 4, "favor", 60),                   # Obamacare is a Topic: unmatched, not scored
        stance(0, 1, "against", 12, score=0.9),      # duplicate triplet of the first: counted once
    ]}
    v_record, v_spans = seesaw.to_record(valid)
    v_out = {**v_record, "entities": [{"text": "Moscow"}, {"text": "Kiev"}],
             "stances": [stance(0, 1, "against", 7)]}  # alias Moscow -> Russia; Kiev matches nothing
    tallies = seesaw.score([(train, t_out, t_spans), (valid, v_out, v_spans)])
    t, v = tallies["train"], tallies["valid"]
    assert (t.gold, t.predicted, t.correct, t.unmatched) == (2, 3, 1, 1)
    assert t.scores() == pytest.approx((1 / 3, 1 / 2, 0.4))
    assert dict(t.by_rule) == {("svo", "tp"): 1, ("speech", "fp"): 1, ("svo", "fp"): 1}
    assert (v.gold, v.predicted, v.correct, v.unmatched) == (1, 0, 0, 1)
    assert v.scores() == (0.0, 0.0, 0.0)
    errors = list(seesaw.errors(train, t_out, t_spans))
    assert [(e["kind"], e["sentence"], e["rule"], e["triplet"]) for e in errors] == [
        ("fp", "1", "svo", ["Loretta Lynch", "favor", "Republican Party"]),
        ("fp", "1", "speech", ["Republican Party", "against", "Loretta Lynch"]),
        ("fn", "1", None, ["Republican Party", "favor", "Loretta Lynch"]),
    ]
    table = seesaw.report(tallies, by_rule=True)
    assert re.search(r"^train\s+1\s+2\s+3\s+1\s+1\s+0\.333\s+0\.500\s+0\.400$", table, re.MULTILINE)


def test_pos_neg_take_the_lexicons_labels(fixture_dir, tmp_path):
    assert seesaw.seesaw_labels(load_lexicon(ROOT / "resources" / "stance_cues.yaml")) == seesaw.LABELS
    (train,) = seesaw.load_articles(fixture_dir, split="train", labels={"POS": "pro", "NEG": "con"})
    assert {label for _, _, label, _ in train.gold} == {"pro", "con"}
    lexicon = tmp_path / "cues.yaml"
    lexicon.write_text("labels: [against]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cues.yaml: SEESAW's POS/NEG need both .* got against$"):
        seesaw.seesaw_labels(load_lexicon(lexicon))


def test_not_a_seesaw_folder(tmp_path):
    with pytest.raises(ConfigError, match="not a SEESAW folder"):
        list(seesaw.load_articles(tmp_path))


def run_command(folder: Path, tmp_path: Path, *args: str) -> tuple[list[str], Path]:
    """`python -m pipeline evaluate-seesaw` on a folder: its stdout lines and the errors file it wrote."""
    errors = tmp_path / "errors.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "evaluate-seesaw", str(folder), *args, "--by-rule", "--errors", str(errors)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines(), errors


def check_table(lines: list[str], split: str, articles: int) -> tuple[int, int, int]:
    """The score table's header and the split's row are well formed and consistent; gold, pred, correct."""
    assert lines[0].split()[:6] == ["split", "articles", "gold", "pred", "correct", "unmatched"]
    row = re.match(rf"^{split}\s+{articles}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d\.\d{{3}})\s+(\d\.\d{{3}})\s+(\d\.\d{{3}})$",
                   lines[1])
    assert row, lines[1]
    gold, pred, correct = int(row[1]), int(row[2]), int(row[3])
    assert correct <= min(gold, pred)
    assert float(row[6]) == pytest.approx(correct / gold if gold else 0.0, abs=1e-3)
    return gold, pred, correct


def test_command_on_fixture(fixture_dir, tmp_path):
    """The command's table, split filter and error file on the synthetic SEESAW folder (runs everywhere)."""
    lines, errors = run_command(fixture_dir, tmp_path / "out", "--split", "train")
    gold, pred, correct = check_table(lines, "train", 1)
    assert gold == 2  # stances on a Topic or on a name outside the entity list are not gold
    assert not any(line.startswith("valid") for line in lines)
    kinds = [json.loads(line)["kind"] for line in errors.read_text().splitlines()]
    assert set(kinds) <= {"fp", "fn"} and kinds.count("fn") == gold - correct and kinds.count("fp") == pred - correct


@needs_seesaw
def test_command_on_real_seesaw(tmp_path):
    lines, errors = run_command(SEESAW, tmp_path, "--split", "train", "--limit", "3")
    gold, _, _ = check_table(lines, "train", 3)
    assert gold > 0
    assert not any(line.startswith("valid") for line in lines)
    assert all(json.loads(line)["kind"] in ("fp", "fn") for line in errors.read_text().splitlines())


def test_a_triplet_held_through_a_pronoun_is_a_candidate(tmp_path):
    """The recall bound `train-seesaw` prints counts pairs reached through a pronoun ("He condemned Ukraine")."""
    from pipeline.research import seesaw_model

    write_article(tmp_path, "000", 0, "train", ["Vladimir Putin spoke on Monday.", "He condemned Ukraine."],
                  [("Vladimir Putin", "People"), ("Ukraine", "GPE")], [(1, "Vladimir Putin", "NEG", "Ukraine")])
    res = ROOT / "resources"
    parsed, _, _ = seesaw_model._load(tmp_path, ROOT / "params.yaml", res / "entity_patterns.yaml", res / "actors.yaml",
                                      res / "stance_cues.yaml", "train", None)
    assert seesaw_model.coverage(parsed) == (1, 1)
    (p,) = parsed
    assert [lab for lab, c in zip(p.labels, p.cands, strict=True) if "h_pron" in c.features] == ["against"]
