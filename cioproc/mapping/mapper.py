"""One batch of one user -> the Customer.io commands for it, in delivery order."""

from __future__ import annotations

from typing import Any, Literal, overload

from orjson import JSONEncodeError
from orjson import dumps as _dumps

from cioproc.mapping.attributes import (
    CIO_RESERVED,
    ENTRY_BUDGET,
    MAX_NAME_BYTES,
    V1_EVENT_DATA_BUDGET,
    attribute_name,
    event_attributes,
    user_attributes,
)
from cioproc.mapping.batch import Batch
from cioproc.mapping.devices import record_device
from cioproc.mapping.event_facts import event_key, identity_time, invalid_event
from cioproc.mapping.names import event_name
from cioproc.mapping.person import (
    address,
    choose_identifier,
    identify,
    owed_unsubscribe,
    update_identities,
)
from cioproc.mapping.push import PUSH_EVENT_TYPES, device_commands, readd_commands
from cioproc.mapping.results import Drop, MapResult
from cioproc.mapping.segments import MEMBERSHIP, audience_attributes
from cioproc.mapping.values import (
    EARLIEST_TRUSTED_MS,
    digest,
    latest_trusted_ms,
    timestamp_ms,
    untrusted_time_ms,
    utf8_len,
)
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
_WRAPPING = 8  # four levels of [] around the data, as event_attributes
_NO_EARLIEST = MAX_TIMESTAMP_MS + 1  # above any event time
_EARLIEST_TRUSTED_S = EARLIEST_TRUSTED_MS // 1000
_ALWAYS_DELETABLE = frozenset({"first_name", "last_name"})
_new_tuple = tuple.__new__  # Command(...) without the call to its __new__
_NAMES: dict[str, str] = {}  # raw event name -> trimmed, underscored (short names only)
_MAX_NAMES = 1024  # an app has a few hundred event and screen names at most; then no caching
_MAX_CACHED_RAW = 64  # characters of a raw name worth caching (longer ones are rare)

def map_batch_unchecked(
    batch: Batch, state: UserState | None, settings: MappingSettings
) -> MapResult:
    """What :func:`cioproc.mapping.map_batch` does (it calls this).

    Event data is size-checked once for the whole batch: when all of it together fits the
    budget of one event's data (a v2 entry; v1: 100,000 bytes), each event's does. Otherwise
    (rare: more event data, or a value orjson cannot encode) the batch is mapped again
    checking each event on its own, so drops are the same, in the same order, as with a
    check per event.
    """
    result = _map(batch, state, settings, False)
    if result is None:
        result = _map(batch, state, settings, True)
    return result


