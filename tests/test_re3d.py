"""re3d evaluation: loading, split and scoring on an invented fixture, the command end to end, and one real run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.common.errors import ConfigError, InputError
from pipeline.research import re3d, re3d_eval

ROOT = Path(__file__).parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "re3d"  # invented documents about fictional countries, re3d's layout
RES = ROOT / "resources"
# Beside the clone, never inside it (evaluation data): a clone without it skips the real run.
RE3D = Path(os.environ.get("RE3D_DIR", Path(__file__).parents[2] / "shared" / "eval" / "re3d"))
needs_re3d = pytest.mark.skipif(
    not RE3D.is_dir(),
    reason=f"re3d data not found at {RE3D} (set RE3D_DIR); the same command runs on a fixture in test_command_on_fixture",
)


@pytest.fixture(scope="module")
def loaded() -> tuple[dict[str, re3d.Re3dDoc], re3d.LoadReport]:
    docs, report = re3d.load_documents(FIXTURE)
    return {d.id.split("-")[1]: d for d in docs}, report


@pytest.fixture(scope="module")
def rules_pre() -> Any:
    """The real pre-annotator of params.yaml with the rules alone."""
    from pipeline import preannotate as pa
    from pipeline.common.config import section

    cfg = section(pa.Params, pa.STAGE, ROOT / "params.yaml")
    return pa.load(cfg.model_copy(update={"stance_model": False}), RES / "entity_patterns.yaml", RES / "actors.yaml",
                   RES / "stance_cues.yaml")


def text_of(doc: re3d.Re3dDoc, span: re3d.Span) -> str:
    return doc.text[span[0] : span[1]]


def test_load_reads_bom_offsets_types_and_drops(loaded):
    docs, report = loaded
    assert (FIXTURE / "Alpha Wire" / "documents.json").read_bytes().startswith(b"\xef\xbb\xbf")
    a1, a2 = docs["A1"], docs["A2"]
    assert a1.text.startswith("Borovia") and a1.source == "Alpha Wire" and docs["B1"].source == "Beta Gazette"
    assert all(e.text == d.text[e.begin : e.end] for d in docs.values() for e in d.entities)
    assert report.value_mismatch == 0  # every span reads re3d's `value`: the offsets are into the text, BOM or not
    (borovia, *_) = a1.entities  # one span typed twice is one entity accepting both types' labels
    assert (borovia.text, borovia.types, borovia.labels) == ("Borovia", ("Location", "Organisation"),
                                                            frozenset({"GPE", "LOC", "ORG"}))
    got = {(text_of(d, s.source), text_of(d, s.target), s.label, s.types) for d in (a1, a2) for s in d.stances}
    assert got == {
        ("Borovia", "Kestria", "against", ("Dislikes", "FightingAgainst")),  # two types on one pair: kept once
        ("Ivo Marek", "Lumeni", "favor", ("Likes",)),
        ("Kestria", "Varnia", "favor", ("AlliesOf",)),
        ("The army", "the rebels", "against", ("FightingAgainst",)),
        ("artillery", "the rebels", "against", ("FightingAgainst",)),
    }  # the AlliesOf of confidence 0.2 is dropped
    assert {text_of(a2, s.source): s.why_unreachable for s in a2.stances} == {"Kestria": "", "The army": "unnamed",
                                                                              "artillery": "type"}
    assert text_of(a1, a1.stances[0].trigger) == "accused"
    assert ((a2.entities[0].begin, a2.entities[0].end), (a2.entities[2].begin, a2.entities[2].end), "IsLocatedIn") in a2.relations
    assert (report.relations, report.stance_relations, report.duplicates, report.self_pairs, report.low_confidence) == (
        13, 11, 1, 1, 1)


def test_a_malformed_line_names_file_and_line(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "re3d")
    relations = tmp_path / "re3d" / "Beta Gazette" / "relations.json"
    lines = relations.read_text(encoding="utf-8").splitlines()
    relations.write_text("\n".join([*lines, '{ "_id" : ']) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"^{relations}:{len(lines) + 1}: malformed JSON \(") as exc:
        re3d.load_documents(tmp_path / "re3d")
    assert "\n" not in str(exc.value)
    bad = json.loads(lines[0]) | {"targetEnd": 10_000}
    relations.write_text("\n".join([json.dumps(bad), *lines[1:]]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"^{relations}:1: targetBegin/targetEnd .* outside the document"):
        re3d.load_documents(tmp_path / "re3d")
    with pytest.raises(ConfigError, match="not a re3d folder"):
        re3d.load_documents(tmp_path / "re3d" / "Beta Gazette")


def test_split_is_deterministic_and_by_document(loaded):
    docs, _ = loaded
    parts = re3d.split(docs.values())
    assert {p: [d.id.split("-")[1] for d in ds] for p, ds in parts.items()} == {"tune": ["A1", "B2"],
                                                                               "heldout": ["A2", "B1"]}
    assert re3d.split(reversed(list(docs.values()))) == {p: ds[::-1] for p, ds in parts.items()}
    assert all(re3d.part_of(d.id) == p for p, ds in parts.items() for d in ds)
    moved = replace(docs["A1"], text="Other text.", stances=(), entities=(), source="Elsewhere")
    assert re3d.split([moved])["tune"] == [moved]  # the id alone decides
    assert re3d.split_counts(parts["heldout"]) == {"docs": 2, "stances": 5, "reachable": 3}


def record(doc: re3d.Re3dDoc, stances: list[tuple[str, str, str]]) -> dict[str, Any]:
    """A hand-made prediction: each stance's ends are entities at the first mention of their text."""
    names = list(dict.fromkeys(n for h, t, _ in stances for n in (h, t)))
    entities = [{"start": (b := doc.text.index(n)), "end": b + len(n), "label": "GPE"} for n in names]
    return {"entities": entities, "stances": [{"holder": names.index(h), "target": names.index(t), "label": lab,
                                               "rule": "hand"} for h, t, lab in stances]}


