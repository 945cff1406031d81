"""Data subject requests (OpenDSR style) -> an erasure command and result records. Pure.

A request on the ``erasures`` topic is keyed by the MPID it is about::

    {"subject_request_id": "...", "subject_request_type": "erasure",
     "submitted_time": "2026-12-01T12:00:00Z",
     "subject_identities": [{"identity_type": "email" | "controller_customer_id",
                             "identity_value": "...", "identity_format": "raw"}]}

Rules:

- A record that is not such an object, or whose key is not an MPID, is rejected
  (:class:`~cioproc.mapping.results.Rejection`: the processor dead-letters it).
- A well-formed request of another type (``access``, ``portability``, ...) gets the result
  ``not_supported`` and changes nothing.
- An erasure becomes one ``erase`` command (:func:`erase_command`) naming every identifier
  the person may have in Customer.io: how the state addresses it now, its customer id and
  email, then the request's raw ``controller_customer_id`` (an ``id``) and ``email``
  identities; each once (emails compared without case), ``id`` ones first. Identities of
  other types or hashed formats cannot address a Customer.io person and are ignored.
- The sender turns the command into one ``delete`` (or, with ``CIO_ERASURE_ACTION=suppress``,
  ``suppress``) per identifier (:func:`erase_steps`) and writes the result (``completed``
  when every step was accepted, else ``failed`` with the reason) with :func:`result_value`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from cioproc.mapping.results import Rejection
from cioproc.mapping.values import mpid_string
from cioproc.models.commands import ID_TYPES, Command, CommandDecodeError, CommandKind
from cioproc.models.state import UserState

ERASURE = "erasure"
ERASURE_ACTIONS = ("delete", "suppress")
IDENTITY_TYPES = {"controller_customer_id": "id", "email": "email"}  # OpenDSR type -> Customer.io identifier
MAX_REQUEST_ID_CHARS = 256

# Result statuses.
COMPLETED = "completed"
FAILED = "failed"
NOT_SUPPORTED = "not_supported"

# Rejection reasons (dead-letter reasons of the batches DLQ).
INVALID_REQUEST = "invalid_erasure_request"
MISSING_MPID = "erasure_without_mpid"


@dataclass(frozen=True, slots=True)
class SubjectRequest:
    """A well-formed data subject request about one MPID."""

    request_id: str
    request_type: str
    submitted_time: str
    mpid: str
    identifiers: tuple[tuple[str, str], ...]  # usable (id_type, id_value), in request order

    @property
    def is_erasure(self) -> bool:
        return self.request_type == ERASURE


def _reject(detail: str) -> Rejection:
    return Rejection(INVALID_REQUEST, detail)


def parse_subject_request(value: bytes, key: bytes | None) -> SubjectRequest | Rejection:
    """Validate a request record; its key must be the MPID the request is about."""
    mpid = mpid_string(key.decode("utf-8", "replace")) if key else None
    if mpid is None:
        return Rejection(MISSING_MPID, "a data subject request must be keyed by the MPID it is about")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return _reject(f"not JSON: {exc}")
    if not isinstance(data, dict):
        return _reject("a data subject request must be a JSON object")
    request_id = data.get("subject_request_id")
    if not isinstance(request_id, str) or not request_id.strip() or len(request_id) > MAX_REQUEST_ID_CHARS:
        return _reject(f"subject_request_id must be a non-empty string of at most {MAX_REQUEST_ID_CHARS} characters")
    request_type = data.get("subject_request_type")
    if not isinstance(request_type, str) or not request_type.strip():
        return _reject("subject_request_type must be a non-empty string")
    submitted = data.get("submitted_time")
    if not isinstance(submitted, str) or _parse_time(submitted) is None:
        return _reject("submitted_time must be an ISO 8601 date and time")
    identities = data.get("subject_identities", [])
    if not isinstance(identities, list):
        return _reject("subject_identities must be a list")
    identifiers: list[tuple[str, str]] = []
    for index, identity in enumerate(identities):
        if not isinstance(identity, dict):
            return _reject(f"subject_identities[{index}] must be an object")
        kind, raw = identity.get("identity_type"), identity.get("identity_value")
        form = identity.get("identity_format", "raw")
        if not isinstance(kind, str) or not isinstance(raw, str) or not raw or not isinstance(form, str):
            return _reject(
                f"subject_identities[{index}] needs string identity_type, identity_format "
                "and a non-empty identity_value"
            )
        if form == "raw" and kind in IDENTITY_TYPES:
            identifiers.append((IDENTITY_TYPES[kind], raw))
    return SubjectRequest(request_id, request_type.strip().lower(), submitted, mpid, tuple(identifiers))


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None


def erasure_identifiers(request: SubjectRequest, state: UserState | None) -> list[tuple[str, str]]:
    """Every identifier to delete the person by: the state's, then the request's; ``id`` first."""
    candidates: list[tuple[str | None, str | None]] = []
    if state is not None:
        candidates += [(state.id_type, state.id_value), ("id", state.customer_id), ("email", state.email)]
    candidates += list(request.identifiers)
    seen: set[tuple[str, str]] = set()
    found: list[tuple[str, str]] = []
    for kind, value in candidates:
        if kind not in ID_TYPES or not value:
            continue
        key = (kind, value.lower() if kind == "email" else value)
        if key not in seen:
            seen.add(key)
            found.append((kind, value))
    return [pair for pair in found if pair[0] == "id"] + [pair for pair in found if pair[0] == "email"]


def erase_command(request: SubjectRequest, state: UserState | None, action: str) -> Command:
    """The ``erase`` command of an erasure request (see :mod:`cioproc.models.commands`)."""
    if action not in ERASURE_ACTIONS:
        raise ValueError(f"erasure action must be one of {ERASURE_ACTIONS}, got {action!r}")
    identifiers = erasure_identifiers(request, state)
    id_type, id_value = identifiers[0] if identifiers else ("id", "")
    return Command(
        CommandKind.ERASE,
        request.mpid,
        id_type,
        id_value,
        0,
        {"identifiers": [list(pair) for pair in identifiers], "request_type": request.request_type},
        name=action,
        event_id=request.request_id,
    )


def erase_steps(command: Command) -> list[Command]:
    """The ``delete`` / ``suppress`` commands of an ``erase``; CommandDecodeError if malformed."""
    if command.kind is not CommandKind.ERASE:
        raise CommandDecodeError(f"not an erase command: {command.kind.value}")
    if command.name not in ERASURE_ACTIONS or not isinstance(command.event_id, str) or not command.event_id:
        raise CommandDecodeError("erase command without an action or a request id")
    identifiers = command.attributes.get("identifiers")
    if not isinstance(identifiers, list):
        raise CommandDecodeError("erase command without identifiers")
    kind = CommandKind.DELETE if command.name == "delete" else CommandKind.SUPPRESS
    steps = []
    for pair in identifiers:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or pair[0] not in ID_TYPES:
            raise CommandDecodeError("erase command with a malformed identifier")
        if not isinstance(pair[1], str) or not pair[1]:
            raise CommandDecodeError("erase command with an empty identifier")
        steps.append(Command(kind, command.mpid, pair[0], pair[1], 0))
    return steps


def result_value(
    request_id: str, request_type: str, status: str, at_ms: int, reason: str | None = None
) -> bytes:
    """A result record for ``erasure_results`` (JSON, keyed by the MPID; no identities in it)."""
    body: dict[str, Any] = {
        "subject_request_id": request_id,
        "subject_request_type": request_type,
        "status": status,
        "time": datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if reason:
        body["reason"] = reason
    return orjson.dumps(body)


def erase_result(command: Command, failures: list[str], at_ms: int) -> bytes:
    """The result of an ``erase`` whose steps were settled: ``failures`` are the failed steps' reasons."""
    request_type = str(command.attributes.get("request_type") or ERASURE)
    if failures:
        return result_value(str(command.event_id), request_type, FAILED, at_ms, "; ".join(failures))
    return result_value(str(command.event_id), request_type, COMPLETED, at_ms)
