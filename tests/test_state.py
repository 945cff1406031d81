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
