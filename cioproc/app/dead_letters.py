"""Dead-letter records for input that cannot be decoded or mapped.

A dead letter keeps the input as it was: the original key and value bytes, so a fixed
worker (or ``cioproc replay``) can re-drive it unchanged. Why it was refused and where it
came from travel in headers (UTF-8 text values):

=========================== =========================================================
``cioproc.reason``          stable snake_case slug (e.g. ``not_json``, ``events_not_a_list``)
``cioproc.detail``          human-readable detail (at most 1000 bytes)
``cioproc.source.topic``    the input topic
``cioproc.source.partition`` its partition
``cioproc.source.offset``   its offset
``cioproc.value.truncated`` only on a cut value: the original value's size in bytes
=========================== =========================================================

A dead letter larger than its topic's ``max.message.bytes`` is cut to fit
(:func:`fit_dead_letter`): the headers stay (the detail may be shortened), the value keeps
its first bytes; the source offset leads to the whole input.
"""

from __future__ import annotations

from dataclasses import dataclass

from cioproc.names import DETAIL, REASON, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC, VALUE_TRUNCATED

MAX_DETAIL_BYTES = 1000

# Upper bounds of what Kafka's record batch format (v2) adds around one record.
KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588  # a topic's max.message.bytes by default
BATCH_OVERHEAD_BYTES = 61  # the batch header, base offset and length included
_RECORD_OVERHEAD_BYTES = 5 + 1 + 10 + 5 + 5 + 5 + 5  # length, attributes, deltas, key/value lengths, header count
_HEADER_OVERHEAD_BYTES = 5 + 5  # key and value lengths


def record_bytes(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None) -> int:
    """An upper bound of one record's size inside a record batch (uncompressed)."""
    size = _RECORD_OVERHEAD_BYTES + len(key or b"") + len(value or b"")
    for name, header_value in headers or ():
        size += _HEADER_OVERHEAD_BYTES + len(name.encode()) + len(header_value or b"")
    return size


def record_size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None) -> int:
    """An upper bound of the bytes Kafka counts against ``max.message.bytes`` for a batch of this one record."""
    return BATCH_OVERHEAD_BYTES + record_bytes(key, value, headers)


@dataclass(frozen=True, slots=True)
class DeadLetterInfo:
    """What the headers of a dead letter say."""

    reason: str
    detail: str
    topic: str
    partition: int
    offset: int


def utf8_prefix(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits in ``max_bytes`` (never half a character)."""
    return text.encode("utf-8", "replace")[:max_bytes].decode("utf-8", "ignore")


def dead_letter_headers(reason: str, detail: str, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Kafka headers for a dead letter."""
    return [
        (REASON, reason.encode()),
        (DETAIL, utf8_prefix(detail, MAX_DETAIL_BYTES).encode()),
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
    ]


def read_dead_letter_headers(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> DeadLetterInfo:
    """The inverse of :func:`dead_letter_headers`; raise ValueError when one is missing."""
    values = {key: value.decode("utf-8", "replace") for key, value in headers if value is not None}
    try:
        return DeadLetterInfo(
            reason=values[REASON],
            detail=values.get(DETAIL, ""),
            topic=values[SOURCE_TOPIC],
            partition=int(values[SOURCE_PARTITION]),
            offset=int(values[SOURCE_OFFSET]),
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"not a cioproc dead letter: {exc}") from None


def fit_dead_letter(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]], limit: int
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """The dead letter cut to ``limit`` bytes (see the module docstring); unchanged when it fits."""
    if record_size(key, value, headers) <= limit:
        return key, value, headers
    headers = [*headers, (VALUE_TRUNCATED, str(len(value or b"")).encode())]
    room = limit - record_size(key, b"", headers)
    if room < 0:  # a tiny limit: shorten the detail, then give up the key (the offset still says which)
        headers = [(name, b"") if name == DETAIL else (name, data) for name, data in headers]
        room = limit - record_size(key, b"", headers)
        if room < 0:
            key = None
            room = max(0, limit - record_size(None, b"", headers))
    return key, (value or b"")[:room], headers
