"""A small Label Studio REST client: token handling, retries with back-off, one-line errors.

Raw JSON in and out (the export is kept byte-for-byte as Label Studio gives it), and retries only
where they are safe: reads always, writes only when the caller says the request is idempotent.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from pipeline.common.errors import ConfigError, PipelineError

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class LabelStudioError(PipelineError):
    """A Label Studio request that failed for good (after retries); `status` is the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def mask(secret: str) -> str:
    """Show a secret as its first four characters and its length, never in full."""
    return f"{secret[:4]}…({len(secret)} chars)" if secret else "(empty)"


def check_url(url: str) -> str:
    """`url` without a trailing slash if it is a usable server address (http/https, a host, a valid port, no
    credentials, query or fragment); a one-line ConfigError otherwise."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    except ValueError as exc:
        raise ConfigError(f"LABEL_STUDIO_URL {url!r} is not a valid URL ({exc})") from None
    if parts.username is not None or parts.password is not None:
        raise ConfigError("LABEL_STUDIO_URL must not contain a user name or password; the API token authenticates")
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"LABEL_STUDIO_URL must start with http:// or https://, got {url!r}")
    if not parts.hostname:
        raise ConfigError(f"LABEL_STUDIO_URL {url!r} names no host")
    if parts.query or parts.fragment:
        raise ConfigError(f"LABEL_STUDIO_URL {url!r} must not have a query or fragment")
    return url.rstrip("/")


def _is_jwt(token: str) -> bool:
    """True for a personal access token (a JWT refresh token), False for a legacy API token."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and "alg" in header


@dataclass
class Transport:
    """One Label Studio server and its API token: requests sent authenticated, with retries and back-off."""

    url: str
    token: str = field(repr=False)
    timeout_s: float = 60.0
    retries: int = 4
    backoff_s: float = 0.5
    session: requests.Session = field(default_factory=requests.Session, repr=False)
    _access: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.url = check_url(self.url)
        if not self.token:
            raise ConfigError("no Label Studio API token: set LABEL_STUDIO_API_KEY (environment or .env)")
        if not (isinstance(self.retries, int) and self.retries >= 0):
            raise ConfigError(f"retries must be an integer >= 0, got {self.retries!r}")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ConfigError(f"timeout_s must be a number > 0, got {self.timeout_s!r}")

    def _scrub(self, text: str) -> str:
        """`text` with the token (and the access token derived from it) masked, on one line."""
        for secret in (self.token, self._access):
            if secret:
                text = text.replace(secret, mask(secret))
        return " ".join(text.split())[:300]

    # -- authentication -------------------------------------------------------------------------

    def _auth_header(self, refresh: bool = False) -> str:
        if not _is_jwt(self.token):
            return f"Token {self.token}"
        if self._access is None or refresh:
            resp = self._send("POST", "/api/token/refresh/", json={"refresh": self.token}, auth=False)
            if resp.status_code != 200:
                raise LabelStudioError(
                    f"Label Studio at {self.url} rejected the personal access token {mask(self.token)} "
                    f"(HTTP {resp.status_code}); create a new one under Account & Settings"
                )
            try:
                self._access = resp.json()["access"]
            except (ValueError, KeyError, TypeError):
                raise LabelStudioError(
                    f"Label Studio at {self.url} answered the token refresh without an access token"
                ) from None
        return f"Bearer {self._access}"

    # -- transport ------------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, auth: bool = True, idempotent: bool | None = None,
              timeout_s: float | None = None, **kwargs: Any) -> requests.Response:
        """Send one request, retrying connection errors, timeouts and 5xx with exponential back-off."""
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE", "PATCH")
        attempts = 1 + (self.retries if idempotent else 0)
        url = self.url + path
        problem = ""
        status: int | None = None
        refreshed = False
        attempt = 0
        while attempt < attempts:
            attempt += 1
            headers = kwargs.pop("headers", {}) or {}
            if auth:
                headers["Authorization"] = self._auth_header()
            try:
                resp = self.session.request(method, url, headers=headers, timeout=timeout_s or self.timeout_s, **kwargs)
            except requests.exceptions.ConnectionError:
                problem = f"cannot connect to Label Studio at {self.url} (is the server running? `make label-studio`)"
            except requests.exceptions.Timeout:
                problem = f"Label Studio at {self.url} did not answer within {timeout_s or self.timeout_s:g} s"
            except requests.exceptions.ChunkedEncodingError:
                problem = f"the connection to Label Studio at {self.url} broke off in the middle of an answer"
            except requests.exceptions.RequestException as exc:  # a bad URL or header, too many redirects…: final
                raise LabelStudioError(
                    f"{method} {path} to Label Studio at {self.url} failed: "
                    f"{type(exc).__name__}: {self._scrub(str(exc))}"
                ) from None
            else:
                if resp.status_code == 401 and auth and _is_jwt(self.token) and not refreshed:
                    refreshed = True  # an expired access token: refresh once, not counted as a retry
                    self._auth_header(refresh=True)
                    attempt -= 1
                    continue
                if resp.status_code not in RETRY_STATUS:
                    return resp
                problem = f"Label Studio at {self.url} answered HTTP {resp.status_code} to {method} {path}"
                status = resp.status_code
            if attempt < attempts:
                time.sleep(min(self.backoff_s * 2 ** (attempt - 1), 10.0))
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        raise LabelStudioError(problem + tries, status)


