"""The pre-annotation cache is never trusted (issue 29, item 8): a damaged database, a bad entry or a failed write
is one warning line, and the output is byte for byte the output of a run without a cache."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline import preannotate as pa
from pipeline.common.config import section
from pipeline.common.jsonl import dumps
from pipeline.entities import cache as cache_module
from pipeline.entities.cache import FILE, Cache, text_hash

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = ROOT / "resources" / "entity_patterns.yaml"
ACTORS = ROOT / "resources" / "actors.yaml"
LEXICON = ROOT / "resources" / "stance_cues.yaml"
RECORDS = [
    {"id": "a", "text": "Lavrov accused NATO of ignoring Russia's concerns about the alliance's expansion."},
    {"id": "b", "text": "Biden spoke with Zelensky about Ukraine on Friday.\nPutin warned NATO."},
    {"id": "c", "text": "Stoltenberg criticised Moscow for the attack on Kiev."},
]


@pytest.fixture(scope="module")
def pre() -> pa.Preannotator:
    """The real model with the project's rules, loaded once for the module."""
    return pa.load(section(pa.Params, "preannotate", ROOT / "params.yaml"), PATTERNS, ACTORS, LEXICON)


@pytest.fixture(scope="module")
def uncached(pre: pa.Preannotator) -> list[str]:
    """The output lines of a run without a cache."""
    return run(pre, None)[0]


def run(pre: pa.Preannotator, folder: Path | None) -> tuple[list[str], pa.Counts]:
    """The output lines of a run over RECORDS with the cache in `folder` (none if None), and its counts."""
    counts = pa.Counts()
    cache = Cache(folder) if folder else None
    try:
        out = [dumps(r) for r in pa.preannotate([dict(r) for r in RECORDS], pre, cache, counts)]
    finally:
        if cache:
            cache.close()
    return out, counts


