"""One batch of one user -> the Customer.io commands for it, in delivery order."""

from __future__ import annotations

from typing import Any

from orjson import JSONEncodeError
from orjson import dumps as _dumps

from cioproc.mapping.attributes import (
    CIO_RESERVED,
    ENTRY_BUDGET,
    MAX_NAME_BYTES,
    attribute_name,
    event_attributes,
    user_attributes,
)
from cioproc.mapping.batch import Batch
from cioproc.mapping.devices import record_device
from cioproc.mapping.names import MAX_EVENT_NAME_BYTES, event_name
from cioproc.mapping.person import address, choose_identifier, identify
from cioproc.mapping.results import Drop, MapResult
from cioproc.mapping.segments import MEMBERSHIP, audience_attributes
from cioproc.mapping.values import digest, timestamp_ms, utf8_len
from cioproc.models.commands import Command, CommandKind
from cioproc.models.settings import MappingSettings
from cioproc.models.state import UserState
from cioproc.models.ulid import (
    MAX_TIMESTAMP_MS,
    ULID_HASH_CHARS,
    ULID_PAIRS,
    new_source_hash,
    new_ulid_hash,
)

__all__ = ["event_key", "map_batch_unchecked"]

_TRACK = CommandKind.TRACK
_SCREEN = CommandKind.SCREEN
_UNSUBSCRIBE = CommandKind.UNSUBSCRIBE
_WRAPPED_BUDGET = ENTRY_BUDGET + 8  # four levels of [] around the data, as event_attributes
_SHORT_NAME = MAX_EVENT_NAME_BYTES // 4  # a name this long fits whatever its characters
_NO_EARLIEST = MAX_TIMESTAMP_MS + 1  # above any event time
_ALWAYS_DELETABLE = frozenset({"first_name", "last_name"})
_new_tuple = tuple.__new__  # Command(...) without the call to its __new__
_NAMES: dict[str, str] = {}  # raw event name -> trimmed, underscored (short names only)
_MAX_NAMES = 1024  # an app has a few hundred event and screen names at most; then no caching
_MAX_CACHED_RAW = 64  # characters of a raw name worth caching (longer ones are rare)


def event_key(data: dict[str, Any], mpid: str, batch_ref: str, position: int, name: str) -> bytes:
    """What an event's id is hashed from: source_message_id, else event_id, else its place."""
    source_message_id = data.get("source_message_id")
    if type(source_message_id) is str and source_message_id:
        return b"s" + source_message_id.encode("utf-8", "surrogatepass")
    event_id = data.get("event_id")
    if type(event_id) is int:
        return b"e%d" % event_id
    return f"p{mpid}\0{batch_ref}\0{position}\0{name}".encode("utf-8", "surrogatepass")


def _invalid_event(event: Any, position: int) -> Drop:
    if type(event) is not dict:
        return Drop("invalid_event", f"event {position} is not an object")
    return Drop("invalid_event", f"event {position} lacks event_type or data")


def map_batch_unchecked(
    batch: Batch, state: UserState | None, settings: MappingSettings
) -> MapResult:
    """What :func:`cioproc.mapping.map_batch` does (it calls this).

    Event data is size-checked once for the whole batch: when all of it together fits one
    Customer.io entry, each event's does. Otherwise (rare: over ~30 KB of event data, or a
    value orjson cannot encode) the batch is mapped again checking each event on its own,
    so drops are the same, in the same order, as with a check per event.
    """
    result = _map(batch, state, settings, False)
    if result is None:
        result = _map(batch, state, settings, True)
    return result