@overload
def _map(batch: Batch, state: UserState | None, settings: MappingSettings, size_each: Literal[True]) -> MapResult: ...
@overload
def _map(
    batch: Batch, state: UserState | None, settings: MappingSettings, size_each: bool
) -> MapResult | None: ...
def _map(
    batch: Batch, state: UserState | None, settings: MappingSettings, size_each: bool
) -> MapResult | None:
    """The mapping; None when ``size_each`` is off and the batch's event data is too large."""
    # The maps are shared with the given state: record_device and identify replace them.
    state = state.shallow_copy() if state is not None else UserState()
    addressed_as = (state.id_type, state.id_value)  # before this batch
    drops = list(batch.drops)
    previous_email = state.email
    customer_id, email = batch.customer_id, batch.email
    if (customer_id is not None and customer_id != state.customer_id) or (
        email is not None and email != state.email
    ):  # rare: the times decide (otherwise they are only moved on, after the events)
        update_identities(state, customer_id, email, identity_time(batch), drops)
    identifier = choose_identifier(settings, state.customer_id, state.email)
    id_type, id_value = identifier if identifier is not None else ("", "")
    mpid = batch.mpid
    batch_ref = batch.batch_ref
    # Times. An event id's time part is the event's own time when it is a ULID time, else
    # the batch's (never changed: ids are Customer.io's dedup keys). A command's time is the
    # event's time when trusted (see untrusted_time_ms), else the Kafka record's.
    batch_ms = batch.timestamp_ms  # for events without a time
    received = batch.received_ms
    latest_trusted = latest_trusted_ms(received)
    batch_time = batch_ms  # batch_ms when trusted
    batch_trusted = True
    if batch_ms is not None and not EARLIEST_TRUSTED_MS <= batch_ms <= latest_trusted:
        batch_time, batch_trusted = untrusted_time_ms(batch_ms, latest_trusted)
        if not batch_trusted:
            drops.append(Drop("invalid_timestamp", "the batch time is not a plausible time"))
            if batch_time is None:
                batch_time = received
    replacement_ms = received if received is not None else batch_time  # for untrusted times
    untrusted_at = -1  # position of the last event whose time was not trusted
    slow_at = -1  # position of the last event whose time was not a trusted int
    id_ms: int | None = None  # the time part of that event's id

    commands: list[Command] = []
    append = commands.append
    earliest = _NO_EARLIEST
    latest = -1
    first_run = None
    removed: list[str] | None = None  # user attributes deleted by user_attribute_change events
    forward_devices = settings.forward_devices
    registrations: list[tuple[int, str, dict[str, Any], int]] | None = None  # push events
    forwardable = 0
    sized: list[dict[str, Any]] = []  # event data to size-check, encoded four lists deep
    holder = [[[sized]]]  # (as event_attributes does: room for the request body's nesting)
    budget = V1_EVENT_DATA_BUDGET if settings.transport == "v1" else ENTRY_BUDGET
    wrapped_budget = budget + _WRAPPING
    pairs = ULID_PAIRS
    names = _NAMES
    high = -1  # event ids: ms >> 20 and its 6 characters, shared by events close in time
    prefix = ""
    if identifier is not None and (state.unsubscribe_pending or state.unsubscribed):
        owed = owed_unsubscribe(state, id_type, id_value, mpid)
        if owed is not None:
            append(owed)
    for position, event in enumerate(batch.events):
        try:  # dict.get on anything else decoded from JSON raises AttributeError
            data = event.get("data")
            event_type = event.get("event_type")
            ts = data.get("timestamp_unixtime_ms")
        except AttributeError:
            drops.append(invalid_event(event, position))
            continue
        if event_type == "custom_event":
            kind = _TRACK
            raw_name = data.get("event_name")
        elif event_type == "screen_view":
            kind = _SCREEN
            raw_name = data.get("screen_name")
        elif type(event_type) is not str:
            drops.append(invalid_event(event, position))
            continue
        else:
            kind = None
        if type(ts) is not int or not EARLIEST_TRUSTED_MS <= ts <= latest_trusted:
            slow_at = position
            if ts is None:  # no time of its own: the batch's
                id_ms = batch_ms
                ts = batch_time
                if not batch_trusted:
                    untrusted_at = position
            else:
                id_ms = timestamp_ms(ts)
                if id_ms is None:
                    id_ms = batch_ms
                ts, trusted = untrusted_time_ms(ts, latest_trusted)
                if not trusted:  # a guess (seconds), or the record's time in its place
                    drops.append(
                        Drop("invalid_timestamp", f"event {position}: not a plausible time")
                    )
                    untrusted_at = position
                    if ts is None:
                        ts = replacement_ms
        if ts is not None and untrusted_at != position:  # untrusted times never set created_at
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
                elif (ts or 0) >= state.opt_out_ms:
                    before, state.opt_out_ms = state.opt_out_ms, ts or 0
                    if not opted_out:
                        # Opting back in never resubscribes; it lets a later opt-out
                        # unsubscribe again. Only a later one: an opt-in at the very time of
                        # the opt-out would make a replay of both unsubscribe again.
                        if state.opt_out_ms > before:
                            state.unsubscribed = state.unsubscribe_pending = False
                    elif identifier is None:
                        # Kept, and sent once the user can be addressed (owed_unsubscribe).
                        state.unsubscribe_pending = not state.unsubscribed
                    elif not state.unsubscribed:
                        state.unsubscribed = True
                        append(
                            Command(
                                _UNSUBSCRIBE, mpid, id_type, id_value, (ts or 0) // 1000,
                                {"unsubscribed": True},
                            )
                        )
            elif event_type == "user_attribute_change":
                # Outbound batches carry deletions this way (deleted_user_attributes null).
                if data.get("deleted") is True:
                    removed_name = data.get("user_attribute_name")
                    if type(removed_name) is str:
                        if removed is None:
                            removed = []
                        removed.append(removed_name)
            elif forward_devices and event_type in PUSH_EVENT_TYPES:
                forwardable += 1
                if registrations is None:
                    registrations = []
                registrations.append((position, event_type, data, ts or 0))
            elif (
                event_type == "first_run"
                or (event_type == "application_state_transition"
                    and data.get("is_first_run") is True)
            ) and ts is not None and untrusted_at != position and (
                first_run is None or ts < first_run
            ):
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
                        fits = len(_dumps(holder)) <= wrapped_budget
                    except (TypeError, JSONEncodeError):
                        fits = False
                    sized.pop()
                    if not fits:
                        attributes = event_attributes(attributes, drops, budget)
                else:
                    sized.append(attributes)  # checked together after the loop
        elif attributes is None:
            attributes = {}
        else:
            drops.append(Drop("invalid_event_attributes", f"event {position}: not an object"))
            attributes = {}
        event_ms = ts or 0  # the command's time
        ms = event_ms if slow_at != position else (id_ms or 0)  # the id's, within 0..2**48-1
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
            hashed.update(event_key(data, mpid, batch_ref, position, name, event))
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
                Command,
                (kind, mpid, id_type, id_value, event_ms // 1000, attributes, name, event_id, None),
            )
        )
    if sized and not size_each:
        # [[[[a1, a2, ...]]]] is 8 + len(a1) + 1 + len(a2) ... bytes: when it fits the budget
        # of one event ([[[[a]]]]), each event's data does; it fails to encode iff one does.
        try:
            if len(_dumps(holder)) > wrapped_budget:
                return None
        except (TypeError, JSONEncodeError):
            return None
    seen = latest if latest >= 0 else identity_time(batch)  # trusted times only
    if customer_id is not None and seen > state.customer_id_ms and (
        customer_id == state.customer_id
    ):
        state.customer_id_ms = seen
    if email is not None and seen > state.email_ms and email == state.email:
        state.email_ms = seen
    if latest >= 0:
        first_ms: int | None = earliest
        last_ms: int | None = latest
    else:
        first_ms = last_ms = None  # no event with a time

    if batch.device_type is not None and first_ms is not None and last_ms is not None:
        record_device(state, batch.device_type, first_ms, last_ms, first_run)

    if identifier is None:
        mode = settings.user_id_type.value
        drops.append(
            Drop("no_identity", f"no identity for user id type {mode}; {forwardable} events")
        )
        return MapResult([], state, drops)

    if state.id_value == id_value and state.id_type == id_type:
        addressing = None  # addressed as last time: address() would change nothing
    else:
        addressing = address(state, identifier, previous_email, settings.merge_people)
    include_all = settings.include_user_attributes
    created_at = None
    if settings.send_created_at and state.last_device is not None:
        created_at = state.devices.get(state.last_device)
        if created_at is not None and created_at < _EARLIEST_TRUSTED_S:
            created_at = None  # 0, or kept from an untrusted time by an older release
    audiences = state.audiences if state.audiences or MEMBERSHIP in state.sent else None
    per_segment = settings.audience_attribute_per_segment
    deleted = batch.deleted_user_attributes
    if removed is not None:
        deleted = deleted + removed
    inputs = digest(
        (
            "batch", state.email, batch.user_attributes, deleted,
            include_all, created_at, audiences, per_segment,
        )
    )
    if inputs != state.desired or (addressing is not None and addressing.fresh):
        if addressing is None:
            addressing = address(state, identifier, previous_email, settings.merge_people)
        desired: dict[str, Any] = {}
        if state.email is not None:
            desired["email"] = state.email
        truncated = None
        if batch.user_attributes:
            truncated = user_attributes(batch.user_attributes, include_all, desired, drops)
        for key in deleted:
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
        when = last_ms if last_ms is not None else batch_time
        person = identify(
            state, addressing, desired, inputs, truncated, mpid, (when or 0) // 1000, drops
        )
        if person:
            commands[:0] = person
    if forward_devices:
        if addressed_as[1] is not None and addressed_as != (id_type, id_value) and state.push_tokens:
            commands.extend(readd_commands(state, mpid, id_type, id_value))
        if registrations is not None or (
            type(batch.device_info) is dict and batch.device_info.get("push_token")
        ):
            when = last_ms if last_ms is not None else batch_time
            commands.extend(
                device_commands(
                    state, registrations or [], batch.device_info, batch.device_type, when,
                    mpid, id_type, id_value, drops,
                )
            )
    return MapResult(commands, state, drops)
