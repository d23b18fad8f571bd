"""The one-command local server (`make label-studio` = `python -m pipeline label-studio`), as a newcomer runs it."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values

from pipeline.common.jsonl import read_jsonl
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.index import TaskIndex
from pipeline.labelstudio.server import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
UP = re.compile(r"Label Studio is (up|already running): (http://127\.0\.0\.1:(\d+))/projects/(\d+)/data")


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline ARGS` from `cwd`, with no Label Studio settings in the environment (so .env is used)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def test_one_command_brings_up_a_project_then_reuses_it_then_stops(tmp_path: Path, seed_preannotated: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["labelstudio"]["server"]["port"] = 0  # any free port: never a developer's running server
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    chosen = free_port()
    args = ("label-studio", "--input", str(seed_preannotated), "--guidelines", str(ROOT / "resources" / "guidelines.md"),
            "--data-dir", "ls-data", "--annotations", str(ROOT / "annotations"), "--port", str(chosen))
    n_articles = sum(1 for _ in read_jsonl(seed_preannotated))

    first = run(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    up = UP.search(first.stdout)
    assert up and up.group(1) == "up", first.stdout
    url, port, project = up.group(2), int(up.group(3)), int(up.group(4))
    try:
        assert port == chosen  # --port wins over labelstudio.server.port
        assert re.search(rf"join through {re.escape(url)}/user/signup/?\?token=\w+", first.stdout), first.stdout
        env_file = tmp_path / ".env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        settings = dotenv_values(env_file)
        token, password = settings["LABEL_STUDIO_API_KEY"], settings["LABEL_STUDIO_PASSWORD"]
        assert settings["LABEL_STUDIO_URL"] == url and token and password
        for secret in (token, password):
            assert secret not in first.stdout and secret not in first.stderr  # shown masked, never in full
        assert "grep LABEL_STUDIO_PASSWORD" in first.stdout

        api = LabelStudioAPI(url, token, timeout_s=30, retries=2)
        tasks = TaskIndex.fetch(api, project, page_size=100)
        assert sorted(t.key[0] for t in tasks) == sorted(r["id"] for _, r in read_jsonl(seed_preannotated))
        assert all(t.predictions == 1 and len(t.model_versions) == 1 for t in tasks)
        assert all(t.annotated for t in tasks)  # the seed gold of annotations/ was imported

        second = run(tmp_path, *args)  # the same command again: reuses the server, adds nothing
        assert second.returncode == 0, second.stderr
        again = UP.search(second.stdout)
        assert again and again.group(1) == "already running" and again.group(2) == url
        assert int(again.group(4)) == project
        assert len(TaskIndex.fetch(api, project, page_size=100)) == n_articles

        practice = run(tmp_path, *args, "--practice")  # the seeds afresh: a separate project, no gold
        assert practice.returncode == 0, practice.stderr
        other = UP.search(practice.stdout)
        assert other and int(other.group(4)) != project
        fresh = TaskIndex.fetch(api, int(other.group(4)), page_size=100)
        assert len(fresh) == n_articles and not any(t.annotated for t in fresh)
        titles = {p["id"]: p["title"] for p in api.pages("/api/projects", what="projects", page_size=100)}
        assert titles[int(other.group(4))] == f"{titles[project][:39]} (practice)"  # 50 characters at most
    finally:
        stopped = run(tmp_path, "label-studio", "--stop", "--data-dir", "ls-data")
    assert stopped.returncode == 0, stopped.stderr
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more