def test_scoring_by_hand(loaded):
    docs, _ = loaded
    a1, a2 = docs["A1"], docs["A2"]
    recs = [record(a1, [("Borovia", "Kestria", "against")]),
            record(a2, [("Kestria", "Varnia", "against"),  # the right pair with the wrong label: no hit
                        ("army", "the rebels", "against")])]  # a hit on an unnamed (unreachable) gold stance
    scores = re3d_eval.score([a1, a2], recs)
    s = scores["stances"]
    assert (s["gold"], s["reachable"], s["predicted"], s["tp"], s["tp_reachable"]) == (5, 3, 3, 2, 1)
    assert s["p"] == pytest.approx(2 / 3) and s["r_all"] == pytest.approx(2 / 5) and s["r_reach"] == pytest.approx(1 / 3)
    assert s["f1_all"] == pytest.approx(2 * (2 / 3) * 0.4 / (2 / 3 + 0.4))
    assert scores["stances_unlabelled"]["tp"] == 3
    assert scores["stances_head"]["tp"] == 2  # "army" ends "The army"
    assert re3d.score_stances([(a1, record(a1, [("Kestria", "Borovia", "against")]))]).tp == 0  # direction counts
    ivo = a1.text.index("Ivo")
    assert re3d.ends_match(a1.text, (ivo, ivo + 3), a1.stances[1].source, "overlap") == 3
    assert re3d.ends_match(a1.text, (ivo, ivo + 3), a1.stances[1].source, "head") == 0
    ents = scores["entities"]
    assert (ents["exact"]["tp"], ents["exact"]["predicted"], ents["exact"]["gold"]) == (4, 6, 11)  # not the two GPE "army", "the rebels"
    assert ents["span"]["tp"] == 6 and ents["span"]["p"] == 1.0


def test_records_are_the_stages_and_evaluate_scores_them(loaded, rules_pre):
    from pipeline import preannotate as pa

    docs = list(loaded[0].values())
    recs = re3d_eval.records(rules_pre, docs)
    assert list(recs) == ["rules"]  # no model loaded: the rules alone
    staged = list(pa.preannotate(({"id": d.id, "text": d.text} for d in docs), rules_pre))
    for mine, out in zip(recs["rules"], staged, strict=True):
        assert (mine["entities"], mine["stances"], mine["sentences"]) == (out["entities"], out["stances"], out["sentences"])
    result = re3d_eval.evaluate(rules_pre, docs)
    assert result == re3d_eval.score(docs, recs["rules"])
    assert result["stances"]["gold"] == 8 and result["stances"]["tp"] >= 1
    done = re3d_eval.runs(rules_pre, docs, keep_parse=True)
    text = re3d_eval.error_analysis(done, frozenset({"accuse", "praise"}), rules_pre.params.stance_ends, ("rules",))
    missed = result["stances"]["gold"] - result["stances"]["tp"]
    assert text.startswith(f"#### rules: {missed} missed gold stances")


def run_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", "evaluate-re3d", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)


def test_command_on_fixture(tmp_path):
    out = tmp_path / "re3d.json"
    result = run_command("--re3d", str(FIXTURE), "--part", "all", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("| part | system |")
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["parts"] == {"tune": {"docs": 2, "stances": 3, "reachable": 3},
                                "heldout": {"docs": 2, "stances": 5, "reachable": 3},
                                "all": {"docs": 4, "stances": 8, "reachable": 6}}
    assert figures["load"]["low_confidence"] == 1 and figures["provenance"]["stance_model"]
    for part, by_system in figures["results"].items():
        assert set(by_system) == {"rules", "model"}
        for res in by_system.values():
            s = res["stances"]
            assert s["docs"] == figures["parts"][part]["docs"] and s["gold"] == figures["parts"][part]["stances"]
            assert 0 <= s["tp_reachable"] <= s["tp"] <= min(s["predicted"], s["gold"])
            assert s["r_all"] == pytest.approx(s["tp"] / s["gold"]) and 0.0 <= s["p"] <= 1.0
            assert set(s) >= {"p", "r_all", "f1_all", "r_reach", "f1_reach", "tp", "predicted", "gold"}
            assert set(res["entities"]) == {"exact", "overlap", "span"}
            e = res["entities"]
            assert e["exact"]["tp"] <= e["overlap"]["tp"] <= e["span"]["tp"] <= e["span"]["gold"]
    assert figures["results"]["all"]["rules"]["stances"]["tp"] >= 1


def test_errors_only_on_tune(tmp_path):
    result = run_command("--re3d", str(FIXTURE), "--part", "heldout", "--errors", str(tmp_path / "errors.md"))
    assert result.returncode == ConfigError.exit_code
    assert result.stderr.strip().splitlines() == [
        "error: --errors is for --part tune only: an error analysis of heldout documents would tune on them"]
    assert not (tmp_path / "errors.md").exists()


@needs_re3d
def test_real_re3d_split_and_rules_on_heldout(rules_pre):
    docs, report = re3d.load_documents(RE3D)
    parts = re3d.split(docs)
    assert (len(parts["tune"]), len(parts["heldout"])) == (41, 57)
    assert report.low_confidence == 10
    s = re3d_eval.evaluate(rules_pre, parts["heldout"])["stances"]
    assert (s["docs"], s["gold"], s["reachable"]) == (57, 236, 121)
    assert s["predicted"] > 0 and 0.0 < s["p"] <= 1.0 and 0.0 < s["r_reach"] <= 1.0
