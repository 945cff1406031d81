"""Deterministic ULIDs: the same input always yields the same 26-character id.

A ULID is 128 bits written in Crockford base32: a 48-bit millisecond timestamp followed by
80 "random" bits. Here those 80 bits are the first 80 bits of a BLAKE2b hash of a caller-given
key, so an event replayed from Kafka gets the id it got the first time, and Customer.io (which
ignores an event whose id it has already received) records it once.
"""

from __future__ import annotations

import base64
from hashlib import blake2b

__all__ = ["MAX_TIMESTAMP_MS", "deterministic_ulid", "ulid_timestamp_ms"]

MAX_TIMESTAMP_MS = (1 << 48) - 1
_CROCKFORD = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RFC4648 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_TO_CROCKFORD = bytes.maketrans(_RFC4648, _CROCKFORD)
_DECODE = {c: i for i, c in enumerate(_CROCKFORD.decode())}


def deterministic_ulid(timestamp_ms: int, key: bytes) -> str:
    """The ULID with ``timestamp_ms`` (clamped to 0..2**48-1) and 80 bits hashed from ``key``."""
    if timestamp_ms < 0:
        timestamp_ms = 0
    elif timestamp_ms > MAX_TIMESTAMP_MS:
        timestamp_ms = MAX_TIMESTAMP_MS
    # 6 timestamp bytes + 10 hash bytes = the 128-bit value. Base32 of those 16 bytes
    # preceded by two zero bits is the ULID: shift left by 6 inside 17 bytes, then the first
    # 26 of the 28 base32 characters carry exactly the 2 zero bits and the 128 value bits.
    value = (timestamp_ms << 80) | int.from_bytes(blake2b(key, digest_size=10).digest(), "big")
    encoded = base64.b32encode((value << 6).to_bytes(17, "big"))
    return encoded[:26].translate(_TO_CROCKFORD).decode("ascii")


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
