"""One partition's chunk of command records as the sender handles it.

:class:`PreparedChunk` is a chunk decoded for delivery: what to send, the record each
command came from (a :class:`CommandPart` for one command of a multi-command record), and
what is already bound for the dead-letter topic. A refused command's dead letter
(:data:`DeadLetter`) carries its record's origin and Customer.io's answer in headers
(:func:`dead_letter_headers`, names in :mod:`cioproc.names`), bounded to
``MAX_HEADER_BYTES`` where a response supplied them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from faust.types import Message

from cioproc.app.dead_letters import utf8_prefix
from cioproc.app.erasure_sender import Erasure
from cioproc.models.commands import INPUT_TIMESTAMP_HEADER, RECORD_FORMAT_HEADER, Command, record_format
from cioproc.names import ERROR, HTTP_STATUS, REASON, SOURCE_INDEX, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC

MAX_HEADER_BYTES = 256  # reason and error headers, and metric labels, taken from a response
class CommandPart(NamedTuple):
    """One command of a multi-command record, standing in for the record where the sender needs
    one per command: its dead letter (``value``: this command's bytes alone, a single command)
    and its input time (the record's headers)."""

    record: Message
    value: bytes
    position: int  # its index in the record (``index`` is a tuple method)

    @property
    def topic(self) -> str:
        return self.record.topic

    @property
    def partition(self) -> int:
        return self.record.partition

    @property
    def offset(self) -> int:
        return self.record.offset

    @property
    def key(self) -> bytes | None:
        return self.record.key

    @property
    def headers(self) -> Any:
        return self.record.headers


DeadLetter = tuple["Message | CommandPart", str, int | None, str | None]  # record, reason, HTTP status, error


def dead_letter_headers(message: Message | CommandPart, reason: str, status: int | None,
                        error: str | None) -> list[tuple[str, bytes]]:
    headers = [
        (REASON, utf8_prefix(reason, MAX_HEADER_BYTES).encode()),
        (SOURCE_TOPIC, message.topic.encode()),
        (SOURCE_PARTITION, str(message.partition).encode()),
        (SOURCE_OFFSET, str(message.offset).encode()),
    ]
    if type(message) is CommandPart:
        headers.append((SOURCE_INDEX, str(message.position).encode()))
    else:
        whole = record_format(message.headers)
        if whole is not None:  # a record dead-lettered whole: re-driven, it is read the same way
            headers.append((RECORD_FORMAT_HEADER, whole))
    if status is not None:
        headers.append((HTTP_STATUS, str(status).encode()))
    if error:
        headers.append((ERROR, utf8_prefix(error, MAX_HEADER_BYTES).encode()))
    return headers


def input_timestamp(message: Message | CommandPart) -> float | None:
    """When the command's input record was written (Unix seconds), from the processor's
    ``cioproc.input.ts`` header; None for a command without it (a re-driven dead letter)."""
    for key, value in cast(list[tuple[str, bytes]], message.headers or ()):  # aiokafka's: a list
        if key == INPUT_TIMESTAMP_HEADER:
            try:
                return int(value) / 1000
            except (TypeError, ValueError):
                return None
    return None


@dataclass
class PreparedChunk:
    """A partition's chunk, decoded: what to send (Commands for v1, v2 entries otherwise), the
    record of each, and the records already bound for the dead-letter topic."""

    records: list[Message]
    started: float
    kinds: list[str] = field(default_factory=list)
    sources: list[Message | CommandPart] = field(default_factory=list)
    mpids: list[str] = field(default_factory=list)
    entries: list[bytes] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    erasures: list[Erasure] = field(default_factory=list)  # erase commands and their steps' positions
    erase_sources: set[int] = field(default_factory=set)  # id() of the erase records
    results: list[tuple[bytes, bytes, str]] = field(default_factory=list)  # erasure results (key, value, status)
