"""Decoding and validating one mParticle event batch (inbound or outbound JSON form)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from cioproc.mapping.devices import device_type
from cioproc.mapping.results import Drop, Rejection
from cioproc.mapping.values import clean_customer_id, clean_email, mpid_string, timestamp_ms

__all__ = ["Batch", "batch_from_object", "decode_json", "parse_batch"]


@dataclass(slots=True)
class Batch:
    """The parts of a batch the mapping uses. Events stay as decoded (checked when mapped)."""

    mpid: str
    events: list[Any]
    customer_id: str | None = None
    email: str | None = None
    user_attributes: dict[str, Any] = field(default_factory=dict)
    deleted_user_attributes: list[str] = field(default_factory=list)
    device_type: str | None = None
    timestamp_ms: int | None = None  # the batch's own time, else the caller's default
    batch_ref: str = ""  # batch_id, source_request_id or unique_id: part of fallback event ids
    drops: list[Drop] = field(default_factory=list)  # found while parsing
    received_ms: int | None = None  # the Kafka record's time (the caller's default), if known
    device_info: Any = None  # as given: push token, platform, device ids (mapping.push)


def decode_json(raw: bytes | str) -> Any | Rejection:
    """orjson-decode ``raw``; a Rejection (``not_utf8`` / ``not_json``) when it is not JSON."""
    try:
        return orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError) as exc:
        if isinstance(raw, (bytes, bytearray, memoryview)):
            try:
                bytes(raw).decode("utf-8")
            except UnicodeDecodeError as bad:
                return Rejection("not_utf8", f"invalid UTF-8 at byte {bad.start}")
        elif isinstance(raw, str):
            try:
                raw.encode("utf-8")
            except UnicodeEncodeError as bad:
                return Rejection("not_utf8", f"unencodable character at {bad.start}")
        return Rejection("not_json", str(exc)[:200])


_CUSTOMER_ID_KINDS = ("customer_id", "customerid")  # Events API, mParticle's Python SDK


def _identities(raw: Any, drops: list[Drop]) -> tuple[Any, Any]:
    """(customer id, email) as given; the customer id spelt ``customer_id`` or ``customerid``."""
    if type(raw) is dict:
        customer_id = raw.get("customer_id")
        if customer_id is None:
            customer_id = raw.get("customerid")  # what mParticle's Python SDK writes
        return customer_id, raw.get("email")
    customer_id = email = None
    if type(raw) is list:  # outbound form: [{identity_type, identity, timestamp_unixtime_ms}]
        for entry in raw:
            if type(entry) is not dict:
                drops.append(Drop("invalid_identity", "a user identity is not an object"))
                continue
            kind = entry.get("identity_type")
            if kind in _CUSTOMER_ID_KINDS:
                customer_id = entry.get("identity")
            elif kind == "email":
                email = entry.get("identity")
    elif raw is not None:
        drops.append(Drop("invalid_identity", "user_identities is neither an object nor a list"))
    return customer_id, email


def batch_from_object(obj: Any, default_timestamp_ms: int | None = None) -> Batch | Rejection:
    """Validate a decoded batch. Whole-batch problems are Rejections; others become drops."""
    if type(obj) is not dict:
        return Rejection("not_an_object", f"a batch is a JSON object, not {type(obj).__name__}")
    raw_mpid = obj.get("mpid")
    if raw_mpid is None:
        return Rejection("missing_mpid", "the batch has no mpid")
    mpid = mpid_string(raw_mpid)
    if mpid is None:
        return Rejection("invalid_mpid", "mpid is not a 64-bit integer or its decimal string")
    events = obj.get("events")
    if events is None:  # the schema allows it: identities and user attributes still apply
        events = []
    elif type(events) is not list:
        return Rejection("events_not_a_list", f"events is a {type(events).__name__}")

    drops: list[Drop] = []
    raw_customer_id, raw_email = _identities(obj.get("user_identities"), drops)
    attributes = obj.get("user_attributes")
    if attributes is None:
        attributes = {}
    elif type(attributes) is not dict:
        drops.append(Drop("invalid_user_attributes", "user_attributes is not an object"))
        attributes = {}
    deleted = obj.get("deleted_user_attributes")
    if deleted is None:
        deleted = []
    elif type(deleted) is not list:
        drops.append(Drop("invalid_deleted_attributes", "deleted_user_attributes is not a list"))
        deleted = []
    elif deleted and not all(type(name) is str for name in deleted):
        drops.append(Drop("invalid_deleted_attributes", "a deleted attribute is not a string"))
        deleted = [name for name in deleted if type(name) is str]

    received = timestamp_ms(default_timestamp_ms)
    batch_ts = timestamp_ms(obj.get("timestamp_unixtime_ms"))  # trusted or not: see mapper
    if batch_ts is None:
        batch_ts = received
    ref = obj.get("batch_id")
    if ref is None:
        ref = obj.get("source_request_id")
        if ref is None:
            ref = obj.get("unique_id")
    return Batch(  # positional: this runs for every batch
        mpid,
        events,
        clean_customer_id(raw_customer_id, drops),
        clean_email(raw_email, drops),
        attributes,
        deleted,
        device_type(obj.get("application_info"), obj.get("device_info")),
        batch_ts,
        ref if type(ref) is str else (str(ref) if type(ref) is int else ""),
        drops,
        received,
        obj.get("device_info"),
    )


def parse_batch(raw: bytes | str, default_timestamp_ms: int | None = None) -> Batch | Rejection:
    """Decode and validate one batch; never raises.

    ``default_timestamp_ms`` (the Kafka record's timestamp) stands in for the batch time
    when the batch has none (inbound batches); events without a time take the batch time.
    It also bounds trusted times: a time more than a day after it is replaced by it (when
    mapped).
    """
    try:
        obj = decode_json(raw)
        if type(obj) is Rejection:
            return obj
        return batch_from_object(obj, default_timestamp_ms)
    except Exception as exc:  # a bug must not stop the stream: the input goes to the DLQ
        return Rejection("internal_error", f"{type(exc).__name__}: {exc}"[:200])
