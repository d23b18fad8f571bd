"""A small fake of the Hugging Face Hub HTTP API on 127.0.0.1, for release tests (the Hub is unreachable here).

It serves exactly the endpoints huggingface_hub 2.4.0 calls for a dataset release, as read in its source
(hf_api.py, _commit_api.py, lfs.py): repo create/info/settings, refs, tree, validate-yaml, preupload, the
LFS batch API with the basic transfer (PUT), commit (NDJSON, `parentCommit` checked) and tag. Repos are
git-like: commits hold whole trees, LFS files are stored by sha256 and listed with their pointer's blob id,
errors carry the X-Error-Code headers huggingface_hub maps to its exceptions. Every request is recorded.
The Xet upload protocol is not served: tests set `HF_HUB_DISABLE_XET`, so huggingface_hub uses LFS.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

# The patterns of the .gitattributes the Hub writes in a new dataset repo that matter here (it has many more).
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in ("*.parquet", "*.png", "*.arrow", "*.zip"))


def git_oid(data: bytes) -> str:
    """Git's blob id of `data`."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git LFS pointer file the Hub commits in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class Entry:
    """A file in a commit: its bytes (regular) or its LFS sha256 and size."""

    data: bytes | None = None
    sha256: str | None = None
    size: int = 0

    def tree_json(self, path: str) -> dict[str, Any]:
        if self.data is not None:
            return {"type": "file", "oid": git_oid(self.data), "size": len(self.data), "path": path}
        assert self.sha256 is not None
        pointer = lfs_pointer(self.sha256, self.size)
        return {"type": "file", "oid": git_oid(pointer), "size": self.size, "path": path,
                "lfs": {"oid": self.sha256, "size": self.size, "pointerSize": len(pointer)}}

    def preupload_oid(self) -> str:
        """The oid the preupload endpoint reports: sha256 for LFS, git blob id for a regular file."""
        return self.sha256 or git_oid(self.data or b"")


@dataclass
class Repo:
    private: bool
    gated: bool | str = False
    commits: dict[str, dict[str, Entry]] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)  # commit id -> the commit's description
    tag_messages: dict[str, str] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        """A branch, tag or commit id to a commit id."""
        rev = unquote(revision)
        return self.branches.get(rev) or self.tags.get(rev) or (rev if rev in self.commits else None)

    def commit(self, parent: str | None, tree: dict[str, Entry], message: str, branch: str = "main") -> str:
        oid = hashlib.sha1(json.dumps([parent, message, len(self.commits), sorted(tree)]).encode(),
                           usedforsecurity=False).hexdigest()
        self.commits[oid], self.messages[oid], self.branches[branch] = tree, message, oid
        return oid


