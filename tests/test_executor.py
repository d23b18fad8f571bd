"""Tests of the Dask execution engine: outputs identical with 1 and 3 workers, the cache across workers, progress."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.bench.preannotate import synthetic_corpus
from pipeline.common.executor import Engine, local_worker_limit, run_shards, shards, worker_state
from pipeline.common.shards import MANIFEST, write_records

ROOT = Path(__file__).resolve().parent.parent
SEEDS = sorted((ROOT / "corpus").glob("*.txt"))
# The "3 workers" of these tests: 2 on a 2-CPU machine, where a stage refuses more (Engine.problem).
MANY = min(3, local_worker_limit())


def _square_shard(shard: list[int]) -> list[int]:
    """A picklable shard function with per-process state."""
    offset = worker_state("offset", lambda: 0)
    return [x * x + offset for x in shard]


def test_shards_are_consecutive_and_cover_everything() -> None:
    assert [len(s) for s in shards(range(10), 4)] == [4, 4, 2]
    assert [x for s in shards(range(10), 3) for x in s] == list(range(10))


def test_cluster_keeps_input_order(monkeypatch) -> None:
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    local = list(run_shards(range(200), _square_shard, Engine(1, 7), desc="test", total=200))
    cluster = list(run_shards(range(200), _square_shard, Engine(2, 7), desc="test", total=200))
    assert local == cluster == [x * x for x in range(200)]


def _worker_setup(shard: list[int]) -> list[tuple[str | None, bool, str | None]]:
    """What a worker runs with: glibc's trim threshold, whether the profiler is on, its OpenMP threads."""
    import os

    import dask

    return [(os.environ.get("MALLOC_TRIM_THRESHOLD_"), dask.config.get("distributed.worker.profile.enabled"),
             os.environ.get("OMP_NUM_THREADS"))] * len(shard)


def test_local_cluster_workers_keep_glibc_trim_and_run_no_profiler(monkeypatch) -> None:
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    seen = set(run_shards(range(4), _worker_setup, Engine(2, 1), desc="test", total=4))
    assert seen == {(None, False, "1")}


def _params(tmp_path: Path, **preannotate: object) -> Path:
    data = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    data["preannotate"].update(preannotate)
    path = tmp_path / f"params-{len(list(tmp_path.glob('params-*')))}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _run(tmp_path: Path, src: Path, params: Path, name: str, cache: Path | None = None) -> tuple[dict[str, bytes], str]:
    """Pre-annotate `src` into the shard folder `name`; the bytes of each file it holds, and the stage's stderr."""
    out = tmp_path / name / "preannotated"  # the same folder name, so the same shard names, in every run
    args = [sys.executable, "-m", "pipeline", "preannotate", "--input", str(src), "--output", str(out),
            "--params", str(params)]
    if cache:
        args += ["--cache", str(cache)]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}, result.stderr


def _records(folder: dict[str, bytes]) -> bytes:
    """The shards' bytes in order (the manifest left out)."""
    return b"".join(data for name, data in sorted(folder.items()) if name != MANIFEST)


def _write(path: Path, texts: list[str], per_shard: int = 700) -> Path:
    write_records(path, ({"id": f"a{i:05d}", "text": t} for i, t in enumerate(texts)), per_shard)
    return path


