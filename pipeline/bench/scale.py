"""The scale benchmark: ingest -> preannotate -> merge -> evaluate -> publish on a generated corpus, beside bare libraries.

Every stage runs as its own CLI child process (`python -m pipeline <stage>`), exactly as `dvc repro` runs it, and
so does each bare-library baseline (`python -m pipeline.bench.scale bare ...`): the wall time includes
interpreter start-up on both sides. Memory is the whole tree's peak (the resident memory of the child and all its
descendants, Dask workers and spaCy processes included, summed and sampled: pipeline/bench/memory.py) beside the
largest process (`ru_maxrss` from `wait4`). Stage and baseline run in turns (stage, bare, stage, bare, ...) `repeat`
times; a row shows the median times and the min / median / max of the per-turn ratios. Pre-annotation with the real model runs ~10-20 articles/s a core, so
the scale rows use `blank:en` (tokenizer and the domain rules, no statistical model) and the real model's ratio
is measured on `--preannotate-articles` articles.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

import yaml

from pipeline.bench.corpus import write_corpus
from pipeline.bench.memory import TreePeak
from pipeline.common import shards
from pipeline.common.config import load_params
from pipeline.common.errors import ConfigError, PipelineError

SCALE_MODEL = "blank:en"
STAGES = ("ingest", "preannotate", "merge", "evaluate", "publish")
BARE = {
    "ingest": "json read+write",
    "preannotate": "nlp.pipe",
    "merge": "json read+write",
    "evaluate": "json read",
    "publish": "pyarrow write",
}


class StageFailed(PipelineError):
    """A benchmarked child process failed; the benchmark exits with its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code if exit_code > 0 else 1


@dataclass(frozen=True)
class Run:
    """One child process: wall and CPU seconds (user + system, its processes), peak MB of its tree and largest process."""

    seconds: float
    cpu: float
    largest_mb: float
    tree_mb: float


def typical(runs: Sequence[Run]) -> Run:
    """Median times and the highest memory peaks of repeated runs."""
    return Run(statistics.median(r.seconds for r in runs), statistics.median(r.cpu for r in runs),
               max(r.largest_mb for r in runs), max(r.tree_mb for r in runs))


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """Min, median and max."""
    return min(values), statistics.median(values), max(values)


@dataclass(frozen=True)
class Row:
    """One stage at one corpus size, beside its bare-library baseline, each run `repeat` times in turns."""

    stage: str
    model: str
    articles: int
    stage_runs: tuple[Run, ...]
    bare_runs: tuple[Run, ...]

    @property
    def stage_run(self) -> Run:
        """The stage's median run."""
        return typical(self.stage_runs)

    @property
    def bare_run(self) -> Run:
        """The baseline's median run."""
        return typical(self.bare_runs)

    @property
    def ratios(self) -> tuple[float, float, float]:
        """Min, median, max over the turns of stage throughput over bare throughput (1.0 = as fast as the library)."""
        return spread([b.seconds / s.seconds for s, b in zip(self.stage_runs, self.bare_runs, strict=True)])

    @property
    def cpu_ratio(self) -> float:
        """The median ratio in CPU time, steadier than wall time on a shared machine."""
        return statistics.median(b.cpu / s.cpu for s, b in zip(self.stage_runs, self.bare_runs, strict=True))

    def as_dict(self) -> dict[str, Any]:
        """The row as plain data."""
        st, bare, (low, mid, high) = self.stage_run, self.bare_run, self.ratios
        return {"stage": self.stage, "model": self.model, "articles": self.articles, "repeats": len(self.stage_runs),
                "seconds": st.seconds, "cpu_seconds": st.cpu, "articles_s": self.articles / st.seconds,
                "tree_mb": st.tree_mb, "largest_mb": st.largest_mb, "bare": BARE[self.stage],
                "bare_seconds": bare.seconds, "bare_cpu_seconds": bare.cpu, "bare_articles_s": self.articles / bare.seconds,
                "bare_tree_mb": bare.tree_mb, "bare_largest_mb": bare.largest_mb,
                "ratio_min": low, "ratio": mid, "ratio_max": high, "cpu_ratio": self.cpu_ratio}


@dataclass(frozen=True)
class Resources:
    """The rule files the stages read (absolute paths: children may run anywhere)."""

    params: Path
    boilerplate: Path
    patterns: Path
    actors: Path
    lexicon: Path
    guidelines: Path


