"""evaluate on the Dask executor: partial counts per shard, combined in input order, give the same bytes."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from pipeline import evaluate
from pipeline.common.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"
SOURCES = (FIXTURES / "evaluate" / "labeled.jsonl", FIXTURES / "publish" / "labeled.jsonl")
COPIES = 10


@pytest.fixture(scope="module")
def labeled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Copies of the evaluate and publish fixtures (gold with timed, multi-annotator versions, and silver), shuffled."""
    templates = [json.loads(line) for src in SOURCES for line in src.read_text(encoding="utf-8").splitlines()]
    records = [dict(t, id=f"{k:02d}-{t['id']}") for k in range(COPIES) for t in templates]
    random.Random(3).shuffle(records)
    path = tmp_path_factory.mktemp("evaluate") / "labeled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def run(folder: Path, labeled: Path, **params: int) -> dict[str, bytes]:
    """Every file evaluate writes, by name, with these params."""
    lines = "".join(f"  {k}: {v}\n" for k, v in {"digits": 4, "max_bad_share": 0.0, **params}.items())
    (folder / "params.yaml").write_text("evaluate:\n" + lines, encoding="utf-8")
    evaluate.main(input=labeled, metrics=folder / "metrics", plots=folder / "plots", params=folder / "params.yaml")
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.json"))}


def test_output_is_byte_identical_with_1_and_2_workers_and_any_shard_size(tmp_path: Path, labeled: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    outputs = {}
    for name, params in {"one pass": {}, "shards of 3": {"n_workers": 1, "shard_size": 3},
                         "2 workers": {"n_workers": 2, "shard_size": 3}}.items():
        (tmp_path / name).mkdir()
        outputs[name] = run(tmp_path / name, labeled, **params)
    assert outputs["one pass"] == outputs["shards of 3"] == outputs["2 workers"]
    summary = json.loads(outputs["one pass"]["metrics/summary.json"])
    effort = json.loads(outputs["one pass"]["metrics/effort.json"])
    agreement = json.loads(outputs["one pass"]["metrics/agreement.json"])
    n = sum(len(src.read_text(encoding="utf-8").splitlines()) for src in SOURCES) * COPIES
    # every accumulator has something from many shards to combine
    assert summary["articles"] == n and summary["gold_articles"] >= 2 * COPIES
    assert effort["time"]["articles_timed"] >= COPIES and effort["annotations"] >= 2 * COPIES
    assert agreement["articles"] >= COPIES and summary["entity_f1"] is not None
    assert len(json.loads(outputs["one pass"]["plots/lead_time.json"])) == effort["time"]["articles_timed"]


def test_partial_counts_sum_to_those_of_one_pass(labeled: Path) -> None:
    records = [json.loads(line) for line in labeled.read_text(encoding="utf-8").splitlines()]
    one = evaluate.evaluate(records, engine=evaluate.Engine(1, len(records)))
    assert evaluate.evaluate(records, engine=evaluate.Engine(1, 1)) == one
    half = evaluate.evaluate(records[: len(records) // 2])[0]["dataset"]["total"]["articles"]
    assert one[0]["dataset"]["total"]["articles"] == 2 * half


def test_unrunnable_engine_params_are_a_config_error(tmp_path: Path, labeled: Path) -> None:
    with pytest.raises(ConfigError, match=r"evaluate\.shard_size"):
        run(tmp_path, labeled, shard_size=0)
