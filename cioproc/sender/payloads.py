"""Commands as Customer.io Track API requests: v2 batch entries and v1 calls. Pure.

v2 (``POST /api/v2/batch``, one entry per command)::

    identify     {"type":"person","identifiers":{id|email},"action":"identify","timestamp","attributes"}
    track        {..., "action":"event", "name", "id" (ULID), "timestamp", "attributes" (event data)}
    screen       {..., "action":"screen", "name" (the screen), "id", "timestamp", "attributes"}
    unsubscribe  identify with ``{"unsubscribed": true}`` (never suppress: that deletes the person)
    merge        {"type":"person","action":"merge","primary":{...},"secondary":{...}}
    add_device   {..., "action":"add_device", "device":{"token","platform","last_used"}}
    delete_device  {..., "action":"delete_device", "device":{"token"}}
    delete       {"type":"person","identifiers":{id|email},"action":"delete"}
    suppress     {"type":"person","identifiers":{id|email},"action":"suppress"}

v1 (one request per command): ``PUT /api/v1/customers/{id}`` (identify, unsubscribe; ``_timestamp`` added),
``POST /api/v1/customers/{id}/events`` (track; screen with ``"type": "screen"``),
``POST /api/v1/merge_customers``, ``PUT /api/v1/customers/{id}/devices`` (add_device:
``{"device":{"id","platform","last_used"}}``), ``DELETE /api/v1/customers/{id}/devices/{token}``,
``DELETE /api/v1/customers/{id}`` (delete; no body), ``POST /api/v1/customers/{id}/suppress``
(suppress; no body). An ``erase`` command is never a request: the sender expands it
(:func:`cioproc.mapping.erasure.erase_steps`).

Person attributes set to ``None`` mean "remove": ``null`` in v2, ``""`` in v1. v1 person
attributes are documented as flat scalars, so lists and objects are sent there as JSON text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import msgpack
import orjson

from cioproc.errors import DeliveryError
from cioproc.models.commands import COMMAND_VERSION, ID_TYPES, Command, CommandKind, decode_command


class PayloadError(DeliveryError, ValueError):
    """A command that cannot be expressed as a Track API request; ``reason`` is a short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class V1Request:
    """One Track API v1 call: HTTP method, path (identifier URL-encoded) and JSON body."""

    method: str
    path: str
    body: dict[str, Any] | None  # None: no body (delete, suppress)


def _check(command: Command) -> None:
    if command.kind is CommandKind.ERASE:
        raise PayloadError("erase_not_a_request", "an erase command is sent as its delete/suppress steps")
    if command.id_type not in ID_TYPES or not command.id_value:
        raise PayloadError("invalid_identifier", f"bad identifier type {command.id_type!r} or empty value")
    if command.kind in (CommandKind.TRACK, CommandKind.SCREEN) and not command.name:
        raise PayloadError("missing_name", f"{command.kind.value} command without a name")
    if command.kind in _DEVICE_KINDS:
        if not isinstance(command.name, str) or not command.name:
            raise PayloadError("missing_token", f"{command.kind.value} command without a device token")
        if command.kind is CommandKind.ADD_DEVICE and command.attributes.get("platform") not in DEVICE_PLATFORMS:
            raise PayloadError("invalid_platform", "add_device needs platform ios or android")
    if command.kind is CommandKind.MERGE:
        secondary = command.secondary
        if secondary is None or len(secondary) != 2 or secondary[0] not in ID_TYPES or not secondary[1]:
            raise PayloadError("invalid_secondary", "merge command without a valid secondary identifier")


_DEVICE_KINDS = (CommandKind.ADD_DEVICE, CommandKind.DELETE_DEVICE)
DEVICE_PLATFORMS = ("ios", "android")


def _device(command: Command, token_key: str) -> dict[str, Any]:
    """The device object: ``token`` (v2) or ``id`` (v1), and for add_device platform and last_used."""
    device: dict[str, Any] = {token_key: command.name}
    if command.kind is CommandKind.ADD_DEVICE:
        device["platform"] = command.attributes["platform"]
        if command.timestamp:  # 0: unknown, Customer.io uses the request's time
            device["last_used"] = command.timestamp
    return device


def _person_attributes(command: Command) -> dict[str, Any]:
    if command.kind is CommandKind.UNSUBSCRIBE:
        return {**command.attributes, "unsubscribed": True}
    return command.attributes


def _v2_entry(command: Command) -> dict[str, Any]:
    """The entry; shares ``command.attributes`` (callers that keep the dict must copy)."""
    _check(command)
    kind = command.kind
    if kind is CommandKind.TRACK or kind is CommandKind.SCREEN:
        entry: dict[str, Any] = {
            "type": "person",
            "identifiers": {command.id_type: command.id_value},
            "action": "event" if kind is CommandKind.TRACK else "screen",
            "name": command.name,
        }
        if command.event_id:
            entry["id"] = command.event_id
        if command.timestamp:  # 0: time unknown, Customer.io uses the receive time
            entry["timestamp"] = command.timestamp
        entry["attributes"] = command.attributes
        return entry
    if kind is CommandKind.ADD_DEVICE or kind is CommandKind.DELETE_DEVICE:
        return {
            "type": "person",
            "identifiers": {command.id_type: command.id_value},
            "action": kind.value,
            "device": _device(command, "token"),
        }
    if kind is CommandKind.MERGE:
        id_type, id_value = command.secondary  # type: ignore[misc]  # checked above
        return {
            "type": "person",
            "action": "merge",
            "primary": {command.id_type: command.id_value},
            "secondary": {id_type: id_value},
        }
    if kind is CommandKind.DELETE or kind is CommandKind.SUPPRESS:
        return {"type": "person", "identifiers": {command.id_type: command.id_value}, "action": kind.value}
    entry = {
        "type": "person",
        "identifiers": {command.id_type: command.id_value},
        "action": "identify",
        "attributes": _person_attributes(command),
    }
    if command.timestamp:
        entry["timestamp"] = command.timestamp
    return entry


