"""Releasing a built dataset folder on the Hugging Face Hub, checked against the Hub's own tags before any write.

A release is one commit holding exactly the folder's files and a tag `v<version>` on that commit. The plan
reads the repo (settings, refs, the file tree at the tag and at `main`) and refuses, before writing anything, a
version whose tag holds other content or that is lower than the highest tag. Files are compared by their LFS
sha256 or git blob id, so nothing is downloaded. A release interrupted between its commit and its tag is
finished by running it again: `main` then already holds the content and only the tag is created.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.common.config import read_env_file
from pipeline.common.errors import ConfigError, PipelineError
from pipeline.dataset.release import SEMVER, read_manifest, version_key, write_manifest

GATED = ("auto", "manual")
# Files the Hub keeps in every repo that a release neither compares nor deletes.
HUB_FILES = frozenset({".gitattributes"})
BRANCH = "main"


def hf_token(env_file: Path = Path(".env")) -> str:
    """HF_TOKEN from the environment or the git-ignored .env file; one-line error when missing."""
    token = os.environ.get("HF_TOKEN")
    if not token and env_file.is_file():
        token = read_env_file(env_file).get("HF_TOKEN")
    if not token:
        raise ConfigError("HF_TOKEN is not set: export HF_TOKEN=... or add it to .env (never to params.yaml)")
    return token


@dataclass(frozen=True)
class Access:
    """Who may read the repo: private (members only) and gating (`False`, "auto" or "manual")."""

    private: bool
    gated: bool | str = False

    def describe(self) -> str:
        """`private` or `public`, and the gating."""
        return ("private" if self.private else "public") + (f", gated: {self.gated}" if self.gated else ", not gated")


@dataclass(frozen=True)
class Blob:
    """A file as the Hub identifies it: size, git blob id, and the sha256 of its content if stored with LFS."""

    size: int
    git_oid: str
    sha256: str | None = None

    def same_as(self, local: Blob) -> bool:
        """Same content as a local file (whose sha256 is always known)."""
        return self.sha256 == local.sha256 if self.sha256 else self.git_oid == local.git_oid


def local_blobs(folder: Path) -> dict[str, Blob]:
    """Every file of the folder by its path in the repo, with sha256 and git blob id read in one pass."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = path.stat().st_size
        sha256, git = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                sha256.update(chunk)
                git.update(chunk)
        out[path.relative_to(folder).as_posix()] = Blob(size, git.hexdigest(), sha256.hexdigest())
    return out


