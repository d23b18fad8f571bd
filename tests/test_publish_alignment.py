"""Published rows align back to their article (offsets, entity indexes) and splits are sharded as the Hub names them."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from test_publish import LABELED, build, built, loaded, offline_hf  # noqa: F401 (fixtures)

MERGED = {r["id"]: r for r in map(json.loads, LABELED.read_text().splitlines())}


def _bio_spans(row: dict[str, Any], names: list[str]) -> list[tuple[int, int, str]]:
    """(start, end, label) in article characters of the BIO entities of one `entities` row."""
    spans: list[list[Any]] = []
    for k, tag in enumerate(names[t] for t in row["ner_tags"]):
        if tag.startswith("B-"):
            spans.append([row["token_starts"][k], row["token_ends"][k], tag[2:]])
        elif tag.startswith("I-"):
            spans[-1][1] = row["token_ends"][k]
    return [(s, e, label) for s, e, label in spans]


def _by_article(ds: Any) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for split in ds.values():
        for row in split:
            out[row["article_id"]].append(row)
    return out


@pytest.mark.parametrize("suffix", ["", "_silver"])
def test_every_entity_and_stance_is_rebuilt_from_the_published_rows_alone(loaded, suffix: str) -> None:  # noqa: F811
    articles = {r["id"]: r for split in loaded["articles" + suffix].values() for r in split}
    entity_rows, stance_rows = _by_article(loaded["entities" + suffix]), _by_article(loaded["stance" + suffix])
    names = next(iter(loaded["entities" + suffix].values())).features["ner_tags"].feature.names
    classes = next(iter(loaded["stance" + suffix].values())).features["label"].names
    assert articles and set(entity_rows) == set(articles)
    for aid, art in articles.items():
        text, merged = art["text"], MERGED[aid]
        assert art["sentences"] == [{"start": s["start"], "end": s["end"]} for s in merged["sentences"]]
        entities: list[tuple[int, int, str]] = []
        for row in sorted(entity_rows[aid], key=lambda r: r["sentence_index"]):
            sentence = art["sentences"][row["sentence_index"]]
            assert (row["sentence_start"], row["sentence_end"]) == (sentence["start"], sentence["end"])
            assert [text[s:e] for s, e in zip(row["token_starts"], row["token_ends"], strict=True)] == row["tokens"]
            entities += _bio_spans(row, names)
        assert entities == sorted((e["start"], e["end"], e["label"]) for e in merged["entities"]), aid
        # "the article's entities" = the `entities` list of its `articles` row; stance rows index into it
        published = [(e["start"], e["end"], e["label"]) for e in art["entities"]]
        assert sorted(published) == entities
        stances = []
        for row in stance_rows[aid]:
            assert text[row["sentence_start"] : row["sentence_end"]] == row["sentence"]
            for role in ("holder", "target"):
                start = row["sentence_start"] + row[f"{role}_start"]
                end = row["sentence_start"] + row[f"{role}_end"]
                assert published[row[f"{role}_index"]] == (start, end, row[f"{role}_label"]), row["id"]
            if classes[row["label"]] != "none":
                stances.append((row["holder_index"], row["target_index"], classes[row["label"]]))
        assert sorted(stances) == sorted((s["holder"], s["target"], s["label"]) for s in merged["stances"]), aid


def test_small_corpora_stay_one_shard_per_split(built: Path) -> None:  # noqa: F811
    shards = sorted(p.relative_to(built).as_posix() for p in built.rglob("*.parquet"))
    assert shards and all(p.endswith("-00000-of-00001.parquet") for p in shards)


def test_a_tiny_shard_size_writes_several_shards_and_load_dataset_reads_every_row(
        tmp_path: Path, loaded, offline_hf) -> None:  # noqa: F811
    out, man = build(tmp_path, out="sharded", rows_per_shard=3)  # offline, a same-named folder may come from the cache
    stance = sorted(p.name for p in (out / "stance").glob("train-*.parquet"))
    n = man["rows"]["stance"]["train"]
    assert n > 6 and len(stance) == -(-n // 3)
    assert stance == [f"train-{i:05d}-of-{len(stance):05d}.parquet" for i in range(len(stance))]
    for name, one_shard in loaded.items():
        sharded = offline_hf.load_dataset(str(out), name)
        assert set(sharded) == set(one_shard), name
        for split in one_shard:
            assert sharded[split].to_list() == one_shard[split].to_list(), (name, split)
    card = (out / "README.md").read_text()
    assert "path: stance/train-*" in card


def test_rows_per_shard_below_one_is_a_config_error(tmp_path: Path) -> None:
    from test_publish import write_params

    from pipeline import publish as stage
    from pipeline.common.errors import ConfigError

    with pytest.raises(ConfigError, match=r"publish\.rows_per_shard: must be in \[1, 9007199254740992\], got 0$"):
        stage.load_config(write_params(tmp_path, rows_per_shard=0))
