"""The scale benchmark: its generated corpus, the command's table at a tiny size, and linear near-duplicate work."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.bench.corpus import stories, write_corpus
from pipeline.bench.memory import TreePeak
from pipeline.bench.preannotate import synthetic_corpus
from pipeline.cleaning.dedup import NearDuplicates, Stories

ROOT = Path(__file__).resolve().parent.parent


def test_scale_corpus_is_deterministic_with_reprint_clusters(tmp_path: Path) -> None:
    first = list(stories(400))
    assert first == list(stories(400))
    assert len(first) == 400
    sizes: dict[int, int] = {}
    for story, _ in first:
        sizes[story] = sizes.get(story, 0) + 1
    assert 1 in sizes.values() and max(sizes.values()) >= 3  # lone articles and reprint clusters
    assert max(sizes.values()) <= 400 // 20
    biggest = max(sizes, key=lambda k: sizes[k])
    original, reprint = [r for s, r in first if s == biggest][:2]
    assert original["source"] != reprint["source"] and original["text"] != reprint["text"]
    index = NearDuplicates(0.7, 5)
    index.add(original["text"])
    assert index.add(reprint["text"]), "a reprint must be a near-duplicate of its original"
    stats = write_corpus(tmp_path, 25)
    assert stats.records == 25 and [p.name for p in stats.files] == ["crawl-0000.jsonl"]
    lines = (tmp_path / "crawl-0000.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 25 and set(json.loads(lines[0])) == {"title", "date", "source", "url", "text"}


NUMBER = r"(\d+(?:\.\d+)?)"
# stage, model, articles, seconds, cpu s, articles/s, tree MB, max MB, bare (and its five), ratio min/med/max, cpu
ROW = re.compile(rf"^(\w+)\s+(\S+(?: n_(?:process|workers)=\d+)?)\s+(\d+)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+(\d+)\s+(\d+)\s+"
                 rf"(json read\+write|json read|nlp\.pipe|pyarrow write)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+(\d+)\s+(\d+)"
                 rf"\s+{NUMBER}/{NUMBER}/{NUMBER}\s+{NUMBER}$",
                 re.MULTILINE)


def _bench(tmp_path: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "bench", "scale", *args, "--workdir", str(tmp_path)],
        cwd=ROOT, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _cleaned(folder: Path) -> str:
    """The ingest shard folder's records, counted from its shard files' lines (not its manifest)."""
    files = sorted(folder.glob("articles-*.jsonl"))
    assert files, f"no shard in {folder}"
    return str(sum(1 for f in files for line in f.open(encoding="utf-8") if line.strip()))


def test_bench_scale_prints_a_row_per_stage(tmp_path: Path) -> None:
    out = _bench(tmp_path, "--articles", "30", "--preannotate-articles", "0", "--repeat", "2")
    assert re.search(r"^bench scale: corpus sizes 30 raw articles .* 2 turn\(s\) each, alternating; tree MB = .*"
                     r"preannotate rows at scale use blank:en, "
                     r"the real model \S+ on 0 articles; publish up to 1000000 raw articles", out, re.MULTILINE)
    rows = ROW.findall(out)
    assert [(r[0], r[1], r[8]) for r in rows] == [
        ("ingest", "-", "json read+write"), ("preannotate", "blank:en", "nlp.pipe"), ("merge", "-", "json read+write"),
        ("evaluate", "-", "json read"), ("publish", "-", "pyarrow write"),
    ]
    assert rows[0][2] == "30"  # ingest counts raw records, the others the cleaned articles
    assert {r[2] for r in rows[1:]} == {_cleaned(tmp_path / "n30" / "articles")}
    assert all(float(r[k]) > 0 for r in rows for k in (3, 4, 5, 6, 7, *range(9, 18)))
    for r in rows:
        assert float(r[14]) <= float(r[15]) <= float(r[16])  # min <= median <= max of the two turns' ratios
        assert int(r[6]) >= int(r[7]) and int(r[12]) >= int(r[13])  # a tree is at least its largest process
    assert len({r[14] for r in rows} | {r[16] for r in rows}) > 1  # two turns: the ratios are not all one figure
    logs = sorted(p.name for p in (tmp_path / "n30" / "logs").iterdir())
    assert "ingest-30.log" in logs and "bare-ingest-30.log" in logs
    assert (tmp_path / "n30" / "dataset" / "README.md").is_file()
    assert "linearity" not in out  # one size: nothing to compare
    # --stages reruns one stage on the outputs the others left in the workdir
    (tmp_path / "n30" / "dataset" / "README.md").unlink()
    again = ROW.findall(_bench(tmp_path, "--articles", "30", "--preannotate-articles", "0", "--stages", "publish"))
    assert [(r[0], r[2]) for r in again] == [("publish", rows[-1][2])]
    assert (tmp_path / "n30" / "dataset" / "README.md").is_file()


@pytest.mark.parametrize("args", [["--stages", "publish,nope", "--workdir", "w"], ["--stages", "publish"],
                                  ["--stages", ""]])
def test_bench_scale_stages_must_be_known_and_need_the_workdir_of_the_others(tmp_path: Path, args: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "pipeline", "bench", "scale", "--articles", "30", *args],
                            cwd=tmp_path, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "--stages" in result.stderr and not (tmp_path / "w").exists()


@pytest.mark.slow
def test_bench_scale_two_sizes_real_model_and_publish_cap(tmp_path: Path) -> None:
    out = _bench(tmp_path, "--articles", "30", "--articles", "60", "--preannotate-articles", "4", "--n-process", "1",
                 "--max-publish-articles", "30", "--repeat", "1")  # turns are test_bench_scale_prints_a_row_per_stage's
    rows = ROW.findall(out)
    assert [r[0] for r in rows] == ["ingest", "preannotate", "merge", "evaluate", "publish",
                                    "ingest", "preannotate", "merge", "evaluate",  # publish skipped above 30
                                    "preannotate"]  # the real model
    assert rows[-1][1].endswith("n_process=1") and rows[-1][2] == "4"
    assert re.search(r"^  ingest\s+30: [\d.]+ s, \d+ MB; 60: [\d.]+ s, \d+ MB; \+-?\d+ MB per 10,000$", out, re.MULTILINE)
    assert not re.search(r"^  publish", out, re.MULTILINE)  # one size only: no growth to show
    assert not (tmp_path / "n60" / "dataset").exists()


@pytest.mark.slow
def test_bench_scale_real_model_row_on_dask_workers(tmp_path: Path) -> None:
    out = _bench(tmp_path, "--articles", "30", "--stages", "ingest", "--preannotate-articles", "6", "--n-process", "2",
                 "--dask", "--repeat", "1")
    rows = ROW.findall(out)
    assert [r[0] for r in rows] == ["ingest", "preannotate"]
    assert rows[-1][1].endswith("n_workers=2") and rows[-1][2] == "6"
    tree, largest = int(rows[-1][6]), int(rows[-1][7])
    assert tree > 1.5 * largest  # the scheduler process and two workers, each with the model loaded
    log = (tmp_path / "n30" / "logs" / "preannotate-model.log").read_text(encoding="utf-8")
    assert "Dask cluster" in log and "with 2 workers" in log

# A process holding ~120 MB that starts a child holding ~120 MB, both alive for a while.
_TREE = ("import subprocess, sys, time; held = b'x' * (120 << 20); "
         "subprocess.run([sys.executable, '-c', \"held = b'y' * (120 << 20); import time; time.sleep(1.5)\"]); time.sleep(0.3)")


def test_tree_peak_sums_the_process_and_its_descendants() -> None:
    child = subprocess.Popen([sys.executable, "-c", _TREE])
    with TreePeak(child.pid) as peak:
        child.wait(timeout=60)
    assert child.returncode == 0
    assert 120 < peak.largest_mb < 200  # one process: its 120 MB and an interpreter
    assert peak.tree_mb > 240  # both processes at once, not the largest alone
    assert peak.tree_mb < 2 * peak.largest_mb + 50


def _cluster(members: int) -> list[str]:
    """One story reprinted `members` times, each copy with a different sentence swapped in."""
    base = synthetic_corpus(1, sentences=(36, 36), seed=7)[0]
    fillers = synthetic_corpus(members, sentences=(3, 3), seed=8)
    sentences = base.split(". ")
    return [". ".join([*sentences[: i % 30], fillers[i].split(". ")[0], *sentences[i % 30 + 1 :]])
            for i in range(members)]


def _dedup(texts: list[str]) -> tuple[NearDuplicates, Stories, int]:
    """Index the texts as ingest does; the index, the stories and the number of near-duplicate links found."""
    index, clusters, links = NearDuplicates(0.7, 5), Stories(), 0
    for text in texts:
        me = clusters.add()
        for j, _ in index.add(text):
            clusters.union(j, me)
            links += 1
    return index, clusters, links


def test_a_1000_article_reprint_cluster_costs_linear_work() -> None:
    """Comparisons, links and bucket entries per article stay bounded, so doubling the cluster doubles the work."""
    half, _, half_links = _dedup(_cluster(500))
    full, clusters, full_links = _dedup(_cluster(1000))
    assert set(clusters.sizes()) == {1000}  # one story, found
    bound = 2 * full.bands  # the first and the latest article of each bucket the signature falls in
    assert full.comparisons <= bound * 1000 and full_links <= bound * 1000
    assert full.comparisons > 900  # the cluster really is compared, not skipped
    assert full.comparisons <= 2.2 * half.comparisons and full_links <= 2.2 * half_links
    assert all(len(ends) == 2 for bucket in full.buckets for ends in bucket.values())  # no member lists
    # all-pairs comparison would be ~500,000 here
    assert full.comparisons < 1000 * 999 / 2 / 10
