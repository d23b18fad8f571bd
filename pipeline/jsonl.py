"""Streaming JSON Lines input and atomic output, the plain-data format between stages."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from pipeline.errors import BadRecords, InputError


def read_jsonl(path: Path, bad: BadRecords | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; malformed lines go to `bad` or raise."""
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    with handle:
        lineno = 0
        while True:
            lineno += 1
            try:
                line = handle.readline()
            except UnicodeDecodeError as exc:
                _bad(bad, f"{path}:{lineno}", f"not valid UTF-8 ({exc.reason})")
                return
            if not line:
                return
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                _bad(bad, f"{path}:{lineno}", f"invalid JSON: {exc.msg} at column {exc.colno}")
                continue
            if not isinstance(obj, dict):
                _bad(bad, f"{path}:{lineno}", f"expected a JSON object, got {type(obj).__name__}")
                continue
            yield lineno, obj


def _bad(bad: BadRecords | None, where: str, message: str) -> None:
    if bad is None:
        raise InputError(f"{where}: {message}")
    bad.add(where, message)


def dumps(record: Any) -> str:
    """Serialise one record deterministically (sorted keys kept off: field order is part of the contract)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


@contextlib.contextmanager
def atomic_writer(path: Path, mode: str = "w") -> Iterator[TextIO]:
    """Write to a temporary file beside `path` and rename it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding="utf-8", newline="\n") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Write records atomically as JSON Lines and return how many were written."""
    n = 0
    with atomic_writer(path) as out:
        for record in records:
            out.write(dumps(record) + "\n")
            n += 1
    return n


def write_json(path: Path, obj: Any) -> None:
    """Write one JSON document atomically, pretty-printed for review in git and DVC."""
    with atomic_writer(path) as out:
        json.dump(obj, out, ensure_ascii=False, indent=2)
        out.write("\n")
