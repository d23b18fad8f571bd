"""Article summaries on disk: publish's first pass stores them in SQLite, its readers get them back in id order.

A summary is what the card, figure, licence and manifest read of an article (publish.summarize); held in memory
they grew with the corpus (~10 KB an article), so they and each article's place in the input file live in a
temporary database, and every reader streams them again. Memory stays flat in the number of articles.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

from pipeline.common.jsonl import dumps, loads

# surrogatepass: an id or text with a lone surrogate still round-trips; bytes compare as code points do, so the
# database's order (memcmp) is Python's str order
_CODEC = "surrogatepass"
_INSERT_BATCH = 1024


def _blob(text: str) -> bytes:
    return text.encode("utf-8", _CODEC)


class Summaries(Collection[dict[str, Any]]):
    """Summaries added in file order, read back sorted by id (records of one id in file order), as often as needed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path)
        # a throw-away file: no journal, no fsync; a small page cache (C memory, outside tracemalloc too)
        self._db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-8192;"
                               "CREATE TABLE summary (id BLOB, lineno INTEGER, body BLOB, PRIMARY KEY (id, lineno))"
                               " WITHOUT ROWID;"
                               "CREATE TABLE line (lineno INTEGER PRIMARY KEY, start INTEGER);")
        self._pending: list[tuple[bytes, int, bytes]] = []
        self._count = 0

    def add(self, article_id: str, lineno: int, summary: dict[str, Any]) -> None:
        """Store the summary of the record at line `lineno` of the input."""
        self._pending.append((_blob(article_id), lineno, _blob(dumps(summary))))
        self._count += 1
        if len(self._pending) >= _INSERT_BATCH:
            self._flush()

    def _flush(self) -> None:
        self._db.executemany("INSERT INTO summary VALUES (?, ?, ?)", self._pending)
        self._pending = []

    def locate(self, line_starts: Iterable[int]) -> None:
        """Record the byte offset of each input line (line 1 first), for `where`; ends the adding."""
        self._flush()
        self._db.executemany("INSERT INTO line VALUES (?, ?)", enumerate(line_starts, 1))
        self._db.commit()

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for (body,) in self._db.execute("SELECT body FROM summary ORDER BY id, lineno"):
            yield loads(body.decode("utf-8", _CODEC))

    def __contains__(self, item: object) -> bool:
        return any(summary == item for summary in self)

    def where(self) -> Iterator[tuple[int, int]]:
        """(line number, byte offset) of every summarised record, in the summaries' order."""
        # the cursor itself, not a generator over it: a generator left unfinished by an error would close the
        # cursor when collected, after the database is closed
        cursor: Iterator[tuple[int, int]] = self._db.execute(
            "SELECT s.lineno, o.start FROM summary s JOIN line o ON o.lineno = s.lineno ORDER BY s.id, s.lineno")
        return cursor

    def close(self) -> None:
        """Close the database (the caller removes its folder)."""
        self._db.close()
