"""Provenance of every prediction: content hashes of texts, files and the code a stage runs."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in chunks (md5 is what DVC records for a file output)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


@functools.cache
def code_revision(modules: tuple[str, ...]) -> str:
    """Short content hash of the given modules of this package, the code revision a stage's outputs record.

    A hash of the code a stage runs, rather than the git commit id, keeps outputs byte-identical across
    commits that change other modules, data or docs, so `dvc repro` on a fresh clone matches the
    committed dvc.lock; list the same modules as the stage's deps in dvc.yaml.
    """
    if rev := os.environ.get("PIPELINE_CODE_REVISION"):
        return rev
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(name.encode() + b"\0" + (package / name).read_bytes() + b"\0")
    return digest.hexdigest()[:12]
