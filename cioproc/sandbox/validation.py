"""Parse and validate Track API request bodies into workspace operations (pure).

Every check here is one Customer.io documents: the request shapes of the OpenAPI file
(v1 identify / event / merge_customers, v2 entity / batch person actions) and the limits
of its info section. A failed check becomes an :class:`EntryError`; callers turn those into
Customer.io's error bodies (see :mod:`cioproc.sandbox.api`).

Sizes are bytes of UTF-8; structured values (event data, v2 entries, v2 list/object
attribute values) are measured as compact JSON, the way a client serialises them.
"""

from __future__ import annotations

import re
from typing import Any

from cioproc.sandbox.field_checks import (
    MAX_ATTRIBUTE_NAME_BYTES,
    MAX_ATTRIBUTE_VALUE_BYTES,
    MAX_ATTRIBUTES,
    MAX_BATCH_BYTES,
    MAX_ENTRY_BYTES,
    MAX_EVENT_DATA_BYTES,
    MAX_EVENT_NAME_BYTES,
    MAX_ID_BYTES,
    V1_OBJECT_KEYS,
    EntryError,
    InvalidRequest,
    attribute_errors,
    check_identifier,
    is_int,
    json_size,
    parse_json,
    path_identifier,
    utf8_len,
)
from cioproc.sandbox.workspace import (
    CIO_ID,
    EMAIL,
    ID,
    DeleteOp,
    DeviceOp,
    EventOp,
    Identifier,
    IdentifyOp,
    MergeOp,
    Operation,
)

__all__ = [
    "MAX_ID_BYTES", "MAX_ATTRIBUTE_NAME_BYTES", "MAX_ATTRIBUTE_VALUE_BYTES", "MAX_ATTRIBUTES",
    "MAX_EVENT_NAME_BYTES", "MAX_EVENT_DATA_BYTES", "MAX_ENTRY_BYTES", "MAX_BATCH_BYTES", "V1_OBJECT_KEYS",
    "EntryError", "InvalidRequest", "check_identifier", "json_size", "parse_json", "path_identifier",
]

ULID_RE = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")
# Reserved keys of a v1 identify body that are not attributes of the person.
V1_CONTROL_KEYS = frozenset({"_update", "_timestamp", "cio_relationships"})
V2_PERSON_ACTIONS = frozenset({"identify", "event", "screen", "page", "merge", "delete", "suppress"})
V2_UNSUPPORTED_PERSON_ACTIONS = frozenset(
    {
        "add_relationships",
        "delete_relationships",
        "unsuppress",
    }
)


V2_DEVICE_ACTIONS = frozenset({"add_device", "delete_device"})  # checked before the unsupported ones
DEVICE_PLATFORMS = ("ios", "android")


def _split_attributes(
    attributes: dict[str, Any], v1: bool
) -> tuple[dict[str, Any], frozenset[str], dict[str, str | None]]:
    """Attributes to set, names to remove, and identifiers (id/email) named in the body."""
    sets: dict[str, Any] = {}
    removes: set[str] = set()
    body_ids: dict[str, str | None] = {}
    for name, value in attributes.items():
        if name in V1_CONTROL_KEYS:
            continue
        removal = value == "" or (value is None and not v1)
        if name in (ID, EMAIL):
            body_ids[name] = None if removal else str(value)
        elif removal:
            removes.add(name)
        else:
            sets[name] = value
    return sets, frozenset(removes), body_ids


def v1_identify(raw_path: str, body: Any) -> IdentifyOp:
    """``PUT /api/v1/customers/{identifier}``."""
    target = path_identifier(raw_path)
    errors = check_identifier(target, "identifier")
    if not isinstance(body, dict):
        raise InvalidRequest(errors + [EntryError("body", "invalid", "request body must be a JSON object")])
    errors += attribute_errors(body, "", v1=True)
    if errors:
        raise InvalidRequest(errors)
    sets, removes, body_ids = _split_attributes(body, v1=True)
    return IdentifyOp(target, sets, removes, body_ids, update_only=body.get("_update") is True)


def _event_fields(
    name: Any, event_id: Any, timestamp: Any, data: Any, data_field: str
) -> tuple[list[EntryError], str]:
    errors: list[EntryError] = []
    trimmed = ""
    if not isinstance(name, str) or not name.strip():
        errors.append(EntryError("name", "required", "name is required and must be a non-empty string"))
    else:
        trimmed = name.strip()
        if utf8_len(trimmed) > MAX_EVENT_NAME_BYTES:
            errors.append(EntryError("name", "too_long", f"event name is longer than {MAX_EVENT_NAME_BYTES} bytes"))
    if event_id is not None and (not isinstance(event_id, str) or not ULID_RE.match(event_id)):
        errors.append(EntryError("id", "invalid", "id must be a ULID (26 Crockford base32 characters)"))
    if timestamp is not None and not is_int(timestamp):
        errors.append(EntryError("timestamp", "invalid", "timestamp must be an integer Unix timestamp"))
    if data is not None:
        if not isinstance(data, dict):
            errors.append(EntryError(data_field, "invalid", f"{data_field} must be an object"))
        elif json_size(data) > MAX_EVENT_DATA_BYTES:
            errors.append(EntryError(data_field, "too_long", f"event data is longer than {MAX_EVENT_DATA_BYTES} bytes"))
    return errors, trimmed


