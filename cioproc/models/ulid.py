"""Deterministic ULIDs: the same input always yields the same 26-character id.

A ULID is 128 bits written in Crockford base32: a 48-bit millisecond timestamp (10
characters) followed by 80 "random" bits (16 characters). Here each of those 16 characters
is the low 5 bits of one byte of a 16-byte BLAKE2s hash of a caller-given key, so an event
replayed from Kafka gets the id it got the first time, and Customer.io (which ignores an
event whose id it has already received) records it once.
"""

from __future__ import annotations

from hashlib import blake2s

__all__ = ["MAX_TIMESTAMP_MS", "deterministic_ulid", "ulid_timestamp_ms"]

MAX_TIMESTAMP_MS = (1 << 48) - 1
_CROCKFORD = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = tuple(a + b for a in _CROCKFORD.decode() for b in _CROCKFORD.decode())
_LOW_FIVE_BITS = bytes(_CROCKFORD[byte & 31] for byte in range(256))
_DECODE = {c: i for i, c in enumerate(_CROCKFORD.decode())}


def deterministic_ulid(timestamp_ms: int, key: bytes) -> str:
    """The ULID with ``timestamp_ms`` (clamped to 0..2**48-1) and 80 bits hashed from ``key``."""
    if timestamp_ms < 0:
        timestamp_ms = 0
    elif timestamp_ms > MAX_TIMESTAMP_MS:
        timestamp_ms = MAX_TIMESTAMP_MS
    p = _PAIRS  # the time: 10 characters = 5 pairs of 10 bits (the first with 2 zero bits)
    t = timestamp_ms
    return "".join(
        (
            p[t >> 40], p[(t >> 30) & 1023], p[(t >> 20) & 1023], p[(t >> 10) & 1023],
            p[t & 1023],
            blake2s(key, digest_size=16).digest().translate(_LOW_FIVE_BITS).decode("ascii"),
        )
    )


def ulid_timestamp_ms(ulid: str) -> int:
    """The millisecond timestamp encoded in a ULID's first 10 characters."""
    if len(ulid) != 26:
        raise ValueError(f"a ULID has 26 characters, not {len(ulid)}")
    value = 0
    for char in ulid.upper():
        try:
            value = (value << 5) | _DECODE[char]
        except KeyError:
            raise ValueError(f"{char!r} is not a Crockford base32 character") from None
    return value >> 80
