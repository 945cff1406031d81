"""Small, fast checks and conversions of single JSON values (no knowledge of batches)."""

from __future__ import annotations

import os
import re
from typing import Any, cast
from zlib import adler32, crc32

import orjson

from cioproc.mapping.results import Drop
from cioproc.models.ulid import MAX_TIMESTAMP_MS

__all__ = [
    "EARLIEST_TRUSTED_MS",
    "MAX_IDENTIFIER_BYTES",
    "clean_customer_id",
    "clean_email",
    "digest",
    "fit_utf8",
    "json_size",
    "latest_trusted_ms",
    "mpid_string",
    "timestamp_ms",
    "untrusted_time_ms",
    "utf8_len",
    "value_digest",
]

MAX_IDENTIFIER_BYTES = 150  # Customer.io: person id at most 150 bytes
_MPID = re.compile(r"-?[0-9]{1,20}")
_MIN_MPID = -(1 << 63)
_MAX_MPID = (1 << 64) - 1


def timestamp_ms(value: Any) -> int | None:
    """A millisecond timestamp usable as a ULID time (0..2**48-1), else None."""
    kind = type(value)
    if kind is int:
        return value if 0 <= value <= MAX_TIMESTAMP_MS else None
    if kind is float and 0.0 <= value <= MAX_TIMESTAMP_MS:  # false for NaN
        return int(value)
    return None


EARLIEST_TRUSTED_MS = 978_307_200_000  # 2001-01-01T00:00:00Z: an earlier time is a bug
MAX_AHEAD_MS = 86_400_000  # a time over a day after its Kafka record's is a wrong clock
_SECONDS_BELOW = 10**12  # a "millisecond" time below this (2001-09) may be in seconds


def latest_trusted_ms(received_ms: int | None) -> int:
    """The latest time trusted in an input whose Kafka record time is ``received_ms``."""
    if received_ms is None:
        return MAX_TIMESTAMP_MS
    return min(received_ms + MAX_AHEAD_MS, MAX_TIMESTAMP_MS)


def untrusted_time_ms(value: Any, latest: int) -> tuple[int | None, bool]:
    """A time outside the fast check ``EARLIEST_TRUSTED_MS <= value <= latest`` (an int).

    Returns (milliseconds, trusted): a float in range is that time, trusted; a number below
    10**12 that is a time in range once read as seconds is that time, not trusted (a guess);
    anything else is (None, False): the caller puts the record's time in its place.
    """
    kind = type(value)
    if kind is not int and kind is not float:
        return None, False
    if kind is float and EARLIEST_TRUSTED_MS <= value <= latest:  # false for NaN
        return int(value), True
    if 0 < value < _SECONDS_BELOW and EARLIEST_TRUSTED_MS <= value * 1000 <= latest:
        return int(value * 1000), False
    return None, False


def mpid_string(value: Any) -> str | None:
    """An MPID (signed or unsigned 64-bit integer, or its decimal string) as a decimal string."""
    if type(value) is int:
        number = value
    elif type(value) is str and _MPID.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        return None
    return str(number) if _MIN_MPID <= number <= _MAX_MPID else None


def utf8_len(text: str) -> int:
    """Length of ``text`` in UTF-8 bytes."""
    return len(text.encode("utf-8", "surrogatepass"))


def fit_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes without splitting a character."""
    if len(text) * 4 <= limit:
        return text
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore")


def json_size(value: Any) -> int:
    """Size of ``value`` as compact JSON, in bytes (values orjson cannot encode count as huge)."""
    try:
        return len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        return 1 << 30


def digest(value: Any) -> bytes:
    """A stable 8-byte digest of a JSON-like value: :func:`value_digest` as bytes.

    A checksum is enough (a cryptographic hash cost half of an unchanged batch's fixed
    mapping cost, for no gain): a collision only delays an identify until the inputs change
    again.
    """
    return value_digest(value).to_bytes(8, "little")


def value_digest(value: Any) -> int:
    """A cheap, stable 64-bit checksum of a value (CRC-32 and Adler-32 of its JSON).

    Used to notice that an attribute changed since it was last sent; a collision would only
    delay an update until the value changes again (odds about 2**-50 per change). A value
    orjson cannot encode (nested over 255 levels) gets its repr hashed, and one even repr
    cannot handle gets a random checksum: "changed", which is always safe here.
    """
    try:
        data = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        try:
            data = repr(value).encode("utf-8", "surrogatepass")
        except RecursionError:
            return int.from_bytes(os.urandom(8), "little")
    return crc32(data) | (adler32(data) << 32)


def _identifier(value: Any, what: str, drops: list[Drop]) -> str | None:
    if type(value) is str:
        value = value.strip()
        if len(value) * 4 <= MAX_IDENTIFIER_BYTES:  # the common case: fits, whatever it holds
            return value or None
    elif value is None:
        return None
    elif type(value) is int:
        value = str(value)
    elif type(value) is float and value.is_integer():  # 123456.0: a JSON writer's integer
        value = str(int(value))
    else:
        drops.append(Drop("invalid_identity", f"{what} is a {type(value).__name__}, not a string"))
        return None
    if not value.strip():
        return None
    if utf8_len(value) > MAX_IDENTIFIER_BYTES:
        drops.append(Drop("identifier_too_long", f"{what} is longer than 150 bytes"))
        return None
    return cast(str, value)  # a str by now (type() checks do not narrow Any)


def clean_customer_id(value: Any, drops: list[Drop]) -> str | None:
    """A customer id usable as Customer.io ``id`` (trimmed; integer-valued numbers become
    their decimal string), else None."""
    return _identifier(value, "customer id", drops)


# One @; a non-empty local part; a domain of dot-separated non-empty labels (at least two);
# no whitespace (any Unicode whitespace: ``\s`` is str.isspace's), commas or angle brackets.
_EMAIL = re.compile(r"[^\s@,<>]+@[^\s@,<>.]+(?:\.[^\s@,<>.]+)+")


def clean_email(value: Any, drops: list[Drop]) -> str | None:
    """An email usable as Customer.io ``email`` (trimmed, a leading ``mailto:`` removed,
    shaped like an address: see ``_EMAIL``), else None."""
    if type(value) is str:
        value = value.strip()
        if value[:7].lower() == "mailto:":
            value = value[7:].lstrip()
        if value and _EMAIL.fullmatch(value) is None:
            drops.append(Drop("invalid_identity", "email is not an email address"))
            return None
    elif type(value) is int or type(value) is float:
        drops.append(Drop("invalid_identity", "email is a number"))
        return None
    return _identifier(value, "email", drops)