def run_child(args: Sequence[str], log: Path) -> Run:
    """Run one child process with stdout/stderr in `log`; its wall and CPU time, ru_maxrss and its tree's peak."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                          os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    env.pop("DASK_SCHEDULER_ADDRESS", None)  # the local, one-process figures
    with open(log, "wb") as out:
        start = time.perf_counter()
        child = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT, env=env)
        with TreePeak(child.pid) as peak:
            _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    child.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise StageFailed(f"bench scale: {' '.join(args[2:5])} failed with exit {code}: {tail[0]} (log {log})", code)
    # ru_maxrss is in KiB on Linux; a tree is never smaller than its largest process (a sample can miss a short peak)
    largest = usage.ru_maxrss / 1024
    return Run(seconds, usage.ru_utime + usage.ru_stime, largest, max(peak.tree_mb, largest))


def in_turns(stage: Sequence[str], bare: Sequence[str], logs: Path, name: str, repeat: int
             ) -> tuple[tuple[Run, ...], tuple[Run, ...]]:
    """Run the stage and its baseline `repeat` times in turns (stage, bare, stage, bare, ...); logs of the last turn."""
    runs: tuple[list[Run], list[Run]] = ([], [])
    for _ in range(repeat):
        runs[0].append(run_child(stage, logs / f"{name}.log"))
        runs[1].append(run_child(bare, logs / f"bare-{name}.log"))
    return tuple(runs[0]), tuple(runs[1])


def _params(base: Path, out: Path, model: str, n_process: int, n_workers: int = 1, shard_size: int = 0) -> Path:
    """A copy of params.yaml with the benchmark's model, spaCy processes, Dask workers (1: no cluster), shard size."""
    data = load_params(base)  # bounded: no YAML bomb
    data["preannotate"].update(model=model, n_process=n_process, n_workers=n_workers)
    if shard_size:
        data["preannotate"]["shard_size"] = shard_size
    data["ingest"]["n_workers"] = 1
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def _files(folder: Path) -> list[str]:
    """The JSON Lines shards of a stage's shard folder, in order, for the bare baselines to read as plain files."""
    return [str(folder / e["file"]) for e in shards.manifest(folder)["shards"]]


