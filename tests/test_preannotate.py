"""Tests of the preannotate stage: domain fixes on the seeds, actor linking, output contract, cache, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import preannotate as pa
from pipeline.common.config import section
from pipeline.common.errors import ConfigError
from pipeline.common.jsonl import dumps
from pipeline.common.provenance import code_revision
from pipeline.entities.actors import ActorIndex
from pipeline.entities.annotator import COMPONENT, Annotator
from pipeline.entities.cache import Cache
from pipeline.entities.loader import BASE_MODEL
from pipeline.entities.rules import load_rules
from pipeline.stance.model import load_model as load_stance_model

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = ROOT / "resources" / "entity_patterns.yaml"
ACTORS = ROOT / "resources" / "actors.yaml"
LEXICON = ROOT / "resources" / "stance_cues.yaml"
SEEDS = sorted((ROOT / "corpus").glob("*.txt"))


@pytest.fixture(scope="module")
def params() -> pa.Params:
    return section(pa.Params, "preannotate", ROOT / "params.yaml")


@pytest.fixture(scope="module")
def pre(params: pa.Params) -> pa.Preannotator:
    """The real model with the project's rules, loaded once for the module."""
    return pa.load(params, PATTERNS, ACTORS, LEXICON)


@pytest.fixture(scope="module")
def seeds(pre: pa.Preannotator) -> dict[str, dict]:
    """The five seed articles, pre-annotated once, keyed by file stem."""
    records = [{"id": p.stem, "text": p.read_text(encoding="utf-8")} for p in SEEDS]
    return {r["id"]: r for r in pa.preannotate(records, pre)}


def entity_at(record: dict, context: str, name: str) -> dict | None:
    """The entity at the occurrence of `name` inside the first occurrence of `context` in the text."""
    start = record["text"].index(context) + context.index(name)
    found = [e for e in record["entities"] if e["start"] <= start < e["end"]]
    return found[0] if found else None


# --- the domain layer on the real seed text --------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "context", "name", "label", "actor"),
    [
        ("000", "took place in the Crimea may", "Crimea", "GPE", None),  # the small model says ORG
        ("004", "Russia annexed Crimea, a peninsula", "Crimea", "GPE", None),
        ("000", "Stoltenberg added, in press", "Stoltenberg", "PERSON", "NATO"),  # model: ORG
        ("000", "statements to “Sky News Arabia”", "Sky News Arabia", "ORG", None),  # model: EVENT
        ("001", "Zakharova added that", "Zakharova", "PERSON", "RUS"),  # model: ORG
        ("001", "Kiev said that the Russian side", "Kiev", "GPE", "UKR"),  # model: PERSON
        ("001", "in the Donbass region", "Donbass", "LOC", None),  # model: PERSON
        ("003", "signs of unification are underway, Blinken is", "Blinken", "PERSON", "USA"),  # model: GPE
        ("002", "Allegations of NATO", "NATO", "ORG", "NATO"),  # model: "Allegations of NATO\nMeanwhile"
        ("004", "Deputy Foreign Ministers Ryabkov", "Ryabkov", "PERSON", "RUS"),  # model: "Ministers Ryabkov"
        ("000", "between Russia and the United States", "United States", "GPE", "USA"),  # no determiner
        ("000", "Washington stressed that", "Washington", "GPE", "USA"),  # a seat of government acting
        ("000", "a news conference in Washington", "Washington", "GPE", None),  # ... or a venue
    ],
)
def test_domain_layer_fixes_the_small_models_errors(seeds, seed, context, name, label, actor) -> None:
    record = next(r for k, r in seeds.items() if k.startswith(seed))
    ent = entity_at(record, context, name)
    assert ent is not None, f"no entity for {name!r}"
    assert (ent["text"], ent["label"], ent["actor"]) == (name, label, actor)


