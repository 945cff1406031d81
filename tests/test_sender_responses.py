"""Track API responses -> verdicts, Retry-After parsing and backoff delays."""

from __future__ import annotations

import email.utils

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cioproc.sender.responses import Action, EntryFailure, backoff_delay, interpret, parse_retry_after

NOW = 1_700_000_000.0


def body(value) -> bytes:
    return orjson.dumps(value)


V2_400 = body({"errors": [{"reason": "invalid", "field": "identifiers", "message": "must have one identifier"}]})
V1_400 = body({"meta": {"errors": ["attribute value too long"]}})

CASES = [
    # (status, body, entries, retry_after, action, http_status, reason, error)
    (200, b"{}", 3, None, Action.DELIVERED, 200, None, None),
    (200, b"", 1, None, Action.DELIVERED, 200, None, None),
    (204, b"", 2, None, Action.DELIVERED, 204, None, None),
    (207, body({"errors": []}), 2, None, Action.DELIVERED, 207, None, None),
    (400, V2_400, 4, None, Action.SPLIT, 400, "invalid", "identifiers: must have one identifier"),
    (400, V2_400, 1, None, Action.REJECTED, 400, "invalid", "identifiers: must have one identifier"),
    (400, V1_400, 1, None, Action.REJECTED, 400, "bad_request", "attribute value too long"),
    (
        400,
        body({"meta": {"error": "primary must exist"}}),
        1,
        None,
        Action.REJECTED,
        400,
        "bad_request",
        "primary must exist",
    ),
    (400, b"not json", 1, None, Action.REJECTED, 400, "bad_request", "not json"),
    (400, b"", 1, None, Action.REJECTED, 400, "bad_request", "HTTP 400"),
    (413, b"too big", 5, None, Action.SPLIT, 413, "http_413", "too big"),
    (413, b"too big", 1, None, Action.REJECTED, 413, "http_413", "too big"),
    (401, b"Unauthorized", 9, None, Action.AUTH, 401, "unauthorized", "HTTP 401: credentials refused"),
    (403, b"", 1, None, Action.AUTH, 403, "unauthorized", "HTTP 403: credentials refused"),
    (404, b"no such path", 3, None, Action.MISCONFIGURED, 404, "http_404", "no such path"),
    (422, b"", 1, None, Action.MISCONFIGURED, 422, "http_422", "HTTP 422"),
    (301, b"", 1, None, Action.MISCONFIGURED, 301, "http_301", "HTTP 301"),
    (408, b"", 3, None, Action.RETRY, 408, "http_408", "HTTP 408"),
    (429, b"slow down", 3, "7", Action.RETRY, 429, "http_429", "slow down"),
    (500, b"", 3, None, Action.RETRY, 500, "http_500", "HTTP 500"),
    (502, b"", 3, None, Action.RETRY, 502, "http_502", "HTTP 502"),
    (503, b"", 3, "2.5", Action.RETRY, 503, "http_503", "HTTP 503"),
    (504, b"", 3, None, Action.RETRY, 504, "http_504", "HTTP 504"),
    (522, b"", 3, None, Action.RETRY, 522, "http_522", "HTTP 522"),
]


@pytest.mark.parametrize(
    ("status", "payload", "entries", "retry_after", "action", "http_status", "reason", "error"), CASES
)
def test_interpret_table(status, payload, entries, retry_after, action, http_status, reason, error):
    verdict = interpret(status, payload, entries=entries, retry_after=retry_after, now=NOW)
    assert (verdict.action, verdict.http_status, verdict.reason, verdict.error) == (action, http_status, reason, error)
    assert verdict.failures == {}
    if retry_after is not None:
        assert verdict.retry_after == float(retry_after)


def test_207_names_the_failed_entries():
    payload = body(
        {
            "errors": [
                {"batch_index": 1, "reason": "invalid", "field": "name", "message": "too long"},
                {"batch_index": 3, "reason": "required", "field": "identifiers", "message": "missing"},
                {"batch_index": 3, "reason": "invalid", "field": "timestamp", "message": "not an integer"},
            ]
        }
    )
    verdict = interpret(207, payload, entries=4)
    assert verdict.action is Action.PARTIAL and verdict.http_status == 207
    assert verdict.failures == {
        1: EntryFailure("invalid", "name: too long"),
        3: EntryFailure("required", "identifiers: missing; timestamp: not an integer"),
    }


@pytest.mark.parametrize(
    "payload",
    [
        b"garbage",
        body({"errors": [{"batch_index": 5, "reason": "x"}]}),  # out of range
        body({"errors": [{"batch_index": True}]}),
        body({"errors": [{"reason": "no index"}]}),
        body({"errors": "nope"}),
    ],
)
def test_unattributable_207_is_narrowed_like_a_400(payload):
    assert interpret(207, payload, entries=3).action is Action.SPLIT
    single = interpret(207, payload, entries=1)
    assert single.action is Action.REJECTED and single.reason == "unattributed_207"


def test_long_error_bodies_are_clipped():
    verdict = interpret(404, b"x" * 5000, entries=1)
    assert verdict.error is not None and len(verdict.error) == 500 and verdict.error.endswith("...")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("attempt", "jitter", "retry_after", "expected"),
    [
        (0, 0.5, None, 0.25),  # 0.5 * min(60, 0.5)
        (3, 1.0, None, 4.0),  # min(60, 0.5 * 8)
        (10, 1.0, None, 60.0),  # capped
        (500, 0.5, None, 30.0),  # no overflow for huge attempts
        (0, 0.0, None, 0.0),  # full jitter reaches 0
        (0, 0.5, 7.0, 7.0),  # Retry-After wins when longer
        (10, 0.9, 7.0, 54.0),  # backoff wins when longer
        (0, 0.5, 10_000.0, 300.0),  # Retry-After capped
    ],
)
def test_backoff_delay(attempt, jitter, retry_after, expected):
    delay = backoff_delay(attempt, base=0.5, cap=60.0, jitter=jitter, retry_after=retry_after, retry_after_cap=300.0)
    assert delay == pytest.approx(expected)


@given(st.integers(0, 1000), st.floats(0, 1, exclude_max=True), st.one_of(st.none(), st.floats(0, 1e6)))
def test_backoff_delay_is_bounded(attempt, jitter, retry_after):
    delay = backoff_delay(attempt, base=0.5, cap=60.0, jitter=jitter, retry_after=retry_after, retry_after_cap=300.0)
    assert 0 <= delay <= 300.0
    if retry_after is not None:
        assert delay >= min(retry_after, 300.0)
