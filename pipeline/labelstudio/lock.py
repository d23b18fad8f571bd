"""The push lock: a marker on the Label Studio server that a second push sees, so two pushes never overlap.

The marker is a Label Studio custom label titled `pipeline push lock: <project title>`. Label titles are unique
within an organisation (a database constraint), and creating one with a taken title hands back the existing
label, so of two pushes creating it at once exactly one gets its own marker back: an atomic test-and-set that
works the same for the local server and a team server. The holder refreshes the marker every
`lock_stale_s / 5` seconds; one not refreshed for `lock_stale_s` (a push that was killed) is stale and the next
push takes it over. Ages are measured on the server's clock (its `updated_at` against its `Date` header), so
hosts with skewed clocks agree.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import FrameType, TracebackType
from typing import Any

from pipeline.common.errors import PipelineError
from pipeline.labelstudio.api import LabelStudioAPI, LabelStudioError

PREFIX = "pipeline push lock: "
FROM_NAME = "pipeline-push-lock"  # the label-link's control tag name; no such tag exists, so nothing shows it
TWIN_WAIT_S = 5.0  # how long a second project of the title may take to be deleted by the racing push that made it


class LockHeldError(PipelineError):
    """Another push holds the project's lock (exit 5, like any refusal by the service)."""


def holder() -> dict[str, Any]:
    """Who is taking the lock: OS user, host, pid, UTC start time and a random token that marks it as ours."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        user = f"uid{os.getuid()}"
    return {"user": user, "host": socket.gethostname(), "pid": os.getpid(),
            "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "token": uuid.uuid4().hex}


def describe(marker: dict[str, Any], age_s: float) -> str:
    """`user@host pid N since T (refreshed S s ago)` for a lock marker."""
    value = marker.get("value")
    if not isinstance(value, dict):
        value = {}
    return (f"{value.get('user', '?')}@{value.get('host', '?')} pid {value.get('pid', '?')} "
            f"since {value.get('since', marker.get('created_at', '?'))} (refreshed {age_s:.0f} s ago)")


def _titled(api: LabelStudioAPI, title: str) -> list[dict[str, Any]]:
    """The projects with exactly this title, oldest (lowest id) first."""
    return sorted((p for p in api.projects(title) if p.get("title") == title), key=lambda p: p["id"])


def lock_project(api: LabelStudioAPI, title: str) -> dict[str, Any]:
    """The project the lock is linked to and the push then fills, created (bare) if there is none yet.

    Two first pushes may both create it; each then keeps the oldest project of that title and deletes the empty
    others (the holder pushes into this oldest one, never into a project found later, so a twin is never filled)."""
    found = _titled(api, title)
    deadline = time.monotonic() + TWIN_WAIT_S
    while len(found) > 1 and time.monotonic() < deadline:  # a racing first push deletes its twin in a moment
        time.sleep(0.25)
        found = _titled(api, title)
    if len(found) > 1:
        raise LabelStudioError(f"{len(found)} projects are titled {title!r}; rename all but one")
    if found:
        return found[0]
    # Direct requests, not the SDK: with the SDK a CI run under load once left a twin project (not reproduced
    # alone); this race-critical path stays on the plain requests its race test was written against.
    mine = api.post("/api/projects", {"title": title}, what=f"creating project {title!r}")
    oldest, *twins = _titled(api, title)
    for twin in twins:
        # There was no project of this title before: every other one is a twin of this race, ours or another's, or
        # one a create left behind while answering 500 ("database is locked" under load, the project saved). None is
        # ever filled (pushes fill the oldest), so an empty one goes, whoever made it; deleting it twice is fine.
        if twin["id"] == mine["id"] or not twin.get("task_number"):
            api.delete(f"/api/projects/{twin['id']}", what=f"deleting the twin project {twin['id']} of {title!r}")
    return oldest


class PushLock:
    """`with PushLock(api, title, stale_s):` holds the project's push lock; released on success, error and Ctrl-C."""

    def __init__(self, api: LabelStudioAPI, project_title: str, stale_s: float, break_lock: bool = False) -> None:
        # the heartbeat thread gets its own client: a requests.Session is not shared between threads
        self.api = api
        self._beat_api = LabelStudioAPI(api.url, api.token, timeout_s=api.timeout_s, retries=api.retries)
        self.project_title = project_title
        self.title = PREFIX + project_title
        self.stale_s = stale_s
        self.break_lock = break_lock
        self.me = holder()
        self.marker_id: int | None = None
        self.project: dict[str, Any] | None = None  # the project the holder pushes into (lock_project)
        self.lost = ""  # why the lock was lost while held (broken by another run), if it was
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._old_sigterm: Any = None

    # -- the marker ---------------------------------------------------------------------------------

    def _read(self, api: LabelStudioAPI, marker_id: int) -> tuple[dict[str, Any] | None, float]:
        """The marker and its age in seconds by the server's clock; (None, 0) once it is gone."""
        resp = api.request("GET", f"/api/labels/{marker_id}/", what="reading the push lock", ok=(200, 404))
        if resp.status_code == 404:
            return None, 0.0
        marker = api._json(resp, "reading the push lock")
        try:
            now = parsedate_to_datetime(resp.headers["Date"])
            age = (now - datetime.fromisoformat(marker["updated_at"])).total_seconds()
        except (KeyError, TypeError, ValueError):
            age = 0.0  # no usable clock: never judge a lock stale on a guess
        return marker, max(age, 0.0)

    def _ours(self, marker: dict[str, Any]) -> bool:
        """True when the marker carries this lock's token."""
        value = marker.get("value")
        return isinstance(value, dict) and value.get("token") == self.me["token"]

    def _find(self) -> dict[str, Any] | None:
        """The marker with our title, whoever holds it."""
        for label in self.api.pages("/api/labels/", what="looking up the push lock", page_size=100, key="results"):
            if label.get("title") == self.title:
                return label
        return None

    def _create(self, project_id: int) -> dict[str, Any] | None:
        """Create the marker; the label that now has our title (ours or the holder's), None if unknown."""
        body = [{"title": self.title, "value": self.me, "project": project_id, "from_name": FROM_NAME,
                 "description": "held by a running push; `python -m pipeline push --break-lock` clears a stale one"}]
        try:
            answer = self.api.post("/api/labels/", body, what="taking the push lock")
        except LabelStudioError as exc:
            if exc.status is None or exc.status < 500:
                raise LabelStudioError(f"{exc} (the push lock is a Label Studio label: the token's user must be "
                                       f"allowed to create labels)", exc.status) from None
            return self._find()  # a racing create lost on the unique constraint: look at who won
        return answer[0] if isinstance(answer, list) and answer else None

    def acquire(self) -> None:
        """Take the lock, taking over a stale one (or any, with break_lock); LockHeldError if another push holds it."""
        self.project = project = lock_project(self.api, self.project_title)
        for _ in range(3):  # a marker can vanish or go stale between two looks: look again, a bounded number of times
            marker = self._create(project["id"])
            if marker is None:
                continue
            if self._ours(marker):
                self.marker_id = marker["id"]
                break
            current, age = self._read(self.api, marker["id"])
            if current is None:
                continue  # released meanwhile
            if self.break_lock or age > self.stale_s:
                why = "--break-lock" if self.break_lock else f"stale: not refreshed for more than {self.stale_s:g} s"
                print(f"push: taking over the push lock of {describe(current, age)} ({why})", file=sys.stderr)
                self.api.delete(f"/api/labels/{current['id']}/", what="removing a stale push lock")
                continue
            raise LockHeldError(
                f"project {self.project_title!r} on {self.api.url} is being pushed by {describe(current, age)}; "
                f"wait for it to finish, or if it died run `python -m pipeline push --break-lock` "
                f"(an unrefreshed lock expires after labelstudio.lock_stale_s = {self.stale_s:g} s)"
            )
        else:
            raise LockHeldError(f"could not take the push lock of project {self.project_title!r} on {self.api.url} "
                                f"after 3 tries (other pushes keep taking it); try again")
        self._thread = threading.Thread(target=self._beat, name="push-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        """Refresh the marker until released; note it (once) if another run broke it."""
        assert self.marker_id is not None
        while not self._stop.wait(self.stale_s / 5):
            try:
                resp = self._beat_api.request("PATCH", f"/api/labels/{self.marker_id}/", what="refreshing the push lock",
                                              json={"approved": False}, ok=(200, 404))
            except LabelStudioError as exc:  # transient: the next beat tries again
                print(f"push: warning: could not refresh the push lock: {exc}", file=sys.stderr)
                continue
            if resp.status_code == 404:
                self.lost = "another run removed the push lock (--break-lock, or it had gone stale)"
                print(f"push: warning: {self.lost}; pushes may now overlap: run push again afterwards, "
                      f"it reports duplicates", file=sys.stderr)
                return

    def release(self) -> None:
        """Stop refreshing and remove the marker if it is still ours; never raises (the lock then expires)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.api.timeout_s + 5)
        if self.marker_id is None:
            return
        try:
            current, _ = self._read(self.api, self.marker_id)
            if current is not None and self._ours(current):
                self.api.delete(f"/api/labels/{self.marker_id}/", what="releasing the push lock")
        except LabelStudioError as exc:
            print(f"push: warning: could not release the push lock ({exc}); it expires after {self.stale_s:g} s",
                  file=sys.stderr)
        self.marker_id = None

    # -- context manager: SIGTERM is turned into SystemExit so that `finally` releases the lock --------

    def __enter__(self) -> PushLock:
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            self.acquire()
        except BaseException:
            self.__exit__(None, None, None)  # a marker taken before the failure is released too
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self.release()
        finally:
            self._restore_sigterm()

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