# The Hub's messages for the refusals a test injects (FakeHub.refuse).
REFUSALS = {403: "You don't have the rights to create a commit in this repository (injected)",
            429: "You have been rate-limited; you can retry this action in a few seconds (injected)"}


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class FakeHub:
    """The fake Hub server: `url` to point HF_ENDPOINT at, `repos`, `lfs` objects, recorded `calls`."""

    def __init__(self, token: str = "hf_fake_token") -> None:
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[str, int] = {}  # path fragment -> how many more requests to it fail with 503
        # path fragment -> (status, headers) every request to it gets: 403 (no write access), 429 (rate limited)
        self.refuse: dict[str, tuple[int, dict[str, str]]] = {}
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                hub._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def writes(self) -> list[tuple[str, str]]:
        """The recorded requests that change something (everything but GET and the two read-only POSTs)."""
        return [(m, p) for m, p in self.calls if m != "GET" and not p.endswith(("/validate-yaml",)) and "/preupload/" not in p
                and not p.endswith("/info/lfs/objects/batch")]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of a repo at a revision, LFS content resolved."""
        repo = self.repos[repo_id]
        tree = repo.commits[repo.resolve(revision) or revision]
        return {p: e.data if e.data is not None else self.lfs[e.sha256 or ""] for p, e in tree.items()}

    # ------------------------------------------------------------------ dispatch

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        body = self._body(h)
        with self.lock:
            self.calls.append((h.command, url.path))
            try:
                for fragment, left in list(self.fail.items()):
                    if fragment in url.path and left > 0:
                        self.fail[fragment] = left - 1
                        raise HubError(503, "Service Unavailable (injected)")
                for fragment, (status, headers) in self.refuse.items():
                    if fragment in url.path:
                        raise HubError(status, REFUSALS.get(status, "refused (injected)"), headers=headers)
                status, payload = self._route(h, url.path, parse_qs(url.query), body)
            except HubError as err:
                self._send(h, err.status, {"error": err.message}, err.code, err.headers)
                return
        self._send(h, status, payload)

    @staticmethod
    def _body(h: BaseHTTPRequestHandler) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(h.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(h.rfile.read(size))
                h.rfile.readline()
            h.rfile.readline()
            return b"".join(chunks)
        return h.rfile.read(int(h.headers.get("Content-Length") or 0))

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, payload: Any, code: str | None = None,
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        if code:
            h.send_header("X-Error-Code", code)
            h.send_header("X-Error-Message", payload.get("error", ""))
        h.end_headers()
        h.wfile.write(data)

    def _authorized(self, h: BaseHTTPRequestHandler) -> bool:
        return h.headers.get("Authorization") == f"Bearer {self.token}"

    def _repo(self, h: BaseHTTPRequestHandler, repo_id: str, write: bool = False) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized(h)):
            raise HubError(404, "Repository not found", "RepoNotFound")
        if write and not self._authorized(h):
            raise HubError(401, "Invalid credentials in Authorization header")
        return repo

    def _route(self, h: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
        m = h.command
        if m == "POST" and path == "/api/repos/create":
            return self._create(h, json.loads(body))
        if m == "POST" and path == "/api/validate-yaml":
            return 200, {"errors": [], "warnings": []}
        if m == "PUT" and path.startswith("/lfs-upload/"):
            return self._lfs_put(path.removeprefix("/lfs-upload/"), body)
        if path.startswith("/datasets/") and path.endswith(".git/info/lfs/objects/batch"):
            repo_id = path.removeprefix("/datasets/").removesuffix(".git/info/lfs/objects/batch")
            self._repo(h, repo_id, write=True)
            return self._lfs_batch(json.loads(body))
        if not path.startswith("/api/datasets/"):
            raise HubError(404, f"no route {m} {path}")
        parts = path.removeprefix("/api/datasets/").split("/")
        repo_id, rest = "/".join(parts[:2]), parts[2:]
        if m == "GET" and not rest:
            repo = self._repo(h, repo_id)
            return 200, {"id": repo_id, "private": repo.private, "gated": repo.gated, "sha": repo.branches.get("main")}
        if m == "GET" and rest == ["refs"]:
            repo = self._repo(h, repo_id)
            ref = lambda kind, name, oid: {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": oid}  # noqa: E731
            return 200, {"branches": [ref("heads", n, o) for n, o in repo.branches.items()],
                         "tags": [ref("tags", n, o) for n, o in repo.tags.items()], "converts": []}
        if m == "GET" and rest[:1] == ["tree"]:
            return self._tree(self._repo(h, repo_id), rest[1], "/".join(rest[2:]), query)
        if m == "PUT" and rest == ["settings"]:
            return self._settings(self._repo(h, repo_id, write=True), json.loads(body))
        if m == "POST" and rest[:1] == ["preupload"]:
            return self._preupload(self._repo(h, repo_id, write=True), rest[1], json.loads(body))
        if m == "POST" and rest[:1] == ["commit"]:
            return self._commit(repo_id, self._repo(h, repo_id, write=True), rest[1], body)
        if m == "POST" and rest[:1] == ["tag"]:
            return self._tag(self._repo(h, repo_id, write=True), rest[1], json.loads(body))
        raise HubError(404, f"no route {m} {path}")

    # ------------------------------------------------------------------ endpoints

    def _create(self, h: BaseHTTPRequestHandler, payload: dict[str, Any]) -> tuple[int, Any]:
        if not self._authorized(h):
            raise HubError(401, "Invalid credentials in Authorization header")
        if payload.get("type") != "dataset":
            raise HubError(400, "only dataset repos are faked")
        repo_id = f"{payload['organization']}/{payload['name']}"
        if repo_id in self.repos:
            raise HubError(409, "You already created this dataset repo")
        repo = self.repos[repo_id] = Repo(private=payload.get("visibility") == "private")
        repo.commit(None, {".gitattributes": Entry(GITATTRIBUTES.encode())}, "initial commit")
        return 200, {"url": f"{self.url}/datasets/{repo_id}", "name": repo_id}

    def _settings(self, repo: Repo, payload: dict[str, Any]) -> tuple[int, Any]:
        if "gated" in payload:
            if payload["gated"] not in ("auto", "manual", False):
                raise HubError(400, "invalid gated value")
            repo.gated = payload["gated"]
        if "visibility" in payload:
            repo.private = payload["visibility"] == "private"
        return 200, {}

    def _tree(self, repo: Repo, revision: str, prefix: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        oid = repo.resolve(revision)
        if oid is None:
            raise HubError(404, "Invalid rev id", "RevisionNotFound")
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries, folders = [], set()
        for path, entry in sorted(repo.commits[oid].items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rel = path.removeprefix(prefix + "/") if prefix else path
            if "/" in rel:
                top = (prefix + "/" if prefix else "") + rel.split("/")[0]
                folders.update([top] if not recursive else
                               ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)])
                if not recursive:
                    continue
            entries.append(entry.tree_json(path))
        dirs = [{"type": "directory", "oid": hashlib.sha1(d.encode(), usedforsecurity=False).hexdigest(), "size": 0,
                 "path": d} for d in sorted(folders) if not prefix or d.startswith(prefix + "/")]
        return 200, dirs + entries

    def _is_lfs(self, tree: dict[str, Entry], path: str) -> bool:
        attrs = tree.get(".gitattributes")
        patterns = [line.split()[0] for line in (attrs.data or b"").decode().splitlines()
                    if "filter=lfs" in line] if attrs else []
        return any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) for p in patterns)

    def _preupload(self, repo: Repo, revision: str, payload: dict[str, Any]) -> tuple[int, Any]:
        tree = repo.commits[repo.resolve(revision) or repo.branches["main"]]
        files = []
        for f in payload["files"]:
            existing = tree.get(f["path"])
            files.append({"path": f["path"], "uploadMode": "lfs" if self._is_lfs(tree, f["path"]) else "regular",
                          "shouldIgnore": False, "oid": existing.preupload_oid() if existing else None})
        return 200, {"files": files}

    def _lfs_batch(self, payload: dict[str, Any]) -> tuple[int, Any]:
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", []):
            raise HubError(400, "only basic uploads are faked")
        objects = []
        for obj in payload["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.lfs:
                entry["actions"] = {"upload": {"href": f"{self.url}/lfs-upload/{obj['oid']}"}}
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}

    def _lfs_put(self, oid: str, body: bytes) -> tuple[int, Any]:
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "content does not match its oid")
        self.lfs[oid] = body
        return 200, {}

    def _commit(self, repo_id: str, repo: Repo, revision: str, body: bytes) -> tuple[int, Any]:
        branch = unquote(revision)
        if branch not in repo.branches:
            raise HubError(404, "Invalid rev id", "RevisionNotFound")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = lines[0]["value"]
        head = repo.branches[branch]
        if header.get("parentCommit") and header["parentCommit"] != head:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        tree = dict(repo.commits[head])
        for item in lines[1:]:
            key, value = item["key"], item["value"]
            if key == "file":
                tree[value["path"]] = Entry(base64.b64decode(value["content"]))
            elif key == "lfsFile":
                if value["oid"] not in self.lfs:
                    raise HubError(422, f"LFS object {value['oid']} was not uploaded")
                tree[value["path"]] = Entry(sha256=value["oid"], size=len(self.lfs[value["oid"]]))
            elif key == "deletedFile":
                if tree.pop(value["path"], None) is None:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
            else:
                raise HubError(400, f"unsupported commit operation {key}")
        oid = repo.commit(head, tree, header["summary"], branch)
        repo.descriptions[oid] = header.get("description", "")
        return 200, {"success": True, "commitOid": oid, "commitUrl": f"{self.url}/datasets/{repo_id}/commit/{oid}"}

    def _tag(self, repo: Repo, revision: str, payload: dict[str, Any]) -> tuple[int, Any]:
        oid = repo.resolve(revision)
        if oid is None:
            raise HubError(404, "Invalid rev id", "RevisionNotFound")
        if payload["tag"] in repo.tags:
            raise HubError(409, "Tag already exists")
        repo.tags[payload["tag"]] = oid
        repo.tag_messages[payload["tag"]] = payload.get("message", "")
        return 200, {}
