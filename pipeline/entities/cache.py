"""The annotation cache: content-addressed annotations in one SQLite file, so reruns skip texts already annotated.

The cache only saves work, it never changes output: a run with any cache, whole, damaged or unusable, writes
what a run without one writes, byte for byte. Nothing read from it is trusted:

- An entry is verified on read: it holds the sha256 of the text it annotates, which must be the text's, the
  sha256 of its annotation as written, which must be the annotation's (SQLite keeps no checksum of its pages: a
  flipped byte in a stored score, label or offset is caught here), and an annotation of exactly the fields the
  annotator writes (sentences, entities, stances), every offset inside the text (0 <= start < end <= len(text)),
  every entity and cue text the text's slice at its offsets, every stance end an index of an entity. A bad entry
  (not JSON, the wrong shape, another text's hash, a changed annotation, an offset outside the text, ...) is
  reported as one line on stderr naming the cache file and the key's first characters, deleted and recomputed.
  An entry written before entries held both hashes is a miss, recomputed and replaced silently.
- A database file that is not SQLite or is damaged (random bytes, truncated, malformed) is reported as one line
  and the run goes on without the cache. The file is left where it is, neither deleted nor moved (the workers of
  one run open it side by side, and one moving it would pull it from under the others): the line asks to move it
  aside or delete it, and the next run then starts a fresh cache there.
- A write that fails (disk full, read-only file or folder, a locked database) is reported as one line; the run
  goes on reading the cache and writing nothing more to it.

Each of these lines is printed once per process (bad entries: at most `MAX_ENTRY_REPORTS`, then one line
saying the rest go unreported).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeGuard

from pipeline.common.errors import one_line
from pipeline.common.jsonl import dumps

FILE = "annotations.sqlite3"
FIELDS = ("sentences", "entities", "stances")  # what the annotator returns, and all an entry may add to a record
MAX_ENTRY_REPORTS = 20  # bad entries reported per process; the rest are dropped and recomputed just the same
KEY_SHOWN = 12  # characters of a key a report names

_reported: set[tuple[str, str]] = set()  # (database, what) already reported in this process
_entry_reports: dict[str, int] = {}  # database -> bad entries reported in this process


def report(database: Path, what: str, message: str) -> bool:
    """Print `message` as one warning line unless `what` about `database` was reported already; whether printed."""
    if (str(database), what) in _reported:
        return False
    _reported.add((str(database), what))
    print(one_line(f"warning: {database}: {message}"), file=sys.stderr)
    return True


def text_hash(text: str) -> str:
    """The sha256 of a text, as an entry stores it."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _is_int(value: Any) -> TypeGuard[int]:
    """An integer, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _span_problem(span: Any, name: str, text: str, sliced: bool) -> str | None:
    """Why `span` is not an object with offsets inside `text` (and, if `sliced`, its slice as `text`), or None."""
    if not isinstance(span, dict):
        return f"{name} is not an object"
    start, end = span.get("start"), span.get("end")
    if not (_is_int(start) and _is_int(end)):
        return f"{name} has no integer offsets"
    if not 0 <= start < end <= len(text):
        return f"{name} offsets {start}-{end} are outside the text of {len(text)} characters"
    if sliced and span.get("text") != text[start:end]:
        return f"{name}.text is not the text at its offsets"
    return None


def annotation_problem(annotation: Any, text: str) -> str | None:
    """Why `annotation` is not an annotation of `text` as the annotator writes it, or None."""
    if not isinstance(annotation, dict) or tuple(annotation) != FIELDS:
        return f"the annotation is not an object of the fields {', '.join(FIELDS)}"
    sentences, entities, stances = (annotation[field] for field in FIELDS)
    if not (isinstance(sentences, list) and isinstance(entities, list) and isinstance(stances, list)):
        return "sentences, entities and stances must be lists"
    for i, sentence in enumerate(sentences):
        if problem := _span_problem(sentence, f"sentences[{i}]", text, False):
            return problem
    for i, entity in enumerate(entities):
        if problem := _span_problem(entity, f"entities[{i}]", text, True):
            return problem
        if not isinstance(entity.get("label"), str):
            return f"entities[{i}] has no label"
    for i, st in enumerate(stances):
        if not isinstance(st, dict):
            return f"stances[{i}] is not an object"
        if not all(_is_int(st.get(end)) and 0 <= st[end] < len(entities) for end in ("holder", "target")):
            return f"stances[{i}] ends are not indexes of the {len(entities)} entities"
        if not isinstance(st.get("label"), str):
            return f"stances[{i}] has no label"
        if problem := _span_problem(st.get("cue"), f"stances[{i}].cue", text, True):
            return problem
    return None


def _text(data: bytes) -> str:
    """A stored text value as str; bytes that are not UTF-8 kept as surrogates, for the entry check to refuse."""
    return data.decode("utf-8", "surrogateescape")


def read_entry(value: Any, text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The annotation a stored value holds for `text`, or None and why not (no reason: an entry of the old format)."""
    try:
        entry = json.loads(value)
    except (TypeError, ValueError, RecursionError):
        return None, "not valid JSON"
    if not isinstance(entry, dict):
        return None, "not a JSON object"
    if "text_sha256" not in entry or "annotation_sha256" not in entry:
        return None, None  # written before entries held both hashes: a miss, replaced
    if entry["text_sha256"] != text_hash(text):
        return None, "its text hash is not the text's"
    annotation = entry.get("annotation")
    if problem := annotation_problem(annotation, text):
        return None, problem
    if entry["annotation_sha256"] != text_hash(dumps(annotation)):
        return None, "its annotation hash is not the annotation's"
    return annotation, None