@dataclass(frozen=True)
class Diff:
    """What a commit of the local folder changes in a remote tree."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.deleted)

    def summary(self) -> str:
        """`N added, N changed, N deleted`."""
        return f"{len(self.added)} added, {len(self.changed)} changed, {len(self.deleted)} deleted"


def diff(local: dict[str, Blob], remote: dict[str, Blob]) -> Diff:
    """Files to add, to replace and to delete so that `remote` holds exactly `local` (the Hub's own files aside)."""
    theirs = {p: b for p, b in remote.items() if p not in HUB_FILES}
    return Diff(added=tuple(sorted(set(local) - set(theirs))),
                changed=tuple(sorted(p for p in set(local) & set(theirs) if not theirs[p].same_as(local[p]))),
                deleted=tuple(sorted(set(theirs) - set(local))))


@dataclass(frozen=True)
class RemoteState:
    """The repo as the Hub has it: whether it exists, its access, `main`'s head and the tags' commits."""

    exists: bool
    access: Access | None = None
    main: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def highest(self) -> str | None:
        """The highest released version (tags `vMAJOR.MINOR.PATCH`), or None."""
        versions = [t[1:] for t in self.tags if t.startswith("v") and SEMVER.fullmatch(t[1:])]
        return max(versions, key=version_key, default=None)


def _api(token: str | bool) -> Any:
    """An HfApi on HF_ENDPOINT as set now (huggingface_hub reads it only at import); `token=False` is anonymous."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)


def read_state(api: Any, repo_id: str) -> RemoteState:
    """Settings and refs of the dataset repo (RemoteState(exists=False) when the Hub has no such repo)."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        info = api.repo_info(repo_id, repo_type="dataset")
        refs = api.list_repo_refs(repo_id, repo_type="dataset")
    except RepositoryNotFoundError:
        return RemoteState(exists=False)
    branches = {b.name: b.target_commit for b in refs.branches}
    return RemoteState(exists=True, access=Access(private=bool(info.private), gated=info.gated or False),
                       main=branches.get(BRANCH), tags={t.name: t.target_commit for t in refs.tags})


def remote_blobs(api: Any, repo_id: str, revision: str) -> dict[str, Blob]:
    """Every file of the repo at `revision` (a commit id), by path."""
    from huggingface_hub.hf_api import RepoFile

    return {e.path: Blob(e.size, e.blob_id, e.lfs.sha256 if e.lfs else None)
            for e in api.list_repo_tree(repo_id, recursive=True, revision=revision, repo_type="dataset")
            if isinstance(e, RepoFile)}


@dataclass(frozen=True)
class Plan:
    """What a release will do, decided from the remote state before any write."""

    repo_id: str
    version: str
    state: RemoteState
    access: Access
    changes: Diff = field(default_factory=Diff)  # against main's head: the release commit (empty: main already holds the content)
    unchanged: tuple[str, ...] = ()
    done: bool = False  # the tag exists with identical content: nothing to do
    refused: str | None = None  # why the Hub's tags forbid this release

    @property
    def tag(self) -> str:
        return f"v{self.version}"


def plan(api: Any, repo_id: str, version: str, local: dict[str, Blob], access: Access) -> Plan:
    """The release of `local` as `version` on the repo as it is now; `refused` says why the Hub's tags forbid it."""
    state, tag = read_state(api, repo_id), f"v{version}"
    if tag in state.tags:
        released = diff(local, remote_blobs(api, repo_id, state.tags[tag]))
        if released:
            first = (released.changed + released.added + released.deleted)[0]
            return Plan(repo_id, version, state, access, refused=(
                f"tag {tag} already holds other content ({released.summary()}, e.g. {first}): bump publish.version"))
        return Plan(repo_id, version, state, access, unchanged=tuple(sorted(local)), done=True)
    highest = state.highest()
    if highest is not None and version_key(version) < version_key(highest):
        return Plan(repo_id, version, state, access, refused=(
            f"version {version} is lower than the highest released version v{highest}: bump publish.version above it"))
    changes = diff(local, remote_blobs(api, repo_id, state.main) if state.main else {})
    unchanged = tuple(sorted(set(local) - set(changes.added) - set(changes.changed)))
    return Plan(repo_id, version, state, access, changes, unchanged)


def describe(p: Plan, local: dict[str, Blob]) -> list[str]:
    """The dry run's report: the remote repo, its tags, and each file the release would add, change or delete."""
    st = p.state
    lines = [f"repo: {p.repo_id} (dataset): " + (f"exists, {st.access.describe()}" if st.exists and st.access
                                                 else f"does not exist; would be created {p.access.describe()}")]
    if st.exists and st.access and st.access != p.access:
        lines.append(f"access: would be changed to {p.access.describe()} (params publish.private, publish.gated)")
    highest = st.highest()
    lines.append(f"tags: {len(st.tags)}" + (f", highest v{highest}" if highest else ""))
    if st.main and highest and st.main != st.tags[f"v{highest}"]:
        lines.append(f"main: {st.main[:12]} is not the commit of v{highest} (an interrupted or manual upload)")
    if p.refused:
        return [*lines, f"tag {p.tag}: refused: {p.refused}"]
    if p.done:
        return [*lines, f"tag {p.tag}: exists with identical content ({len(local)} files): nothing to upload"]
    lines.append(f"tag {p.tag}: does not exist; would be created on "
                 + (f"the release commit ({p.changes.summary()} against main)" if p.changes or not st.main
                    else f"main's head {st.main[:12]}, which already holds this content"))
    marks = [("+", p.changes.added), ("~", p.changes.changed), ("-", p.changes.deleted), ("=", p.unchanged)]
    for mark, paths in marks:
        lines += [f"  {mark} {path}" + (f"  {local[path].size:,} bytes" if path in local else "") for path in paths]
    total = sum(b.size for b in local.values())
    lines.append(f"files: {len(local)}, {total:,} bytes (+ added, ~ changed, - deleted, = unchanged)")
    return lines


def _operations(folder: Path, changes: Diff) -> Iterable[Any]:
    """The commit's operations: each added or changed file, each deleted one."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    for path in changes.added + changes.changed:
        yield CommitOperationAdd(path_in_repo=path, path_or_fileobj=folder / path)
    for path in changes.deleted:
        yield CommitOperationDelete(path_in_repo=path)


def release(api: Any, p: Plan, folder: Path, built_from: str = "unknown") -> str:
    """Carry out an allowed plan: create the repo or set its access, commit, tag the commit; return the commit id.

    The release commit's description and the tag's message name `built_from`, the git commit that built the folder.
    """
    from huggingface_hub.errors import (
        HTTPError as HubHTTPError,  # the transport's (connection refused, timeout) and the Hub's
    )

    if p.refused:
        raise ConfigError(f"{p.repo_id}: {p.refused}")
    if p.done:
        return p.state.tags[p.tag]
    if not p.state.exists:
        api.create_repo(p.repo_id, repo_type="dataset", private=p.access.private, exist_ok=True)
        if p.access.gated:
            api.update_repo_settings(p.repo_id, repo_type="dataset", gated=p.access.gated)
    elif p.state.access != p.access:
        api.update_repo_settings(p.repo_id, repo_type="dataset", private=p.access.private, gated=p.access.gated)
    oid = p.state.main
    if p.changes or oid is None:
        # parent_commit: the Hub refuses the commit if main moved since the plan read it
        commit = api.create_commit(p.repo_id, repo_type="dataset", operations=list(_operations(folder, p.changes)),
                                   commit_message=f"Release {p.version}", parent_commit=p.state.main,
                                   commit_description=f"Built from git commit {built_from}.")
        oid = commit.oid
    try:
        api.create_tag(p.repo_id, repo_type="dataset", tag=p.tag, revision=oid,
                       tag_message=f"Dataset version {p.version}, built from git commit {built_from}")
    except (HubHTTPError, OSError) as exc:
        raise PipelineError(f"{p.repo_id}: commit {oid} holds version {p.version} but creating tag {p.tag} failed "
                            f"({_reason(exc)}): run the same command again to finish the release") from None
    return str(oid)


def _first_line(exc: BaseException) -> str:
    """The first non-blank line of an error message (huggingface_hub's run over several lines)."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def _reason(exc: BaseException) -> str:
    """Why a Hub call failed, in a few words: a refusal (403), a rate limit (429, with its Retry-After) or the message."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status in (401, 403):
        return (f"{status} {'Unauthorized' if status == 401 else 'Forbidden'}: the Hub refused HF_TOKEN this repo "
                "(a read-only token, or not a member of the organisation with write access?)")
    if status == 429:
        after = response.headers.get("Retry-After") if response is not None else None
        wait = f"retry after {after} s" if after else "retry later"
        return f"429 Too Many Requests: the Hub is rate-limiting this token; {wait}"
    if isinstance(exc, OSError) or type(exc).__module__.startswith(("httpx", "httpcore")):
        return f"the Hub at {os.environ.get('HF_ENDPOINT') or 'https://huggingface.co'} is unreachable ({_first_line(exc)})"
    return _first_line(exc)


def git_commit(folder: Path = Path()) -> str:
    """The git commit checked out in `folder` (`+dirty` when tracked files differ from it), or `unknown` outside git."""
    import subprocess

    def git(*args: str) -> str | None:
        try:
            run = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return run.stdout.strip() if run.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    if not head:
        return "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def check_record(record: Path, man: dict[str, Any]) -> None:
    """Refuse a version this clone's `releases/` recorded with other data files, before asking the Hub."""
    if record.is_file() and read_manifest(record).get("files") != man["files"]:
        raise ConfigError(f"version {man['version']} was already published with other content: bump publish.version")


def dry_run(folder: Path, repo_id: str, man: dict[str, Any], releases: Path, access: Access) -> tuple[list[str], Plan]:
    """The dry run's report (remote state, tag, files) and the plan; nothing is written."""
    from huggingface_hub.errors import (
        HTTPError as HubHTTPError,  # the transport's (connection refused, timeout) and the Hub's
    )

    check_record(releases / f"manifest-{man['version']}.json", man)
    try:
        token: str | bool = hf_token()
    except ConfigError:
        token = False  # anonymous: a private repo reads as absent
    local = local_blobs(folder)
    try:
        p = plan(_api(token), repo_id, man["version"], local, access)
    except (HubHTTPError, OSError) as exc:
        raise PipelineError(f"reading {repo_id} on the Hub failed: {_reason(exc)}") from None
    return describe(p, local) + ([] if token else ["(no HF_TOKEN: a private repo reads as absent)"]), p


def push(folder: Path, repo_id: str, man: dict[str, Any], releases: Path, access: Access) -> tuple[Path, Plan]:
    """Release the folder on the Hub as v<version> and record its manifest in `releases`; return the record and plan."""
    from huggingface_hub.errors import (
        HTTPError as HubHTTPError,  # the transport's (connection refused, timeout) and the Hub's
    )

    record = releases / f"manifest-{man['version']}.json"
    check_record(record, man)
    api = _api(hf_token())
    built_from = git_commit()
    try:
        p = plan(api, repo_id, man["version"], local_blobs(folder), access)
        oid = release(api, p, folder, built_from)
    except (HubHTTPError, OSError, ValueError) as exc:
        raise PipelineError(f"push to {repo_id} failed: {_reason(exc)}") from None
    # the record names the Hub commit, and the git commit the Hub commit names (a release found done keeps its own)
    hub_record = {"repo": repo_id, "tag": p.tag, "commit": oid}
    if not p.done:
        hub_record["git_commit"] = built_from
    write_manifest(record, man | {"hub": hub_record})
    return record, p
