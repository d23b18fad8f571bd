"""Provenance of every prediction: content hashes of texts, files and the code a stage runs."""

from __future__ import annotations

import ast
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


PACKAGE = Path(__file__).resolve().parents[1]
# The CLI only parses options and calls a stage's `main`: its help text must not change a stage's code revision.
ENTRY = frozenset({"cli.py", "__main__.py", "__init__.py"})


def _module_file(dotted: str) -> str | None:
    """The file of a `pipeline.*` module relative to the package (a package's `__init__.py`), or None."""
    parts = dotted.split(".")
    if parts[0] != PACKAGE.name:
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path.relative_to(PACKAGE).as_posix()
    return None


def imported_files(name: str) -> set[str]:
    """The package files module `name` (a path relative to the package) imports anywhere, also inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse((PACKAGE / name).read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from pipeline.pkg import module` imports a module, else a name of one
                if target := _module_file(f"{node.module}.{alias.name}") or _module_file(node.module):
                    found.add(target)
        elif isinstance(node, ast.Import):
            found |= {t for a in node.names if (t := _module_file(a.name))}
    return found - ENTRY


@functools.cache
def code_files(module: str) -> tuple[str, ...]:
    """`module` (e.g. "preannotate.py") and every package file it imports, transitively, sorted.

    Subpackage `__init__.py` files hold only a docstring (a test checks it), so they are left out.
    """
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += sorted(imported_files(name))
    return tuple(sorted(n for n in seen if not n.endswith("__init__.py")))


@functools.cache
def code_revision(modules: tuple[str, ...]) -> str:
    """Short content hash of the given modules of this package, the code revision a stage's outputs record.

    A hash of the code a stage runs, rather than the git commit id, keeps outputs byte-identical across
    commits that change other modules, data or docs, so `dvc repro` on a fresh clone matches the
    committed dvc.lock; `code_files` gives a stage's modules, the same files as its deps in dvc.yaml.
    """
    if rev := os.environ.get("PIPELINE_CODE_REVISION"):
        return rev
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(name.encode() + b"\0" + (PACKAGE / name).read_bytes() + b"\0")
    return digest.hexdigest()[:12]
