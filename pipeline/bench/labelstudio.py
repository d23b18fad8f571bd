"""`bench label-studio`: push, no-op push, refresh and pull of N tasks beside the bare API calls doing the same work.

The tasks are of real size: articles of the seed-like corpus (pipeline/bench/corpus.py) pre-annotated by the
project's pre-annotator with the configured model and rules, cycled to N distinct articles. Each pipeline mode
runs as the command a user types (`python -m pipeline push|pull`) in its own process, so its peak memory is that
process's own (its tree's sampled peak, and `ru_maxrss` of its wrapper's children); its time includes Python's
start and imports (about a second). The bare side is `requests` in this process, on a second project: the
same task JSON posted to `/import` in the same batches, the same task listing, the same bulk delete (with the
same no-human-work filter) and predictions import, the same export download. Ratio = bare time / pipeline time
(1.0: no overhead). With `repeat`, the four modes run again on fresh projects: min / median / max of the ratios.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import requests
import yaml

from pipeline.bench.corpus import stories
from pipeline.bench.memory import TreePeak
from pipeline.bench.preannotate import synthetic_corpus
from pipeline.common.config import load_params, section
from pipeline.common.errors import BadRecords, PipelineError
from pipeline.common.jsonl import read_jsonl, write_jsonl
from pipeline.labelstudio import server as ls_server
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.config import label_config
from pipeline.labelstudio.duplicates import NO_HUMAN_WORK
from pipeline.labelstudio.index import INCLUDE, list_query
from pipeline.labelstudio.params import load_config
from pipeline.labelstudio.pull import EXPORT_OPTIONS
from pipeline.labelstudio.tasks import build_tasks

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("Russia", "NATO", "Ukraine", "the United States", "Sergei Ryabkov", "Antony Blinken", "Geneva", "Moscow")
LABELS = {"Russia": "GPE", "NATO": "ORG", "Ukraine": "GPE", "the United States": "GPE", "Sergei Ryabkov": "PERSON",
          "Antony Blinken": "PERSON", "Geneva": "GPE", "Moscow": "GPE"}


def synthetic_records(n: int, model_version: str = "1") -> Iterator[dict[str, Any]]:
    """`n` pre-annotated news-like articles (entities by string match, one stance each), deterministic."""
    for i, body in enumerate(synthetic_corpus(n, sentences=(9, 15))):
        text = f"Report {i}. {body}"
        entities: list[dict[str, Any]] = []
        for name in NAMES:
            start = text.find(name)
            if start >= 0:
                entities.append({"start": start, "end": start + len(name), "label": LABELS[name], "text": name,
                                 "score": round(0.5 + (i * 7 + start) % 50 / 100, 2), "actor": None})
        entities.sort(key=lambda e: e["start"])
        stances = [{"holder": 0, "target": 1, "label": "against", "score": 0.6}] if len(entities) > 1 else []
        yield {"id": f"bench-{i:07d}", "title": f"Synthetic report {i}", "text": text, "date": "2022-01-10",
               "source": "synthetic", "url": None, "entities": entities, "stances": stances,
               "provenance": {"model": "bench", "model_version": model_version, "rules_version": "r",
                              "code_revision": "c"}}


POOL = 40  # distinct seed-like articles pre-annotated for real; the tasks cycle through them


def preannotated_pool(params: Path, size: int = POOL) -> list[dict[str, Any]]:
    """`size` articles of the seed-like corpus pre-annotated by the project's pre-annotator (params' model and rules)."""
    from pipeline import preannotate as stage

    cfg = section(stage.Params, stage.STAGE, params)
    res = ROOT / "resources"
    pre = stage.load(cfg, res / "entity_patterns.yaml", res / "actors.yaml", res / "stance_cues.yaml")
    records = [{"id": f"seed-{i:04d}", **raw, "language": "en"} for i, (_, raw) in enumerate(stories(size, seed=29))]
    return list(stage.preannotate(records, pre))


def real_records(pool: list[dict[str, Any]], n: int, model_version: str = "1") -> Iterator[dict[str, Any]]:
    """`n` distinct pre-annotated articles from `pool`: each copy headed by its number, its offsets moved to match."""
    for i in range(n):
        base = pool[i % len(pool)]
        head = f"Report {i}.\n\n"
        shift = len(head)

        def moved(span: dict[str, Any], shift: int = shift) -> dict[str, Any]:
            return {**span, "start": span["start"] + shift, "end": span["end"] + shift}

        yield {**base, "id": f"bench-{i:07d}", "text": head + base["text"],
               "sentences": [moved(s) for s in base["sentences"]], "entities": [moved(e) for e in base["entities"]],
               "stances": [{**st, "cue": moved(st["cue"])} for st in base["stances"]],
               "provenance": {**base["provenance"], "model_version": model_version}}


@dataclass
class Bare:
    """The plain `requests` calls, authenticated like the pipeline's client."""

    url: str
    headers: dict[str, str]

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        resp = requests.request(method, self.url + path, headers=self.headers, timeout=900, **kwargs)
        resp.raise_for_status()
        return resp


