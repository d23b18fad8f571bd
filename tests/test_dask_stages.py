"""Ingest then preannotate (the real model) on a seed-like corpus with 1 and 3 Dask workers: every output byte for byte.

The whole DAG with `dvc repro` takes far longer than a minute (tests/test_reproducibility.py), so the two stages
that run on Dask are run directly, as dvc.yaml runs them, each on the other's output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.bench.corpus import write_corpus
from pipeline.common.executor import local_worker_limit

ROOT = Path(__file__).resolve().parent.parent
MANY = min(3, local_worker_limit())  # 2 on a 2-CPU machine, where a stage refuses more


def _stage(*args: str | Path) -> str:
    """Run `python -m pipeline ARGS`; its stderr."""
    result = subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stderr


def _both_stages(tmp_path: Path, corpus: Path, workers: int) -> tuple[dict[str, bytes], str]:
    """Ingest `corpus` and pre-annotate the result with `workers` Dask workers; every output file's bytes, the logs."""
    run = tmp_path / f"workers-{workers}"
    run.mkdir()
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    # Small Dask tasks and output files, so that several workers share the work and every output has several files.
    params["ingest"].update(n_workers=workers, shard_size=20, records_per_shard=25)
    params["preannotate"].update(n_workers=workers, n_process=1, shard_size=6, records_per_shard=15)
    config = tmp_path / f"params-{workers}.yaml"
    config.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    out = run / "out"  # the same folder names in both runs: shard names come from them
    log = _stage("ingest", "--corpus", corpus, "--output", out / "articles", "--report", out / "ingest_report.json",
                 "--patterns", ROOT / "resources" / "boilerplate.yaml", "--params", config)
    log += _stage("preannotate", "--input", out / "articles", "--output", out / "preannotated", "--params", config)
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}, log


def test_ingest_and_preannotate_identical_with_1_and_3_workers(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    stats = write_corpus(corpus, 60)
    assert stats.largest_cluster >= 2  # reprints: near-duplicates are found across Dask tasks, whatever the split
    one, log1 = _both_stages(tmp_path, corpus, 1)
    many, log_many = _both_stages(tmp_path, corpus, MANY)
    assert sorted(one) == sorted(many)
    # byte for byte, file by file; the ingest report also records the params it ran with, n_workers among them
    assert [name for name in one if one[name] != many[name]] == ["ingest_report.json"]
    reports = [json.loads(run["ingest_report.json"]) for run in (one, many)]
    assert [r["params"].pop("n_workers") for r in reports] == [1, MANY]
    assert reports[0] == reports[1]
    assert sum(name.startswith("articles/articles-") for name in one) >= 2
    assert sum(name.startswith("preannotated/preannotated-") for name in one) >= 2
    assert b'"entities":[{"start"' in b"".join(one.values())  # the real model found entities
    assert "Dask cluster" not in log1 and log_many.count(f"with {MANY} workers") == 2  # both stages on the cluster
