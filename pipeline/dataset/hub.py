"""Pushing a built dataset folder to the Hugging Face Hub: the token, the upload plan of a dry run, the upload itself."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.common.config import read_env_file
from pipeline.common.errors import ConfigError, PipelineError
from pipeline.dataset.release import read_manifest, write_manifest


def hf_token(env_file: Path = Path(".env")) -> str:
    """HF_TOKEN from the environment or the git-ignored .env file; one-line error when missing."""
    token = os.environ.get("HF_TOKEN")
    if not token and env_file.is_file():
        token = read_env_file(env_file).get("HF_TOKEN")
    if not token:
        raise ConfigError("HF_TOKEN is not set: export HF_TOKEN=... or add it to .env (never to params.yaml)")
    return token


def upload_plan(folder: Path, repo_id: str, version: str) -> list[str]:
    """Lines describing what a push would upload: repo, tag, then each file with its size."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    lines = [f"repo: {repo_id} (dataset)", f"tag: v{version}", f"files: {len(files)}, {total:,} bytes"]
    lines += [f"  {p.relative_to(folder).as_posix()}  {p.stat().st_size:,} bytes" for p in files]
    return lines


def push(folder: Path, repo_id: str, man: dict[str, Any], releases: Path) -> Path:
    """Upload the folder to a Hub dataset repo, tag it v<version>, record its manifest in `releases`; return the record."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    version = man["version"]
    record = releases / f"manifest-{version}.json"
    if record.is_file() and read_manifest(record).get("files") != man["files"]:
        raise ConfigError(f"version {version} was already published with other content: bump publish.version")
    api = HfApi(token=hf_token())
    try:
        api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
        api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=folder,
                          commit_message=f"Release {version}", delete_patterns=["*.parquet", "**/*.parquet", "*.png"])
        api.create_tag(repo_id, tag=f"v{version}", repo_type="dataset", exist_ok=record.is_file(),
                       tag_message=f"Dataset version {version}")
    except (HfHubHTTPError, OSError) as exc:
        raise PipelineError(f"push to {repo_id} failed: {str(exc).splitlines()[0]}") from None
    write_manifest(record, man)
    return record
