"""The benchmark command runs end to end at a tiny size and prints its fields (timings are not asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from pipeline.bench.preannotate import synthetic_corpus

ROOT = Path(__file__).resolve().parent.parent


def test_synthetic_corpus_is_deterministic_and_news_like() -> None:
    first = synthetic_corpus(5)
    assert first == synthetic_corpus(5)
    assert first != synthetic_corpus(5, seed=14)
    assert all(len(t) > 300 and "\n\n" in t for t in first)


def test_bench_prints_throughputs_and_ratio() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "bench", "preannotate", "--docs", "6", "--n-process", "2", "--repeat", "2"],
        cwd=ROOT, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"bench preannotate: 6 docs, \d+ chars, model \S+ \S+, batch_size \d+, cache off, 2 turn\(s\) each, "
                     r"stage then bare", out)
    assert "bare docs/s" in out and "stage chars/s" in out and "ratio min/med/max" in out and "stage tree MB" in out
    rows = re.findall(r"^\s+([12])\s+([\d.]+)\s+(\d+)\s+([\d.]+)\s+(\d+)\s+([\d.]+)/([\d.]+)/([\d.]+)\s+(\d+)\s+(\d+)$",
                      out, re.MULTILINE)
    assert [r[0] for r in rows] == ["1", "2"]
    assert all(float(x) > 0 for r in rows for x in r[1:])
    for r in rows:
        assert float(r[5]) <= float(r[6]) <= float(r[7])
    # two spaCy processes each load the model: the tree is larger with n_process 2 than in one process
    assert int(rows[1][9]) > int(rows[0][9]) + 100 and int(rows[1][8]) > int(rows[0][8]) + 100
    assert re.search(r"^ratio stage/bare, 1 process, median: wall [\d.]+, cpu [\d.]+$", out, re.MULTILINE)
    assert re.search(r"^speed-up with 2 processes: bare [\d.]+x, stage [\d.]+x$", out, re.MULTILINE)
    own = re.search(r"^geonews_preannotate alone \(.*\): ([\d.]+) CPU s, ([\d.]+)% of the stage's CPU in 1 process$",
                    out, re.MULTILINE)
    assert own is not None, out
    assert float(own[1]) > 0 and 0 < float(own[2]) < 100  # the component is part of the stage, never all of it


def test_bench_rejects_unknown_stage() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "bench", "ingest"],
        cwd=ROOT, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: no benchmark for stage 'ingest'; available: preannotate, scale, label-studio"
