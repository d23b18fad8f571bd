"""Tasks streamed from the pre-annotated file in queue order, and the task index push keys them by (no server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.bench.labelstudio import synthetic_records
from pipeline.common.errors import BadRecords, InputError
from pipeline.common.jsonl import read_jsonl, write_jsonl
from pipeline.common.shards import write_records
from pipeline.labelstudio.index import IndexedTask, TaskIndex, list_query
from pipeline.labelstudio.params import load_config
from pipeline.labelstudio.tasks import build_tasks, read_tasks

ROOT = Path(__file__).resolve().parent.parent


def _cfg(tmp_path: Path, queue_order: str = "least_confident_first"):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["labelstudio"]["queue_order"] = queue_order
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return load_config(path)


@pytest.mark.parametrize("order", ["least_confident_first", "input_order"])
def test_a_shard_folder_streams_the_same_tasks_as_one_file(tmp_path, order):
    """Queue order across shards (least confident first mixes them) reads each line back from its own shard."""
    cfg = _cfg(tmp_path, order)
    records = list(synthetic_records(40))
    write_jsonl(tmp_path / "pre.jsonl", records)
    write_records(tmp_path / "preannotated", records, 7)
    assert len(list((tmp_path / "preannotated").glob("*.jsonl"))) == 6
    folder = list(read_tasks(tmp_path / "preannotated", cfg))
    assert folder == list(read_tasks(tmp_path / "pre.jsonl", cfg)) and len(folder) == 40


@pytest.mark.parametrize("order", ["least_confident_first", "input_order"])
def test_the_stream_gives_exactly_the_tasks_of_the_in_memory_build(tmp_path, order):
    cfg = _cfg(tmp_path, order)
    path = tmp_path / "pre.jsonl"
    write_jsonl(path, synthetic_records(40))
    bad = BadRecords("push", 0.0)
    assert list(read_tasks(path, cfg)) == build_tasks(read_jsonl(path, bad), cfg, path, bad)
    ids = [t["data"]["article_id"] for t in read_tasks(path, cfg)]
    scores = [t["predictions"][0]["score"] for t in read_tasks(path, cfg)]
    if order == "least_confident_first":
        assert scores == sorted(scores) and ids != sorted(ids)
    else:
        assert ids == sorted(ids) and scores != sorted(scores)


def test_the_stream_skips_bad_lines_and_repeats_and_can_be_limited(tmp_path, capsys):
    cfg = _cfg(tmp_path, "input_order")
    records = list(synthetic_records(6))
    path = tmp_path / "pre.jsonl"
    lines = [json.dumps(r) for r in records] + ["{not json", json.dumps(records[2]), "",
                                                json.dumps({**records[0], "id": 7})]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError):  # 2 bad of 9 records: over the 5% allowed
        read_tasks(path, cfg)
    capsys.readouterr()
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["labelstudio"]["max_bad_share"] = 0.5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stream = read_tasks(path, load_config(tmp_path / "params.yaml"))
    err = capsys.readouterr().err
    assert f"{path}:7: invalid JSON" in err and f"{path}:10: 'id' must be a non-empty string" in err
    assert [t["data"]["article_id"] for t in stream] == [r["id"] for r in records]  # the repeat is one task
    assert len(stream) == 6
    assert [t["data"]["article_id"] for t in stream.limit(2)] == [r["id"] for r in records[:2]]


def test_a_file_changed_between_reading_and_sending_is_an_error(tmp_path):
    cfg = _cfg(tmp_path, "input_order")
    path = tmp_path / "pre.jsonl"
    write_jsonl(path, synthetic_records(3))
    stream = read_tasks(path, cfg)
    write_jsonl(path, reversed(list(synthetic_records(3))))  # same lines, other order: other offsets
    with pytest.raises(InputError, match="changed while it was being pushed"):
        list(stream)
    path.write_text("x" * 5000 + "\n")  # an offset in the middle of a line that is not JSON
    with pytest.raises(InputError, match="changed while it was being pushed"):
        list(stream)


def test_the_index_keeps_the_first_task_of_a_key_and_lists_every_one():
    entries = [IndexedTask(3, ("a", "h1"), frozenset({"v1"}), False, 1),
               IndexedTask(5, ("a", "h1"), frozenset(), False, 0),
               IndexedTask(8, ("a", "h2"), frozenset({"v2"}), True, 1)]
    index = TaskIndex(entries)
    assert len(index) == 2 and list(index) == entries  # duplicates stay visible to a duplicate report
    assert index.get(("a", "h1")) == entries[0] and ("a", "h2") in index and ("b", "h1") not in index
    assert index.task_ids_of_article("a") == [3, 5, 8] and index.max_id == 8
    assert TaskIndex().max_id == 0


def test_the_listing_query_selects_and_orders_as_the_index_needs():
    query = json.loads(list_query(41, None))
    assert query["ordering"] == ["tasks:id"] and query["selectedItems"] == {"all": True, "excluded": []}
    assert {f["filter"] for f in query["filters"]["items"]} == {"filter:tasks:predictions_model_versions",
                                                                "filter:tasks:id"}
    assert json.loads(list_query(0, [4, 2]))["selectedItems"] == {"all": False, "included": [4, 2]}
