"""What the processor remembers about one mParticle user (one MPID) between batches.

The mapping reads a :class:`UserState` and returns a new one; the processor stores it in a
Faust table as bytes (:func:`encode_state` / :func:`decode_state`).

Encoding: a msgpack array ``[version, customer_id, email, id_type, id_value, devices,
last_device, last_device_ms, audiences, sent, unsubscribed, opt_out_ms, desired,
customer_id_ms, email_ms, audience_ms, unsubscribe_pending, merged, push_tokens]``; absent
values are nil, maps are msgpack maps. About 100-400 bytes for a typical user, and under
:data:`MAX_STATE_BYTES` for any: the mapping caps each collection (``sent``: Customer.io's
300 attributes, removals forgotten once sent; ``audiences`` and ``audience_ms``: see
``mapping.segments``; ``devices``: 16 types; ``merged``: 16 pairs; ``push_tokens``: 8) and
the processor refuses a state over it (``state_too_large``). The five fields before
``push_tokens`` are left out while they and it are unset, as in states written before they
existed (13 fields), and ``push_tokens`` while it is empty (18 fields, as written before it
existed); both decode with their defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from cioproc.errors import DataError

__all__ = ["MAX_STATE_BYTES", "STATE_VERSION", "StateDecodeError", "UserState", "decode_state", "encode_state"]

STATE_VERSION = 1
_FIELDS = 19
_FIELDS_BEFORE_PUSH = 18  # written by releases before push devices
_FIELDS_BEFORE_TIMES = 13  # written by releases before identity and audience times
MAX_STATE_BYTES = 64 * 1024  # an encoded state's ceiling (a changelog record, a table value)


class StateDecodeError(DataError):
    """Bytes that are not a user state of a version this code understands."""


@dataclass(slots=True)
class UserState:
    """One user's memory. The mapping never mutates a state it was given: it copies the
    state, and each map only when it changes it (:meth:`shallow_copy`)."""

    customer_id: str | None = None  # latest customer id seen (MPUserIdentityCustomerId)
    email: str | None = None  # latest email identity seen (MPUserIdentityEmail)
    id_type: str | None = None  # "id" or "email": how the person was last addressed
    id_value: str | None = None  # ... and with which value
    devices: dict[str, int] = field(default_factory=dict)  # device type -> created_at (Unix s)
    last_device: str | None = None  # device type seen most recently
    last_device_ms: int = 0  # when it was seen (event time, ms)
    audiences: dict[str, str] = field(default_factory=dict)  # audience id -> audience name
    sent: dict[str, int] = field(default_factory=dict)  # attribute -> checksum of value last sent
    unsubscribed: bool = False  # an unsubscribe was sent and no opt-in came after it
    opt_out_ms: int = 0  # time of the last opt_out event applied (ms)
    desired: bytes = b""  # digest of what the last identify was computed from, if all was sent
    customer_id_ms: int = 0  # when customer_id was last set or seen (event/batch time, ms)
    email_ms: int = 0  # when email was last set or seen (ms)
    audience_ms: dict[str, int] = field(default_factory=dict)  # audience id -> last change (ms)
    unsubscribe_pending: bool = False  # an opt-out not yet sent to the person addressed now
    merged: list[int] = field(default_factory=list)  # checksums of identifier pairs merged
    # push tokens sent or deleted (CIO_FORWARD_DEVICES), oldest change first: [token,
    # platform, device key (0: none), time of the change (ms), active]; see mapping.push
    push_tokens: list[list[Any]] = field(default_factory=list)

    def shallow_copy(self) -> UserState:
        """A copy sharing this state's maps: replace a map of it, never change one in place."""
        return UserState(
            self.customer_id,
            self.email,
            self.id_type,
            self.id_value,
            self.devices,
            self.last_device,
            self.last_device_ms,
            self.audiences,
            self.sent,
            self.unsubscribed,
            self.opt_out_ms,
            self.desired,
            self.customer_id_ms,
            self.email_ms,
            self.audience_ms,
            self.unsubscribe_pending,
            self.merged,
            self.push_tokens,
        )

    def copy(self) -> UserState:
        """A copy whose containers can be changed without touching this one."""
        copied = self.shallow_copy()
        copied.devices = self.devices.copy()
        copied.audiences = self.audiences.copy()
        copied.sent = self.sent.copy()
        copied.audience_ms = self.audience_ms.copy()
        copied.merged = self.merged.copy()
        copied.push_tokens = [entry.copy() for entry in self.push_tokens]
        return copied