def to_v2_entry(command: Command) -> dict[str, Any]:
    """The v2 batch entry for one command; raises PayloadError for an inexpressible command."""
    entry = _v2_entry(command)
    if "attributes" in entry:
        entry["attributes"] = dict(entry["attributes"])
    return entry


def _serialize(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise PayloadError("unencodable", f"cannot encode as JSON: {exc}") from None


def encode_v2_entry(command: Command) -> bytes:
    """The v2 batch entry for one command as compact JSON bytes."""
    return _serialize(_v2_entry(command))


def v2_entry_from_wire(data: bytes) -> tuple[str, str, bytes]:
    """``(mpid, kind, v2 entry JSON)`` straight from a command's msgpack bytes (``encode_command``).

    The same bytes as ``encode_v2_entry(decode_command(data))`` without building a
    :class:`Command`: the sender's per-record cost. Identify, track and screen commands of
    plain types take the short way; anything else (merge, unsubscribe, an odd type, bytes that
    do not decode) goes the long way, which also raises CommandDecodeError / PayloadError as
    those two functions do.
    """
    try:
        fields = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception:  # the long way says why
        fields = None
    if type(fields) is list and len(fields) == 10 and fields[0] == COMMAND_VERSION:
        _, kind, mpid, id_type, id_value, timestamp, attributes, name, event_id, _secondary = fields
        if (
            type(mpid) is str
            and (id_type == "id" or id_type == "email")
            and type(id_value) is str
            and id_value
            and type(timestamp) is int
            and type(attributes) is dict
            and (event_id is None or type(event_id) is str)
            and _secondary is None
        ):
            if (kind == "track" or kind == "screen") and type(name) is str and name:
                entry: dict[str, Any] = {
                    "type": "person",
                    "identifiers": {id_type: id_value},
                    "action": "event" if kind == "track" else "screen",
                    "name": name,
                }
                if event_id:
                    entry["id"] = event_id
                if timestamp:
                    entry["timestamp"] = timestamp
                entry["attributes"] = attributes
                return mpid, kind, _serialize(entry)
            if kind == "identify" and (name is None or type(name) is str):
                entry = {
                    "type": "person", "identifiers": {id_type: id_value}, "action": "identify", "attributes": attributes
                }
                if timestamp:
                    entry["timestamp"] = timestamp
                return mpid, kind, _serialize(entry)
    command = decode_command(data)
    return command.mpid, command.kind.value, encode_v2_entry(command)


def _v1_attribute(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return _serialize(value).decode()
    return value


def customer_path(identifier: str) -> str:
    """``/api/v1/customers/{identifier}`` with the identifier URL-encoded (``/``, ``@``, ``+`` too)."""
    return "/api/v1/customers/" + quote(identifier, safe="")


def to_v1_request(command: Command) -> V1Request:
    """The v1 call for one command; raises PayloadError for an inexpressible command."""
    _check(command)
    if command.kind is CommandKind.MERGE:
        assert command.secondary is not None
        id_type, id_value = command.secondary
        body = {"primary": command.identifier, "secondary": {id_type: id_value}}
        return V1Request("POST", "/api/v1/merge_customers", body)
    path = customer_path(command.id_value)
    if command.kind is CommandKind.ADD_DEVICE:
        return V1Request("PUT", path + "/devices", {"device": _device(command, "id")})
    if command.kind is CommandKind.DELETE_DEVICE:
        return V1Request("DELETE", path + "/devices/" + quote(command.name or "", safe=""), {})
    if command.kind is CommandKind.DELETE:
        return V1Request("DELETE", path, None)
    if command.kind is CommandKind.SUPPRESS:
        return V1Request("POST", path + "/suppress", None)
    if command.kind in (CommandKind.IDENTIFY, CommandKind.UNSUBSCRIBE):
        attributes = {k: _v1_attribute(v) for k, v in _person_attributes(command).items()}
        if command.timestamp:
            attributes["_timestamp"] = command.timestamp
        return V1Request("PUT", path, attributes)
    event: dict[str, Any] = {"name": command.name}
    if command.kind is CommandKind.SCREEN:
        event["type"] = "screen"
    if command.event_id:
        event["id"] = command.event_id
    if command.timestamp:
        event["timestamp"] = command.timestamp
    event["data"] = dict(command.attributes)
    return V1Request("POST", path + "/events", event)


def encode_v1_request(command: Command) -> tuple[str, str, bytes]:
    """``(method, path, JSON body bytes)`` of the v1 call for one command."""
    request = to_v1_request(command)
    return request.method, request.path, b"" if request.body is None else _serialize(request.body)
