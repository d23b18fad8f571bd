"""The shard folders between stages: round trip, many shards, atomic replacement, and each corruption's one-line error."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.common.errors import BadRecords, InputError
from pipeline.common.jsonl import write_jsonl
from pipeline.common.shards import MANIFEST, count_records, read_objects, read_records, write_records

RECORDS = [{"id": f"a{i}", "text": f"Article number {i} — ünïcode", "n": i} for i in range(23)]


def _manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


def test_round_trip_in_one_shard_is_exactly_the_plain_jsonl_file(tmp_path: Path) -> None:
    assert write_records(tmp_path / "articles", RECORDS, 100) == len(RECORDS)
    write_jsonl(tmp_path / "plain.jsonl", RECORDS)
    assert sorted(p.name for p in (tmp_path / "articles").iterdir()) == ["articles-00000-of-00001.jsonl", MANIFEST]
    shard = tmp_path / "articles" / "articles-00000-of-00001.jsonl"
    assert shard.read_bytes() == (tmp_path / "plain.jsonl").read_bytes()
    assert list(read_objects(tmp_path / "articles")) == RECORDS
    assert list(read_objects(tmp_path / "plain.jsonl")) == RECORDS


def test_many_shards_in_order_with_a_manifest_of_counts_and_hashes(tmp_path: Path) -> None:
    folder = tmp_path / "preannotated"
    write_records(folder, iter(RECORDS), 5)
    doc = _manifest(folder)
    assert doc["records"] == 23 and doc["format"] == "jsonl-shards" and doc["version"] == 1
    assert [e["file"] for e in doc["shards"]] == [f"preannotated-{i:05d}-of-00005.jsonl" for i in range(5)]
    assert [e["records"] for e in doc["shards"]] == [5, 5, 5, 5, 3]
    for e in doc["shards"]:
        assert e["sha256"] == hashlib.sha256((folder / e["file"]).read_bytes()).hexdigest()
    located = list(read_records(folder))
    assert [obj for _, _, obj in located] == RECORDS
    assert (located[7][0].name, located[7][1]) == ("preannotated-00001-of-00005.jsonl", 3)
    assert count_records(folder) == 23
    bad = BadRecords("test", 0.0)
    assert len(list(read_records(folder, bad))) == 23 and bad.seen == 23


def test_no_records_is_an_empty_folder_with_a_manifest(tmp_path: Path) -> None:
    assert write_records(tmp_path / "articles", [], 10) == 0
    assert _manifest(tmp_path / "articles") == {"format": "jsonl-shards", "version": 1, "records": 0, "shards": []}
    assert list(read_records(tmp_path / "articles")) == []


def test_rewriting_replaces_the_whole_folder_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    folder = tmp_path / "articles"
    write_records(folder, RECORDS, 5)
    write_records(folder, RECORDS[:3], 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["articles"]
    assert list(read_objects(folder)) == RECORDS[:3]


def test_a_failing_writer_leaves_the_old_folder_and_no_temporary_one(tmp_path: Path) -> None:
    folder = tmp_path / "articles"
    write_records(folder, RECORDS, 5)

    def broken():
        yield from RECORDS[:12]
        raise RuntimeError("stage failed mid-way")

    with pytest.raises(RuntimeError):
        write_records(folder, broken(), 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["articles"]
    assert list(read_objects(folder)) == RECORDS


def test_a_killed_writer_never_leaves_a_folder_that_looks_complete(tmp_path: Path) -> None:
    """A process killed mid-write leaves only a dot-named temporary folder, without a manifest."""
    code = ("import os, sys\nfrom pathlib import Path\nfrom pipeline.common.shards import write_records\n"
            "def recs():\n    for i in range(50):\n        if i == 30:\n            os._exit(9)\n"
            "        yield {'id': i}\nwrite_records(Path(sys.argv[1]), recs(), 10)\n")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "articles")], check=False)
    assert run.returncode == 9
    assert not (tmp_path / "articles").exists()
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(".articles.") and not (left / MANIFEST).exists()


def _corrupt(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "articles"
    write_records(folder, RECORDS, 10)
    return folder, folder / "articles-00001-of-00003.jsonl"


def _error(folder: Path) -> str:
    with pytest.raises(InputError) as exc:
        list(read_records(folder))
    assert exc.value.exit_code == 3
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_a_missing_shard_is_named(tmp_path: Path) -> None:
    folder, shard = _corrupt(tmp_path)
    shard.unlink()
    assert _error(folder) == f"{shard}: shard listed in {MANIFEST} is missing"


def test_an_extra_file_is_named(tmp_path: Path) -> None:
    folder, _ = _corrupt(tmp_path)
    (folder / "stray.jsonl").write_text("{}\n")
    assert _error(folder) == f"{folder / 'stray.jsonl'}: file not listed in {MANIFEST}"


def test_a_missing_manifest_is_named(tmp_path: Path) -> None:
    folder, _ = _corrupt(tmp_path)
    (folder / MANIFEST).unlink()
    assert _error(folder) == f"{folder / MANIFEST}: shard manifest not found"


def test_a_count_mismatch_is_named(tmp_path: Path) -> None:
    folder, shard = _corrupt(tmp_path)
    lines = shard.read_bytes().splitlines(keepends=True)
    shard.write_bytes(b"".join(lines[:-1]))
    assert _error(folder) == f"{shard}: 9 records, the manifest says 10"


def test_a_changed_byte_is_a_hash_mismatch(tmp_path: Path) -> None:
    folder, shard = _corrupt(tmp_path)
    shard.write_bytes(shard.read_bytes().replace(b"Article number 12", b"Article number 99"))
    assert _error(folder) == f"{shard}: sha256 differs from the manifest (the file changed after it was written)"


def test_a_corrupt_line_names_the_shard_and_line(tmp_path: Path) -> None:
    folder, shard = _corrupt(tmp_path)
    lines = shard.read_bytes().splitlines(keepends=True)
    lines[3] = b'{"id": "a13", "text": \n'
    shard.write_bytes(b"".join(lines))
    assert _error(folder).startswith(f"{shard}:4: invalid JSON: ")


def test_a_line_that_is_not_an_object_names_the_shard_and_line(tmp_path: Path) -> None:
    folder, shard = _corrupt(tmp_path)
    lines = shard.read_bytes().splitlines(keepends=True)
    lines[0] = b"[1, 2]\n"
    shard.write_bytes(b"".join(lines))
    assert _error(folder) == f"{shard}:1: expected a JSON object, got list"


def test_no_record_of_a_corrupt_shard_is_yielded(tmp_path: Path) -> None:
    folder, shard = _corrupt(tmp_path)
    shard.write_bytes(shard.read_bytes() + b"{\n")
    got = []
    with pytest.raises(InputError, match=r"articles-00001-of-00003\.jsonl:11: invalid JSON"):
        for _, _, obj in read_records(folder):
            got.append(obj)
    assert got == RECORDS[:10]


def test_the_stage_cli_reports_a_corrupt_shard_with_exit_code_3(tmp_path: Path) -> None:
    folder, shard = _corrupt(tmp_path)
    shard.unlink()
    (tmp_path / "none").mkdir()
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run(
        [sys.executable, "-m", "pipeline", "merge", "--preannotated", str(folder), "--annotations",
         str(tmp_path / "none"), "--output", str(tmp_path / "labeled.jsonl"), "--report", str(tmp_path / "r.json"),
         "--params", str(root / "params.yaml"), "--patterns", str(root / "resources/entity_patterns.yaml"),
         "--actors", str(root / "resources/actors.yaml"), "--lexicon", str(root / "resources/stance_cues.yaml")],
        cwd=root, capture_output=True, text=True, check=False)
    assert run.returncode == 3, run.stderr
    assert f"{shard}: shard listed in {MANIFEST} is missing" in run.stderr
    assert not (tmp_path / "labeled.jsonl").exists()


def test_reading_a_shard_holds_one_line_not_the_shard(tmp_path: Path) -> None:
    import tracemalloc

    folder = tmp_path / "articles"
    write_records(folder, ({"id": f"a{i}", "text": "word " * 2000} for i in range(2000)), 10_000)  # one 20 MB shard
    assert len(_manifest(folder)["shards"]) == 1
    tracemalloc.start()
    n = sum(1 for _ in read_objects(folder))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == 2000
    assert peak < 2_000_000, f"reading a 20 MB shard peaked at {peak / 1e6:.1f} MB"