def v1_event(raw_path: str, body: Any) -> EventOp:
    """``POST /api/v1/customers/{identifier}/events``: ``type`` other than page/screen is
    an ``event``, as documented."""
    target = path_identifier(raw_path)
    errors = check_identifier(target, "identifier")
    if not isinstance(body, dict):
        raise InvalidRequest(errors + [EntryError("body", "invalid", "request body must be a JSON object")])
    more, name = _event_fields(body.get("name"), body.get("id"), body.get("timestamp"), body.get("data"), "data")
    errors += more
    kind = body.get("type")
    if kind is not None and not isinstance(kind, str):
        errors.append(EntryError("type", "invalid", "type must be a string"))
    if errors:
        raise InvalidRequest(errors)
    event_type = kind if kind in ("page", "screen") else "event"
    return EventOp(target, name, event_type, body.get("id"), body.get("timestamp"), body.get("data") or {})


def v1_delete(raw_path: str, suppress: bool = False) -> DeleteOp:
    """``DELETE /api/v1/customers/{identifier}`` or ``POST .../{identifier}/suppress`` (no body)."""
    target = path_identifier(raw_path)
    errors = check_identifier(target, "identifier")
    if errors:
        raise InvalidRequest(errors)
    return DeleteOp(target, suppress=suppress)


def _one_identifier(value: Any, field: str, kinds: tuple[str, ...]) -> Identifier:
    if not isinstance(value, dict):
        raise InvalidRequest([EntryError(field, "invalid", f"{field} must be an object with exactly one identifier")])
    if len(value) != 1:
        raise InvalidRequest(
            [EntryError(field, "invalid", f"{field} must hold exactly one of {', '.join(kinds)} (got {len(value)})")]
        )
    ((kind, raw),) = value.items()
    if kind == "phone":
        raise InvalidRequest(
            [EntryError(f"{field}.phone", "invalid", "phone is not enabled as an identifier in this workspace")]
        )
    if kind not in kinds:
        raise InvalidRequest([EntryError(f"{field}.{kind}", "invalid", f"{field} must hold one of {', '.join(kinds)}")])
    if not isinstance(raw, str):
        raise InvalidRequest([EntryError(f"{field}.{kind}", "invalid", f"{field}.{kind} must be a string")])
    ident = Identifier(kind, raw)
    errors = check_identifier(ident, f"{field}.{kind}")
    if errors:
        raise InvalidRequest(errors)
    return ident


def v1_merge(body: Any) -> MergeOp:
    """``POST /api/v1/merge_customers``: exactly one identifier on each side."""
    if not isinstance(body, dict):
        raise InvalidRequest([EntryError("body", "invalid", "request body must be a JSON object")])
    kinds = (ID, EMAIL, CIO_ID)
    return MergeOp(
        _one_identifier(body.get("primary"), "primary", kinds),
        _one_identifier(body.get("secondary"), "secondary", kinds),
    )


def _device(target: Identifier, device: Any, token_key: str, delete: bool) -> DeviceOp:
    """A device object as the OpenAPI file defines it: ``token`` (v2) or ``id`` (v1, add),
    ``platform`` ios/android, optional integer ``last_used`` and string ``attributes``."""
    if not isinstance(device, dict):
        raise InvalidRequest([EntryError("device", "required", "device must be an object")])
    errors: list[EntryError] = []
    token = device.get(token_key)
    if not isinstance(token, str) or not token:
        errors.append(EntryError(f"device.{token_key}", "required", f"device.{token_key} must be a non-empty string"))
        token = ""  # not used: the errors are raised below
    if delete:
        if errors:
            raise InvalidRequest(errors)
        return DeviceOp(target, token, delete=True)
    platform = device.get("platform")
    if platform not in DEVICE_PLATFORMS:
        errors.append(EntryError("device.platform", "invalid", "device.platform must be ios or android"))
    last_used = device.get("last_used")
    if last_used is not None and not is_int(last_used):
        errors.append(EntryError("device.last_used", "invalid", "device.last_used must be an integer Unix timestamp"))
    attributes = device.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        errors.append(EntryError("device.attributes", "invalid", "device.attributes must be an object"))
    if errors:
        raise InvalidRequest(errors)
    return DeviceOp(target, token, False, platform, last_used, dict(attributes or {}))