# A fork starts with its parent's memory and Linux carries that peak through exec into the child's
# ru_maxrss; a small wrapper process in between makes the figure the client's own.
_WRAPPER = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


@dataclass(frozen=True)
class Client:
    """One run of the pipeline's client: wall seconds, peak MB of its process tree and of its largest process, stderr."""

    seconds: float
    tree_mb: float
    largest_mb: float
    stderr: str


def _run_client(args: list[str], env: dict[str, str], log: Path) -> Client:
    """Run `python -m pipeline <args>` and measure it; an error if it fails."""
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as err:
        child = subprocess.Popen([sys.executable, "-c", _WRAPPER, sys.executable, "-m", "pipeline", *args], env=env,
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        with TreePeak(child.pid) as peak:
            stdout, _ = child.communicate()
    wall = time.perf_counter() - start
    text = log.read_text(encoding="utf-8")
    if child.returncode:
        raise PipelineError(f"bench label-studio: `pipeline {args[0]}` failed: {text.strip().splitlines()[-1:]}")
    largest = int(stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux
    return Client(wall, max(peak.tree_mb, largest), largest, text)


def _summary(stderr: str, command: str) -> str:
    """The command's summary line (not its progress bar)."""
    return next((line for line in stderr.splitlines() if line.startswith(f"{command}: ") and "task(s)" in line), "")


def _bare_import(bare: Bare, pid: int, tasks: list[dict[str, Any]], batch: int) -> None:
    for i in range(0, len(tasks), batch):
        bare.call("POST", f"/api/projects/{pid}/import", json=tasks[i:i + batch])


def _bare_list(bare: Bare, pid: int, page_size: int) -> list[int]:
    ids: list[int] = []
    page = 1
    while True:
        params: dict[str, str | int] = {"project": pid, "include": INCLUDE, "resolve_uri": "false",
                                        "query": list_query(0, None), "page": page, "page_size": page_size}
        resp = requests.get(bare.url + "/api/tasks", headers=bare.headers, timeout=900, params=params)
        if resp.status_code == 404:
            return ids
        items = resp.json()["tasks"]
        ids += [t["id"] for t in items]
        if len(items) < page_size:
            return ids
        page += 1


def _bare_refresh(bare: Bare, pid: int, ids: list[int], tasks: list[dict[str, Any]], batch: int) -> list[float]:
    """The refresh as bare calls; returns the seconds spent in [delete actions, predictions imports]."""
    spent = [0.0, 0.0]
    for i in range(0, len(ids), batch):
        part = ids[i:i + batch]
        start = time.perf_counter()
        bare.call("POST", "/api/dm/actions", params={"id": "delete_tasks_predictions", "project": pid},
                  json={"selectedItems": {"all": False, "included": part}, "filters": NO_HUMAN_WORK})
        middle = time.perf_counter()
        preds = [{**t["predictions"][0], "task": tid} for tid, t in zip(part, tasks[i:i + batch], strict=True)]
        bare.call("POST", f"/api/projects/{pid}/import/predictions", json=preds)
        spent[0] += middle - start
        spent[1] += time.perf_counter() - middle
    return spent


def _bare_export(bare: Bare, pid: int, out: Path) -> None:
    export = bare.call("POST", f"/api/projects/{pid}/exports", json={"title": "bare", **EXPORT_OPTIONS}).json()
    while export.get("status") not in ("completed", "failed"):
        time.sleep(1.0)
        export = bare.call("GET", f"/api/projects/{pid}/exports/{export['id']}").json()
    with bare.call("GET", f"/api/projects/{pid}/exports/{export['id']}/download", params={"exportType": "JSON"},
                   stream=True) as resp, open(out, "wb") as handle:
        handle.writelines(resp.iter_content(1 << 20))
    bare.call("DELETE", f"/api/projects/{pid}/exports/{export['id']}")


def _timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


MODES = ("push", "no-op push", "refresh", "pull")


def _one_turn(tmp: Path, settings: dict[str, Any], title: str, api: LabelStudioAPI, token: str,
              files: tuple[Path, Path], out: TextIO) -> dict[str, tuple[Client, float]]:
    """The four modes once, each on fresh projects (the pipeline's, then the bare one): per mode its client run and
    the bare seconds."""
    settings["labelstudio"]["project_title"] = title
    run_params = tmp / "params.yaml"
    run_params.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    cfg = load_config(run_params)
    batch, page = cfg.ls.import_batch_size, cfg.ls.page_size
    bare = Bare(api.url, {"Authorization": api._auth_header()})
    pid = bare.call("POST", "/api/projects", json={"title": title + " bare", "label_config": label_config(cfg)}).json()["id"]
    tasks = []
    for path in files:  # the bare side sends the very JSON push builds (built here, outside its timing)
        bad = BadRecords("bench", 0.0, quiet=True)
        tasks.append(build_tasks(read_jsonl(path, bad), cfg, path, bad))
    env = {**os.environ, "LABEL_STUDIO_URL": api.url, "LABEL_STUDIO_API_KEY": token}
    push = ["push", "--guidelines", str(ROOT / "resources" / "guidelines.md"), "--params", str(run_params)]
    found: dict[str, tuple[Client, float]] = {}
    client = _run_client([*push, "--input", str(files[0])], env, tmp / "push.log")
    found["push"] = client, _timed(_bare_import, bare, pid, tasks[0], batch)
    client = _run_client([*push, "--input", str(files[0])], env, tmp / "noop.log")
    ids: list[int] = []
    found["no-op push"] = client, _timed(lambda: ids.extend(_bare_list(bare, pid, page)))
    client = _run_client([*push, "--input", str(files[1])], env, tmp / "refresh.log")
    spent: list[float] = []
    found["refresh"] = client, _timed(lambda: spent.extend(_bare_refresh(bare, pid, ids, tasks[1], batch)))
    batches = -(-len(ids) // batch)
    print(f"refresh, bare API, per batch of {batch}: delete action {spent[0] / batches:.2f} s, "
          f"import/predictions {spent[1] / batches:.2f} s (mean of {batches}; a server started here has "
          f"{ls_server.FAST_IMPORT_FLAG}={os.environ.get(ls_server.FAST_IMPORT_FLAG, 'true')})", file=out, flush=True)
    client = _run_client(["pull", "--output", str(tmp / "annotations"), "--params", str(run_params)], env,
                         tmp / "pull.log")
    found["pull"] = client, _timed(_bare_export, bare, pid, tmp / "bare.json")
    bare.call("DELETE", f"/api/projects/{pid}")
    return found


def bench_label_studio(n: int, params: Path, url: str, token: str, out: TextIO = sys.stdout,
                       title: str = "Bench label-studio", repeat: int = 1, pool_size: int = POOL) -> list[dict[str, Any]]:
    """Time the four modes `repeat` times on server `url` (fresh projects named after `title`), the tasks cycling
    through `pool_size` pre-annotated articles; print and return the rows."""
    with tempfile.TemporaryDirectory(prefix="ls-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        settings = load_params(params)  # bounded: no YAML bomb
        pool = preannotated_pool(params, pool_size)
        files = (tmp / "v1.jsonl", tmp / "v2.jsonl")
        write_jsonl(files[0], real_records(pool, n, "1"))
        write_jsonl(files[1], real_records(pool, n, "2"))
        cfg = load_config(params)
        bad = BadRecords("bench", 0.0, quiet=True)
        task_kib = sum(len(json.dumps(t)) for t in build_tasks(read_jsonl(files[0], bad), cfg, files[0], bad)) / n / 1024
        api = LabelStudioAPI(url, token)
        print(f"bench label-studio: {n} tasks, {len(pool)} seed-like articles pre-annotated by "
              f"{pool[0]['provenance']['model']} and the rules, cycled ({files[0].stat().st_size / n / 1024:.1f} KiB "
              f"of pre-annotated JSON, {task_kib:.1f} KiB of task JSON each), import_batch_size "
              f"{cfg.ls.import_batch_size}, page_size {cfg.ls.page_size}, {repeat} turn(s), server {api.url}", file=out)
        print("client = `python -m pipeline push|pull` in its own process (time includes its start-up); tree MB = its "
              "peak RSS summed over its processes (sampled), max MB = its largest (getrusage ru_maxrss, RUSAGE_CHILDREN "
              "of a small wrapper); ratio = bare s / pipeline s per turn; times are medians", file=out)
        turns = []
        for k in range(repeat):
            stamp = f"{title} {time.strftime('%Y%m%dT%H%M%S')} {os.getpid()} {k}"
            turns.append(_one_turn(tmp, settings, stamp, api, token, files, out))
        print(f"{'mode':<11} {'pipeline s':>10} {'tasks/s':>8} {'bare s':>8} {'bare tasks/s':>12} "
              f"{'ratio min/med/max':>17} {'tree MB':>8} {'max MB':>7}  result", file=out)
        rows: list[dict[str, Any]] = []
        for mode in MODES:
            runs = [turn[mode] for turn in turns]
            wall = statistics.median(c.seconds for c, _ in runs)
            t_bare = statistics.median(b for _, b in runs)
            ratios = [b / c.seconds for c, b in runs]
            item = {"mode": mode, "tasks": n, "pipeline_s": wall, "bare_s": t_bare, "ratio_min": min(ratios),
                    "ratio": statistics.median(ratios), "ratio_max": max(ratios),
                    "client_mb": max(c.tree_mb for c, _ in runs), "client_largest_mb": max(c.largest_mb for c, _ in runs),
                    "summary": _summary(runs[-1][0].stderr, "pull" if mode == "pull" else "push"),
                    "task_kib": task_kib}
            rows.append(item)
            spread = f"{item['ratio_min']:.2f}/{item['ratio']:.2f}/{item['ratio_max']:.2f}"
            print(f"{mode:<11} {wall:>10.1f} {n / wall:>8.1f} {t_bare:>8.1f} {n / t_bare:>12.1f} {spread:>17} "
                  f"{item['client_mb']:>8.0f} {item['client_largest_mb']:>7.0f}  {item['summary']}", file=out, flush=True)
        return rows


def main(n: int, params: Path, port: int = 0, repeat: int = 1) -> list[dict[str, Any]]:
    """Start a throwaway local server (its data in a temporary folder, on `port` if free), run the benchmark on it,
    stop it."""
    with ls_server.throwaway("bench-label-studio", 300, port) as (url, token):
        return bench_label_studio(n, params, url, token, repeat=repeat)
