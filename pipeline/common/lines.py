"""Reading a JSON Lines file a second time in another order: the byte offset of each line, and the records at them."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pipeline.common.errors import InputError
from pipeline.common.jsonl import JSONLineError, loads, open_input


def line_offsets(path: Path) -> array[int]:
    """The byte offset where each line starts (line number n at index n - 1), 8 bytes a line."""
    return array("q", line_starts(path))


def line_starts(path: Path) -> Iterator[int]:
    """The byte offset where each line starts, line after line, nothing held."""
    end = 0
    with open_input(path) as handle:
        for raw in handle:
            yield end
            end += len(raw)


def read_jsonl_at(path: Path, where: Iterable[tuple[int, int]]) -> Iterator[dict[str, Any]]:
    """The objects at the (line number, byte offset) pairs given, in that order, from a file read once already.

    A line that no longer parses as an object means the file changed between the passes: a one-line InputError.
    """
    with open_input(path) as handle:
        for lineno, offset in where:
            handle.seek(offset)
            try:
                obj = loads(handle.readline().decode("utf-8"))
            except (UnicodeDecodeError, JSONLineError) as exc:
                raise InputError(f"{path}:{lineno}: changed while it was read ({exc})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{lineno}: changed while it was read (not a JSON object)")
            yield obj