@pytest.mark.parametrize(
    ("seed", "context", "title_word"),
    [
        ("000", "US Secretary of State Anthony Blinken", "State"),  # the model says ORG
        ("003", "US Deputy Secretary of State Wendy Sherman", "State"),
        ("002", "Russian Deputy Defense Minister Alexander Fomin", "Defense"),  # the model says ORG
    ],
)
def test_title_words_are_not_entities(seeds, seed, context, title_word) -> None:
    record = next(r for k, r in seeds.items() if k.startswith(seed))
    assert entity_at(record, context, title_word) is None
    person = context.split(title_word)[-1].strip().split()
    ent = entity_at(record, context, person[-1])
    assert ent is not None and ent["label"] == "PERSON" and ent["actor"] in ("USA", "RUS")


def test_site_furniture_is_not_an_entity(seeds) -> None:
    texts = {e["text"] for r in seeds.values() for e in r["entities"]}
    assert not {t for t in texts if "\n" in t}
    assert "Copyright Registered" not in texts


# --- actor linking ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index(pre: pa.Preannotator) -> ActorIndex:
    annotator = pre.nlp.get_pipe(COMPONENT)
    assert isinstance(annotator, Annotator)
    return annotator.rules.actors


@pytest.mark.parametrize(
    ("text", "label", "actor"),
    [
        ("the Kremlin", "ORG", "RUS"),
        ("Kyiv", "GPE", "UKR"),
        ("KIEV", "GPE", "UKR"),
        ("Russia's", "GPE", "RUS"),
        ("Russia’s", "GPE", "RUS"),
        ("the alliance", "ORG", "NATO"),
        ("the North Atlantic Treaty Organization", "ORG", "NATO"),
        ("Russian", "NORP", "RUS"),
        ("Russians", "NORP", "RUS"),
        ("Americans", "NORP", "USA"),
        ("Lavrov", "PERSON", "RUS"),
        ("Rybkov", "PERSON", "RUS"),  # as spelled in seed 002
        ("Blnken", "PERSON", "USA"),  # a typo in seed 003: one edit from a known last name
        ("US Secretary of State Antony Blinken", "PERSON", "USA"),
        ("President Joe Biden", "PERSON", "USA"),
        ("Stoltenberg", "PERSON", "NATO"),
        ("Russian Foreign Ministry", "ORG", "RUS"),
        ("the Russian Defense Ministry", "ORG", "RUS"),
        ("the National Security and Defense Council of Ukraine", "ORG", "UKR"),
        ("the State Department", "ORG", "USA"),
        ("Washington", "GPE", "USA"),
        ("the European Union’s", "ORG", "EU"),
        ("Tariq Fahmy", "PERSON", None),
        ("Geneva", "GPE", None),
        ("pro-Russian", "NORP", None),
    ],
)
def test_actor_linking(index, text, label, actor) -> None:
    assert index.link(text, label) == actor


def test_duplicate_alias_is_a_config_error(tmp_path) -> None:
    bad = tmp_path / "actors.yaml"
    bad.write_text(
        "actors:\n  - {id: A, name: A, label: GPE, aliases: [Moscow]}\n  - {id: B, name: B, label: GPE, aliases: [Moscow]}\n"
    )
    with pytest.raises(ConfigError, match="moscow"):
        load_rules(PATTERNS, bad, LEXICON, ["against", "favor"])


# --- the output contract ------------------------------------------------------------------------------


