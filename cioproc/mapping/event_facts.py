"""What the mapper (:mod:`cioproc.mapping.mapper`) reads off one event or batch besides its
commands: what an event's id is hashed from, why an event is invalid, and when a batch's
identities were seen (pure)."""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

from orjson import OPT_SORT_KEYS, JSONEncodeError
from orjson import dumps as _dumps

from cioproc.mapping.batch import Batch
from cioproc.mapping.results import Drop
from cioproc.mapping.values import (
    EARLIEST_TRUSTED_MS,
    latest_trusted_ms,
    untrusted_time_ms,
)


def event_key(
    data: dict[str, Any], mpid: str, batch_ref: str, position: int, name: str,
    event: dict[str, Any] | None = None,
) -> bytes:
    """What an event's id is hashed from.

    ``source_message_id``, else ``event_id`` (these two keep the ids they always had), else
    the ``message_id`` of mParticle's outbound form (in the event or its data), else the
    event's place: MPID, batch id and position, and, for a batch without an id, a digest of
    the event's content too (two batches without ids can hold different events with the same
    name, time and position).
    """
    source_message_id = data.get("source_message_id")
    if type(source_message_id) is str and source_message_id:
        return b"s" + source_message_id.encode("utf-8", "surrogatepass")
    event_id = data.get("event_id")
    if type(event_id) is int:
        return b"e%d" % event_id
    message_id = data.get("message_id")
    if message_id is None and event is not None:
        message_id = event.get("message_id")
    if type(message_id) is int:
        message_id = str(message_id)
    if type(message_id) is str and message_id:
        return b"m" + message_id.encode("utf-8", "surrogatepass")
    place = f"p{mpid}\0{batch_ref}\0{position}\0{name}".encode("utf-8", "surrogatepass")
    if batch_ref:
        return place
    return place + b"\0" + content_digest(data)


def content_digest(data: dict[str, Any]) -> bytes:
    """A digest of an event's data, independent of the order of its keys."""
    try:
        encoded = _dumps(data, option=OPT_SORT_KEYS)
    except (TypeError, JSONEncodeError):  # nested too deep for orjson
        try:
            encoded = repr(data).encode("utf-8", "surrogatepass")
        except RecursionError:
            return b""
    return blake2b(encoded, digest_size=16).digest()


def invalid_event(event: Any, position: int) -> Drop:
    if type(event) is not dict:
        return Drop("invalid_event", f"event {position} is not an object")
    return Drop("invalid_event", f"event {position} lacks event_type or data")


def identity_time(batch: Batch) -> int:
    """When a batch's identities were seen: its latest trusted event time, as the event loop
    reads it (an event without a time has the batch's), else the batch time, else the Kafka
    record's time, else 0. Untrusted times (see untrusted_time_ms) never count: a wrong
    clock far ahead must not make every later batch look stale."""
    latest_trusted = latest_trusted_ms(batch.received_ms)

    def trusted(value: Any) -> int | None:
        if type(value) is int and EARLIEST_TRUSTED_MS <= value <= latest_trusted:
            return value
        ms, ok = untrusted_time_ms(value, latest_trusted)
        return ms if ok else None

    batch_ms = trusted(batch.timestamp_ms)
    latest = -1
    for event in batch.events:
        try:
            if type(event.get("event_type")) is not str:
                continue
            ts = event.get("data").get("timestamp_unixtime_ms")
        except AttributeError:
            continue
        ts = batch_ms if ts is None else trusted(ts)
        if ts is not None and ts > latest:
            latest = ts
    if latest >= 0:
        return latest
    if batch_ms is not None:
        return batch_ms
    return batch.received_ms or 0

