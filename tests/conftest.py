"""Shared pytest fixtures."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# -- Label Studio: one real server for the whole test session --------------------------------------


@dataclass(frozen=True)
class LabelStudioServer:
    """A running Label Studio server started for the tests (repr shows no secret)."""

    url: str
    token: str = field(repr=False)
    email: str
    password: str = field(repr=False)
    data_dir: Path
    log: Path


@pytest.fixture(scope="session")
def label_studio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """Start the pinned Label Studio from .venv-ls on a free loopback port with a throwaway data dir; stop it after."""
    from pipeline.labelstudio import server as ls_server

    data_dir = tmp_path_factory.mktemp("labelstudio")
    creds = ls_server.Credentials.new()
    port = ls_server.free_port()
    url = f"http://127.0.0.1:{port}"
    log = data_dir / "server.log"
    proc = ls_server.start(data_dir, port, creds, log)
    try:
        ls_server.wait_healthy(url, timeout_s=300, proc=proc, log_path=log, creds=creds)
        yield LabelStudioServer(url, creds.token, creds.email, creds.password, data_dir, log)
    finally:
        ls_server.stop(proc)
        artifacts = Path("test-artifacts")
        artifacts.mkdir(exist_ok=True)
        if log.exists():
            (artifacts / "label-studio-server.log").write_bytes(ls_server.redacted_log(log, creds))


@pytest.fixture(scope="session")
def env_file(tmp_path_factory: pytest.TempPathFactory, label_studio_server: LabelStudioServer) -> Path:
    """An .env naming the test server and its admin token, as `make label-studio` writes it."""
    path = tmp_path_factory.mktemp("env") / ".env"
    path.write_text(f"LABEL_STUDIO_URL={label_studio_server.url}\nLABEL_STUDIO_API_KEY={label_studio_server.token}\n")
    return path


@pytest.fixture
def no_env_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests name their server through an .env file (or a child's environment), never the developer's environment."""
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)


@pytest.fixture(scope="session")
def seed_preannotated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/preannotated.jsonl of the five seed articles, built by the pipeline's own ingest and preannotate
    (with the team's params.yaml) in a temporary folder; data/articles.jsonl lies beside it."""
    tmp = tmp_path_factory.mktemp("seeds")
    for args in (
        ["ingest", "--corpus", "corpus", "--output", tmp / "articles.jsonl", "--report", tmp / "ingest.json",
         "--patterns", "resources/boilerplate.yaml"],
        ["preannotate", "--input", tmp / "articles.jsonl", "--output", tmp / "preannotated.jsonl",
         "--patterns", "resources/entity_patterns.yaml", "--actors", "resources/actors.yaml",
         "--lexicon", "resources/stance_cues.yaml"],
    ):
        run = subprocess.run([sys.executable, "-m", "pipeline", *map(str, args), "--params", str(ROOT / "params.yaml")],
                             cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
        assert run.returncode == 0, run.stderr
    return tmp / "preannotated.jsonl"