def test_2000_articles_identical_with_1_and_3_workers_and_cache_on_any_worker(tmp_path, monkeypatch) -> None:
    """A blank pipeline (the rules, not the model, are the point) over 2,000 articles: a shard folder in (shards of
    700), Dask tasks of 300 or 2,000, output shards of 500 (preannotate.records_per_shard) whatever the tasks."""
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    texts = synthetic_corpus(2010, sentences=(3, 6))
    src = _write(tmp_path / "in" / "articles", texts[:2000])
    one, log1 = _run(tmp_path, src, _params(tmp_path, model="blank:en", n_workers=1, shard_size=2000,
                                            records_per_shard=500), "one")
    three, log3 = _run(tmp_path, src, _params(tmp_path, model="blank:en", n_workers=MANY, shard_size=300,
                                              records_per_shard=500), "three")
    assert one == three  # every shard file and the manifest, byte for byte
    assert sorted(one) == [MANIFEST] + [f"preannotated-{i:05d}-of-00004.jsonl" for i in range(4)]
    assert [len(data.splitlines()) for name, data in sorted(one.items()) if name != MANIFEST] == [500] * 4
    assert "Dask cluster" in log3 and f"with {MANY} workers" in log3 and "Dask cluster" not in log1
    assert "2000/2000" in log1 and "2000/2000" in log3  # the progress bar, on stderr only
    assert b"2000/2000" not in _records(one)

    params3 = _params(tmp_path, model="blank:en", n_workers=MANY, shard_size=300, records_per_shard=500)
    cache = tmp_path / "cache"
    _run(tmp_path, src, params3, "warm", cache)
    grown = _write(tmp_path / "in-grown" / "articles", texts)  # the same 2,000 and 10 more
    out, log = _run(tmp_path, grown, params3, "grown", cache)
    assert "10 annotated, 2000 from cache" in log
    assert _records(out).startswith(_records(one)) and len(_records(out).splitlines()) == 2010


@pytest.mark.slow
def test_seeds_identical_with_1_and_3_workers(tmp_path, monkeypatch) -> None:
    """The real model on the seeds: one article a shard, so three workers really share them."""
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    src = tmp_path / "seeds.jsonl"
    src.write_text("".join(json.dumps({"id": p.stem, "text": p.read_text(encoding="utf-8")}) + "\n" for p in SEEDS),
                   encoding="utf-8")
    one, _ = _run(tmp_path, src, _params(tmp_path, n_workers=1, shard_size=1), "one")
    three, _ = _run(tmp_path, src, _params(tmp_path, n_workers=MANY, shard_size=1), "three")
    assert one == three
    assert len(_records(one).splitlines()) == len(SEEDS)


def test_more_local_workers_than_cpus_is_refused_unless_a_cluster_is_named(monkeypatch) -> None:
    """64 workers on 2 CPUs started 64 processes; 1 and 2 workers stay valid on any machine (CI has 2 CPUs)."""
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert Engine(64, 10).problem() == ("n_workers 64 is more than this machine's 2 CPUs (at most 2 local worker "
                                        "processes; set DASK_SCHEDULER_ADDRESS to use a Dask cluster's)")
    assert Engine(3, 10).problem() is not None
    assert Engine(1, 10).problem() is None and Engine(2, 10).problem() is None
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: one CPU, and still 2 workers allowed
    assert Engine(2, 10).problem() is None and Engine(3, 10).problem() is not None
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert Engine(16, 10).problem() is None and Engine(17, 10).problem() is not None
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:8786")  # the cluster's workers, not this machine's
    assert Engine(64, 10).problem() is None


def test_n_workers_over_the_cpu_count_is_a_config_error_in_ingest_and_preannotate(tmp_path: Path, monkeypatch) -> None:
    from pipeline.common.config import section
    from pipeline.common.errors import ConfigError
    from pipeline.entities.loader import Params
    from pipeline.ingest import IngestParams

    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    params = _params(tmp_path, n_workers=64, n_process=1)
    data = yaml.safe_load(params.read_text(encoding="utf-8"))
    data["ingest"]["n_workers"] = 64
    params.write_text(yaml.safe_dump(data), encoding="utf-8")
    for cls, name in ((Params, "preannotate"), (IngestParams, "ingest")):
        with pytest.raises(ConfigError, match=rf"^{params}:{name}: n_workers 64 is more than this machine's 2 CPUs"):
            section(cls, name, params)
    data["ingest"]["n_workers"] = data["preannotate"]["n_workers"] = 2
    params.write_text(yaml.safe_dump(data), encoding="utf-8")
    section(Params, "preannotate", params)
    section(IngestParams, "ingest", params)
