"""Deterministic ULIDs: format, time part, determinism, checked against a plain implementation."""

from __future__ import annotations

from hashlib import blake2s

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cioproc.models.ulid import (
    MAX_TIMESTAMP_MS,
    deterministic_ulid,
    new_source_hash,
    ulid_timestamp_ms,
)

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def reference_ulid(timestamp_ms: int, key: bytes) -> str:
    """The ULID spec written out bit by bit (slow, obviously right)."""
    hashed = 0
    for byte in blake2s(key, digest_size=16).digest():  # 5 bits from each of 16 bytes
        hashed = (hashed << 5) | (byte & 31)
    value = (timestamp_ms << 80) | hashed
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


@given(st.integers(0, MAX_TIMESTAMP_MS), st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_matches_the_reference_and_round_trips_the_time(timestamp_ms: int, key: bytes) -> None:
    ulid = deterministic_ulid(timestamp_ms, key)
    assert ulid == reference_ulid(timestamp_ms, key)
    assert len(ulid) == 26 and set(ulid) <= set(CROCKFORD) and ulid[0] <= "7"
    assert ulid_timestamp_ms(ulid) == timestamp_ms
    assert deterministic_ulid(timestamp_ms, key) == ulid


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ((1_700_000_000_000, b"k"), (1_700_000_000_000, b"k"), True),
        ((1_700_000_000_000, b"k"), (1_700_000_000_000, b"l"), False),
        ((1_700_000_000_000, b"k"), (1_700_000_000_001, b"k"), False),
    ],
)
def test_same_input_same_id_and_only_then(a: tuple, b: tuple, same: bool) -> None:
    assert (deterministic_ulid(*a) == deterministic_ulid(*b)) is same


def test_ids_sort_by_time() -> None:
    ids = [deterministic_ulid(ms, b"same") for ms in (0, 1, 1023, 1024, 10**12, MAX_TIMESTAMP_MS)]
    assert ids == sorted(ids)


def test_times_outside_48_bits_are_clamped() -> None:
    assert ulid_timestamp_ms(deterministic_ulid(-5, b"k")) == 0
    assert ulid_timestamp_ms(deterministic_ulid(1 << 50, b"k")) == MAX_TIMESTAMP_MS


@pytest.mark.parametrize("bad", ["", "0" * 25, "U" * 26, "0" * 27])
def test_decoding_rejects_what_is_not_a_ulid(bad: str) -> None:
    with pytest.raises(ValueError):
        ulid_timestamp_ms(bad)


@given(st.binary(max_size=200))
def test_source_hash_is_the_hash_of_s_then_the_id(key: bytes) -> None:
    hashed = new_source_hash()
    hashed.update(key)
    assert hashed.digest() == blake2s(b"s" + key, digest_size=16).digest()
