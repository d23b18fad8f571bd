"""Pseudonyms of annotators known by an e-mail address (or another non-numeric identity), keyed with a secret.

`annotator-` + the first 12 hex digits of HMAC-SHA256(key, address lower-cased), so nobody without the key
can confirm a guessed address against a published pseudonym. The key is PIPELINE_PSEUDONYM_KEY, from the
environment or else from the git-ignored `.env`; absent from both, a random one is written to `.env` (mode
600) on first use. It is never printed. Keep it: another key gives every e-mail annotator a new pseudonym
(numeric Label Studio user ids, `annotator-<id>`, do not use it).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from pipeline.common.config import read_env_file
from pipeline.common.errors import ConfigError

KEY_NAME = "PIPELINE_PSEUDONYM_KEY"
ENV_FILE = Path(".env")
_cache: dict[str, bytes] = {}


def pseudonym_key(env_file: Path = ENV_FILE) -> bytes:
    """The pseudonym key: the environment's, else `env_file`'s, else a new one appended to `env_file`."""
    if value := os.environ.get(KEY_NAME, ""):
        return value.encode()
    cached = _cache.get(str(env_file.resolve()))
    if cached is not None:
        return cached
    value = read_env_file(env_file).get(KEY_NAME, "")
    if not value:
        value = secrets.token_hex(32)
        _append(env_file, f"{KEY_NAME}={value}\n")
    _cache[str(env_file.resolve())] = value.encode()
    return value.encode()


def _append(env_file: Path, line: str) -> None:
    """Add one line to `env_file`, creating it readable by its owner only."""
    try:
        fd = os.open(env_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"{env_file}: cannot write the new {KEY_NAME}: {exc.strerror}") from None
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        if env_file.stat().st_size and not env_file.read_bytes().endswith(b"\n"):
            out.write("\n")
        out.write(line)


def pseudonym(identity: str, key: bytes | None = None) -> str:
    """`annotator-<12 hex>` for a non-numeric identity (an e-mail address), keyed (module docstring)."""
    mac = hmac.new(pseudonym_key() if key is None else key, identity.strip().lower().encode(), hashlib.sha256)
    return "annotator-" + mac.hexdigest()[:12]
