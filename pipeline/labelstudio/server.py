"""A local Label Studio server: the pinned package from `.venv-ls`, on 127.0.0.1, with its data in one folder.

The first start creates the admin account and its API token non-interactively; the secrets go to a
git-ignored `.env` (mode 600) and are never printed in full.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from pipeline.common.config import read_env_file
from pipeline.common.errors import ConfigError, PipelineError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = ROOT / ".venv-ls" / "bin" / "label-studio"
ADMIN_EMAIL = "admin@localhost"

# No network here and no reason to phone home: telemetry, update checks and Sentry off.
QUIET_ENV = {
    "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
    "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
    "COLLECT_ANALYTICS": "false",
    "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
    "LATEST_VERSION_CHECK": "false",
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
    "SENTRY_RATE": "0",
    "CONVERTER_DOWNLOAD_RESOURCES": "false",
    "DEBUG": "false",
    "LOG_LEVEL": "WARNING",
    "PYTHONUNBUFFERED": "1",
}
# Label Studio 1.23's own feature flag (read from the environment) for the predictions import: with it off,
# every `import/predictions` call recounts all the project's tasks (6 s a call at 10,000 tasks), with it on only
# the tasks it touched (0.5 s). On unless the environment says false (to measure the difference); a team server
# should set it too (docs/scaling-and-benchmarks.md).
FAST_IMPORT_FLAG = "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short"


@dataclass(frozen=True)
class Credentials:
    """The admin account of a local server (repr shows the e-mail only)."""

    email: str
    password: str = field(repr=False)
    token: str = field(repr=False)

    @classmethod
    def new(cls) -> Credentials:
        """Fresh random credentials."""
        return cls(ADMIN_EMAIL, secrets.token_urlsafe(18), secrets.token_hex(20))


def free_port(preferred: int = 0) -> int:
    """`preferred` if it is free on 127.0.0.1, else a free port chosen by the OS."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the server binds (SO_REUSEADDR): a port left in TIME_WAIT by a crashed server is free, one
            # with a listener is not. Without it the server would move to a random port after every crash.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise PipelineError("no free TCP port on 127.0.0.1")


def executable() -> Path:
    """The pinned label-studio command (LABEL_STUDIO_BIN overrides), with a hint when it is missing."""
    path = Path(os.environ.get("LABEL_STUDIO_BIN", DEFAULT_BIN))
    if not path.exists():
        raise ConfigError(f"{path} not found: install the Label Studio server with `make label-studio-venv`")
    return path


def start(data_dir: Path, port: int, creds: Credentials, log_path: Path, detach: bool = False) -> subprocess.Popen:
    """Start label-studio on 127.0.0.1:`port` with its data in `data_dir`; the admin is created on first run."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)  # its SQLite file holds the admin's password hash and API token
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "HEARTEX_"))}
    env.pop("USERNAME", None)  # Label Studio would take a plain USERNAME/PASSWORD as its admin account
    env.pop("PASSWORD", None)
    env.pop("CI", None)  # CI=true makes Label Studio load its own migration linter
    env.update(QUIET_ENV)
    env.setdefault(FAST_IMPORT_FLAG, "true")
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir.resolve()),
            "LABEL_STUDIO_USERNAME": creds.email,
            "LABEL_STUDIO_PASSWORD": creds.password,
            "LABEL_STUDIO_USER_TOKEN": creds.token,
        }
    )
    cmd = [str(executable()), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir.resolve()), "--log-level", "WARNING"]
    log = open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")  # noqa: SIM115 - to the child
    try:
        return subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=detach, cwd=data_dir,
        )
    finally:
        log.close()


def wait_healthy(url: str, timeout_s: float, proc: subprocess.Popen | None = None, log_path: Path | None = None,
                 creds: Credentials | None = None) -> None:
    """Wait until `url`/health answers UP; a clear error (quoting the log redacted of `creds`) if the server exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise PipelineError(
                f"Label Studio exited with code {proc.returncode} during start-up"
                + (f"; see {log_path}: {_last_line(log_path, creds)}" if log_path else "")
            )
        if is_healthy(url):
            return
        time.sleep(1.0)
    raise PipelineError(
        f"Label Studio at {url} was not up after {timeout_s:g} s" + (f"; see {log_path}" if log_path else "")
    )


def is_healthy(url: str) -> bool:
    """True when the server at `url` answers its health check."""
    try:
        resp = requests.get(url.rstrip("/") + "/health", timeout=3)
    except requests.exceptions.RequestException:
        return False
    return resp.status_code == 200 and "UP" in resp.text