def test_output_contract(seeds, pre, params) -> None:
    for record in seeds.values():
        text = record["text"]
        assert list(record)[:2] == ["id", "text"]
        assert list(record)[2:] == ["sentences", "entities", "stances", "provenance"]
        assert record["provenance"] == {
            "model": params.model,
            "model_version": pre.nlp.meta["version"],
            "rules_version": pre.provenance["rules_version"],
            "code_revision": code_revision(pa.CODE),
            **({"stance_model": load_stance_model(BASE_MODEL).version,  # params.yaml: the model, by default the base
                "stance_training_data": load_stance_model(BASE_MODEL).training.data_hash[:12],
                "stance_threshold": str(params.stance_threshold),
                "stance_model_licence": load_stance_model(BASE_MODEL).training.licence,
                "stance_trained_on": "seesaw:train"} if params.stance_model else {}),
        }
        previous = 0
        for s in record["sentences"]:
            assert set(s) == {"start", "end"}
            assert previous <= s["start"] < s["end"] <= len(text)
            assert not text[s["start"]].isspace() and not text[s["end"] - 1].isspace()
            previous = s["end"]
        assert len(record["sentences"]) > 10
        starts = [e["start"] for e in record["entities"]]
        assert starts == sorted(starts)
        for e in record["entities"]:
            assert list(e) == ["start", "end", "label", "text", "score", "actor"]
            assert text[e["start"] : e["end"]] == e["text"]
            assert e["label"] in params.entity_labels
            assert 0.0 <= e["score"] <= 1.0
            assert e["actor"] is None or isinstance(e["actor"], str)
        for st in record["stances"]:
            assert list(st) == ["holder", "target", "label", "score", "rule", "cue"]
            assert 0 <= st["holder"] < len(record["entities"]) and 0 <= st["target"] < len(record["entities"])
            assert st["holder"] != st["target"]
            assert st["label"] in params.stance_labels
            assert 0.0 <= st["score"] <= 1.0 and st["rule"]
            assert not params.stance_model or st["score"] >= params.stance_threshold  # the model's probability
            assert text[st["cue"]["start"] : st["cue"]["end"]] == st["cue"]["text"]
            for end in (st["holder"], st["target"]):
                assert record["entities"][end]["label"] in params.stance_ends
    assert sum(len(r["stances"]) for r in seeds.values()) > 0
    assert sum(e["actor"] is not None for r in seeds.values() for e in r["entities"]) > 100


def test_scores_rank_model_guesses_below_confirmed_names(seeds) -> None:
    ents = [e for r in seeds.values() for e in r["entities"]]
    russia = [e["score"] for e in ents if e["text"] == "Russia"]
    lowercase = [e["score"] for e in ents if e["text"][0].islower() and not e["text"].startswith("the ")]
    assert lowercase and min(russia) > max(lowercase)


# --- the incremental cache ----------------------------------------------------------------------------


def _run(records, pre, cache) -> tuple[list[str], pa.Counts]:
    counts = pa.Counts()
    out = [dumps(r) for r in pa.preannotate(records, pre, cache, counts)]
    return out, counts


