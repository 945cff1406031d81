"""The event ids the mapping loop writes inline agree with cioproc.models.ulid.deterministic_ulid
(issue 14 item 10): for any source_message_id (lone surrogates too), event_id, message id,
position and time (the edges too), the id of each track and screen command is
``deterministic_ulid(ms, event_key(...))``, ms the event's own time when it is a ULID time,
else the batch's."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cioproc.mapping import Batch, map_batch
from cioproc.mapping.batch import batch_from_object
from cioproc.mapping.mapper import event_key
from cioproc.mapping.values import EARLIEST_TRUSTED_MS, timestamp_ms
from cioproc.models.commands import CommandKind
from cioproc.models.settings import MappingSettings
from cioproc.models.ulid import MAX_TIMESTAMP_MS, deterministic_ulid

NOW_MS = 1_800_000_000_000
EDGE_TIMES = [0, 1, -1, 1023, 1024, (1 << 20) - 1, 1 << 20, EARLIEST_TRUSTED_MS - 1, EARLIEST_TRUSTED_MS,
              10**12 - 1, NOW_MS, NOW_MS + 86_400_000, NOW_MS + 86_400_001, MAX_TIMESTAMP_MS, MAX_TIMESTAMP_MS + 1,
              2**63 - 1, -(2**63), 1.5e12, -0.0, float("nan"), float("inf"), True]
TIMES = st.one_of(st.sampled_from(EDGE_TIMES), st.integers(EARLIEST_TRUSTED_MS, NOW_MS), st.integers(),
                  st.floats(), st.text(max_size=4))
SURROGATES = st.sampled_from([chr(c) for c in (0xD800, 0xDBFF, 0xDC00, 0xDFFF)])
TEXT = st.text(alphabet=st.one_of(st.characters(), SURROGATES), max_size=12)
IDS = st.one_of(TEXT, st.integers(), st.none(), st.booleans(), st.floats())
MISSING = object()


def _maybe(draw: Any, strategy: st.SearchStrategy) -> Any:
    return draw(strategy) if draw(st.booleans()) else MISSING


@st.composite
def events(draw: Any, position: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["custom_event", "screen_view"]))
    # The name says the position, so each command finds its event.
    data: dict[str, Any] = {"event_name" if kind == "custom_event" else "screen_name": f"n{position}"}
    for field, strategy in (("source_message_id", IDS), ("event_id", st.one_of(st.integers(), IDS)),
                            ("message_id", IDS), ("timestamp_unixtime_ms", TIMES)):
        value = _maybe(draw, strategy)
        if value is not MISSING:
            data[field] = value
    event: dict[str, Any] = {"event_type": kind, "data": data}
    outer_message_id = _maybe(draw, IDS)
    if outer_message_id is not MISSING:
        event["message_id"] = outer_message_id
    return event


@st.composite
def batches(draw: Any) -> Batch:
    count = draw(st.integers(1, 6))
    obj: dict[str, Any] = {
        "mpid": draw(st.integers(-(2**63), 2**63 - 1)),
        "user_identities": {"customer_id": "c1"},
        "events": [draw(events(position)) for position in range(count)],
    }
    for field, strategy in (("timestamp_unixtime_ms", TIMES), ("batch_id", IDS)):
        value = _maybe(draw, strategy)
        if value is not MISSING:
            obj[field] = value
    received = draw(st.one_of(st.none(), st.sampled_from([0, NOW_MS, MAX_TIMESTAMP_MS]), st.integers(0, NOW_MS)))
    batch = batch_from_object(obj, received)
    assert isinstance(batch, Batch)
    return batch


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_inline_event_ids_are_deterministic_ulids_of_the_event_key(batch: Batch) -> None:
    result = map_batch(batch, None, MappingSettings())
    events_mapped = [c for c in result.commands if c.kind in (CommandKind.TRACK, CommandKind.SCREEN)]
    assert len(events_mapped) == len(batch.events)  # every event here has a name and an identity
    for command in events_mapped:
        position = int(command.name[1:])
        event = batch.events[position]
        data = event["data"]
        ms = timestamp_ms(data.get("timestamp_unixtime_ms"))
        if ms is None:
            ms = batch.timestamp_ms or 0
        key = event_key(data, batch.mpid, batch.batch_ref, position, command.name, event)
        assert command.event_id == deterministic_ulid(ms, key), (position, data, ms)
