"""The execution engine of the heavy stages: a function over shards of records, in-process or on a Dask cluster.

A stage hands `run_shards` a picklable `work(shard) -> results` (a module-level function, or a partial of one over
small arguments such as params and paths). Heavy state such as a spaCy model is built inside `work` through
`worker_state`, so it is loaded once per worker process and never pickled per task. Results come back in input
order, so the output is the same byte for byte whatever the number of workers or the shard size. A shard is a list
of records today; the same interface takes a shard file's path when stages exchange folders of shards.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

from tqdm import tqdm
from tqdm.contrib import DummyTqdmFile

from pipeline.common.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
# Shards in flight per worker: enough to keep every worker busy, few enough that memory is bounded by shards.
IN_FLIGHT_PER_WORKER = 2
# The LocalCluster's workers, unlike Dask's defaults: glibc's trim threshold left alone (Dask's 64 KiB one makes a
# spaCy worker give memory back and fault it in again, ~20x the page faults and ~15% of the wall time) and no
# statistical profiler waking every 10 ms; numeric libraries stay on one thread, as Dask's defaults have them.
LOCAL_WORKER_CONFIG: dict[str, Any] = {
    "distributed.nanny.pre-spawn-environ": {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1},
    "distributed.worker.profile.enabled": False,
}

_STATE: dict[Any, Any] = {}


@dataclass(frozen=True)
class Engine:
    """How a stage runs: `n_workers` processes of one thread (1 = in this process), `shard_size` records a task."""

    n_workers: int
    shard_size: int

    def problem(self) -> str | None:
        """Why these settings cannot run, or None."""
        if self.n_workers < 1 or self.shard_size < 1:
            return "n_workers and shard_size must be at least 1"
        if self.n_workers > (most := local_worker_limit()) and not os.environ.get(SCHEDULER_ENV):
            return (f"n_workers {self.n_workers} is more than this machine's {os.cpu_count() or 1} CPUs "
                    f"(at most {most} local worker processes; set {SCHEDULER_ENV} to use a Dask cluster's)")
        return None


def local_worker_limit() -> int:
    """The most worker processes a stage starts on this machine: its CPU count, and 2 on any machine (CI has 2)."""
    return max(os.cpu_count() or 1, 2)


def worker_state(key: Any, build: Callable[[], T]) -> T:
    """The object built by `build` for `key`, built once per process (so once per Dask worker) and then reused."""
    if key not in _STATE:
        _STATE[key] = build()
    value: T = _STATE[key]
    return value


def shards(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of `size` items (the last one shorter)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


@contextlib.contextmanager
def progress(desc: str, total: int | None) -> Iterator[tqdm[Any]]:
    """One progress bar on stderr (done/total, rate, ETA); never written into an output.

    While it runs, other stderr messages go through the bar, so each stays on a line of its own.
    """
    stderr = sys.stderr
    with tqdm(total=total, desc=desc, unit=" articles", file=stderr, mininterval=1.0, dynamic_ncols=True) as bar:
        sys.stderr = DummyTqdmFile(stderr)
        try:
            yield bar
        finally:
            sys.stderr = stderr


def run_shards(
    items: Iterable[T],
    work: Callable[[list[T]], list[R]],
    engine: Engine,
    *,
    desc: str,
    total: int | None = None,
) -> Iterator[R]:
    """Yield `work(shard)` of every shard of `items`, shard after shard in input order, with one progress bar.

    One worker and no DASK_SCHEDULER_ADDRESS: in this process, no cluster. Otherwise the shards run on the
    cluster at DASK_SCHEDULER_ADDRESS, or on a LocalCluster of `n_workers` single-threaded processes.
    """
    address = os.environ.get(SCHEDULER_ENV, "").strip()
    with progress(desc, total) as bar:
        if engine.n_workers == 1 and not address:
            for shard in shards(items, engine.shard_size):
                results = work(shard)
                bar.update(len(shard))
                yield from results
            return
        yield from _on_cluster(items, work, engine, address, desc, bar)


def _on_cluster(
    items: Iterable[T], work: Callable[[list[T]], list[R]], engine: Engine, address: str, desc: str, bar: tqdm[Any]
) -> Iterator[R]:
    """Run the shards on a Dask cluster with a bounded window of shards in flight, yielding results in order."""
    from distributed import Client, wait

    cluster = None
    try:
        if address:
            client = Client(address, timeout="30s")
        else:
            cluster = _local_cluster(engine.n_workers)
            client = Client(cluster)
    except OSError as exc:
        raise ConfigError(f"{desc}: cannot reach the Dask scheduler at {address or 'a new LocalCluster'}: {exc}") from None
    try:
        info = client.scheduler_info()
        workers = len(info.get("workers", {})) or engine.n_workers
        link = client.dashboard_link if _has_dashboard() else "none (install bokeh for the Dask dashboard)"
        print(f"{desc}: Dask cluster {info.get('address', address)} with {workers} workers; dashboard {link}",
              file=sys.stderr)
        window = max(1, workers * IN_FLIGHT_PER_WORKER)
        pending: list[list[Any]] = []  # [future, shard length, counted by the bar] in input order
        for shard in shards(items, engine.shard_size):
            pending.append([client.submit(work, shard, pure=False), len(shard), False])
            while len(pending) >= window:
                yield from _collect(pending, bar, wait)
        while pending:
            yield from _collect(pending, bar, wait)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _local_cluster(n_workers: int) -> Any:
    """A LocalCluster of `n_workers` single-threaded processes on 127.0.0.1, its workers set up for spaCy."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(LOCAL_WORKER_CONFIG):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                            host="127.0.0.1", dashboard_address="127.0.0.1:0")


def _collect(pending: list[list[Any]], bar: tqdm[Any], wait: Callable[..., Any]) -> Iterator[Any]:
    """Wait for the oldest shard (counting the others that finish meanwhile) and yield its results."""
    future = pending[0][0]
    while not future.done():
        with contextlib.suppress(TimeoutError):
            wait([entry[0] for entry in pending], return_when="FIRST_COMPLETED", timeout=1.0)
        _count_done(pending, bar)
    _count_done(pending, bar)
    pending.pop(0)
    yield from future.result()  # re-raises the task's exception here, with its message


def _count_done(pending: list[list[Any]], bar: tqdm[Any]) -> None:
    """Advance the bar by every finished shard not counted yet."""
    for entry in pending:
        if not entry[2] and entry[0].done():
            entry[2] = True
            bar.update(entry[1])


def _has_dashboard() -> bool:
    """Whether bokeh (which the Dask dashboard needs) is installed."""
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None