def warnings(err: str) -> list[str]:
    """The lines of stderr, each of which must be a warning (never a traceback)."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert all(line.startswith("warning: ") for line in lines), lines
    return lines


def filled(pre: pa.Preannotator, folder: Path) -> Path:
    """`folder` holding a cache of every record; its database file."""
    run(pre, folder)
    return folder / FILE


def key_of(pre: pa.Preannotator, record: dict[str, Any]) -> str:
    return pre.cache_key(record["text"])


def set_value(database: Path, key: str, value: Any) -> None:
    """Overwrite the stored value under `key`, as a corrupting disk or a foreign writer would."""
    db = sqlite3.connect(database)
    with db:
        assert db.execute("UPDATE annotation SET value = ? WHERE key = ?", (value, key)).rowcount == 1
    db.close()


def stored(database: Path, key: str) -> Any:
    db = sqlite3.connect(database)
    row = db.execute("SELECT value FROM annotation WHERE key = ?", (key,)).fetchone()
    db.close()
    return json.loads(row[0])


def test_entries_hold_their_texts_hash_and_the_annotation(tmp_path, pre, uncached) -> None:
    database = filled(pre, tmp_path)
    entry = stored(database, key_of(pre, RECORDS[0]))
    assert entry["text_sha256"] == text_hash(RECORDS[0]["text"])
    assert tuple(entry["annotation"]) == cache_module.FIELDS  # what the annotator writes, nothing more
    out, counts = run(pre, tmp_path)
    assert (counts.annotated, counts.cached) == (0, len(RECORDS)) and out == uncached


def _entity_offsets_out_of_range(entry: dict, text: str) -> dict:
    entry["annotation"]["entities"][0].update(start=len(text) + 3, end=len(text) + 9)
    return entry


def _offsets_shifted(entry: dict, text: str) -> dict:
    for e in entry["annotation"]["entities"]:
        e.update(start=e["start"] + 1, end=e["end"] + 1)  # inside the text, but not at the entity's text
    return entry


def _sentence_past_the_end(entry: dict, text: str) -> dict:
    entry["annotation"]["sentences"][-1]["end"] = len(text) + 1
    return entry


def _stance_cue_out_of_range(entry: dict, text: str) -> dict:
    entry["annotation"]["stances"] = [{"holder": 0, "target": 0, "label": "oppose", "score": 1.0, "rule": "x",
                                       "cue": {"start": -4, "end": 2, "text": ""}}]
    return entry


def _stance_end_not_an_entity(entry: dict, text: str) -> dict:
    entry["annotation"]["stances"] = [{"holder": 0, "target": 99, "label": "oppose", "score": 1.0, "rule": "x",
                                       "cue": {"start": 0, "end": 6, "text": text[:6]}}]
    return entry


def _wrong_text_hash(entry: dict, text: str) -> dict:
    entry["text_sha256"] = text_hash(text + " ")
    return entry


def _extra_field(entry: dict, text: str) -> dict:
    entry["annotation"]["id"] = "someone else's"  # would overwrite the record's id
    return entry


def _entities_not_a_list(entry: dict, text: str) -> dict:
    entry["annotation"]["entities"] = {"0": entry["annotation"]["entities"]}
    return entry


def _label_changed(entry: dict, text: str) -> dict:
    entity = entry["annotation"]["entities"][0]
    entity["label"] = "ORG" if entity["label"] != "ORG" else "GPE"  # still well formed: only its hash tells
    return entry


def _sentence_moved(entry: dict, text: str) -> dict:
    entry["annotation"]["sentences"][0]["end"] -= 1  # still inside the text
    return entry


POISONS: dict[str, tuple[Callable[[dict, str], Any] | str | bytes | int, str]] = {
    "offsets out of range": (_entity_offsets_out_of_range, "outside the text"),
    "offsets shifted": (_offsets_shifted, "not the text at its offsets"),
    "sentence past the end": (_sentence_past_the_end, "outside the text"),
    "stance cue out of range": (_stance_cue_out_of_range, "outside the text"),
    "stance end not an entity": (_stance_end_not_an_entity, "not indexes of"),
    "wrong text hash": (_wrong_text_hash, "text hash"),
    "label changed": (_label_changed, "annotation hash is not the annotation's"),
    "sentence moved": (_sentence_moved, "annotation hash is not the annotation's"),
    "extra field": (_extra_field, "fields sentences, entities, stances"),
    "entities not a list": (_entities_not_a_list, "must be lists"),
    "invalid JSON": ('{"text_sha256": "', "not valid JSON"),
    "not UTF-8": (b"\xff\xfe{}", "not valid JSON"),
    "an integer": (7, "not a JSON object"),
    "not an object": ("[1, 2, 3]", "not a JSON object"),
    "annotation not an object": (lambda entry, text: {**entry, "annotation": "x"}, "not an object of the fields"),
}


@pytest.mark.parametrize("name", list(POISONS))
def test_a_bad_entry_is_reported_dropped_and_recomputed(tmp_path, pre, uncached, capsys, name) -> None:
    poison, reason = POISONS[name]
    database = filled(pre, tmp_path)
    record = RECORDS[1]
    key = key_of(pre, record)
    if callable(poison):
        entry = stored(database, key)
        assert entry["annotation"]["entities"], "the record needs an entity to poison"
        poison = dumps(poison(entry, record["text"]))
    set_value(database, key, poison)
    capsys.readouterr()

    out, counts = run(pre, tmp_path)
    assert out == uncached  # never trusted: byte for byte the output without a cache
    assert (counts.annotated, counts.cached) == (1, len(RECORDS) - 1)
    [line] = warnings(capsys.readouterr().err)
    assert str(database) in line and key[:12] in line and key not in line and reason in line, line

    # The bad entry was replaced by the recomputed one: the next run takes everything from the cache, silently.
    out, counts = run(pre, tmp_path)
    assert out == uncached and (counts.annotated, counts.cached) == (0, len(RECORDS))
    assert capsys.readouterr().err == ""
    assert stored(database, key)["text_sha256"] == text_hash(record["text"])


def test_an_entry_of_the_old_format_is_a_silent_miss(tmp_path, pre, uncached, capsys) -> None:
    database = filled(pre, tmp_path)
    key = key_of(pre, RECORDS[0])
    set_value(database, key, dumps(stored(database, key)["annotation"]))  # no text hash, as entries were before
    capsys.readouterr()
    out, counts = run(pre, tmp_path)
    assert out == uncached and (counts.annotated, counts.cached) == (1, len(RECORDS) - 1)
    assert capsys.readouterr().err == ""
    assert stored(database, key)["text_sha256"] == text_hash(RECORDS[0]["text"])  # replaced


def test_an_entry_without_its_annotation_hash_is_a_silent_miss(tmp_path, pre, uncached, capsys) -> None:
    database = filled(pre, tmp_path)
    key = key_of(pre, RECORDS[0])
    entry = stored(database, key)
    del entry["annotation_sha256"]  # as entries were written before they held it
    set_value(database, key, dumps(entry))
    capsys.readouterr()
    out, counts = run(pre, tmp_path)
    assert out == uncached and (counts.annotated, counts.cached) == (1, len(RECORDS) - 1)
    assert capsys.readouterr().err == ""
    assert "annotation_sha256" in stored(database, key)  # replaced


def test_reports_of_bad_entries_are_bounded(tmp_path, pre, capsys, monkeypatch) -> None:
    monkeypatch.setattr(cache_module, "MAX_ENTRY_REPORTS", 1)
    database = filled(pre, tmp_path)
    for record in RECORDS:
        set_value(database, key_of(pre, record), "not json")
    capsys.readouterr()
    _, counts = run(pre, tmp_path)
    assert counts.annotated == len(RECORDS)
    lines = warnings(capsys.readouterr().err)
    assert len(lines) == 2 and "without a report" in lines[1]


def _random_bytes(database: Path) -> None:
    database.write_bytes(random.Random(29).randbytes(20_000))


def _truncated(database: Path) -> None:
    data = database.read_bytes()
    database.write_bytes(data[: len(data) // 2])


def _header_only(database: Path) -> None:
    database.write_bytes(database.read_bytes()[:100])


@pytest.mark.parametrize("damage", [_random_bytes, _truncated, _header_only], ids=lambda f: f.__name__.strip("_"))
def test_a_damaged_database_is_reported_and_left_alone(tmp_path, pre, uncached, capsys, damage) -> None:
    database = filled(pre, tmp_path)
    for side in tmp_path.glob(f"{FILE}-*"):  # a cleanly closed WAL database is one file
        side.unlink()
    damage(database)
    before = database.read_bytes()
    capsys.readouterr()

    out, counts = run(pre, tmp_path)
    assert out == uncached and (counts.annotated, counts.cached) == (len(RECORDS), 0)
    [line] = warnings(capsys.readouterr().err)
    assert str(database) in line and "damaged or not an SQLite database" in line and "move the file aside" in line
    assert database.read_bytes() == before  # the user's file: neither deleted nor rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE]

    out, _ = run(pre, tmp_path)  # reported once per process
    assert out == uncached and capsys.readouterr().err == ""


def test_an_unwritable_cache_folder_is_reported_once(tmp_path, pre, uncached, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    out, counts = run(pre, blocker / "cache")
    assert out == uncached and counts.annotated == len(RECORDS)
    [line] = warnings(capsys.readouterr().err)
    assert "cache" in line and "going on without it" in line


def test_a_full_disk_is_reported_once_and_the_run_goes_on(tmp_path, pre, capsys) -> None:
    records = [{"id": f"{r['id']}{i}", "text": f"{r['text']} Day {i}."} for i in range(4) for r in RECORDS]
    uncached = [dumps(r) for r in pa.preannotate([dict(r) for r in records], pre)]
    cache = Cache(tmp_path)
    assert cache.db is not None
    pages = cache.db.execute("PRAGMA page_count").fetchone()[0]
    cache.db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL: "database or disk is full"
    cache.COMMIT_EVERY = 1
    counts = pa.Counts()
    out = [dumps(r) for r in pa.preannotate([dict(r) for r in records], pre, cache, counts)]
    cache.close()
    assert out == uncached and counts.annotated == len(records)
    [line] = warnings(capsys.readouterr().err)
    assert str(tmp_path / FILE) in line and "database or disk is full" in line and "without caching" in line


class FailingWrites:
    """A connection whose every write and commit fails as on a full disk; reads pass through."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if not sql.lstrip().upper().startswith(("SELECT", "PRAGMA")):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def commit(self) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    def rollback(self) -> None:
        self.db.rollback()

    def close(self) -> None:
        self.db.close()


