"""Where a pulled snapshot came from (server and project), in a sidecar `annotations/<timestamp>.meta.json`.

`pull` writes the sidecar beside each new snapshot. Two snapshots of the same origin can be compared: an
annotation that the older holds and the newer lacks was deleted in Label Studio (pipeline/human/tombstones.py).
A snapshot without a sidecar (pulled before sidecars existed, or an export downloaded from the UI) has no
known origin and is never compared. The project's creation time is part of the origin, so a project deleted
and created again, or another machine's fresh server at the same address, is never taken for the same one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline.common.contract import is_int
from pipeline.common.errors import InputError
from pipeline.common.provenance import sha256_text

META_NAME = re.compile(r"^(\d{8}T\d{6}Z)\.meta\.json$")  # beside `<timestamp>.jsonl`, as pull names them
PULLED = re.compile(r"^\d{8}T\d{6}Z\.jsonl$")
FORMAT = 1


@dataclass(frozen=True)
class Origin:
    """A Label Studio server and one of its projects."""

    server: str  # `server_digest` of its address
    project_id: int
    project_created_at: str
    project_title: str = ""  # shown only: a renamed project is the same project

    @property
    def key(self) -> tuple[str, int, str]:
        """What makes two snapshots' origins the same."""
        return self.server, self.project_id, self.project_created_at


def server_name(url: str) -> str:
    """A server address in one spelling: lower-case scheme and host, the default port made explicit, no trailing `/`."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}{parts.path.rstrip('/')}"


def server_digest(url: str) -> str:
    """What a snapshot's origin records of its server: a digest of its address, which stays out of the repository."""
    return "sha256:" + sha256_text(server_name(url))[:16]


def project_origin(url: str, project: dict[str, Any]) -> Origin:
    """The origin of a snapshot of `project` (as Label Studio's API returns it) on the server at `url`."""
    return Origin(server_digest(url), int(project["id"]), str(project.get("created_at") or ""),
                  str(project.get("title") or ""))


def meta_path(snapshot: Path) -> Path:
    """The sidecar of a snapshot: `<timestamp>.jsonl` -> `<timestamp>.meta.json`."""
    return snapshot.with_name(snapshot.name.split(".", 1)[0] + ".meta.json")


def is_sidecar(path: Path) -> bool:
    """Whether a file of annotations/ is a snapshot's sidecar; one whose snapshot is missing is an InputError."""
    match = META_NAME.match(path.name)
    if match is None:
        return False
    if not path.with_name(f"{match[1]}.jsonl").is_file():
        raise InputError(f"{path}: the origin of snapshot {match[1]}.jsonl, which is not there (restore the "
                         f"snapshot or remove this file)")
    return True


def origin_record(snapshot: Path, origin: Origin) -> dict[str, Any]:
    """The sidecar's content for `snapshot` (written by pull with the snapshot, never overwritten)."""
    return {"format": FORMAT, "snapshot": snapshot.name, "server": origin.server, "project_id": origin.project_id,
            "project_created_at": origin.project_created_at, "project_title": origin.project_title}


def read_origin(snapshot: Path) -> Origin | None:
    """The origin of a snapshot from its sidecar, or None if it has none; a bad sidecar is an InputError naming it."""
    meta = meta_path(snapshot)
    if not PULLED.match(snapshot.name) or not meta.is_file():  # only pull writes sidecars, beside what it names
        return None
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{meta}: not a JSON object ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{meta}: not a JSON object")
    checks = {"snapshot": lambda v: v == snapshot.name, "server": lambda v: isinstance(v, str) and v.startswith("sha256:"),
              "project_id": is_int, "project_created_at": lambda v: isinstance(v, str)}
    for key, ok in checks.items():
        if not ok(data.get(key)):
            raise InputError(f"{meta}: key {key!r}: unexpected value {data.get(key)!r:.80}"
                             + (f" (expected {snapshot.name!r})" if key == "snapshot" else ""))
    return Origin(data["server"], data["project_id"], data["project_created_at"], str(data.get("project_title") or ""))