class Cache:
    """Content-addressed store of verified annotations: one SQLite file, key -> JSON, committed in small transactions.

    SQLite makes every commit atomic, so a run that dies halfway leaves a consistent cache holding the
    records finished so far; one indexed file scales to millions of entries without a directory per key.
    """

    COMMIT_EVERY = 200

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / FILE
        self.db: sqlite3.Connection | None = None  # None: the cache is unusable and this run goes on without it
        self.writable = True
        self.uncommitted = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=60)
            self.db.text_factory = _text  # a value damaged into bad UTF-8 is one bad entry, not an unusable cache
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS annotation (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.db.commit()
        except (OSError, sqlite3.Error) as exc:
            self._unusable(exc)

    def get(self, key: str, text: str) -> dict[str, Any] | None:
        """The verified annotation of `text` under `key`, or None (a miss; a bad entry is reported and dropped)."""
        if self.db is None:
            return None
        try:
            row = self.db.execute("SELECT value FROM annotation WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            self._unusable(exc)
            return None
        if row is None:
            return None
        annotation, problem = read_entry(row[0], text)
        if problem:
            self._bad_entry(key, problem)
        return annotation

    def put(self, key: str, text: str, annotation: dict[str, Any]) -> None:
        """Store the annotation of `text` under `key`, with the text's hash and its own."""
        if self.db is None or not self.writable:
            return
        value = dumps({"text_sha256": text_hash(text), "annotation_sha256": text_hash(dumps(annotation)),
                       "annotation": annotation})
        self._write("INSERT OR REPLACE INTO annotation (key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        """Commit what is pending and close the database."""
        if self.db is None:
            return
        if self.writable:
            try:
                self.db.commit()
            except sqlite3.Error as exc:
                self._write_failed(exc)
        self._disconnect()

    def _write(self, sql: str, args: tuple[str, ...]) -> None:
        """Run one write, committing every `COMMIT_EVERY`; a failure turns writing off for the rest of the run."""
        assert self.db is not None
        try:
            self.db.execute(sql, args)
            self.uncommitted += 1
            if self.uncommitted >= self.COMMIT_EVERY:
                self.db.commit()
                self.uncommitted = 0
        except sqlite3.Error as exc:
            self._write_failed(exc)

    def _bad_entry(self, key: str, problem: str) -> None:
        """Report a bad entry (up to `MAX_ENTRY_REPORTS` per process) and delete it: it is recomputed."""
        if _entry_reports.get(str(self.path), 0) < MAX_ENTRY_REPORTS:
            if report(self.path, f"entry {key}",
                      f"bad annotation cache entry {key[:KEY_SHOWN]}... ({problem}); dropped and recomputed"):
                _entry_reports[str(self.path)] = _entry_reports.get(str(self.path), 0) + 1
        else:
            report(self.path, "entries", f"more than {MAX_ENTRY_REPORTS} bad annotation cache entries; "
                   "the rest are dropped and recomputed without a report")
        if self.db is not None and self.writable:
            self._write("DELETE FROM annotation WHERE key = ?", (key,))

    def _write_failed(self, exc: sqlite3.Error) -> None:
        """Stop writing: report once, drop the pending transaction, go on reading."""
        report(self.path, "write", f"cannot write to the annotation cache ({exc}); going on without caching")
        self.writable = False
        if self.db is not None:
            with suppress(sqlite3.Error):
                self.db.rollback()

    def _unusable(self, exc: OSError | sqlite3.Error) -> None:
        """Stop using the cache: report once and close it; the file is left as it is, for the user to look at."""
        damaged = isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)
        why = "is damaged or not an SQLite database" if damaged else "cannot be used"
        advice = " (move the file aside or delete it to start a fresh cache)" if damaged else ""
        report(self.path, "unusable", f"the annotation cache {why} ({exc}); going on without it{advice}")
        self._disconnect()

    def _disconnect(self) -> None:
        if self.db is not None:
            with suppress(sqlite3.Error):
                self.db.close()
            self.db = None
