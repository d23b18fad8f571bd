"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


# -- Label Studio: one real server for the whole test session --------------------------------------


@dataclass(frozen=True)
class LabelStudioServer:
    """A running Label Studio server started for the tests."""

    url: str
    token: str
    email: str
    password: str
    data_dir: Path
    log: Path


@pytest.fixture(scope="session")
def label_studio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """Start the pinned Label Studio from .venv-ls on a free loopback port with a throwaway data dir; stop it after."""
    from pipeline import ls_server

    data_dir = tmp_path_factory.mktemp("labelstudio")
    creds = ls_server.Credentials.new()
    port = ls_server.free_port()
    url = f"http://127.0.0.1:{port}"
    log = data_dir / "server.log"
    proc = ls_server.start(data_dir, port, creds, log)
    try:
        ls_server.wait_healthy(url, timeout_s=300, proc=proc, log_path=log)
        yield LabelStudioServer(url, creds.token, creds.email, creds.password, data_dir, log)
    finally:
        ls_server.stop(proc)
        artifacts = Path("test-artifacts")
        artifacts.mkdir(exist_ok=True)
        if log.exists():
            (artifacts / "label-studio-server.log").write_bytes(log.read_bytes())
