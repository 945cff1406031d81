"""Deterministic ULIDs: the same input always yields the same 26-character id.

A ULID is 128 bits written in Crockford base32: a 48-bit millisecond timestamp (10
characters) followed by 80 "random" bits (16 characters). Here each of those 16 characters
is the low 5 bits of one byte of a 16-byte BLAKE2s hash of a caller-given key, so an event
replayed from Kafka gets the id it got the first time, and Customer.io (which ignores an
event whose id it has already received) records it once.

The time part is written as five pairs of characters (10 bits each); the first three pairs
change only every 2**20 ms (~17 minutes), so the last of them is remembered (one entry:
events close in time, as those of one batch, share it). The mapping's event loop writes
ids from the same parts (``ULID_PAIRS``, ``new_ulid_hash``, ``ULID_HASH_CHARS``) without a
call per event; tests check both against a bit-by-bit reference and pinned ids.
"""

from __future__ import annotations

from hashlib import blake2s

__all__ = [
    "MAX_TIMESTAMP_MS",
    "ULID_HASH_CHARS",
    "ULID_PAIRS",
    "deterministic_ulid",
    "new_source_hash",
    "new_ulid_hash",
    "ulid_timestamp_ms",
]

MAX_TIMESTAMP_MS = (1 << 48) - 1
_CROCKFORD = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = ULID_PAIRS = tuple(a + b for a in _CROCKFORD.decode() for b in _CROCKFORD.decode())
"""The two characters of each 10-bit value."""
_LOW_FIVE_BITS = ULID_HASH_CHARS = bytes(_CROCKFORD[byte & 31] for byte in range(256))
"""``bytes.translate`` table: a hash byte -> the character of its low 5 bits."""
_DECODE = {c: i for i, c in enumerate(_CROCKFORD.decode())}
_NEW_HASH = new_ulid_hash = blake2s(digest_size=16).copy
"""A new BLAKE2s-128 (copying a set-up hash is cheaper than making one)."""
new_source_hash = blake2s(b"s", digest_size=16).copy
"""A new BLAKE2s-128 already fed ``b"s"``, the mapping's prefix of a source_message_id key:
hashing is streaming, so feeding it the id gives the digest of ``b"s" + id``."""
_last_prefix: tuple[int, str] = (-1, "")  # (timestamp >> 20, its first 6 characters)


def deterministic_ulid(timestamp_ms: int, key: bytes) -> str:
    """The ULID with ``timestamp_ms`` (clamped to 0..2**48-1) and 80 bits hashed from ``key``."""
    global _last_prefix
    t = timestamp_ms
    if t < 0:
        t = 0
    elif t > MAX_TIMESTAMP_MS:
        t = MAX_TIMESTAMP_MS
    p = _PAIRS
    high, prefix = _last_prefix
    if t >> 20 != high:
        prefix = p[t >> 40] + p[(t >> 30) & 1023] + p[(t >> 20) & 1023]
        _last_prefix = (t >> 20, prefix)
    hashed = _NEW_HASH()
    hashed.update(key)
    return prefix + p[(t >> 10) & 1023] + p[t & 1023] + (
        hashed.digest().translate(_LOW_FIVE_BITS).decode()
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
