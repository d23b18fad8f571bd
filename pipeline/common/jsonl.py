"""Streaming JSON Lines input and atomic output, the plain-data format between stages."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from pipeline.common.errors import BadRecords, InputError


def open_input(path: Path) -> BinaryIO:
    """Open a file for binary reading; a missing or unreadable file is a one-line InputError."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class JSONLineError(ValueError):
    """One line that is not strict JSON; the message says why, in one line."""


def _no_constant(name: str) -> Any:
    raise JSONLineError(f"invalid JSON: {name} is not a JSON number")


def loads(line: str) -> Any:
    """Parse one line of strict JSON: no NaN/Infinity, no integer past Python's digit limit, no stack overflow,
    no lone UTF-16 surrogate (it could not be written back as UTF-8)."""
    try:
        obj = json.loads(line, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise JSONLineError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise JSONLineError("invalid JSON: nested too deeply") from None
    except JSONLineError:
        raise
    except ValueError as exc:  # an integer of more than sys.get_int_max_str_digits() digits
        raise JSONLineError(f"invalid JSON: {str(exc).splitlines()[0]}") from None
    if _SURROGATE_ESCAPE.search(line):  # rare: only then is the whole object checked
        try:
            dumps(obj).encode("utf-8")
        except UnicodeEncodeError:
            raise JSONLineError("invalid JSON: a lone UTF-16 surrogate escape (\\ud800-\\udfff) is not a character") from None
    return obj


def read_jsonl(path: Path, bad: BadRecords | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) per non-blank line; bad lines go to `bad` (all counted in `bad.seen`) or raise."""
    with open_input(path) as handle:
        for lineno, raw in enumerate(handle, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:  # each line is decoded on its own, so one bad byte costs one line
                if bad is not None:
                    bad.seen += 1
                _bad(bad, where, f"not valid UTF-8 ({exc.reason} at byte {exc.start + 1})")
                continue
            if not line.strip():
                continue
            if bad is not None:
                bad.seen += 1
            try:
                obj = loads(line)
            except JSONLineError as exc:
                _bad(bad, where, str(exc))
                continue
            if not isinstance(obj, dict):
                _bad(bad, where, f"expected a JSON object, got {type(obj).__name__}")
                continue
            yield lineno, obj


def _bad(bad: BadRecords | None, where: str, message: str) -> None:
    """Report one unreadable line to `bad`, or raise when there is none."""
    if bad is None:
        raise InputError(f"{where}: {message}")
    bad.add(where, message)


def dumps(record: Any) -> str:
    """Serialise one record deterministically (sorted keys kept off: field order is part of the contract)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def umask_mode(full: int) -> int:
    """`full` (0o666 for a file, 0o777 for a folder) less the process umask, as `open` or `mkdir` would give."""
    mask = os.umask(0)
    os.umask(mask)
    return full & ~mask


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[TextIO]:
    """Write text to a temporary file beside `path` and rename it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
        os.chmod(tmp, umask_mode(0o666))  # mkstemp's 0o600 is for the temporary name only
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


def write_json(path: Path, obj: Any, *, sort_keys: bool = False, ensure_ascii: bool = False) -> None:
    """Write one JSON document atomically, pretty-printed for review in git and DVC, with a final newline."""
    with atomic_writer(path) as out:
        json.dump(obj, out, ensure_ascii=ensure_ascii, indent=2, sort_keys=sort_keys, allow_nan=False)
        out.write("\n")


def read_json(path: Path, what: str = "file") -> Any:
    """Parse one JSON document, with a one-line InputError naming the file (and line) if it is missing or malformed."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror})") from None
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start + 1})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise InputError(f"{path}: invalid JSON: nested too deeply") from None
