"""The reach diagnosis of `train-seesaw --diagnose`: each unreachable gold triplet gets the cause it was built to have."""

from __future__ import annotations

from pathlib import Path

from pipeline.research import seesaw_diagnose as sd
from pipeline.research import seesaw_model
from pipeline.stance.lexicon import load_lexicon
from tests.test_seesaw import write_article

ROOT = Path(__file__).parents[1]
RES = ROOT / "resources"


def diagnose(folder: Path) -> tuple[dict, dict]:
    """The causes and per-end statuses of the train articles of a SEESAW-layout folder."""
    parsed, _, pre = seesaw_model._load(folder, ROOT / "params.yaml", RES / "entity_patterns.yaml", RES / "actors.yaml",
                                        RES / "stance_cues.yaml", "train", None, keep_docs=True)
    lexicon = load_lexicon(RES / "stance_cues.yaml", labels=pre.stance_labels)
    causes, per_end, gold = sd.diagnose(parsed, frozenset(pre.stance_ends), frozenset(pre.entity_labels), lexicon)
    assert sum(causes.values()) == gold
    return dict(causes), dict(per_end)


def test_each_cause_on_a_built_article(tmp_path):
    sentences = [
        "Vladimir Putin spoke in Moscow on Monday.",       # 0
        "He condemned Ukraine.",                            # 1: reachable through the pronoun
        "The weather was cold.",                            # 2: both ends named before, no pronoun here
        '"We will never give up," Putin said.',            # 3
        '"Ukraine is a puppet of the West."',               # 4: the quote's speaker is in sentence 3
        "Joe Biden answered later.",                        # 5
    ]
    entities = [("Vladimir Putin", "People"), ("Ukraine", "GPE"), ("Joe Biden", "People"), ("Angela Merkel", "People")]
    stances = [(1, "Vladimir Putin", "NEG", "Ukraine"), (2, "Vladimir Putin", "NEG", "Ukraine"),
               (4, "Vladimir Putin", "NEG", "Ukraine"), (0, "Vladimir Putin", "NEG", "Joe Biden"),
               (1, "Angela Merkel", "POS", "Ukraine")]
    write_article(tmp_path, "000", 0, "train", sentences, entities, stances)
    causes, per_end = diagnose(tmp_path)
    assert causes == {"reachable": 1, "earlier_no_pronoun": 1, "quote_speaker": 1, "later_only": 1, "implicit": 1}
    # Sentence 2's holder is the next sentence's speaker too; its harder end (Ukraine, named before) is the cause.
    assert per_end[("holder", "quote_speaker")] == 2 and per_end[("target", "earlier_no_pronoun")] == 1
    assert per_end[("target", "named")] == 2  # Ukraine in sentences 4 and 1


def test_a_name_no_entity_covers_is_not_entity(tmp_path):
    # spaCy tags no entity on "mcconnell" in lower case.
    write_article(tmp_path, "000", 0, "train", ["Joe Biden said the senate majority leader lied about mcconnell."],
                  [("Joe Biden", "People"), ("Mitch McConnell", "People")], [(0, "Joe Biden", "NEG", "Mitch McConnell")])
    causes, per_end = diagnose(tmp_path)
    assert causes == {"not_entity": 1}
    assert per_end == {("holder", "named"): 1, ("target", "not_entity"): 1}


def test_report_lists_every_cause():
    from collections import Counter

    text = sd.report(Counter({"reachable": 2, "implicit": 1}), Counter({("holder", "implicit"): 1}), 3)
    assert [line.split()[0] for line in text.splitlines()[1:]] == ["reachable", *sd.CAUSES, *sd.PRESENT, "gold"]
    assert "66.7%" in text.splitlines()[1]


def test_command_prints_the_table(tmp_path):
    import subprocess
    import sys

    write_article(tmp_path, "000", 0, "train", ["Joe Biden praised Ukraine.", "The weather was cold."],
                  [("Joe Biden", "People"), ("Ukraine", "GPE")],
                  [(0, "Joe Biden", "POS", "Ukraine"), (1, "Joe Biden", "POS", "Ukraine")])
    result = subprocess.run([sys.executable, "-m", "pipeline", "train-seesaw", str(tmp_path), "--diagnose",
                             "--output", str(tmp_path / "never.json")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[1:]}
    assert rows["reachable"] == "1" and rows["earlier_no_pronoun"] == "1" and rows["gold"] == "2"
    assert "1 of 2 gold triplets" in result.stderr and not (tmp_path / "never.json").exists()


def test_a_quote_speaker_is_reached_only_with_speakers(tmp_path):
    write_article(tmp_path, "000", 0, "train",
                  ['Vladimir Putin said on Monday: "We are ready.', 'Ukraine is a puppet of NATO."'],
                  [("Vladimir Putin", "People"), ("Ukraine", "GPE"), ("NATO", "Organization")],
                  [(1, "Vladimir Putin", "NEG", "Ukraine")])
    args = (tmp_path, ROOT / "params.yaml", RES / "entity_patterns.yaml", RES / "actors.yaml", RES / "stance_cues.yaml",
            "train", None)
    plain, _, _ = seesaw_model._load(*args)
    speaking, _, _ = seesaw_model._load(*args, mentions=frozenset({"speakers"}))
    assert seesaw_model.coverage(plain) == (1, 0) and seesaw_model.coverage(speaking) == (1, 1)
    causes, _ = diagnose(tmp_path)
    assert causes == {"quote_speaker": 1}