def _map(
    batch: Batch, state: UserState | None, settings: MappingSettings, size_each: bool
) -> MapResult | None:
    """The mapping; None when ``size_each`` is off and the batch's event data is too large."""
    # The maps are shared with the given state: record_device and identify replace them.
    state = state.shallow_copy() if state is not None else UserState()
    drops = list(batch.drops)
    previous_email = state.email
    if batch.customer_id is not None:
        state.customer_id = batch.customer_id
    if batch.email is not None:
        state.email = batch.email
    identifier = choose_identifier(settings, state.customer_id, state.email)
    id_type, id_value = identifier if identifier is not None else ("", "")
    mpid = batch.mpid
    batch_ms = batch.timestamp_ms
    batch_ref = batch.batch_ref

    commands: list[Command] = []
    append = commands.append
    earliest = _NO_EARLIEST
    latest = -1
    first_run = None
    forwardable = 0
    sized: list[dict[str, Any]] = []  # event data to size-check, encoded four lists deep
    holder = [[[sized]]]  # (as event_attributes does: room for the request body's nesting)
    pairs = ULID_PAIRS
    names = _NAMES
    high = -1  # event ids: ms >> 20 and its 6 characters, shared by events close in time
    prefix = ""
    for position, event in enumerate(batch.events):
        try:  # dict.get on anything else decoded from JSON raises AttributeError
            data = event.get("data")
            event_type = event.get("event_type")
            ts = data.get("timestamp_unixtime_ms")
        except AttributeError:
            drops.append(_invalid_event(event, position))
            continue
        if event_type == "custom_event":
            kind = _TRACK
            raw_name = data.get("event_name")
        elif event_type == "screen_view":
            kind = _SCREEN
            raw_name = data.get("screen_name")
        elif type(event_type) is not str:
            drops.append(_invalid_event(event, position))
            continue
        else:
            kind = None
        if type(ts) is not int or not 0 <= ts <= MAX_TIMESTAMP_MS:
            ts = timestamp_ms(ts)
            if ts is None:
                ts = batch_ms
        if ts is not None:
            if ts < earliest:
                earliest = ts
            if ts > latest:
                latest = ts
        if kind is None:
            if event_type == "opt_out":
                forwardable += 1
                opted_out = data.get("is_opted_out")
                if type(opted_out) is not bool:
                    drops.append(
                        Drop("invalid_event", f"event {position}: is_opted_out not a bool")
                    )
                elif identifier is not None and (ts or 0) >= state.opt_out_ms:
                    before, state.opt_out_ms = state.opt_out_ms, ts or 0
                    if not opted_out:
                        # Opting back in never resubscribes; it lets a later opt-out
                        # unsubscribe again. Only a later one: an opt-in at the very time of
                        # the opt-out would make a replay of both unsubscribe again.
                        if state.opt_out_ms > before:
                            state.unsubscribed = False
                    elif not state.unsubscribed:
                        state.unsubscribed = True
                        append(
                            Command(
                                _UNSUBSCRIBE, mpid, id_type, id_value, (ts or 0) // 1000,
                                {"unsubscribed": True},
                            )
                        )
            elif (
                event_type == "first_run"
                or (event_type == "application_state_transition"
                    and data.get("is_first_run") is True)
            ) and ts is not None and (first_run is None or ts < first_run):
                first_run = ts
            continue

        if identifier is None:
            forwardable += 1  # (counted only for the no_identity drop)
            continue
        if type(raw_name) is not str:
            drops.append(Drop("missing_event_name", f"{event_type} {position} has no name"))
            continue
        name = names.get(raw_name)
        if name is None:
            name = raw_name.strip().replace(" ", "_")
            if len(name) > _SHORT_NAME:
                name, cut = event_name(raw_name)
                if cut:
                    drops.append(
                        Drop("event_name_truncated", f"{name[:40]!r}... cut to 100 bytes")
                    )
            elif len(names) < _MAX_NAMES and len(raw_name) <= _MAX_CACHED_RAW:
                names[raw_name] = name  # never cut: the same name and no drop next time
        if not name:
            drops.append(Drop("empty_event_name", f"{event_type} {position}: name is blank"))
            continue
        attributes = data.get("custom_attributes")
        if type(attributes) is dict:
            if attributes:  # fast path of event_attributes: encodable, small enough
                if size_each:
                    sized.append(attributes)
                    try:
                        fits = len(_dumps(holder)) <= _WRAPPED_BUDGET
                    except (TypeError, JSONEncodeError):
                        fits = False
                    sized.pop()
                    if not fits:
                        attributes = event_attributes(attributes, drops)
                else:
                    sized.append(attributes)  # checked together after the loop
        elif attributes is None:
            attributes = {}
        else:
            drops.append(Drop("invalid_event_attributes", f"event {position}: not an object"))
            attributes = {}
        ms = ts or 0  # within 0..2**48-1
        # The event id: deterministic_ulid(ms, key) written out (see cioproc.models.ulid);
        # key: a hash of source_message_id, else event_id, else the event's place.
        key = data.get("source_message_id")
        if type(key) is str and key:
            hashed = new_source_hash()  # already fed event_key's b"s"
            try:
                hashed.update(key.encode())
            except UnicodeEncodeError:  # lone surrogates: kept as they are
                hashed.update(key.encode("utf-8", "surrogatepass"))
        else:
            hashed = new_ulid_hash()
            hashed.update(event_key(data, mpid, batch_ref, position, name))
        if ms >> 20 != high:
            high = ms >> 20
            prefix = pairs[ms >> 40] + pairs[(ms >> 30) & 1023] + pairs[high & 1023]
        # (an f-string joins the four parts in one go, where + would make two temporaries)
        event_id = (
            f"{prefix}{pairs[(ms >> 10) & 1023]}{pairs[ms & 1023]}"
            f"{hashed.digest().translate(ULID_HASH_CHARS).decode()}"
        )
        append(
            _new_tuple(
                Command, (kind, mpid, id_type, id_value, ms // 1000, attributes, name, event_id, None)
            )
        )
    if sized and not size_each:
        # [[[[a1, a2, ...]]]] is 8 + len(a1) + 1 + len(a2) ... bytes: when it fits the budget
        # of one event ([[[[a]]]]), each event's data does; it fails to encode iff one does.
        try:
            if len(_dumps(holder)) > _WRAPPED_BUDGET:
                return None
        except (TypeError, JSONEncodeError):
            return None
    if latest < 0:
        earliest = latest = None  # no event with a time

    if batch.device_type is not None and earliest is not None:
        record_device(state, batch.device_type, earliest, latest, first_run)

    if identifier is None:
        mode = settings.user_id_type.value
        drops.append(
            Drop("no_identity", f"no identity for user id type {mode}; {forwardable} events")
        )
        return MapResult([], state, drops)

    if state.id_value == id_value and state.id_type == id_type:
        addressing = None  # addressed as last time: address() would change nothing
    else:
        addressing = address(state, identifier, previous_email)
    include_all = settings.include_user_attributes
    created_at = None
    if settings.send_created_at and state.last_device is not None:
        created_at = state.devices.get(state.last_device)
    audiences = state.audiences if state.audiences or MEMBERSHIP in state.sent else None
    per_segment = settings.audience_attribute_per_segment
    inputs = digest(
        (
            "batch", state.email, batch.user_attributes, batch.deleted_user_attributes,
            include_all, created_at, audiences, per_segment,
        )
    )
    if inputs != state.desired or (addressing is not None and addressing.fresh):
        if addressing is None:
            addressing = address(state, identifier, previous_email)
        desired: dict[str, Any] = {}
        if state.email is not None:
            desired["email"] = state.email
        truncated = None
        if batch.user_attributes:
            truncated = user_attributes(batch.user_attributes, include_all, desired, drops)
        for key in batch.deleted_user_attributes:
            name = attribute_name(key)
            if name and name not in desired and name not in CIO_RESERVED:
                if (include_all or name in _ALWAYS_DELETABLE) and utf8_len(
                    name
                ) <= MAX_NAME_BYTES:
                    desired[name] = None
        if created_at is not None:
            desired["created_at"] = created_at
        if audiences is not None:
            audience_attributes(audiences, per_segment, desired, drops)
        when = latest if latest is not None else batch_ms
        person = identify(
            state, addressing, desired, inputs, truncated, mpid, (when or 0) // 1000, drops
        )
        if person:
            commands[:0] = person
    return MapResult(commands, state, drops)
