"""What the chunk planner (:mod:`cioproc.app.plan`) reads and writes.

A consumed record (:class:`InputRecord`) goes in; a :class:`ChunkPlan` of records to
produce (:class:`Outgoing`) and users' states comes out. Also the topics the planner uses,
why it dead-letters a record, and the two ways planning one record can fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cioproc.app.stats import Counts

EMPTY_RECORD = "empty_record"  # dead-letter reason: a record without a value (a tombstone)
INTERNAL_ERROR = "internal_error"  # dead-letter reason: an exception while planning the record
RECORD_TOO_LARGE = "record_too_large"  # dead-letter reason: a command or forward over its topic's limit
STATE_TOO_LARGE = "state_too_large"  # dead-letter reason: the user's new state would be over its limit

StateLoader = Callable[[int, bytes], "bytes | None"]  # (partition, MPID key) -> stored state
Partitioner = Callable[[str, bytes], int]  # (topic, key) -> the partition the key belongs to


class StoreError(RuntimeError):
    """Reading a stored state failed (an I/O problem, not a problem of the record)."""


class Refused(Exception):
    """What a record would produce cannot be written: dead-letter the record with ``reason``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class InputRecord(Protocol):
    """What the planner needs of a consumed record (a Faust ConsumerMessage has it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any

    @property
    def timestamp(self) -> float | None:  # seconds (read-only here, so Faust's float-typed field fits)
        ...


def timestamp_ms(record: InputRecord) -> int | None:
    """The record's timestamp in milliseconds; None when it has none."""
    timestamp = record.timestamp
    return int(timestamp * 1000) if timestamp and timestamp > 0 else None


@dataclass(frozen=True, slots=True)
class PlanTopics:
    """The topic names the planner reads and writes."""

    batches: str
    audiences: str
    commands: str
    dead_letters: str
    changelog: str = ""  # the users table's changelog (here only for its record limit)
    erasures: str | None = None  # data subject requests (None: not read)
    erasure_results: str | None = None


@dataclass(slots=True)
class Outgoing:
    """One record to produce; without a partition, the producer's key partitioner picks it."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    partition: int | None = None


@dataclass(slots=True)
class ChunkPlan:
    """What a chunk of input records comes to (see :mod:`cioproc.app.plan`)."""

    commands: list[Outgoing] = field(default_factory=list)
    dead_letters: list[Outgoing] = field(default_factory=list)
    forwards: list[Outgoing] = field(default_factory=list)
    states: dict[tuple[int, bytes], bytes | None] = field(default_factory=dict)  # None: tombstone
    results: list[Outgoing] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)
