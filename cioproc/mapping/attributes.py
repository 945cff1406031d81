"""mParticle user attributes and event attributes, fitted to Customer.io's limits.

Customer.io limits (Track API): attribute names at most 150 bytes, values at most 1000 bytes,
300 attributes per person and per identify call; a v2 entry (one identify or one event) at
most 32 KB; v1 event data at most 100,000 bytes. What does not fit is cut or left out here,
with a recorded :class:`Drop`.
"""

from __future__ import annotations

from typing import Any

import orjson

from cioproc.mapping.results import Drop
from cioproc.mapping.values import fit_utf8, json_size, utf8_len

__all__ = [
    "CIO_RESERVED",
    "ENTRY_BUDGET",
    "MAX_ATTRIBUTES",
    "MAX_NAME_BYTES",
    "MAX_VALUE_BYTES",
    "RESERVED_MPARTICLE",
    "V1_EVENT_DATA_BUDGET",
    "attribute_name",
    "chunk_attributes",
    "event_attributes",
    "user_attributes",
]

MAX_NAME_BYTES = 150
MAX_VALUE_BYTES = 1000
MAX_ATTRIBUTES = 300
ENTRY_BUDGET = 30_000  # bytes of attribute JSON per command: a v2 entry is at most 32 KB
V1_EVENT_DATA_BUDGET = 100_000  # bytes of event data JSON of a v1 event (Customer.io's limit)

# mParticle's reserved user attributes, matched case-insensitively, and their Customer.io names.
RESERVED_MPARTICLE = {
    "$firstname": "first_name",
    "$lastname": "last_name",
    "$age": "age",
    "$gender": "gender",
    "$mobile": "mobile",
    "$address": "address",
    "$city": "city",
    "$state": "state",
    "$zip": "zip",
    "$country": "country",
}
_ALWAYS = frozenset({"$firstname", "$lastname"})

# Person attributes with a meaning of their own in Customer.io (identifiers, subscription,
# update control) or owned by this mapping: a user attribute never sets them.
CIO_RESERVED = frozenset(
    {
        "id",
        "cio_id",
        "email",
        "anonymous_id",
        "created_at",
        "unsubscribed",
        "_update",
        "_timestamp",
        "cio_relationships",
        "SegmentMembership",
    }
)

_SCALARS = (str, int, float, bool)


def attribute_name(key: str) -> str:
    """The Customer.io name of an mParticle user attribute key."""
    if key[:1] == "$":
        return RESERVED_MPARTICLE.get(key.lower(), key)
    return key


def _name_problem(name: str) -> Drop | None:
    if not name:
        return Drop("empty_attribute_name", "a user attribute has an empty name")
    if len(name) * 4 > MAX_NAME_BYTES and utf8_len(name) > MAX_NAME_BYTES:
        return Drop("attribute_name_too_long", f"{name[:40]!r}... is longer than 150 bytes")
    if name in CIO_RESERVED:
        return Drop("reserved_attribute_name", f"{name!r} is reserved in Customer.io")
    return None


_KEYS: dict[str, tuple[str, bool, bool, Drop | None]] = {}
"""User attribute key -> (Customer.io name, always forwarded, plain (no $), name problem)."""
_MAX_KEYS = 4096  # an app has a few hundred attribute keys; past this, no more caching
_MAX_CACHED_KEY = 64  # characters of a key worth caching


def _key(key: str) -> tuple[str, bool, bool, Drop | None]:
    """What a user attribute key means here; remembered for the keys an app uses."""
    if key[:1] == "$":
        lowered = key.lower()
        name, always, plain = RESERVED_MPARTICLE.get(lowered, key), lowered in _ALWAYS, False
    else:
        name, always, plain = key, False, True
    found = (name, always, plain, _name_problem(name))
    if len(_KEYS) < _MAX_KEYS and len(key) <= _MAX_CACHED_KEY:
        _KEYS[key] = found
    return found