def test_failing_writes_and_commits_are_one_line(tmp_path, pre, uncached, capsys, monkeypatch) -> None:
    database = filled(pre, tmp_path)
    set_value(database, key_of(pre, RECORDS[2]), "{bad")  # its delete fails too
    real_init = Cache.__init__

    def init(self: Cache, folder: Path) -> None:
        real_init(self, folder)
        self.db = FailingWrites(self.db)  # type: ignore[assignment]

    monkeypatch.setattr(Cache, "__init__", init)
    capsys.readouterr()
    out, counts = run(pre, tmp_path)
    assert out == uncached and (counts.annotated, counts.cached) == (1, 2)
    bad, write = warnings(capsys.readouterr().err)
    assert "bad annotation cache entry" in bad
    assert str(database) in write and "database or disk is full" in write


# --- the command line -------------------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pipeline", "preannotate", *args], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_poisoned_cache_gives_the_output_of_no_cache(tmp_path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    plain, out = tmp_path / "plain.jsonl", tmp_path / "out.jsonl"
    result = cli("--input", str(src), "--output", str(plain))
    assert result.returncode == 0, result.stderr
    cache = tmp_path / "cache"
    assert cli("--input", str(src), "--output", str(out), "--cache", str(cache)).returncode == 0

    database = cache / FILE
    db = sqlite3.connect(database)
    rows = db.execute("SELECT key, value FROM annotation ORDER BY key").fetchall()
    assert len(rows) == len(RECORDS)
    poisons = [_entity_offsets_out_of_range, _wrong_text_hash, lambda entry, text: "{not json"]
    by_hash = {text_hash(r["text"]): r["text"] for r in RECORDS}
    with db:
        for (key, value), poison in zip(rows, poisons, strict=True):
            entry = json.loads(value)
            bad = poison(entry, by_hash[entry["text_sha256"]])
            db.execute("UPDATE annotation SET value = ? WHERE key = ?", (bad if isinstance(bad, str) else dumps(bad),
                                                                        key))
    db.close()

    result = cli("--input", str(src), "--output", str(out), "--cache", str(cache))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == plain.read_bytes()
    assert "Traceback" not in result.stderr
    reports = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(reports) == len(RECORDS) and all(str(database) in line for line in reports)
    assert f"{len(RECORDS)} annotated, 0 from cache" in result.stderr

    _random_bytes(database)
    result = cli("--input", str(src), "--output", str(out), "--cache", str(cache))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == plain.read_bytes()
    [report] = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert "Traceback" not in result.stderr and str(database) in report and "damaged" in report
