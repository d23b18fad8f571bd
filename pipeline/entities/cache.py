"""The annotation cache: content-addressed annotations in one SQLite file, so reruns skip texts already annotated."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from pipeline.common.errors import ConfigError
from pipeline.common.jsonl import dumps


class Cache:
    """Content-addressed store of annotations: one SQLite file, key -> JSON, committed in small transactions.

    SQLite makes every commit atomic, so a run that dies halfway leaves a consistent cache holding the
    records finished so far; one indexed file scales to millions of entries without a directory per key.
    """

    COMMIT_EVERY = 200

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(folder / "annotations.sqlite3", timeout=60)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS annotation (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"{folder}: cannot open the annotation cache ({exc})") from None
        self.uncommitted = 0

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached annotation under `key`, or None."""
        row = self.db.execute("SELECT value FROM annotation WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store an annotation under `key`."""
        self.db.execute("INSERT OR REPLACE INTO annotation (key, value) VALUES (?, ?)", (key, dumps(value)))
        self.uncommitted += 1
        if self.uncommitted >= self.COMMIT_EVERY:
            self.db.commit()
            self.uncommitted = 0

    def close(self) -> None:
        """Commit what is pending and close the database."""
        self.db.commit()
        self.db.close()
