"""Dead-letter records for input that cannot be decoded or mapped.

A dead letter keeps the input as it was: the original key and value bytes, so a fixed
worker (or ``cioproc replay``) can re-drive it unchanged. Why it was refused and where it
came from travel in headers (UTF-8 text values):

=========================== =========================================================
``cioproc.reason``          stable snake_case slug (e.g. ``not_json``, ``no_events``)
``cioproc.detail``          human-readable detail (at most 1000 bytes)
``cioproc.source.topic``    the input topic
``cioproc.source.partition`` its partition
``cioproc.source.offset``   its offset
=========================== =========================================================
"""

from __future__ import annotations

from dataclasses import dataclass

REASON = "cioproc.reason"
DETAIL = "cioproc.detail"
SOURCE_TOPIC = "cioproc.source.topic"
SOURCE_PARTITION = "cioproc.source.partition"
SOURCE_OFFSET = "cioproc.source.offset"
MAX_DETAIL_BYTES = 1000


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


def read_dead_letter_headers(headers: list[tuple[str, bytes]] | tuple) -> DeadLetterInfo:
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