@dataclass
class LabelStudioAPI(Transport):
    """Authenticated requests to one Label Studio server, every answer checked and read as JSON."""

    def request(self, method: str, path: str, *, what: str, ok: tuple[int, ...] = (200, 201, 204),
                **kwargs: Any) -> requests.Response:
        """Send a request and turn any unexpected answer into a one-line LabelStudioError naming `what`."""
        resp = self._send(method, path, **kwargs)
        if resp.status_code in ok:
            return resp
        if resp.status_code == 401:
            hint = (
                " (a legacy token needs LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true on the server; "
                "or use a personal access token)"
                if not _is_jwt(self.token) else ""
            )
            raise LabelStudioError(
                f"{what}: Label Studio at {self.url} rejected the API token {mask(self.token)} (HTTP 401){hint}", 401
            )
        raise LabelStudioError(f"{what}: HTTP {resp.status_code}: {_detail(resp)}", resp.status_code)

    def _json(self, resp: requests.Response, what: str) -> Any:
        """The JSON body of an answer; a one-line error when it is something else (not a Label Studio server?)."""
        try:
            return resp.json()
        except ValueError:
            raise LabelStudioError(
                f"{what}: {self.url} answered HTTP {resp.status_code} with something that is not JSON "
                f"({_detail(resp)[:80]}); is LABEL_STUDIO_URL the address of a Label Studio server?",
                resp.status_code,
            ) from None

    def get(self, path: str, *, what: str, **kwargs: Any) -> Any:
        """GET a JSON document."""
        return self._json(self.request("GET", path, what=what, **kwargs), what)

    def post(self, path: str, payload: Any, *, what: str, idempotent: bool = False, **kwargs: Any) -> Any:
        """POST JSON and return the JSON answer (None when empty)."""
        resp = self.request("POST", path, what=what, json=payload, idempotent=idempotent, **kwargs)
        return self._json(resp, what) if resp.content else None

    def patch(self, path: str, payload: Any, *, what: str) -> Any:
        """PATCH JSON and return the JSON answer."""
        return self._json(self.request("PATCH", path, what=what, json=payload), what)

    def download(self, path: str, out: Path, *, what: str, timeout_s: float | None = None,
                 params: dict[str, Any] | None = None) -> int:
        """Stream a GET answer to the file `out` (1 MiB at a time); return the byte count.

        A connection that breaks off mid-stream is a one-line LabelStudioError (`out` then holds a partial
        download; the caller discards it)."""
        resp = self.request("GET", path, what=what, params=params, stream=True, timeout_s=timeout_s)
        n = 0
        try:
            with resp, open(out, "wb") as handle:
                for chunk in resp.iter_content(1 << 20):
                    handle.write(chunk)
                    n += len(chunk)
        except requests.exceptions.RequestException as exc:
            raise LabelStudioError(
                f"{what}: the connection to Label Studio at {self.url} broke off in the middle of the download "
                f"({type(exc).__name__}); try again"
            ) from None
        return n

    def delete(self, path: str, *, what: str) -> None:
        """DELETE a resource (a resource already gone is fine)."""
        self.request("DELETE", path, what=what, ok=(200, 204, 404))

    def pages(self, path: str, *, what: str, page_size: int, params: dict[str, Any] | None = None,
              key: str = "tasks") -> Iterator[dict[str, Any]]:
        """Yield every item of a paged list endpoint (`page`/`page_size`), one page in memory at a time."""
        page = 1
        while True:
            resp = self.request(
                "GET", path, what=what, params={**(params or {}), "page": page, "page_size": page_size}, ok=(200, 404)
            )
            if resp.status_code == 404 and page > 1:
                return  # Label Studio answers 404 for a page past the end
            if resp.status_code == 404:
                raise LabelStudioError(f"{what}: HTTP 404: {_detail(resp)}")
            body = self._json(resp, what)
            items: list[dict[str, Any]] = body  # a bare list, or the list under `key` (else "results") of an object
            if isinstance(body, dict):
                items = body[key] if key in body else body.get("results", [])
            yield from items
            if len(items) < page_size or (isinstance(body, dict) and body.get("next") is None and "next" in body):
                return
            page += 1

    def whoami(self) -> dict[str, Any]:
        """The user the token belongs to (checks URL and token)."""
        return self.get("/api/current-user/whoami", what="checking the API token")


def _detail(resp: requests.Response) -> str:
    """The most useful short message in an error answer."""
    try:
        body = resp.json()
    except ValueError:
        text = " ".join(resp.text.split())
        return (text[:200] + "…") if len(text) > 200 else text or resp.reason
    if isinstance(body, dict):
        for key in ("validation_errors", "detail", "error"):
            if body.get(key):
                value = body[key]
                text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                return " ".join(text.split())[:300]
    return json.dumps(body, ensure_ascii=False)[:300]