def encode_state(state: UserState) -> bytes:
    """Encode a state as versioned msgpack (without the time fields while all are unset)."""
    fields: list[Any] = [
        STATE_VERSION,
        state.customer_id,
        state.email,
        state.id_type,
        state.id_value,
        state.devices,
        state.last_device,
        state.last_device_ms,
        state.audiences,
        state.sent,
        state.unsubscribed,
        state.opt_out_ms,
        state.desired,
    ]
    if (
        state.customer_id_ms or state.email_ms or state.audience_ms
        or state.unsubscribe_pending or state.merged or state.push_tokens
    ):
        fields += [
            state.customer_id_ms,
            state.email_ms,
            state.audience_ms,
            state.unsubscribe_pending,
            state.merged,
        ]
        if state.push_tokens:
            fields.append(state.push_tokens)
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


def _optional_str(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise StateDecodeError(f"state field {name} is not a string")


def _int(value: Any, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise StateDecodeError(f"state field {name} is not an integer")


def _str_map(value: Any, name: str, value_type: type) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StateDecodeError(f"state field {name} is not a map")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, value_type) or isinstance(item, bool):
            raise StateDecodeError(f"state field {name} has a malformed entry")
    return value


def decode_state(data: bytes) -> UserState:
    """Decode bytes written by :func:`encode_state`; raise StateDecodeError otherwise."""
    try:
        fields = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise StateDecodeError(f"not msgpack: {exc}") from None
    if not isinstance(fields, list) or not fields or fields[0] != STATE_VERSION:
        raise StateDecodeError(f"not a user state of version {STATE_VERSION}")
    if len(fields) == _FIELDS_BEFORE_TIMES:
        fields = fields + [0, 0, {}, False, []]
    if len(fields) == _FIELDS_BEFORE_PUSH:
        fields = fields + [[]]
    if len(fields) != _FIELDS:
        raise StateDecodeError(f"user state has {len(fields)} fields, expected {_FIELDS}")
    (
        _,
        customer_id,
        email,
        id_type,
        id_value,
        devices,
        last_device,
        last_device_ms,
        audiences,
        sent,
        unsubscribed,
        opt_out_ms,
        desired,
        customer_id_ms,
        email_ms,
        audience_ms,
        unsubscribe_pending,
        merged,
        push_tokens,
    ) = fields
    if id_type not in (None, "id", "email"):
        raise StateDecodeError("state field id_type is not id or email")
    if not isinstance(unsubscribed, bool):
        raise StateDecodeError("state field unsubscribed is not a boolean")
    if not isinstance(desired, bytes):
        raise StateDecodeError("state field desired is not bytes")
    if not isinstance(unsubscribe_pending, bool):
        raise StateDecodeError("state field unsubscribe_pending is not a boolean")
    if not isinstance(merged, list) or not all(
        isinstance(pair, int) and not isinstance(pair, bool) for pair in merged
    ):
        raise StateDecodeError("state field merged is not a list of integers")
    if not isinstance(push_tokens, list) or not all(_push_token_entry(e) for e in push_tokens):
        raise StateDecodeError("state field push_tokens has a malformed entry")
    return UserState(
        customer_id=_optional_str(customer_id, "customer_id"),
        email=_optional_str(email, "email"),
        id_type=id_type,
        id_value=_optional_str(id_value, "id_value"),
        devices=_str_map(devices, "devices", int),
        last_device=_optional_str(last_device, "last_device"),
        last_device_ms=_int(last_device_ms, "last_device_ms"),
        audiences=_str_map(audiences, "audiences", str),
        sent=_str_map(sent, "sent", int),
        unsubscribed=unsubscribed,
        opt_out_ms=_int(opt_out_ms, "opt_out_ms"),
        desired=desired,
        customer_id_ms=_int(customer_id_ms, "customer_id_ms"),
        email_ms=_int(email_ms, "email_ms"),
        audience_ms=_str_map(audience_ms, "audience_ms", int),
        unsubscribe_pending=unsubscribe_pending,
        merged=merged,
        push_tokens=push_tokens,
    )


def _push_token_entry(entry: Any) -> bool:
    """``[token, platform, device key, time ms, active]`` with those types."""
    return (
        isinstance(entry, list) and len(entry) == 5
        and isinstance(entry[0], str) and isinstance(entry[1], str)
        and isinstance(entry[2], int) and not isinstance(entry[2], bool)
        and isinstance(entry[3], int) and not isinstance(entry[3], bool)
        and isinstance(entry[4], bool)
    )
