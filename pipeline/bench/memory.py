"""Peak memory of a process tree: the sum of resident memory over a process and all its descendants, sampled."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType

import psutil

INTERVAL_S = 0.05  # sampling period: a peak shorter than this can be missed, so `largest` (ru_maxrss) is shown beside it


@dataclass
class TreePeak:
    """Sample the resident memory of process `pid` and its descendants (spaCy processes, Dask workers) in a thread.

    `tree_mb` is the largest sum over the tree seen in one sample; `largest_mb` the largest single process seen.
    """

    pid: int
    tree_mb: float = 0.0
    largest_mb: float = 0.0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tree-peak-{self.pid}", daemon=True)

    def sample(self) -> None:
        """One sample of the tree (processes that end while being read are skipped)."""
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        sizes = []
        for proc in procs:
            try:
                sizes.append(proc.memory_info().rss)
            except psutil.Error:
                continue
        if sizes:
            self.tree_mb = max(self.tree_mb, sum(sizes) / 2**20)
            self.largest_mb = max(self.largest_mb, max(sizes) / 2**20)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(INTERVAL_S)

    def __enter__(self) -> TreePeak:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
