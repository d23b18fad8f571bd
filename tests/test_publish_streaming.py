"""Publish streams its input: memory bounded by a shard, not the corpus; rows in id order whatever the file order."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from test_publish import LABELED, build, offline_hf  # noqa: F401 (fixture)

from pipeline.common.errors import InputError
from pipeline.common.lines import line_offsets, read_jsonl_at
from pipeline.common.provenance import file_digest

TEMPLATES = [json.loads(line) for line in LABELED.read_text().splitlines()]


def synthetic(path: Path, n: int) -> Path:
    """`n` articles made from the fixture's five (one in five gold), written in reverse id order."""
    records = []
    for i in range(n):
        rec = dict(TEMPLATES[i % len(TEMPLATES)])
        rec["id"] = f"{i:06d}-{rec['id']}"
        rec["story_id"] = rec["id"]
        records.append(rec)
    path.write_text("".join(json.dumps(r) + "\n" for r in reversed(records)), encoding="utf-8")
    return path


def peak(fn: Callable[[], object]) -> int:
    """Peak bytes traced by tracemalloc while `fn()` runs."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory, offline_hf) -> tuple[Path, Path]:  # noqa: F811 (datasets offline before its import)
    folder = tmp_path_factory.mktemp("streaming")
    return synthetic(folder / "n.jsonl", 300), synthetic(folder / "2n.jsonl", 600)


def test_memory_of_publish_is_bounded_by_a_shard_not_the_corpus(tmp_path: Path, corpora: tuple[Path, Path]) -> None:
    small, large = corpora
    build(tmp_path, out="warm", labeled=small, rows_per_shard=25)  # imports and caches out of the measure
    at_n = peak(lambda: build(tmp_path, out="n", labeled=small, rows_per_shard=25))
    at_2n = peak(lambda: build(tmp_path, out="2n", labeled=large, rows_per_shard=25))
    # the same measure sees the corpus: holding the parsed records alone doubles with it
    held_n = peak(lambda: [json.loads(line) for line in small.read_text().splitlines()])
    held_2n = peak(lambda: [json.loads(line) for line in large.read_text().splitlines()])
    assert held_2n / held_n > 1.8
    assert at_2n / at_n < 1.3, (at_n, at_2n)


def test_a_sharded_synthetic_corpus_loads_every_row(tmp_path: Path, corpora: tuple[Path, Path],
                                                    offline_hf) -> None:  # noqa: F811
    # a folder name of its own: offline, `datasets` may serve another folder of the same name from its cache
    out, man = build(tmp_path, out="synthetic", labeled=corpora[0], rows_per_shard=25)
    assert len(list((out / "entities_silver").glob("train-*-of-*.parquet"))) > 3
    assert sum(man["rows"]["articles"].values()) + sum(man["rows"]["articles_silver"].values()) == 300
    for name, splits in man["rows"].items():
        ds = offline_hf.load_dataset(str(out), name)
        assert {s: len(d) for s, d in ds.items()} == splits, name
        if name.startswith("articles"):
            ids = [r["id"] for s in ds.values() for r in s]
            assert len(set(ids)) == len(ids)
    assert not list(out.rglob("*.partial"))


def test_file_order_does_not_change_a_byte(tmp_path: Path, corpora: tuple[Path, Path]) -> None:
    lines = corpora[0].read_text().splitlines(keepends=True)
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("".join(lines[1::2] + lines[::2]), encoding="utf-8")
    a, _ = build(tmp_path, out="a", labeled=corpora[0], rows_per_shard=25)
    b, _ = build(tmp_path, out="b", labeled=shuffled, rows_per_shard=25)
    files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    # the card quotes the input's md5, the one thing that tells the two inputs apart
    assert [f for f in files if file_digest(a / f) != file_digest(b / f)] == ["README.md"]


def test_records_are_read_again_at_their_offsets(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n{"b": "é"}\n{"c": 3}\n', encoding="utf-8")
    offsets = line_offsets(path)
    assert list(offsets) == [0, 9, 10, 22]
    assert list(read_jsonl_at(path, [(4, offsets[3]), (1, offsets[0]), (3, offsets[2])])) == [
        {"c": 3}, {"a": 1}, {"b": "é"}]


def test_a_file_changed_between_the_passes_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"b": 2}\n', encoding="utf-8")
    offsets = line_offsets(path)
    path.write_text('{"a": 1}\n[2, 3]\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"x\.jsonl:2: changed while it was read \(not a JSON object\)$"):
        list(read_jsonl_at(path, [(2, offsets[1])]))
    path.write_text('{"a": 1, "b": 2}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"x\.jsonl:2: changed while it was read \(invalid JSON"):
        list(read_jsonl_at(path, [(2, offsets[1])]))
