"""Property tests: any input yields commands or a typed rejection; encodings round-trip;
mapping the same input again with the resulting state emits no second identify.

Inputs: arbitrary JSON values, batch-shaped objects with arbitrary parts, arbitrary bytes,
and the reference sample batch (../shared/reference/mparticle-eventsapi-sample.json, copied
to tests/data/mapping) with random parts replaced or deleted.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mapping_builders import SAMPLE_AUDIENCE, SAMPLE_BATCH

from cioproc.mapping import (
    DROP_REASONS,
    REJECTION_REASONS,
    Batch,
    MapResult,
    Rejection,
    map_audience,
    map_batch,
    parse_audience_change,
    parse_batch,
)
from cioproc.mapping.values import utf8_len
from cioproc.models.commands import CommandKind, decode_command, encode_command
from cioproc.models.settings import MappingSettings, UserIdType
from cioproc.models.state import decode_state, encode_state

FAST = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["", " ", "IOS", "Android", "a@x.io", "custom_event", "  A b  "])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)


def mostly(valid: st.SearchStrategy, other: st.SearchStrategy = json_values) -> st.SearchStrategy:
    """``valid`` about nine times in ten, else ``other``: reach deep code, still see garbage."""
    return st.integers(0, 9).flatmap(lambda pick: valid if pick else other)


mapping_settings = st.builds(
    MappingSettings,
    user_id_type=st.sampled_from(list(UserIdType)),
    include_user_attributes=st.booleans(),
    send_created_at=st.booleans(),
    audience_attribute_per_segment=st.booleans(),
    transport=st.sampled_from(["v1", "v2"]),
    merge_people=st.booleans(),
    forward_devices=st.booleans(),
)

timestamps = mostly(st.integers(-1, 2**49) | st.just(1_700_000_000_000))
event_data = st.fixed_dictionaries(
    {
        "timestamp_unixtime_ms": timestamps,
        "event_name": mostly(st.text(max_size=120)),
        "screen_name": mostly(st.text(max_size=10)),
        "custom_attributes": mostly(
            st.dictionaries(st.text(max_size=8), json_values, max_size=5)
        ),
        "is_opted_out": mostly(st.booleans()),
    },
    optional={
        "source_message_id": mostly(st.text(max_size=5)),
        "event_id": mostly(st.integers(-(2**63), 2**63 - 1)),
        "is_first_run": st.booleans(),
        "register": mostly(st.booleans()),
        "registration_token": mostly(st.sampled_from(["t1", "t2", " ", ""]) | st.text(max_size=5)),
    },
)
events = mostly(
    st.fixed_dictionaries(
        {
            "event_type": mostly(
                st.sampled_from(
                    ["custom_event", "screen_view", "opt_out", "first_run", "session_start",
                     "application_state_transition", "push_registration", "uninstall"]
                )
            ),
            "data": mostly(event_data),
        }
    )
)
identity_values = mostly(
    st.sampled_from(["c1", "c2", "a@x.io", "b@x.io", "", "x", 7, None])
)
batch_like = st.fixed_dictionaries(
    {
        "mpid": mostly(st.integers(-(2**63), 2**64 - 1) | st.sampled_from(["42", "-1"])),
        "events": mostly(st.lists(events, max_size=6)),
        "user_identities": mostly(
            st.fixed_dictionaries({"customer_id": identity_values, "email": identity_values})
            | st.lists(
                st.fixed_dictionaries(
                    {"identity_type": st.sampled_from(["customer_id", "email", "other"]),
                     "identity": identity_values}
                ),
                max_size=3,
            )
        ),
    },
    optional={
        "user_attributes": mostly(
            st.dictionaries(
                st.sampled_from(["$FirstName", "$lastname", "$City", "plan", "id", "", "x" * 160])
                | st.text(max_size=8),
                json_values,
                max_size=6,
            )
        ),
        "deleted_user_attributes": mostly(st.lists(mostly(st.text(max_size=8)), max_size=3)),
        "application_info": mostly(st.fixed_dictionaries({"os": mostly(st.sampled_from(
            ["IOS", "Android", "MobileWeb", "Unknown"]))})),
        "device_info": mostly(st.fixed_dictionaries(
            {"platform": mostly(st.sampled_from(["iOS", "Android"])) | json_values},
            optional={"push_token": mostly(st.sampled_from(["t1", "t2", "t3"])), "ios_idfv": json_values},
        )),
        "timestamp_unixtime_ms": timestamps,
        "batch_id": json_values,
        "source_request_id": json_values,
    },
)


def _sample() -> Any:
    return orjson.loads(SAMPLE_BATCH.read_bytes())


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, prefix + (index,))
    return found


SAMPLE_PATHS = _paths(_sample())[1:]
mutations = st.lists(
    st.tuples(st.sampled_from(SAMPLE_PATHS), st.booleans(), json_values), min_size=1,
    max_size=6,
)


def _mutate(changes: list[tuple[tuple, bool, Any]]) -> Any:
    obj = _sample()
    for path, delete, value in changes:
        parent = obj
        for step in path[:-1]:
            try:
                parent = parent[step]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        if not isinstance(parent, (dict, list)):
            continue
        last = path[-1]
        try:
            if delete:
                del parent[last]
            else:
                parent[last] = value
        except (KeyError, IndexError, TypeError):
            continue
    return obj


def _check_result(result: MapResult) -> None:
    """Everything a mapping result promises, whatever the input was."""
    for drop in result.drops:
        assert drop.reason in DROP_REASONS and drop.reason != "internal_error", drop
    for command in result.commands:
        assert decode_command(encode_command(command)) == command
        assert command.id_value and utf8_len(command.id_value) <= 150
        assert isinstance(command.timestamp, int) and command.timestamp >= 0
        if command.kind in (CommandKind.TRACK, CommandKind.SCREEN):
            assert command.name and utf8_len(command.name) <= 100
            assert command.event_id and len(command.event_id) == 26
            assert len(orjson.dumps(command.attributes)) <= 32_000
        if command.kind in (CommandKind.ADD_DEVICE, CommandKind.DELETE_DEVICE):
            assert command.name and command.name == command.name.strip()
            if command.kind is CommandKind.ADD_DEVICE:
                assert command.attributes == {"platform": command.attributes["platform"]}
                assert command.attributes["platform"] in ("ios", "android")
        if command.kind is CommandKind.IDENTIFY:
            assert len(command.attributes) <= 300
            for name, value in command.attributes.items():
                assert name and utf8_len(name) <= 150
                if isinstance(value, str):
                    assert utf8_len(value) <= 1000
    assert decode_state(encode_state(result.state)) == result.state


def _check_batch(raw: bytes, config: MappingSettings) -> None:
    batch = parse_batch(raw)
    if isinstance(batch, Rejection):
        assert batch.reason in REJECTION_REASONS and batch.reason != "internal_error", batch
        return
    assert isinstance(batch, Batch)
    first = map_batch(batch, None, config)
    _check_result(first)
    again = map_batch(batch, first.state, config)
    _check_result(again)
    repeated = {CommandKind.IDENTIFY, CommandKind.MERGE, CommandKind.UNSUBSCRIBE,
                CommandKind.ADD_DEVICE, CommandKind.DELETE_DEVICE}  # (devices: a replay adds nothing twice)
    assert not [c for c in again.commands if c.kind in repeated], again.commands
    assert again.state == first.state
    assert [c for c in again.commands] == [c for c in first.commands if c.kind not in repeated]


@given(json_values, mapping_settings)
@FAST
def test_any_json_value_is_mapped_or_rejected(value: Any, config: MappingSettings) -> None:
    _check_batch(orjson.dumps(value), config)


@given(batch_like, mapping_settings)
@FAST
def test_any_batch_shaped_object_is_mapped_or_rejected(value: Any, config: MappingSettings):
    _check_batch(orjson.dumps(value), config)


@given(mutations, mapping_settings)
@FAST
def test_mutated_real_batches_are_mapped_or_rejected(changes: list, config: MappingSettings):
    _check_batch(orjson.dumps(_mutate(changes)), config)


@given(st.binary(max_size=200) | st.text(max_size=100), mapping_settings)
@FAST
def test_any_bytes_or_text_are_mapped_or_rejected(raw: bytes | str, config: MappingSettings):
    batch = parse_batch(raw)
    if isinstance(raw, bytes):
        _check_batch(raw, config)
    else:
        assert isinstance(batch, (Batch, Rejection))


@given(st.integers(0, 29_000), st.binary(min_size=1, max_size=3), mapping_settings)
@FAST
def test_corrupted_bytes_of_a_real_batch_are_mapped_or_rejected(
    at: int, junk: bytes, config: MappingSettings
) -> None:
    raw = SAMPLE_BATCH.read_bytes()
    _check_batch(raw[:at] + junk + raw[at + len(junk):], config)


@given(st.lists(batch_like, min_size=1, max_size=4), mapping_settings)
@FAST
def test_state_carried_across_batches_stays_valid(values: list, config: MappingSettings):
    state = None
    for value in values:
        batch = parse_batch(orjson.dumps(value))
        if isinstance(batch, Rejection):
            continue
        result = map_batch(batch, state, config)
        _check_result(result)
        replay = map_batch(batch, result.state, config)
        _check_result(replay)
        sent = {(k, orjson.dumps(v)) for c in result.commands for k, v in c.attributes.items()}
        for command in replay.commands:
            if command.kind is CommandKind.IDENTIFY:
                # Only the email held back while a new customer id is merged may follow.
                assert any(c.kind is CommandKind.MERGE for c in result.commands)
                assert set(command.attributes) == {"email"}
                assert ("email", orjson.dumps(command.attributes["email"])) not in sent
            assert command.kind is not CommandKind.MERGE
        state = replay.state



@given(st.lists(batch_like, min_size=1, max_size=5), mapping_settings)
@FAST
def test_the_given_state_is_never_changed(values: list, config: MappingSettings):
    """A result's state may share maps with the given one (copy on write): the given one,
    mapped again with other batches, must still encode to the same bytes."""
    states = [None]
    for value in values:
        batch = parse_batch(orjson.dumps(value))
        if isinstance(batch, Rejection):
            continue
        for state in states:  # every earlier state, so that shared maps get written to
            before = None if state is None else encode_state(state)
            result = map_batch(batch, state, config)
            assert (None if state is None else encode_state(state)) == before
        states.append(result.state)


audience_entries = st.fixed_dictionaries(
    {
        "audience_id": st.integers(-5, 10**6) | json_values,
        "audience_name": st.sampled_from(["A", "B", ""]) | json_values,
        "action": st.sampled_from(["add", "delete", "attribute_update"]) | json_values,
    }
) | json_values
audience_like = st.fixed_dictionaries(
    {
        "user_profiles": st.lists(
            st.fixed_dictionaries(
                {"mpid": st.sampled_from([1, "2", "x"]) | json_values},
                optional={
                    "user_identities": st.lists(
                        st.fixed_dictionaries(
                            {"type": st.sampled_from(["customer", "email", "other"]),
                             "encoding": st.sampled_from(["raw", "sha256"]),
                             "value": identity_values}
                        ),
                        max_size=2,
                    )
                    | json_values,
                    "audiences": st.lists(audience_entries, max_size=4) | json_values,
                },
            )
            | json_values,
            max_size=3,
        )
        | json_values
    },
    optional={
        "type": st.just("audience_membership_change_request") | json_values,
        "timestamp_ms": timestamps,
    },
)


@given(audience_like | json_values, mapping_settings)
@FAST
def test_any_audience_message_is_mapped_or_rejected(value: Any, config: MappingSettings):
    profiles = parse_audience_change(orjson.dumps(value))
    if isinstance(profiles, Rejection):
        assert profiles.reason in REJECTION_REASONS and profiles.reason != "internal_error"
        return
    for profile in profiles:
        first = map_audience(profile, None, config)
        _check_result(first)
        again = map_audience(profile, first.state, config)
        _check_result(again)
        assert again.commands == [] and again.state == first.state


def test_the_reference_audience_message_holds_the_properties() -> None:
    profiles = parse_audience_change(SAMPLE_AUDIENCE.read_bytes())
    assert not isinstance(profiles, Rejection)
    for profile in profiles:
        result = map_audience(profile, None, MappingSettings())
        _check_result(result)
        assert result.commands


@given(st.lists(st.one_of(batch_like, audience_like), min_size=1, max_size=6), mapping_settings)
@FAST
def test_batches_and_audience_messages_mixed_never_change_a_given_state(
    values: list, config: MappingSettings
) -> None:
    """Identity and audience times travel with the state: audience messages and batches in
    any order map without raising, and no mapping changes the state it was given."""
    states = [None]
    for value in values:
        if "user_profiles" in value:
            profiles = parse_audience_change(orjson.dumps(value))
            inputs = [] if isinstance(profiles, Rejection) else [(map_audience, p) for p in profiles]
        else:
            batch = parse_batch(orjson.dumps(value))
            inputs = [] if isinstance(batch, Rejection) else [(map_batch, batch)]
        for mapper, parsed in inputs:
            for state in states:
                before = None if state is None else encode_state(state)
                result = mapper(parsed, state, config)
                _check_result(result)
                assert (None if state is None else encode_state(state)) == before
            states.append(result.state)