def user_attributes(
    raw: dict[str, Any], include_all: bool, out: dict[str, Any], drops: list[Drop]
) -> set[str] | None:
    """Add the user attributes to forward to ``out``; return the names whose value was cut.

    ``$FirstName``/``$LastName`` always; the rest only when ``include_all``. Values: strings
    (cut to 1000 bytes), numbers, booleans and lists of those (kept as lists, left out when
    over 1000 bytes). Null values (mParticle user tags) and objects are left out.
    """
    truncated: set[str] | None = None
    keys = _KEYS
    for key, value in raw.items():
        found = keys.get(key)
        if found is None:
            found = _key(key)
        name, always, plain, problem = found
        if not include_all and not always:
            continue
        if plain and name in out:  # a reserved key ($City) already claimed this name
            continue
        kind = type(value)
        if kind is str:
            if len(value) * 4 > MAX_VALUE_BYTES:
                fitted = fit_utf8(value, MAX_VALUE_BYTES)
                if fitted is not value:
                    value = fitted
                    truncated = truncated or set()
                    truncated.add(name)
        elif kind is list:
            if not all(type(item) in _SCALARS for item in value):
                drops.append(Drop("unsupported_attribute_value", f"{name!r} is not a flat list"))
                continue
            if json_size(value) > MAX_VALUE_BYTES:
                drops.append(Drop("attribute_value_too_long", f"{name!r} is over 1000 bytes"))
                continue
        elif value is None:
            drops.append(Drop("null_attribute_value", f"{name!r} has no value"))
            continue
        elif kind is not int and kind is not float and kind is not bool:
            drops.append(Drop("unsupported_attribute_value", f"{name!r} is an object"))
            continue
        if problem is not None:
            drops.append(problem)
            continue
        out[name] = value
    return truncated


def _encodable_size(value: Any) -> int | None:
    """JSON size of ``value``, or None when it cannot be encoded in a Track API body.

    The body puts event data three levels deep (``{"batch": [{"attributes": ...}]}``);
    encoding it four lists deep checks that orjson's nesting limit still leaves room.
    """
    try:
        return len(orjson.dumps([[[[value]]]])) - 8
    except (TypeError, orjson.JSONEncodeError):
        return None


def event_attributes(
    raw: dict[str, Any], drops: list[Drop], budget: int = ENTRY_BUDGET
) -> dict[str, Any]:
    """Event data as received when it fits ``budget`` bytes (one Customer.io v2 entry, or a
    v1 event's data), else a trimmed copy.

    The fast path returns ``raw`` itself (no copy). Values nested too deep to be encoded in
    a request body are left out; when the data is over the entry budget the largest values
    are left out.
    """
    size = _encodable_size(raw)
    if size is not None and size <= budget:
        return raw
    kept: dict[str, Any] = {}
    sizes = []
    for key, value in raw.items():
        value_size = _encodable_size(value)
        if value_size is None:
            drops.append(Drop("unsupported_attribute_value", f"{key[:40]!r} is nested too deep"))
            continue
        kept[key] = value
        sizes.append((value_size + utf8_len(key) + 4, key))
    total = json_size(kept)
    for value_size, key in sorted(sizes, reverse=True):
        if total <= budget:
            break
        del kept[key]
        total -= value_size
        drops.append(Drop("event_data_too_large", f"left out {key[:40]!r} ({value_size} bytes)"))
    return kept


def chunk_attributes(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    """Split identify attributes into parts of at most 300 names and ~30 KB each."""
    if len(attributes) <= MAX_ATTRIBUTES and json_size(attributes) <= ENTRY_BUDGET:
        return [attributes]
    chunks: list[dict[str, Any]] = [{}]
    size = 2
    for key, value in attributes.items():
        item = json_size(value) + utf8_len(key) + 4
        if len(chunks[-1]) >= MAX_ATTRIBUTES or (chunks[-1] and size + item > ENTRY_BUDGET):
            chunks.append({})
            size = 2
        chunks[-1][key] = value
        size += item
    return chunks