def _bare(kind: str, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", "pipeline.bench.scale", "bare", kind, *map(str, args)]


def _stage(stage: str, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", "pipeline", stage, *map(str, args)]


def bench_size(n: int, work: Path, res: Resources, *, batch_size: int, max_publish: int,
               stages: Sequence[str] = STAGES, repeat: int = 1) -> Iterator[Row]:
    """Generate `n` raw articles in `work` and yield one row per stage in `stages` (blank:en for preannotate).

    A stage left out is not run: the next one reads its output of an earlier run in the same `work`. Publish runs
    only up to `max_publish` raw articles.
    """
    corpus, logs = work / "corpus", work / "logs"
    for folder in (corpus, logs, work / "annotations", work / "releases"):
        folder.mkdir(parents=True, exist_ok=True)
    params = _params(res.params, work / "params.yaml", SCALE_MODEL, 1)
    p = {name: work / name for name in ("articles", "preannotated", "labeled.jsonl", "dataset",
                                        "metrics", "plots", "bare.out")}
    if "ingest" in stages:
        write_corpus(corpus, n)
        yield Row("ingest", "-", n, *in_turns(
            _stage("ingest", "--corpus", corpus, "--output", p["articles"], "--report", work / "ingest_report.json",
                   "--patterns", res.boilerplate, "--params", params),
            _bare("json", p["bare.out"], *map(str, sorted(corpus.glob("*.jsonl")))), logs, f"ingest-{n}", repeat))
    articles = shards.count_records(p["articles"])
    rules = ("--patterns", res.patterns, "--actors", res.actors, "--lexicon", res.lexicon)
    if "preannotate" in stages:
        yield Row("preannotate", SCALE_MODEL, articles, *in_turns(
            _stage("preannotate", "--input", p["articles"], "--output", p["preannotated"], "--params", params, *rules),
            _bare("pipe", SCALE_MODEL, "1", str(batch_size), *_files(p["articles"])), logs, f"preannotate-{n}", repeat))
    if "merge" in stages:
        yield Row("merge", "-", articles, *in_turns(
            _stage("merge", "--preannotated", p["preannotated"], "--annotations", work / "annotations", "--output",
                   p["labeled.jsonl"], "--report", work / "merge_report.json", "--params", params, *rules),
            _bare("json", p["bare.out"], *_files(p["preannotated"])), logs, f"merge-{n}", repeat))
    if "evaluate" in stages:
        yield Row("evaluate", "-", articles, *in_turns(
            _stage("evaluate", "--input", p["labeled.jsonl"], "--metrics", p["metrics"], "--plots", p["plots"],
                   "--params", params),
            _bare("json", "-", str(p["labeled.jsonl"])), logs, f"evaluate-{n}", repeat))
    if "publish" not in stages or n > max_publish:
        return
    yield Row("publish", "-", articles, *in_turns(
        _stage("publish", "--input", p["labeled.jsonl"], "--output", p["dataset"], "--metrics", p["metrics"],
               "--releases", work / "releases", "--guidelines", res.guidelines, "--params", params),
        _bare("parquet", str(p["dataset"]), str(work / "bare-dataset")), logs, f"publish-{n}", repeat))


def bench_model(m: int, work: Path, res: Resources, *, model: str, n_process: int, batch_size: int,
                dask: bool = False, repeat: int = 1) -> Row:
    """Preannotate the first `m` cleaned articles with the real model, beside bare nlp.pipe with the same processes.

    With `dask`, the stage runs on a LocalCluster of `n_process` Dask workers (spaCy's n_process 1 each).
    """
    sample = work / "sample.jsonl"
    shards.write_records(sample, islice(shards.read_objects(work / "articles"), m), m)
    # On Dask, one shard a worker: a sample smaller than preannotate.shard_size would be one task on one worker.
    how_many = (1, n_process, -(-m // n_process)) if dask else (n_process, 1, 0)
    params = _params(res.params, work / "params-model.yaml", model, *how_many)
    runs = in_turns(_stage("preannotate", "--input", sample, "--output", work / "sample-out.jsonl", "--params", params,
                           "--patterns", res.patterns, "--actors", res.actors, "--lexicon", res.lexicon),
                    _bare("pipe", model, str(n_process), str(batch_size), str(sample)), work / "logs",
                    "preannotate-model", repeat)
    how = f"n_workers={n_process}" if dask else f"n_process={n_process}"
    return Row("preannotate", f"{model} {how}", shards.count_records(sample), *runs)


HEADER = (f"{'stage':<12} {'model':<32} {'articles':>8} {'seconds':>8} {'cpu s':>8} {'articles/s':>10} {'tree MB':>8} "
          f"{'max MB':>7}  {'bare':<16} {'seconds':>8} {'cpu s':>8} {'articles/s':>10} {'tree MB':>8} {'max MB':>7} "
          f"{'ratio min/med/max':>17} {'cpu':>5}")


def show(row: Row, out: TextIO) -> None:
    """Print one table row."""
    d = row.as_dict()
    ratios = f"{d['ratio_min']:.2f}/{d['ratio']:.2f}/{d['ratio_max']:.2f}"
    print(f"{d['stage']:<12} {d['model']:<32} {d['articles']:>8} {d['seconds']:>8.1f} {d['cpu_seconds']:>8.1f} "
          f"{d['articles_s']:>10.1f} {d['tree_mb']:>8.0f} {d['largest_mb']:>7.0f}  {d['bare']:<16} "
          f"{d['bare_seconds']:>8.1f} {d['bare_cpu_seconds']:>8.1f} {d['bare_articles_s']:>10.1f} "
          f"{d['bare_tree_mb']:>8.0f} {d['bare_largest_mb']:>7.0f} {ratios:>17} {d['cpu_ratio']:>5.2f}", file=out)


def linearity(rows: list[Row], out: TextIO) -> None:
    """Per stage, CPU seconds per 10,000 articles and peak MB at each size, and how much the peak grows per 10,000."""
    scale = [r for r in rows if r.model in ("-", SCALE_MODEL)]
    if all(len({r.articles for r in scale if r.stage == stage}) < 2 for stage in STAGES):
        return
    print("linearity: CPU seconds per 10,000 articles and tree peak MB at each size; peak growth per 10,000 more articles",
          file=out)
    for stage in STAGES:
        mine = sorted((r for r in scale if r.stage == stage), key=lambda r: r.articles)
        if len(mine) < 2:
            continue
        cells = [f"{r.articles}: {r.stage_run.cpu * 1e4 / r.articles:.1f} s, {r.stage_run.tree_mb:.0f} MB"
                 for r in mine]
        growth = (mine[-1].stage_run.tree_mb - mine[0].stage_run.tree_mb) * 1e4 / (mine[-1].articles - mine[0].articles)
        print(f"  {stage:<12} " + "; ".join(cells) + f"; +{growth:.0f} MB per 10,000", file=out)


def main(*, articles: Sequence[int], preannotate_articles: int, n_process: int, max_publish: int,
         workdir: Path | None, res: Resources, stages: Sequence[str] = STAGES, dask: bool = False,
         repeat: int = 1, out: TextIO = sys.stdout) -> list[dict[str, Any]]:
    """Run the benchmark of `stages` at every size in `articles`, then the real model on `preannotate_articles`;
    print the table."""
    if not articles or min(articles) < 1 or preannotate_articles < 0 or n_process < 1 or repeat < 1:
        raise ConfigError("--articles, --n-process and --repeat must be at least 1, --preannotate-articles at least 0")
    if not stages or set(stages) - set(STAGES):
        raise ConfigError(f"--stages: expected some of {', '.join(STAGES)}, got {', '.join(stages) or 'none'}")
    if set(stages) != set(STAGES) and workdir is None:
        raise ConfigError("--stages without every stage needs --workdir: the stages left out ran there before")
    for path in (res.params, res.boilerplate, res.patterns, res.actors, res.lexicon, res.guidelines):
        if not path.is_file():
            raise ConfigError(f"{path}: file not found")
    cfg = load_params(res.params)["preannotate"]
    model = cfg["model"]
    root = Path(tempfile.mkdtemp(prefix="bench-scale-")) if workdir is None else workdir
    print(f"bench scale: corpus sizes {', '.join(map(str, articles))} raw articles (seed-like, Pareto reprint "
          f"clusters); every stage and baseline a child process, {repeat} turn(s) each, alternating; tree MB = peak RSS "
          f"summed over the child and its descendants, max MB = its largest process (ru_maxrss); ratio = bare s / "
          f"stage s per turn; preannotate rows at scale "
          f"use {SCALE_MODEL}, the real model {model} on {preannotate_articles} articles; publish up to "
          f"{max_publish} raw articles; stages {', '.join(stages)}; load average {os.getloadavg()[0]:.1f}; work in {root}", file=out)
    print(HEADER, file=out)
    rows: list[Row] = []
    try:
        for n in articles:
            work = root / f"n{n}"
            for row in bench_size(n, work, res, batch_size=cfg["batch_size"], max_publish=max_publish,
                                  stages=stages, repeat=repeat):
                rows.append(row)
                show(row, out)
                out.flush()
        if preannotate_articles:
            row = bench_model(preannotate_articles, root / f"n{articles[-1]}", res, model=model,
                              n_process=n_process, batch_size=cfg["batch_size"], dask=dask, repeat=repeat)
            rows.append(row)
            show(row, out)
        linearity(rows, out)
    finally:
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    return [r.as_dict() for r in rows]


# ---------------------------------------------------------------- the bare-library baselines (child processes)


def _bare_json(output: str, inputs: Sequence[str]) -> None:
    """Plain `json` read of every line of `inputs` and write of each object to `output` ('-' = read only)."""
    sink = open(os.devnull if output == "-" else output, "w", encoding="utf-8")  # noqa: SIM115
    with sink:
        for name in inputs:
            with open(name, encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        obj = json.loads(line)
                        if output != "-":
                            sink.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _bare_pipe(model: str, n_process: int, batch_size: int, paths: Sequence[str]) -> None:
    """Bare `nlp.pipe` over the texts of JSON Lines files, with the stage's model, processes and batch size."""
    import spacy

    nlp = spacy.blank(model.removeprefix("blank:")) if model.startswith("blank:") else spacy.load(model)
    def texts() -> Iterator[str]:
        for path in paths:
            with open(path, encoding="utf-8") as handle:
                yield from (json.loads(line)["text"] for line in handle if line.strip())

    for _ in nlp.pipe(texts(), batch_size=batch_size, n_process=n_process):
        pass


def _bare_parquet(dataset: str, output: str) -> None:
    """pyarrow writing the same rows the stage published (each Parquet file read, then written again)."""
    import pyarrow.parquet as pq

    for path in sorted(Path(dataset).rglob("*.parquet")):
        target = Path(output) / path.relative_to(dataset)
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pq.read_table(path), target)


def _bare_main(argv: list[str]) -> None:
    """`bare json OUT IN...`, `bare pipe MODEL N_PROCESS BATCH IN...`, `bare parquet DATASET OUT`."""
    kind, *args = argv
    if kind == "json":
        _bare_json(args[0], args[1:])
    elif kind == "pipe":
        _bare_pipe(args[0], int(args[1]), int(args[2]), args[3:])
    elif kind == "parquet":
        _bare_parquet(args[0], args[1])
    else:
        raise SystemExit(f"unknown baseline {kind!r}")


if __name__ == "__main__":
    if sys.argv[1:2] != ["bare"]:
        raise SystemExit("usage: python -m pipeline.bench.scale bare KIND ARGS...")
    _bare_main(sys.argv[2:])
