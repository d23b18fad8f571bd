"""`bench label-studio`: push, no-op push, refresh and pull of N tasks beside the bare API calls doing the same work.

Each pipeline mode runs as the command a user types (`python -m pipeline push|pull`) in its own process,
so its peak memory is that process's own (`ru_maxrss` of its wrapper's children); its time includes Python's start
and imports (about a second). The bare side is `requests` in this process, on a second project: the
same task JSON posted to `/import` in the same batches, the same task listing, the same bulk delete (with the
same no-human-work filter) and predictions import, the same export download. Ratio = bare time / pipeline time
(1.0: no overhead).
"""

from __future__ import annotations

import os
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

from pipeline.bench.preannotate import synthetic_corpus
from pipeline.common.config import load_params
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


def _run_client(args: list[str], env: dict[str, str], log: Path) -> tuple[float, float, str]:
    """Run `python -m pipeline <args>`: wall seconds, its peak RSS in MB, its stderr; an error if it fails."""
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as err:
        done = subprocess.run([sys.executable, "-c", _WRAPPER, sys.executable, "-m", "pipeline", *args], env=env,
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    wall = time.perf_counter() - start
    text = log.read_text(encoding="utf-8")
    if done.returncode:
        raise PipelineError(f"bench label-studio: `pipeline {args[0]}` failed: {text.strip().splitlines()[-1:]}")
    return wall, int(done.stdout.split()[-1]) / 1024, text  # ru_maxrss is in KiB on Linux


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


def bench_label_studio(n: int, params: Path, url: str, token: str, out: TextIO = sys.stdout,
                       title: str = "Bench label-studio") -> list[dict[str, Any]]:
    """Time the four modes on server `url` (fresh projects named after `title`); print and return the rows."""
    with tempfile.TemporaryDirectory(prefix="ls-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        settings = load_params(params)  # bounded: no YAML bomb
        settings["labelstudio"]["project_title"] = f"{title} {time.strftime('%Y%m%dT%H%M%S')} {os.getpid()}"
        run_params = tmp / "params.yaml"
        run_params.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
        cfg = load_config(run_params)
        batch, page = cfg.ls.import_batch_size, cfg.ls.page_size
        first, second = tmp / "v1.jsonl", tmp / "v2.jsonl"
        write_jsonl(first, synthetic_records(n, "1"))
        write_jsonl(second, synthetic_records(n, "2"))
        api = LabelStudioAPI(url, token)
        bare = Bare(api.url, {"Authorization": api._auth_header()})
        pid = bare.call("POST", "/api/projects", json={"title": settings["labelstudio"]["project_title"] + " bare",
                                                       "label_config": label_config(cfg)}).json()["id"]
        # the bare side sends the very JSON push builds (built here, outside its timing)
        bad = BadRecords("bench", 0.0, quiet=True)
        tasks_v1 = build_tasks(read_jsonl(first, bad), cfg, first, bad)
        bad = BadRecords("bench", 0.0, quiet=True)
        tasks_v2 = build_tasks(read_jsonl(second, bad), cfg, second, bad)
        env = {**os.environ, "LABEL_STUDIO_URL": api.url, "LABEL_STUDIO_API_KEY": token}
        push_args = ["push", "--guidelines", str(ROOT / "resources" / "guidelines.md"), "--params", str(run_params)]
        rows: list[dict[str, Any]] = []
        print(f"bench label-studio: {n} tasks ({first.stat().st_size / n / 1024:.1f} KiB of JSON each), "
              f"import_batch_size {batch}, page_size {page}, server {api.url}", file=out)
        print("client = `python -m pipeline push|pull` in its own process (time includes its start-up); memory = "
              "its peak RSS (getrusage ru_maxrss, RUSAGE_CHILDREN of a small wrapper); ratio = bare s / pipeline s", file=out)
        print(f"{'mode':<11} {'pipeline s':>10} {'tasks/s':>8} {'bare s':>8} {'bare tasks/s':>12} {'ratio':>6} "
              f"{'client MB':>9}  result", file=out)

        def row(mode: str, wall: float, rss: float, t_bare: float, summary: str) -> None:
            item = {"mode": mode, "tasks": n, "pipeline_s": wall, "bare_s": t_bare, "ratio": t_bare / wall,
                    "client_mb": rss, "summary": summary}
            rows.append(item)
            print(f"{mode:<11} {wall:>10.1f} {n / wall:>8.1f} {t_bare:>8.1f} {n / t_bare:>12.1f} "
                  f"{item['ratio']:>6.2f} {rss:>9.0f}  {summary}", file=out, flush=True)

        wall, rss, err = _run_client([*push_args, "--input", str(first)], env, tmp / "push.log")
        row("push", wall, rss, _timed(_bare_import, bare, pid, tasks_v1, batch), _summary(err, "push"))
        wall, rss, err = _run_client([*push_args, "--input", str(first)], env, tmp / "noop.log")
        ids: list[int] = []
        t_bare = _timed(lambda: ids.extend(_bare_list(bare, pid, page)))
        row("no-op push", wall, rss, t_bare, _summary(err, "push"))
        wall, rss, err = _run_client([*push_args, "--input", str(second)], env, tmp / "refresh.log")
        spent: list[float] = []
        row("refresh", wall, rss, _timed(lambda: spent.extend(_bare_refresh(bare, pid, ids, tasks_v2, batch))),
            _summary(err, "push"))
        batches = -(-len(ids) // batch)
        print(f"refresh, bare API, per batch of {batch}: delete action {spent[0] / batches:.2f} s, "
              f"import/predictions {spent[1] / batches:.2f} s (mean of {batches}; a server started here has "
              f"{ls_server.FAST_IMPORT_FLAG}={os.environ.get(ls_server.FAST_IMPORT_FLAG, 'true')})", file=out, flush=True)
        wall, rss, err = _run_client(["pull", "--output", str(tmp / "annotations"), "--params", str(run_params)],
                                     env, tmp / "pull.log")
        row("pull", wall, rss, _timed(_bare_export, bare, pid, tmp / "bare.json"), _summary(err, "pull"))
        bare.call("DELETE", f"/api/projects/{pid}")
        return rows


def main(n: int, params: Path) -> list[dict[str, Any]]:
    """Start a throwaway local server (its data in a temporary folder), run the benchmark on it, stop it."""
    with ls_server.throwaway("bench-label-studio", 300) as (url, token):
        return bench_label_studio(n, params, url, token)

