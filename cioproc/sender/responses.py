"""What a Track API response (or a transport failure) means for the entries of a request. Pure.

==================  ==========================================================================
2xx (not 207)       every entry delivered
207                 the entries named by ``batch_index`` failed for good; the others delivered
400 / 413           batch of several: split it and resend the halves; a single entry: failed
401 / 403           credentials refused: block delivery, retry slowly, never dead-letter
408 / 429 / 5xx     retry with exponential backoff and full jitter, honouring ``Retry-After``
transport, timeout  retry likewise
any other status    the deployment is wrong, not the data (3xx with redirects off, 404, 405,
                    409, 410, 422, unknown): block delivery like 401/403, never dead-letter
==================  ==========================================================================
"""

from __future__ import annotations

import email.utils
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

RETRYABLE_STATUSES = frozenset({408, 429})
SPLITTABLE_STATUSES = frozenset({400, 413})
AUTH_STATUSES = frozenset({401, 403})
MAX_ERROR_CHARS = 500


class Action(str, Enum):
    DELIVERED = "delivered"  # every entry delivered
    PARTIAL = "partial"  # ``failures`` failed for good, the others delivered
    SPLIT = "split"  # resend the entries in two halves
    REJECTED = "rejected"  # every entry failed for good
    RETRY = "retry"  # send the same request again later
    AUTH = "auth"  # credentials refused: block and retry slowly
    MISCONFIGURED = "misconfigured"  # a status that says the URL or setup is wrong: block and retry slowly


@dataclass(frozen=True, slots=True)
class EntryFailure:
    """Why Customer.io refused an entry (or a whole single-entry request)."""

    reason: str
    error: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision for one request; ``failures`` maps entry positions to their failure."""

    action: Action
    http_status: int | None
    failures: dict[int, EntryFailure] = field(default_factory=dict)
    retry_after: float | None = None
    reason: str | None = None
    error: str | None = None


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def _describe_errors(body: bytes) -> tuple[str | None, str]:
    """A (reason, message) summary of an error body in either documented shape."""
    data = _json(body)
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors:  # v2: [{"reason","field","message"}]
            first = errors[0] if isinstance(errors[0], dict) else {}
            reason = first.get("reason") if isinstance(first.get("reason"), str) else None
            parts = [_format_error(e) for e in errors if isinstance(e, dict)]
            return reason, _clip("; ".join(parts))
        meta = data.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("errors"), list):  # v1: {"meta":{"errors":[str]}}
            return None, _clip("; ".join(str(e) for e in meta["errors"]))
        if isinstance(meta, dict) and isinstance(meta.get("error"), str):  # v1 merge: {"meta":{"error":str}}
            return None, _clip(meta["error"])
    return None, _clip(body.decode("utf-8", "replace").strip())


def _format_error(error: dict[str, Any]) -> str:
    field_name, message = error.get("field"), error.get("message")
    text = str(message) if message is not None else str(error.get("reason", "error"))
    return f"{field_name}: {text}" if field_name else text


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(seconds, 0.0)


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: float,
    retry_after: float | None = None,
    retry_after_cap: float = 300.0,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based).

    Full jitter: ``jitter * min(cap, base * 2**attempt)`` with ``jitter`` drawn from [0, 1).
    A server's ``Retry-After`` wins (capped at ``retry_after_cap``) when it asks for longer.
    """
    exponential = min(cap, base * (2.0 ** min(attempt, 62)))
    delay = jitter * exponential
    if retry_after is not None:
        delay = max(delay, min(retry_after, retry_after_cap))
    return delay


def interpret(
    status: int,
    body: bytes,
    *,
    entries: int,
    retry_after: str | None = None,
    now: float = 0.0,
) -> Verdict:
    """Decide what a response with ``status`` and ``body`` to a request of ``entries`` means."""
    if status == 207:
        return _interpret_207(body, entries)
    if 200 <= status < 300:
        return Verdict(Action.DELIVERED, status)
    if status in AUTH_STATUSES:
        return Verdict(Action.AUTH, status, reason="unauthorized", error=f"HTTP {status}: credentials refused")
    if status in RETRYABLE_STATUSES or 500 <= status < 600:
        reason, message = _describe_errors(body)
        return Verdict(
            Action.RETRY,
            status,
            retry_after=parse_retry_after(retry_after, now),
            reason=reason or f"http_{status}",
            error=message or f"HTTP {status}",
        )
    reason, message = _describe_errors(body)
    error = message or f"HTTP {status}"
    if status not in SPLITTABLE_STATUSES:
        return Verdict(Action.MISCONFIGURED, status, reason=f"http_{status}", error=error)
    reason = reason or ("bad_request" if status == 400 else f"http_{status}")
    if entries > 1:
        return Verdict(Action.SPLIT, status, reason=reason, error=error)
    return Verdict(Action.REJECTED, status, reason=reason, error=error)


def _interpret_207(body: bytes, entries: int) -> Verdict:
    data = _json(body)
    errors = data.get("errors") if isinstance(data, dict) else None
    failures: dict[int, EntryFailure] = {}
    if isinstance(errors, list) and not errors:
        return Verdict(Action.DELIVERED, 207)
    if isinstance(errors, list):
        for error in errors:
            index = error.get("batch_index") if isinstance(error, dict) else None
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < entries:
                failures = {}
                errors = None
                break
            reason = error.get("reason")
            previous = failures.get(index)
            text = _format_error(error)
            failures[index] = EntryFailure(
                reason=previous.reason if previous else (reason if isinstance(reason, str) and reason else "invalid"),
                error=_clip(f"{previous.error}; {text}" if previous else text),
            )
    if not isinstance(errors, list) or not failures:
        # A 207 that names no valid entry cannot be attributed: narrow it down like a 400.
        message = _clip(body.decode("utf-8", "replace").strip()) or "HTTP 207 without batch errors"
        if entries > 1:
            return Verdict(Action.SPLIT, 207, reason="unattributed_207", error=message)
        return Verdict(Action.REJECTED, 207, reason="unattributed_207", error=message)
    return Verdict(Action.PARTIAL, 207, failures=failures)
