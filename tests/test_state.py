"""The user state: versioned msgpack that round-trips exactly and refuses garbage clearly."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cioproc.models.state import (
    STATE_VERSION,
    StateDecodeError,
    UserState,
    decode_state,
    encode_state,
)

text = st.text(max_size=20)
states = st.builds(
    UserState,
    customer_id=st.none() | text,
    email=st.none() | text,
    id_type=st.sampled_from([None, "id", "email"]),
    id_value=st.none() | text,
    devices=st.dictionaries(text, st.integers(-(2**63), 2**63 - 1), max_size=4),
    last_device=st.none() | text,
    last_device_ms=st.integers(0, 2**48),
    audiences=st.dictionaries(text, text, max_size=5),
    sent=st.dictionaries(text, st.integers(0, 2**64 - 1), max_size=8),
    unsubscribed=st.booleans(),
    opt_out_ms=st.integers(0, 2**48),
    desired=st.binary(max_size=8),
    customer_id_ms=st.integers(0, 2**48),
    email_ms=st.integers(0, 2**48),
    audience_ms=st.dictionaries(text, st.integers(0, 2**48), max_size=5),
    unsubscribe_pending=st.booleans(),
    merged=st.lists(st.integers(0, 2**64 - 1), max_size=4),
    push_tokens=st.lists(
        st.tuples(text, st.sampled_from(["ios", "android", ""]), st.integers(0, 2**63 - 1),
                  st.integers(0, 2**48), st.booleans()).map(list),
        max_size=3,
    ),
)


@given(states)
@settings(max_examples=200, deadline=None)
def test_encode_decode_round_trips_exactly(state: UserState) -> None:
    encoded = encode_state(state)
    assert decode_state(encoded) == state
    assert encode_state(decode_state(encoded)) == encoded


def test_a_typical_state_is_compact() -> None:
    state = UserState(
        customer_id="C00012345", email="someone@example.com", id_type="id",
        id_value="C00012345", devices={"ios": 1_700_000_000, "android": 1_700_100_000},
        last_device="ios", last_device_ms=1_700_200_000_000,
        audiences={"11036": "Buyers", "11034": "Fans"},
        sent={f"attribute_{i}": 2**64 - 1 - i for i in range(14)}, desired=bytes(8),
    )
    assert len(encode_state(state)) < 450
    assert len(encode_state(UserState())) < 20


def _packed(fields: list) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


GOOD = [STATE_VERSION, None, None, None, None, {}, None, 0, {}, {}, False, 0, b""]


def _with(index: int, value: object) -> bytes:
    fields = list(GOOD)
    fields[index] = value
    return _packed(fields)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="not-msgpack"),
        pytest.param(b"\x92\x01", id="truncated"),
        pytest.param(_packed({"a": 1}), id="a-map"),
        pytest.param(_packed([]), id="empty-list"),
        pytest.param(_with(0, 99), id="unknown-version"),
        pytest.param(_packed(GOOD[:-1]), id="missing-field"),
        pytest.param(_with(1, 5), id="customer-id-not-text"),
        pytest.param(_with(3, "phone"), id="bad-id-type"),
        pytest.param(_with(5, {"ios": "x"}), id="device-time-not-int"),
        pytest.param(_with(5, []), id="devices-not-a-map"),
        pytest.param(_with(7, True), id="time-is-bool"),
        pytest.param(_with(8, {"1": 2}), id="audience-name-not-text"),
        pytest.param(_with(9, {"a": "text"}), id="checksum-not-an-integer"),
        pytest.param(_with(10, 1), id="unsubscribed-not-bool"),
        pytest.param(_with(12, "x"), id="desired-not-bytes"),
        pytest.param(_packed(GOOD + [0, 0, {}]), id="some-of-the-identity-times"),
        pytest.param(_packed(GOOD + [0, "x", {}, False, []]), id="identity-time-not-int"),
        pytest.param(_packed(GOOD + [0, 0, {"1": "x"}, False, []]), id="audience-time-not-int"),
        pytest.param(_packed(GOOD + [0, 0, {}, 1, []]), id="pending-not-bool"),
        pytest.param(_packed(GOOD + [0, 0, {}, False, ["x"]]), id="merged-not-ints"),
    ],
)
def test_garbage_raises_a_clear_state_decode_error(data: bytes) -> None:
    with pytest.raises(StateDecodeError):
        decode_state(data)


def test_the_well_formed_minimum_decodes() -> None:
    assert decode_state(_packed(GOOD)) == UserState()


def test_a_state_written_before_identity_times_decodes() -> None:
    """States of the current release (13 fields, no identity or audience times) stay readable:
    their identities count as set at time 0, so any input with a time may update them."""
    legacy = [STATE_VERSION, "c1", "a@x.io", "id", "c1", {"ios": 5}, "ios", 7,
              {"1": "A"}, {"email": 3}, True, 9, b"d"]
    state = decode_state(_packed(legacy))
    assert (state.customer_id, state.email, state.id_value, state.audiences) == (
        "c1", "a@x.io", "c1", {"1": "A"})
    assert (state.customer_id_ms, state.email_ms, state.audience_ms) == (0, 0, {})
    assert (state.unsubscribe_pending, state.merged) == (False, [])
    assert decode_state(encode_state(state)) == state


def test_copy_shares_no_containers() -> None:
    state = UserState(devices={"ios": 1}, audiences={"1": "A"}, sent={"a": 1})
    copied = state.copy()
    copied.devices["android"] = 2
    copied.audiences.clear()
    copied.sent["b"] = 2
    assert state == UserState(devices={"ios": 1}, audiences={"1": "A"}, sent={"a": 1})


# ---- bounded state (issue 11, item 6): what the mapping keeps stays under MAX_STATE_BYTES ----------

from hypothesis import strategies as hst  # noqa: E402
from mapping_builders import T0, audience_message, batch, profile, reasons, run  # noqa: E402

from cioproc.mapping import map_audience, parse_audience_change  # noqa: E402
from cioproc.mapping.segments import MAX_AUDIENCE_BYTES, MAX_AUDIENCES  # noqa: E402
from cioproc.models.settings import MappingSettings  # noqa: E402
from cioproc.models.state import MAX_STATE_BYTES  # noqa: E402

ALL_ATTRIBUTES = MappingSettings(include_user_attributes=True, audience_attribute_per_segment=True)


def join(state: UserState | None, audiences: list[tuple[str, str, str]], ts: int = T0):
    [one] = parse_audience_change(orjson_dumps(audience_message(profile(42, audiences), ts=ts)))
    return map_audience(one, state, ALL_ATTRIBUTES)


def orjson_dumps(obj) -> bytes:
    import orjson

    return orjson.dumps(obj)


def test_a_removed_attribute_is_forgotten_once_its_removal_is_sent() -> None:
    first = run(batch(attributes={"plan": "gold", "tier": 2}), None, ALL_ATTRIBUTES)
    assert {"plan", "tier"} <= set(first.state.sent)
    second = run(batch(attributes={"plan": "gold"}, deleted=["tier"]), first.state, ALL_ATTRIBUTES)
    [identify] = second.commands
    assert identify.attributes == {"tier": None}  # the removal is sent ...
    assert "tier" not in second.state.sent and "plan" in second.state.sent  # ... and then forgotten


def test_thousands_of_deleted_attributes_leave_no_trace_in_the_state() -> None:
    state = None
    for n in range(2000):
        state = run(batch(attributes={f"a{n}": n}, deleted=[f"a{n - 1}"]), state, ALL_ATTRIBUTES).state
    assert len(state.sent) < 10 and len(encode_state(state)) < 1000


def test_audiences_are_capped_by_count_with_a_counted_drop() -> None:
    result = join(None, [(str(i), f"Audience {i}", "add") for i in range(MAX_AUDIENCES + 50)])
    assert len(result.state.audiences) == MAX_AUDIENCES
    assert reasons(result).count("too_many_audiences") == 50
    again = join(result.state, [("x-new", "New", "add")])  # still full: the next one is refused too
    assert "x-new" not in again.state.audiences and "too_many_audiences" in reasons(again)
    left = join(again.state, [("0", "Audience 0", "delete"), ("x-new", "New", "add")])  # room again
    assert "x-new" in left.state.audiences and "0" not in left.state.audiences


def test_audience_names_are_capped_by_bytes() -> None:
    long_name = "ä" * 5000  # 10,000 bytes each
    result = join(None, [(str(i), long_name, "add") for i in range(10)])
    kept = result.state.audiences
    assert sum(len(k.encode()) + len(v.encode()) for k, v in kept.items()) <= MAX_AUDIENCE_BYTES
    assert "too_many_audiences" in reasons(result) and len(encode_state(result.state)) < MAX_STATE_BYTES


def worst_case_inputs(names: int, audiences: int):
    """The largest things the mapping accepts: 150-byte attribute names, 64-character audience
    ids of 4-byte characters, long audience names, many device types."""
    attributes = {("𝄞" * 36) + f"{i:06d}": i for i in range(names)}  # 144 + 6 = 150 bytes
    platforms = [f"platform-{i}-" + "x" * 40 for i in range(40)]
    return attributes, [("𝄞" * 60 + f"{i:04d}", "ü" * 300, "add") for i in range(audiences)], platforms


def test_the_largest_state_the_mapping_can_build_stays_under_the_limit() -> None:
    attributes, audiences, platforms = worst_case_inputs(400, 400)
    state = None
    for n, platform in enumerate(platforms):
        obj = batch([{"event_type": "session_start", "data": {"timestamp_unixtime_ms": 1_700_000_000_000 + n}}],
                    attributes=dict(list(attributes.items())[: 150 + n * 10]), platform=platform,
                    customer_id="c" * 150, email=("e" * 140) + "@x.example")
        state = run(obj, state, ALL_ATTRIBUTES).state
    state = join(state, audiences).state
    state = run(batch(attributes=attributes, customer_id="c" * 150, email=("e" * 140) + "@x.example"),
                state, ALL_ATTRIBUTES).state
    assert len(encode_state(state)) < MAX_STATE_BYTES


@settings(max_examples=40, deadline=None)
@given(
    steps=hst.lists(
        hst.one_of(
            hst.tuples(hst.just("set"), hst.integers(0, 500), hst.integers(1, 200)),
            hst.tuples(hst.just("delete"), hst.integers(0, 500), hst.integers(1, 200)),
            hst.tuples(hst.just("join"), hst.integers(0, 2000), hst.integers(1, 400)),
            hst.tuples(hst.just("leave"), hst.integers(0, 2000), hst.integers(1, 400)),
        ),
        max_size=12,
    )
)
def test_any_sequence_of_inputs_keeps_the_state_under_the_limit(steps) -> None:
    state = None
    for action, start, count in steps:
        names = [("ñ" * 70) + f"{i:05d}" for i in range(start, start + count)]
        if action == "set":
            state = run(batch(attributes={n: "v" * 50 for n in names}), state, ALL_ATTRIBUTES).state
        elif action == "delete":
            state = run(batch(attributes={}, deleted=names), state, ALL_ATTRIBUTES).state
        else:
            verb = "add" if action == "join" else "delete"
            state = join(
                state, [(f"{i}", "Name " + "é" * 100 + str(i), verb) for i in range(start, start + count)]
            ).state
        assert len(encode_state(state)) < MAX_STATE_BYTES


def test_times_of_audiences_left_are_bounded_and_the_newest_kept() -> None:
    """Per-audience change times (issue 12 item 8) include audiences the user left; they must
    not grow without bound either (issue 11 item 6): past the cap the oldest are forgotten."""
    state = None
    for n in range(3 * MAX_AUDIENCES):  # join and leave a new long-named audience each time
        audience = "𝄞" * 60 + f"{n:04d}"
        state = join(state, [(audience, "A", "add")], ts=T0 + 2 * n).state
        state = join(state, [(audience, "A", "delete")], ts=T0 + 2 * n + 1).state
    assert not state.audiences and len(state.audience_ms) <= MAX_AUDIENCES
    assert sum(len(k.encode()) for k in state.audience_ms) <= MAX_AUDIENCE_BYTES
    newest = "𝄞" * 60 + f"{3 * MAX_AUDIENCES - 1:04d}"
    assert state.audience_ms[newest] == T0 + 2 * (3 * MAX_AUDIENCES - 1) + 1
    assert len(encode_state(state)) < MAX_STATE_BYTES
