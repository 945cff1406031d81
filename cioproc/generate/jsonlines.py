"""The JSON-lines format `cioproc generate` writes and `cioproc produce` reads.

One Kafka message per line, UTF-8, compact JSON::

    {"topic": "batches", "key": "-7636538281262557000", "value": {...one mParticle batch...}}
    {"topic": "audiences", "key": "12345", "value": {...one audience_membership_change_request...}}

``topic`` is a topic *role* from topics.yaml (``batches`` or ``audiences``), not a topic
name, so a file works with any topic names. ``key`` is the MPID as a string (an integer
is accepted and converted). ``value`` is the JSON object written to Kafka.

`produce` also reads lines without the envelope, so files captured from elsewhere work:

* an object with ``"type": "audience_membership_change_request"`` goes to ``audiences``,
  keyed by its first user profile's ``mpid``;
* any other object goes to ``batches``, keyed by its ``mpid`` (required).

Blank lines are ignored.
"""

from __future__ import annotations

from typing import Any

import orjson

from cioproc.errors import DataError
from cioproc.generate.model import INPUT_ROLES, Record

AUDIENCE_TYPE = "audience_membership_change_request"


class LineError(DataError):
    """A line that is not a message; the text says why (the caller adds the line number)."""


def encode_line(record: Record) -> bytes:
    """One record as a JSON line, newline included."""
    return orjson.dumps({"topic": record.topic_role, "key": record.key, "value": record.value}) + b"\n"


def decode_line(line: bytes | str) -> Record | None:
    """The record on a line, None for a blank line; LineError if it is not one."""
    if not line.strip():
        return None
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise LineError(f"not valid JSON ({exc.args[0]})") from None
    if not isinstance(doc, dict):
        raise LineError(f"expected a JSON object, got {_kind(doc)}")
    if "topic" in doc and "value" in doc:
        return _envelope(doc)
    if doc.get("type") == AUDIENCE_TYPE:
        return Record("audiences", _audience_key(doc), doc)
    if "mpid" not in doc:
        raise LineError("a batch without an envelope needs an 'mpid' to key it")
    return Record("batches", _key(doc["mpid"], "'mpid'"), doc)


def _envelope(doc: dict[str, Any]) -> Record:
    unknown = sorted(set(doc) - {"topic", "key", "value"})
    if unknown:
        raise LineError(f"unknown envelope field {unknown[0]!r} (expected topic, key, value)")
    role = doc["topic"]
    if role not in INPUT_ROLES:
        raise LineError(f"'topic' must be one of {', '.join(INPUT_ROLES)} (a role in topics.yaml), got {role!r}")
    value = doc["value"]
    if not isinstance(value, dict):
        raise LineError(f"'value' must be a JSON object, got {_kind(value)}")
    if "key" in doc and doc["key"] is not None:
        key = _key(doc["key"], "'key'")
    elif role == "audiences":
        key = _audience_key(value)
    elif "mpid" in value:
        key = _key(value["mpid"], "'value.mpid'")
    else:
        raise LineError("no 'key' and no 'value.mpid' to key the message by")
    return Record(role, key, value)


def _audience_key(message: dict[str, Any]) -> str:
    profiles = message.get("user_profiles")
    if not isinstance(profiles, list) or not profiles or not isinstance(profiles[0], dict) or "mpid" not in profiles[0]:
        raise LineError("an audience message needs user_profiles[0].mpid to key it")
    return _key(profiles[0]["mpid"], "'user_profiles[0].mpid'")


def _key(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise LineError(f"{what} must be a non-empty string or an integer, got {value!r}")
    return str(value)


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null"
    )