def v1_add_device(raw_path: str, body: Any) -> DeviceOp:
    """``PUT /api/v1/customers/{identifier}/devices``: ``{"device": {"id", "platform", ...}}``."""
    target = path_identifier(raw_path)
    errors = check_identifier(target, "identifier")
    if not isinstance(body, dict):
        raise InvalidRequest(errors + [EntryError("body", "invalid", "request body must be a JSON object")])
    if errors:
        raise InvalidRequest(errors)
    return _device(target, body.get("device"), "id", delete=False)


def v1_delete_device(raw_path: str, token: str) -> DeviceOp:
    """``DELETE /api/v1/customers/{identifier}/devices/{device_id}``."""
    target = path_identifier(raw_path)
    errors = check_identifier(target, "identifier")
    if errors:
        raise InvalidRequest(errors)
    return _device(target, {"id": token}, "id", delete=True)


def v2_entry(entry: Any) -> Operation:
    """One v2 entity / batch entry (person actions identify, event, screen, page, merge)."""
    if not isinstance(entry, dict):
        raise InvalidRequest([EntryError("", "invalid", "entry must be a JSON object")])
    entry_type = entry.get("type")
    if entry_type in ("object", "delivery"):
        raise InvalidRequest([EntryError("type", "unsupported", f"the sandbox does not implement type {entry_type!r}")])
    if entry_type != "person":
        raise InvalidRequest([EntryError("type", "invalid", "type must be 'person'")])
    action = entry.get("action")
    if action in V2_DEVICE_ACTIONS:
        target = _one_identifier(entry.get("identifiers"), "identifiers", (ID, EMAIL, CIO_ID))
        return _device(target, entry.get("device"), "token", delete=action == "delete_device")
    if action in V2_UNSUPPORTED_PERSON_ACTIONS:
        raise InvalidRequest([EntryError("action", "unsupported", f"the sandbox does not implement action {action!r}")])
    if action not in V2_PERSON_ACTIONS:
        raise InvalidRequest([EntryError("action", "invalid", f"unknown action {action!r}")])
    if action == "merge":
        kinds = (ID, EMAIL, CIO_ID)
        return MergeOp(
            _one_identifier(entry.get("primary"), "primary", kinds),
            _one_identifier(entry.get("secondary"), "secondary", kinds),
        )
    target = _one_identifier(entry.get("identifiers"), "identifiers", (ID, EMAIL, CIO_ID))
    if action in ("delete", "suppress"):  # person_delete / person_suppress: identifiers only
        return DeleteOp(target, suppress=action == "suppress")
    attributes = entry.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        raise InvalidRequest([EntryError("attributes", "invalid", "attributes must be an object")])
    attributes = attributes or {}
    timestamp = entry.get("timestamp")
    if action == "identify":
        errors = attribute_errors(attributes, "attributes", v1=False)
        if timestamp is not None and not is_int(timestamp):
            errors.append(EntryError("timestamp", "invalid", "timestamp must be an integer Unix timestamp"))
        if errors:
            raise InvalidRequest(errors)
        sets, removes, body_ids = _split_attributes(attributes, v1=False)
        return IdentifyOp(target, sets, removes, body_ids, update_only=attributes.get("_update") is True)
    errors, name = _event_fields(entry.get("name"), entry.get("id"), timestamp, attributes, "attributes")
    if errors:
        raise InvalidRequest(errors)
    return EventOp(target, name, action, entry.get("id"), timestamp, attributes)


def v2_entity(body: bytes) -> Operation:
    """``POST /api/v2/entity``: one entry, the whole request at most 32 KB."""
    if len(body) > MAX_ENTRY_BYTES:
        raise InvalidRequest(
            [EntryError("body", "too_large", f"an entity request must be at most {MAX_ENTRY_BYTES} bytes")]
        )
    return v2_entry(parse_json(body))


def v2_batch(body: bytes) -> list[Operation | InvalidRequest]:
    """``POST /api/v2/batch``: one operation or one InvalidRequest per entry, in order.

    Raises InvalidRequest when the request as a whole is malformed (not JSON, no
    ``batch`` list, 500 KB or more)."""
    if len(body) >= MAX_BATCH_BYTES:
        raise InvalidRequest(
            [EntryError("body", "too_large", f"a batch request must be under {MAX_BATCH_BYTES} bytes")]
        )
    parsed = parse_json(body)
    if not isinstance(parsed, dict) or not isinstance(parsed.get("batch"), list):
        raise InvalidRequest([EntryError("batch", "required", "request body must be an object with a 'batch' array")])
    results: list[Operation | InvalidRequest] = []
    for entry in parsed["batch"]:
        if json_size(entry) > MAX_ENTRY_BYTES:
            results.append(
                InvalidRequest([EntryError("", "too_large", f"entry is larger than {MAX_ENTRY_BYTES} bytes")])
            )
            continue
        try:
            results.append(v2_entry(entry))
        except InvalidRequest as exc:
            results.append(exc)
    return results