def test_cache_annotates_only_what_changed(tmp_path, pre, params) -> None:
    records = [{"id": p.stem, "text": p.read_text(encoding="utf-8")[:1500]} for p in SEEDS]
    uncached, _ = _run(records, pre, None)
    cache = Cache(tmp_path / "cache")
    first, counts = _run(records, pre, cache)
    assert (counts.annotated, counts.cached) == (5, 0)
    second, counts = _run(records, pre, cache)
    assert (counts.annotated, counts.cached) == (0, 5)
    assert first == second == uncached  # byte-identical with or without the cache
    extra = {"id": "new", "text": "NATO warned Russia on Friday."}
    third, counts = _run([*records[:2], extra, *records[2:]], pre, cache)
    assert (counts.annotated, counts.cached) == (1, 5)
    assert third[:2] == first[:2] and third[3:] == first[2:] and json.loads(third[2])["id"] == "new"
    cache.close()

    # Changing a rule file changes the rules version: everything is annotated again.
    patterns = tmp_path / "entity_patterns.yaml"
    patterns.write_text(PATTERNS.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    changed = pa.load(params, patterns, ACTORS, LEXICON)
    assert changed.provenance["rules_version"] != pre.provenance["rules_version"]
    cache = Cache(tmp_path / "cache")
    _, counts = _run(records, changed, cache)
    assert (counts.annotated, counts.cached) == (5, 0)
    cache.close()


def test_long_runs_of_cached_records_keep_order(tmp_path, pre, monkeypatch) -> None:
    monkeypatch.setattr(pa, "FLUSH_EVERY", 2)  # placeholders interleave with real texts
    records = [{"id": str(i), "text": f"Putin met Biden in Geneva on day {i}."} for i in range(9)]
    cache = Cache(tmp_path / "cache")
    _run(records[::3], pre, cache)
    out, counts = _run(records, pre, cache)
    assert (counts.annotated, counts.cached) == (6, 3)
    assert [json.loads(line)["id"] for line in out] == [str(i) for i in range(9)]
    cache.close()


# --- the command line ---------------------------------------------------------------------------------


def params_with(tmp_path: Path, **changes: object) -> Path:
    """A copy of params.yaml with some preannotate keys changed."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    data["preannotate"].update(changes)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )


def test_generic_command_on_any_jsonl(tmp_path) -> None:
    src = tmp_path / "in.jsonl"
    lines = [
        {"id": 7, "text": "Lavrov accused NATO of ignoring Russia's concerns.", "lang": "en", "extra": [1, 2]},
        {"id": "b", "text": "Biden spoke with Zelensky about Ukraine."},
    ]
    src.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    cache = tmp_path / "cache"
    result = cli("preannotate", "--input", str(src), "--output", str(out), "--cache", str(cache))
    assert result.returncode == 0, result.stderr
    assert "2 annotated, 0 from cache" in result.stderr
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [g["id"] for g in got] == [7, "b"]
    assert got[0]["lang"] == "en" and got[0]["extra"] == [1, 2]
    assert {(e["text"], e["actor"]) for e in got[0]["entities"]} >= {("Lavrov", "RUS"), ("NATO", "NATO")}
    again = cli("preannotate", "--input", str(src), "--output", str(out), "--cache", str(cache))
    assert "0 annotated, 2 from cache" in again.stderr


def test_bad_input_is_reported_with_line_numbers(tmp_path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_bytes(
        b'{"id": "ok", "text": "Putin warned NATO."}\n'
        b"{not json\n"
        b'{"id": "z", "text": "A bad byte \xff here."}\n'
        b'{"id": "x"}\n'
        b'{"id": "y", "text": "   "}\n'
        b'{"text": "No id here."}\n'
        b'{"id": "ok2", "text": "Lavrov criticised NATO."}\n'
    )
    out = tmp_path / "out.jsonl"
    result = cli("preannotate", "--input", str(src), "--output", str(out))
    assert result.returncode == 4
    assert "Traceback" not in result.stderr
    for line, message in [(2, "invalid JSON"), (3, "not valid UTF-8"), (4, "missing 'text'"), (5, "empty 'text'"),
                          (6, "missing 'id'")]:
        assert f"bad.jsonl:{line}: {message}" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: preannotate: 5 of 7 records are bad")
    assert not out.exists()  # nothing half-written

    # Under a looser threshold the good records (also the one after the bad byte) go through, the bad ones are counted.
    params = params_with(tmp_path, max_bad_share=0.9)
    result = cli("preannotate", "--input", str(src), "--output", str(out), "--params", str(params))
    assert result.returncode == 0, result.stderr
    assert "2 annotated, 0 from cache, 5 skipped" in result.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["ok", "ok2"]


def test_missing_model_is_a_one_line_config_error(tmp_path) -> None:
    params = params_with(tmp_path, model="en_no_such")
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "text": "Putin."}\n')
    result = cli("preannotate", "--input", str(src), "--output", str(tmp_path / "o.jsonl"), "--params", str(params))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: spaCy model 'en_no_such' is not installed "
        "(install its package or set preannotate.model in params.yaml)"
    )



def test_sentences_never_cross_a_line_break(seeds) -> None:
    """An unpunctuated sub-heading ("deter Russia") is its own sentence, not the subject of the next one."""
    for record in seeds.values():
        for sentence in record["sentences"]:
            assert "\n" not in record["text"][sentence["start"] : sentence["end"]].strip()
    record = next(r for key, r in seeds.items() if key.startswith("001"))
    heading = record["text"].index("deter Russia\n")
    starts = {s["start"] for s in record["sentences"]}
    assert heading in starts
    assert record["text"].index("Meanwhile, British Foreign Secretary") in starts


def test_code_revision_covers_exactly_the_stage_code_deps() -> None:
    """The recorded code revision hashes the same modules dvc.yaml reruns the stage for."""
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["preannotate"]
    code_deps = {d.removeprefix("pipeline/") for d in stage["deps"] if d.startswith("pipeline/")}
    assert code_deps == set(pa.CODE)
