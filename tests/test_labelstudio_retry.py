"""The one retry policy of every Label Studio call: what it retries, how often, how long it waits."""

from __future__ import annotations

import pytest
import requests

from pipeline.labelstudio.api import LabelStudioAPI, LabelStudioError, RetryPolicy
from pipeline.labelstudio.retry import MAX_DELAY_S


def test_the_policy_retries_only_transient_failures_a_bounded_number_of_times():
    waits: list[float] = []
    policy = RetryPolicy(retries=3, backoff_s=0.5, sleep=waits.append)
    assert [policy.wait_to_retry(503, attempt) for attempt in (1, 2, 3, 4)] == [True, True, True, False]
    assert waits == [0.5, 1.0, 2.0]
    assert policy.wait_to_retry(None, 1) and policy.wait_to_retry(429, 1)  # no answer, too many requests
    assert not any(policy.wait_to_retry(status, 1) for status in (400, 401, 403, 404, 409))
    assert not policy.wait_to_retry(500, 1, idempotent=False)  # a write that may have landed: the caller decides
    assert RetryPolicy(retries=0).attempts == 1
    assert RetryPolicy(backoff_s=1.0).delay(30) == MAX_DELAY_S


class _Answers(requests.Session):
    """A session that answers from a script: a status, or an exception to raise."""

    def __init__(self, *script: int | Exception) -> None:
        super().__init__()
        self.script, self.calls, self.timeouts = list(script), 0, []

    def request(self, method, url, *args, **kwargs):
        self.calls += 1
        self.timeouts.append(kwargs.get("timeout"))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        resp = requests.Response()
        resp.status_code, resp._content, resp.url = step, b'{"ok": true}', url
        resp._content_consumed = True
        return resp


def _api(session: _Answers, retries: int = 2) -> LabelStudioAPI:
    return LabelStudioAPI("http://127.0.0.1:1", "t" * 40, retries=retries, backoff_s=0.001, timeout_s=7,
                          session=session)


def test_reads_retry_5xx_and_connection_errors_then_succeed():
    session = _Answers(502, requests.exceptions.ConnectionError(), 200)
    assert _api(session).get("/api/x", what="x") == {"ok": True}
    assert session.calls == 3 and session.timeouts == [7, 7, 7]


def test_a_4xx_is_never_retried():
    session = _Answers(400, 200)
    with pytest.raises(LabelStudioError, match=r"^x: HTTP 400"):
        _api(session).get("/api/x", what="x")
    assert session.calls == 1


def test_attempts_are_bounded_by_labelstudio_retries():
    session = _Answers(*[503] * 5)
    with pytest.raises(LabelStudioError, match=r"answered HTTP 503 to GET /api/x \(after 3 attempts\)$"):
        _api(session, retries=2).get("/api/x", what="x")
    assert session.calls == 3


def test_an_sdk_call_goes_through_the_same_policy():
    session = _Answers(500, requests.exceptions.Timeout(), 200)
    api = _api(session)
    assert api.call("reading project 1", api.sdk.projects.with_raw_response.get, 1) == {"ok": True}
    assert session.calls == 3


def test_a_write_is_sent_once():
    session = _Answers(503, 200)
    with pytest.raises(LabelStudioError, match=r"answered HTTP 503 to POST /api/x$"):
        _api(session).post("/api/x", {}, what="x")
    assert session.calls == 1
