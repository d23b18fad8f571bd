"""Provenance of every prediction: content hashes and the code's git revision."""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@functools.cache
def code_revision() -> str:
    """Git tree id of `pipeline/` as it is on disk: equal to `git rev-parse REV:pipeline` for any commit with that code.

    A tree id rather than the commit id keeps outputs byte-identical across commits that change
    only data or docs, so `dvc repro` on a fresh clone matches the committed dvc.lock.
    """
    if rev := os.environ.get("PIPELINE_CODE_REVISION"):
        return rev
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        try:
            subprocess.run(["git", "add", "pipeline"], cwd=root, env=env, capture_output=True, check=True)
            tree = subprocess.run(
                ["git", "write-tree", "--prefix=pipeline/"], cwd=root, env=env, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"
    return tree[:12]