def stop(proc_or_pid: subprocess.Popen | int, timeout_s: float = 20.0) -> None:
    """Stop a server we started: SIGTERM to its process group, SIGKILL if it does not go."""
    pid = proc_or_pid if isinstance(proc_or_pid, int) else proc_or_pid.pid
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    target = pgid if pgid == pid else None  # only a whole group if the server leads its own session
    _signal(pid, target, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not isinstance(proc_or_pid, int):
            if proc_or_pid.poll() is not None:
                return
        elif not _alive(pid):
            return
        time.sleep(0.2)
    _signal(pid, target, signal.SIGKILL)
    if not isinstance(proc_or_pid, int):
        proc_or_pid.wait(timeout=5)


def _signal(pid: int, group: int | None, sig: int) -> None:
    try:
        if group is not None:
            os.killpg(group, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def redacted_log(log_path: Path, creds: Credentials) -> bytes:
    """The server log with the admin's e-mail, password and token replaced, for copying where others read it."""
    return _redact(log_path.read_bytes(), creds)


def _redact(data: bytes, creds: Credentials) -> bytes:
    for secret, name in ((creds.token, "token"), (creds.password, "password"), (creds.email, "admin-email")):
        if secret:
            data = data.replace(secret.encode(), f"[{name} redacted]".encode())
    return data


def _last_line(path: Path | None, creds: Credentials | None) -> str:
    """The log's last non-blank line (200 characters at most), redacted of `creds`, for an error message."""
    if not path or not path.exists():
        return ""
    data = path.read_bytes()
    text = (_redact(data, creds) if creds else data).decode(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


# -- .env: the local server's URL, token and admin password, git-ignored ------------------------


_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.,:/@+=-]*")
_ENV_KEY = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=")


def _env_line(key: str, value: str) -> str:
    """`KEY=value`, single-quoted unless plain, so python-dotenv reads back exactly `value`."""
    # dotenv would expand ${...}; our values (a URL, hex, url-safe base64) never have it
    if "${" in value or "\n" in value:
        raise ValueError(f"{key}: value cannot be written to a .env file unchanged")
    if _PLAIN_VALUE.fullmatch(value):
        return f"{key}={value}"
    return f"{key}='" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def update_env_file(path: Path, updates: dict[str, str]) -> None:
    """Set keys in a .env file, keeping its other lines; the file is replaced atomically, readable by its owner only."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    done = set()
    for i, line in enumerate(lines):
        match = _ENV_KEY.match(line)
        if match and match[1] in updates:
            lines[i] = _env_line(match[1], updates[match[1]])
            done.add(match[1])
    lines += [_env_line(k, v) for k, v in updates.items() if k not in done]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mode 600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def server_main(data_dir: Path, env_file: Path, port: int, start_timeout_s: float) -> tuple[str, Credentials, bool]:
    """Bring up the local server (reusing a running one); return its URL, the admin credentials, and if it was started."""
    env = read_env_file(env_file)
    creds = Credentials(
        env.get("LABEL_STUDIO_USERNAME", ""), env.get("LABEL_STUDIO_PASSWORD", ""), env.get("LABEL_STUDIO_API_KEY", "")
    )
    first_run = not (data_dir / "label_studio.sqlite3").exists()
    if first_run or not all((creds.email, creds.password, creds.token)):
        if not first_run:
            raise ConfigError(
                f"{data_dir} holds a Label Studio database but {env_file} lacks its credentials "
                f"(LABEL_STUDIO_USERNAME/PASSWORD/API_KEY); restore them or move {data_dir} away to start afresh"
            )
        creds = Credentials.new()
    url = env.get("LABEL_STUDIO_URL", "")
    pid_file = data_dir / "server.pid"
    if url and pid_file.exists() and is_healthy(url):
        return url, creds, False
    port = free_port(port)
    url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "server.log"
    proc = start(data_dir, port, creds, log_path, detach=True)
    pid_file.write_text(f"{proc.pid}\n")
    update_env_file(
        env_file,
        {
            "LABEL_STUDIO_URL": url,
            "LABEL_STUDIO_API_KEY": creds.token,
            "LABEL_STUDIO_USERNAME": creds.email,
            "LABEL_STUDIO_PASSWORD": creds.password,
        },
    )
    print(f"label-studio: starting the server on {url} (log: {log_path}); first start takes a minute…", file=sys.stderr)
    wait_healthy(url, start_timeout_s, proc, log_path, creds)
    return url, creds, True


def stop_main(data_dir: Path) -> bool:
    """Stop the local server started by `server_main`; False if none was running."""
    pid_file = data_dir / "server.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip() or 0)
    pid_file.unlink()
    if pid <= 0 or not _alive(pid):
        return False
    stop(pid)
    return True


@contextmanager
def throwaway(who: str, start_timeout_s: float, port: int = 0) -> Iterator[tuple[str, str]]:
    """A local server with its data in a temporary folder, healthy, for the block: yields (url, token); then stopped.

    It listens on `port` when that is free, else on a free port the OS picks.
    """
    with tempfile.TemporaryDirectory(prefix=f"{who}-server-") as tmp:
        creds, port = Credentials.new(), free_port(port)
        url, log = f"http://127.0.0.1:{port}", Path(tmp) / "server.log"
        print(f"{who}: starting a throwaway Label Studio on {url}…", file=sys.stderr)
        proc = start(Path(tmp) / "data", port, creds, log)
        try:
            wait_healthy(url, start_timeout_s, proc, log, creds)
            yield url, creds.token
        finally:
            stop(proc)
