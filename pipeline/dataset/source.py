"""Where the published folder's code comes from: the git commit of the publish stage's code and the repository URL.

The commit is the newest one that changed the files the publish stage runs (its dvc.yaml code deps), not HEAD:
the card is a DVC output, and a rebuild at any later commit whose publish code is the same must give the
same bytes (tests/test_reproducibility.py rebuilds a fresh clone, whose HEAD holds the dvc.lock of this card).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.common.provenance import PACKAGE, code_files

# The card's text, read by the stage but imported by nobody (package data: a dvc.yaml dep of its own).
TEMPLATES = "dataset/templates"
# `git@github.com:org/repo.git`: git's scp-like syntax for ssh.
SCP_LIKE = re.compile(r"[\w.-]+@([\w.-]+):(?!/)(.+)")


@dataclass(frozen=True)
class Source:
    """The publish code's commit (None outside a git checkout), files changed since it, and the repository URL."""

    commit: str | None
    modified: tuple[str, ...]
    url: str | None
    url_from: str | None  # "origin" or "params"


def code_paths() -> list[str]:
    """The publish stage's code, relative to the repository root: its modules' import closure and the card template."""
    prefix = PACKAGE.name
    return [f"{prefix}/{name}" for name in code_files("publish.py")] + [f"{prefix}/{TEMPLATES}"]


def _git(repo: Path, *args: str) -> str | None:
    """A git command's output in `repo`, or None when git is missing or the command fails."""
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def public_url(remote: str) -> str | None:
    """A remote as a browsable URL without credentials or `.git`; None for a local path or an unknown scheme."""
    if m := SCP_LIKE.fullmatch(remote):
        scheme, host, path = "https", m.group(1), m.group(2)
    else:
        try:
            parts = urlsplit(remote)
            port = parts.port  # raises on a port that is no number
        except ValueError:
            return None
        if parts.scheme not in ("https", "http", "ssh", "git") or not parts.hostname:
            return None
        scheme = parts.scheme if parts.scheme.startswith("http") else "https"
        host, path = parts.hostname + (f":{port}" if port and scheme == parts.scheme else ""), parts.path  # not ssh's port
    path = path.strip("/").removesuffix(".git")
    return f"{scheme}://{host}/{path}" if path else None


def web_url(value: str) -> str | None:
    """`value` if it is an http(s) URL with a host and no user or password (a params value is published as is)."""
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("https", "http") and parts.hostname and parts.username is None and parts.password is None
        ok = ok and (parts.port is None or parts.port > 0)  # .port raises on a port that is no number
    except ValueError:
        return None
    return value if ok else None


def repo_source(repo: Path, params_url: str | None) -> Source:
    """The commit of the publish code in `repo` and the repository URL: params `publish.repository_url`, else origin."""
    paths = code_paths()
    commit = (_git(repo, "log", "-1", "--format=%H", "--", *paths) or "").strip() or None
    status = _git(repo, "status", "--porcelain", "--", *paths) if commit else None
    modified = tuple(sorted(line[3:] for line in (status or "").splitlines()))
    # params win: a clone's origin is wherever it was cloned from (a fork, a local path), so the card would change
    # with the checkout, not with the code or the data
    if params_url:
        return Source(commit, modified, params_url, "params")
    origin = (_git(repo, "remote", "get-url", "origin") or "").strip()
    url = public_url(origin) if origin else None
    return Source(commit, modified, url, "origin" if url else None)
