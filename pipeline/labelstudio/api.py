"""A small Label Studio client: the SDK and direct requests over one authenticated session, one retry policy.

Raw JSON in and out (the export is kept byte-for-byte as Label Studio gives it), and retries only
where they are safe: reads always, writes only when the caller says the request is idempotent.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import requests

from pipeline.common.errors import ConfigError
from pipeline.labelstudio.retry import LabelStudioError, RetryPolicy


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


def _origin(url: str) -> tuple[str, str | None, int | None]:
    """(scheme, host, port) with the scheme's default port made explicit."""
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(parts.scheme)


@dataclass
class Transport:
    """One Label Studio server and its API token: every request authenticated, retried by one RetryPolicy, and
    never redirected off the server's origin (scheme, host and port), so the token goes nowhere else."""

    url: str
    token: str = field(repr=False)
    timeout_s: float = 60.0
    retries: int = 4
    backoff_s: float = 0.5
    session: requests.Session = field(default_factory=requests.Session, repr=False)
    _access: str | None = field(default=None, repr=False)
    policy: RetryPolicy = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.url = check_url(self.url)
        if not self.token:
            raise ConfigError("no Label Studio API token: set LABEL_STUDIO_API_KEY (environment or .env)")
        if not (isinstance(self.retries, int) and self.retries >= 0):
            raise ConfigError(f"retries must be an integer >= 0, got {self.retries!r}")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ConfigError(f"timeout_s must be a number > 0, got {self.timeout_s!r}")
        self.policy = RetryPolicy(self.retries, self.backoff_s, self.timeout_s)
        hooks = self.session.hooks["response"]
        if self._refuse_other_origins not in hooks:
            hooks.append(self._refuse_other_origins)

    def _refuse_other_origins(self, resp: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        """A response hook: a redirect to another origin is an error before it is followed."""
        if resp.is_redirect:
            target = urljoin(resp.url, resp.headers["location"])
            if _origin(target) != _origin(self.url):
                parts = urlsplit(target)
                raise LabelStudioError(
                    f"Label Studio at {self.url} redirected {urlsplit(resp.url).path} to another host "
                    f"({parts.scheme}://{parts.netloc.rpartition('@')[2]}); refusing to follow it"
                )
        return resp

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
        """Send one request, tried again by the retry policy on connection errors, timeouts, 429 and 5xx."""
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE", "PATCH")
        timeout = timeout_s or self.timeout_s
        url = self.url + path
        base_headers = kwargs.pop("headers", None) or {}
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            headers = dict(base_headers)
            if auth:
                headers["Authorization"] = self._auth_header()
            status: int | None = None
            try:
                resp = self.session.request(method, url, headers=headers, timeout=timeout, **kwargs)
            except requests.exceptions.ConnectionError:
                problem = f"cannot connect to Label Studio at {self.url} (is the server running? `make label-studio`)"
            except requests.exceptions.Timeout:
                problem = f"Label Studio at {self.url} did not answer within {timeout:g} s"
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
                    resp.close()
                    self._auth_header(refresh=True)
                    attempt -= 1
                    continue
                if not self.policy.transient(resp.status_code):
                    return resp
                resp.close()
                problem = f"Label Studio at {self.url} answered HTTP {resp.status_code} to {method} {path}"
                status = resp.status_code
            if not self.policy.wait_to_retry(status, attempt, idempotent):
                raise LabelStudioError(problem + (f" (after {attempt} attempts)" if attempt > 1 else ""), status)


class _ViaTransport(httpx.BaseTransport):
    """Carries the SDK's requests over `Transport._send`: the same session, token, retry policy and redirect rule."""

    # requests sets these itself; the Authorization header is the Transport's, never the SDK's placeholder
    _DROP = frozenset({"authorization", "host", "content-length", "connection", "accept-encoding"})

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        home = self.transport.url
        if not url.startswith(home + "/"):
            raise LabelStudioError(f"a Label Studio SDK call addressed {url}, not Label Studio at {home}")
        timeout = request.extensions.get("timeout", {}).get("read")
        resp = self.transport._send(
            request.method, url[len(home):], headers={k: v for k, v in request.headers.items() if k not in self._DROP},
            data=request.read() or None, timeout_s=timeout, stream=True,
        )
        # requests has already decoded the body: its encoding and length headers no longer describe it
        headers = [(k, v) for k, v in resp.headers.items()
                   if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
        return httpx.Response(resp.status_code, headers=headers, stream=_Body(resp), request=request)


class _Body(httpx.SyncByteStream):
    """A requests response body as an httpx stream, 1 MiB at a time."""

    def __init__(self, resp: requests.Response) -> None:
        self.resp = resp

    def __iter__(self) -> Iterator[bytes]:
        yield from self.resp.iter_content(1 << 20)

    def close(self) -> None:
        self.resp.close()


@dataclass
class LabelStudioAPI(Transport):
    """Authenticated requests to one Label Studio server, every answer checked and read as JSON."""

    @cached_property
    def sdk(self) -> Any:
        """The label-studio-sdk client, every request of it sent by `_send` (its own retries off: the policy retries).

        The SDK is imported here, on first use: half a second that commands which never reach a server do not pay.
        Its token handling is bypassed (a placeholder key): `_send` authenticates, refreshing a personal access
        token once on a 401 as for every other call."""
        from label_studio_sdk.base_client import LabelStudioBase

        client = httpx.Client(transport=_ViaTransport(self), timeout=None, follow_redirects=False)
        return LabelStudioBase(base_url=self.url, api_key="-", max_retries=0, httpx_client=client)

    def _failure(self, what: str, status: int | None, detail: str) -> LabelStudioError:
        """The one-line error for an unexpected answer."""
        if status == 401:
            hint = (
                " (a legacy token needs LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true on the server; "
                "or use a personal access token)"
                if not _is_jwt(self.token) else ""
            )
            return LabelStudioError(
                f"{what}: Label Studio at {self.url} rejected the API token {mask(self.token)} (HTTP 401){hint}", 401
            )
        return LabelStudioError(f"{what}: HTTP {status}: {detail}", status)

    def _not_json(self, what: str, status: int, detail: str) -> LabelStudioError:
        return LabelStudioError(
            f"{what}: {self.url} answered HTTP {status} with something that is not JSON "
            f"({detail[:80]}); is LABEL_STUDIO_URL the address of a Label Studio server?",
            status,
        )

    def request(self, method: str, path: str, *, what: str, ok: tuple[int, ...] = (200, 201, 204),
                **kwargs: Any) -> requests.Response:
        """Send a request and turn any unexpected answer into a one-line LabelStudioError naming `what`."""
        resp = self._send(method, path, **kwargs)
        if resp.status_code in ok:
            return resp
        raise self._failure(what, resp.status_code, _detail(resp))

    def _json(self, resp: requests.Response | httpx.Response, what: str) -> Any:
        """The JSON body of an answer; a one-line error when it is something else (not a Label Studio server?)."""
        try:
            return resp.json()
        except ValueError:
            raise self._not_json(what, resp.status_code, _detail(resp)) from None

    def call(self, what: str, method: Callable[..., Any], *args: Any, missing_ok: bool = False, **kwargs: Any) -> Any:
        """Run one SDK call of a `with_raw_response` client; return the JSON exactly as the server sent it (None
        when empty, or for a 404 with `missing_ok`), an unexpected answer as a one-line LabelStudioError."""
        from label_studio_sdk.core.api_error import ApiError
        from label_studio_sdk.core.parse_error import ParsingError

        try:
            answer = method(*args, **kwargs)
        except (ApiError, ParsingError) as exc:
            status, body = exc.status_code, exc.body
            if missing_ok and status == 404:
                return None
            if status is not None and 200 <= status < 300:
                raise self._not_json(what, status, _detail_of(body)) from None
            raise self._failure(what, status, _detail_of(body)) from None
        return self._json(answer.response, what) if answer.response.content else None

    def save_stream(self, what: str, opened: Any, out: Path) -> int:
        """Write the byte chunks of a streaming SDK call (a context manager) to the file `out`; return the byte count.

        A connection that breaks off mid-stream is a one-line LabelStudioError (`out` then holds a partial
        download; the caller discards it)."""
        from label_studio_sdk.core.api_error import ApiError

        n = 0
        try:
            with opened as answer, open(out, "wb") as handle:
                for chunk in answer.data:
                    try:
                        handle.write(chunk)
                    except OSError as exc:  # a full disk: the error itself names no file
                        raise ConfigError(f"{what}: could not write {out} ({exc.strerror or exc})") from None
                    n += len(chunk)
        except ApiError as exc:
            raise self._failure(what, exc.status_code, _detail_of(exc.body)) from None
        except (requests.exceptions.RequestException, httpx.HTTPError) as exc:
            raise LabelStudioError(
                f"{what}: the connection to Label Studio at {self.url} broke off in the middle of the download "
                f"({type(exc).__name__}); try again"
            ) from None
        return n

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

    def projects(self, title: str) -> Iterator[dict[str, Any]]:
        """The projects whose title contains `title` (the server's filter), a page at a time."""
        # A direct request, not the SDK: its projects.list is a pager of typed models, even raw, never the JSON
        # the server sent, which ensure_project compares with its settings key by key.
        return self.pages("/api/projects", what="listing projects", page_size=100, key="results",
                          params={"title": title})

    def whoami(self) -> dict[str, Any]:
        """The user the token belongs to (checks URL and token)."""
        return self.call("checking the API token", self.sdk.users.with_raw_response.whoami)


def _detail(resp: requests.Response | httpx.Response) -> str:
    """The most useful short message in an error answer."""
    try:
        body = resp.json()
    except ValueError:
        text = " ".join(resp.text.split())
        reason = resp.reason if isinstance(resp, requests.Response) else resp.reason_phrase
        return (text[:200] + "…") if len(text) > 200 else text or reason
    return _detail_of(body)


def _detail_of(body: Any) -> str:
    """The most useful short message in an error body (parsed JSON, or text)."""
    if isinstance(body, str):
        text = " ".join(body.split())
        return (text[:200] + "…") if len(text) > 200 else text
    if isinstance(body, dict):
        for key in ("validation_errors", "detail", "error"):
            if body.get(key):
                value = body[key]
                text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                return " ".join(text.split())[:300]
    return json.dumps(body, ensure_ascii=False)[:300]
