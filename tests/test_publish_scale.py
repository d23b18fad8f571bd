"""Publish at scale: the article summaries live on disk, so memory is flat in the number of articles."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from test_publish import LABELED, build, offline_hf  # noqa: F401 (fixture)
from test_publish_streaming import peak

from pipeline import publish
from pipeline.dataset.summaries import Summaries

TEMPLATES = [json.loads(line) for line in LABELED.read_text().splitlines()]
GOLD = [t for t in TEMPLATES if t["status"] == "gold"]
SILVER = next(t for t in TEMPLATES if t["status"] == "silver" and t["text"].startswith("Moscow warned Washington."))
N_GOLD = 10  # a fixed number of human-annotated articles: the corpus grows by machine-labelled ones


def tiny_silver(i: int) -> dict:
    """A one-sentence machine-labelled article: two entities and one stance, its id and date its own."""
    rec = dict(SILVER)
    rec["id"] = rec["story_id"] = f"s{i:07d}"
    rec["date"] = f"2022-{1 + i % 12:02d}-{1 + i % 28:02d}"
    rec["text"] = "Moscow warned Washington."
    rec["paragraphs"] = rec["sentences"] = [{"start": 0, "end": 25}]
    rec["entities"], rec["stances"] = SILVER["entities"][:2], SILVER["stances"][:1]
    rec["predictions"] = {"entities": [], "stances": [], "model_version": "3.8.0"}
    rec["near_duplicates"] = []
    return rec


def corpus(path: Path, n_silver: int) -> Path:
    """N_GOLD gold articles and `n_silver` tiny silver ones, in a shuffled order."""
    records = [dict(GOLD[i % len(GOLD)], id=f"g{i:04d}", story_id=f"g{i:04d}") for i in range(N_GOLD)]
    records += [tiny_silver(i) for i in range(n_silver)]
    random.Random(7).shuffle(records)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory, offline_hf) -> tuple[Path, Path]:  # noqa: F811 (datasets offline before its import)
    folder = tmp_path_factory.mktemp("scale")
    return corpus(folder / "n.jsonl", 250), corpus(folder / "4n.jsonl", 1000)


def test_memory_of_publish_is_flat_in_the_number_of_articles(tmp_path: Path, corpora: tuple[Path, Path]) -> None:
    small, large = corpora
    build(tmp_path, out="warm", rows_per_shard=1000)  # imports and caches out of the measure
    at_n = peak(lambda: build(tmp_path, out="n", labeled=small, rows_per_shard=1000))
    at_4n = peak(lambda: build(tmp_path, out="4n", labeled=large, rows_per_shard=1000))
    # the same measure sees the corpus: holding every article's summary, as publish once did, grows with it
    held_n = peak(lambda: [publish.summarize(json.loads(line)) for line in small.read_text().splitlines()])
    held_4n = peak(lambda: [publish.summarize(json.loads(line)) for line in large.read_text().splitlines()])
    assert held_4n / held_n > 3
    # a fixed ~12 MB (the gold articles, the tokenizer, the card) hides a growth in a ratio of peaks: holding the
    # summaries made publish's peak grow by ~40% of theirs (1.05 MB of 2.7 MB here), on disk it does not grow
    assert at_4n - at_n < 0.1 * (held_4n - held_n), (at_n, at_4n, held_n, held_4n)


def test_summaries_come_back_in_id_order_with_their_lines(tmp_path: Path) -> None:
    found = Summaries(tmp_path / "s.sqlite")
    try:
        # code-point order, as Python sorts str: "Z" < "a" < "é" < "\U0001f600"; one id twice keeps file order
        for lineno, key in enumerate(["é", "a", "\U0001f600", "Z", "a"], 1):
            found.add(key, lineno, {"id": key, "line": lineno})
        found.locate([0, 10, 25, 31, 40])
        assert len(found) == 5
        assert [(s["id"], s["line"]) for s in found] == [("Z", 4), ("a", 2), ("a", 5), ("é", 1), ("\U0001f600", 3)]
        assert list(found.where()) == [(4, 31), (2, 10), (5, 40), (1, 0), (3, 25)]
        assert list(found) == list(found)  # read as often as needed
        assert {"id": "Z", "line": 4} in found and {"id": "Z", "line": 1} not in found
    finally:
        found.close()
