"""The processor's functional core: a chunk of input records -> what to write, and the new states.

No Kafka and no Faust here. :func:`plan_chunk` reads the stored state of each user it meets
once (through ``load_state``), maps the chunk's records in order with the mapping core, and
returns a :class:`ChunkPlan`:

- ``commands``: one record per command, keyed by MPID, in the order the mapping made them
  (per user, that is input order);
- ``dead_letters``: inputs that could not be decoded or mapped, with the original bytes;
- ``forwards``: inputs whose key is not their MPID and whose MPID belongs to another
  partition, re-keyed so the worker owning that user's state maps them (an audience message
  naming several users is split per user);
- ``states``: the final encoded state of every user whose state changed, once per chunk,
  keyed by (partition, MPID): what goes to the table and its changelog; ``None`` (a
  tombstone) for a user erased by a data subject request and not seen again after it;
- ``results``: result records of data subject requests answered here (``not_supported``);
  erasures are answered by the sender once Customer.io accepted them;
- ``counts``: inputs, commands, drops and dead letters per reason.

An erasure request (topic ``erasures``, :mod:`cioproc.mapping.erasure`) becomes one
``erase`` command keyed by the MPID, ordered after the user's earlier commands in the same
partition of the commands topic; the commands this chunk planned for that user before it
are dropped (counted ``erased_before_sending``), and the user's state is forgotten, so a
later batch starts a new person. A chunk's erasures are planned after its batches and
audience changes (Kafka orders nothing across topics; this way an erasure covers every
batch of the fetch it arrives in).

A record without a usable key is not an error: the MPID in its value decides where it
belongs. Only the value decides whether it is dead-lettered. An exception while planning
one record (a bug) dead-letters that record as ``internal_error``; a mapping result is
taken whole (commands and state) or not at all, so state never claims unsent commands.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol

import orjson

from cioproc.app.dead_letters import dead_letter_headers
from cioproc.app.stats import Counts
from cioproc.mapping import (
    MapResult,
    Rejection,
    map_audience,
    map_batch,
    parse_audience_change,
    parse_batch,
)
from cioproc.mapping.erasure import NOT_SUPPORTED, erase_command, parse_subject_request, result_value
from cioproc.mapping.values import mpid_string
from cioproc.models.commands import encode_command
from cioproc.models.settings import MappingSettings
from cioproc.models.state import StateDecodeError, UserState, decode_state, encode_state

EMPTY_RECORD = "empty_record"  # dead-letter reason: a record without a value (a tombstone)
INTERNAL_ERROR = "internal_error"  # dead-letter reason: an exception while planning the record

StateLoader = Callable[[int, bytes], "bytes | None"]  # (partition, MPID key) -> stored state
Partitioner = Callable[[str, bytes], int]  # (topic, key) -> the partition the key belongs to


class StoreError(RuntimeError):
    """Reading a stored state failed (an I/O problem, not a problem of the record)."""


class InputRecord(Protocol):
    """What the planner needs of a consumed record (a Faust ConsumerMessage has it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None  # seconds
    headers: Any


@dataclass(frozen=True, slots=True)
class PlanTopics:
    """The topic names the planner reads and writes."""

    batches: str
    audiences: str
    commands: str
    dead_letters: str
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
    commands: list[Outgoing] = field(default_factory=list)
    dead_letters: list[Outgoing] = field(default_factory=list)
    forwards: list[Outgoing] = field(default_factory=list)
    states: dict[tuple[int, bytes], bytes | None] = field(default_factory=dict)  # None: tombstone
    results: list[Outgoing] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)


@dataclass(slots=True)
class _User:
    loaded: UserState | None  # as stored before this chunk
    state: UserState | None  # after the chunk's records so far
    erased: bool = False  # an erasure request forgot the user in this chunk


class _Planner:
    def __init__(
        self,
        topics: PlanTopics,
        settings: MappingSettings,
        load_state: StateLoader,
        partition_for: Partitioner,
        on_state_reset: Callable[[bytes, StateDecodeError], None] | None,
    ):
        self.topics = topics
        self.settings = settings
        self.load_state = load_state
        self.partition_for = partition_for
        self.on_state_reset = on_state_reset
        self.plan = ChunkPlan()
        self.users: dict[tuple[int, bytes], _User] = {}

    # ---- one record -------------------------------------------------------------------

    def batch(self, record: InputRecord) -> None:
        value = record.value
        if value is None:
            return self.dead_letter(record, EMPTY_RECORD, "the record has no value")
        parsed = parse_batch(value, _timestamp_ms(record))
        if type(parsed) is Rejection:
            return self.dead_letter(record, parsed.reason, parsed.detail)
        key = parsed.mpid.encode()
        if not self.belongs_here(record, key):
            self.forward(record, key, value)
            return
        user = self.user(record.partition, key)
        self.apply(user, map_batch(parsed, user.state, self.settings))
        counts = self.plan.counts
        counts.batches += 1
        counts.events += len(parsed.events)

    def audience(self, record: InputRecord) -> None:
        value = record.value
        if value is None:
            return self.dead_letter(record, EMPTY_RECORD, "the record has no value")
        parsed = parse_audience_change(value, _timestamp_ms(record))
        if type(parsed) is Rejection:
            return self.dead_letter(record, parsed.reason, parsed.detail)
        elsewhere: list[str] = []
        for profile in parsed:
            key = profile.mpid.encode()
            if not self.belongs_here(record, key):
                if profile.mpid not in elsewhere:
                    elsewhere.append(profile.mpid)
                continue
            user = self.user(record.partition, key)
            self.apply(user, map_audience(profile, user.state, self.settings))
            self.plan.counts.audience_profiles += 1
        for mpid in elsewhere:
            self.forward(record, mpid.encode(), _audience_message_for(value, mpid))

    def erasure(self, record: InputRecord, now_ms: int) -> None:
        value = record.value
        if value is None:
            return self.dead_letter(record, EMPTY_RECORD, "the record has no value")
        parsed = parse_subject_request(value, record.key)
        if type(parsed) is Rejection:
            return self.dead_letter(record, parsed.reason, parsed.detail)
        key = parsed.mpid.encode()
        if not self.belongs_here(record, key):
            self.forward(record, key, value)
            return
        counts = self.plan.counts
        if not parsed.is_erasure:
            result = result_value(parsed.request_id, parsed.request_type, NOT_SUPPORTED, now_ms,
                                  f"only erasure requests are supported, not {parsed.request_type!r}")
            self.plan.results.append(Outgoing(self.topics.erasure_results, key, result))
            counts.drops["subject_request_not_supported"] += 1
            return
        user = self.user(record.partition, key)
        command = erase_command(parsed, user.state, self.settings.erasure_action)
        commands = self.plan.commands
        kept = [outgoing for outgoing in commands if outgoing.key != key]
        if len(kept) != len(commands):  # planned before the erasure, never produced: drop them
            counts.drops["erased_before_sending"] += len(commands) - len(kept)
            commands[:] = kept
        commands.append(Outgoing(self.topics.commands, key, encode_command(command)))
        counts.commands[command.kind.value] += 1
        user.state = None
        user.erased = True

    # ---- helpers ----------------------------------------------------------------------

    def belongs_here(self, record: InputRecord, key: bytes) -> bool:
        """Keyed by its MPID (the normal case), or its MPID maps to this partition anyway."""
        return record.key == key or self.partition_for(record.topic, key) == record.partition

    def user(self, partition: int, key: bytes) -> _User:
        slot = (partition, key)
        user = self.users.get(slot)
        if user is None:
            try:
                raw = self.load_state(partition, key)
            except Exception as exc:
                raise StoreError(f"reading the state of MPID {key!r} failed: {exc}") from exc
            state = None
            if raw is not None:
                try:
                    state = decode_state(raw)
                except StateDecodeError as exc:
                    self.plan.counts.state_resets += 1
                    if self.on_state_reset is not None:
                        self.on_state_reset(key, exc)
            user = self.users[slot] = _User(state, state)
        return user

    def apply(self, user: _User, result: MapResult) -> None:
        """Take a mapping result: its commands and its state together, or (on an exception) neither."""
        topic = self.topics.commands
        encoded = [Outgoing(topic, command.mpid.encode(), encode_command(command)) for command in result.commands]
        self.plan.commands.extend(encoded)
        user.state = result.state
        counts = self.plan.counts
        for command in result.commands:
            counts.commands[command.kind.value] += 1
        for drop in result.drops:
            counts.drops[drop.reason] += 1

    def dead_letter(self, record: InputRecord, reason: str, detail: str) -> None:
        headers = dead_letter_headers(reason, detail, record.topic, record.partition, record.offset)
        self.plan.dead_letters.append(Outgoing(self.topics.dead_letters, record.key, record.value, headers))
        self.plan.counts.dead_letters[reason] += 1

    def forward(self, record: InputRecord, key: bytes, value: bytes) -> None:
        headers = list(record.headers) if record.headers else None
        partition = self.partition_for(record.topic, key)
        self.plan.forwards.append(Outgoing(record.topic, key, value, headers, partition))
        self.plan.counts.forwarded += 1

    def finish(self) -> ChunkPlan:
        states = self.plan.states
        for slot, user in self.users.items():
            if user.state is not None and user.state != user.loaded:
                states[slot] = encode_state(user.state)
            elif user.state is None and user.erased:
                states[slot] = None  # a tombstone: the changelog keeps nothing of the user
        return self.plan


def plan_chunk(
    records: Iterable[InputRecord],
    topics: PlanTopics,
    settings: MappingSettings,
    load_state: StateLoader,
    partition_for: Partitioner,
    on_state_reset: Callable[[bytes, StateDecodeError], None] | None = None,
    now_ms: int = 0,
) -> ChunkPlan:
    """Map a chunk of records from the batches, audiences and erasures topics (see the module
    docstring); ``now_ms`` is the time written on request results."""
    planner = _Planner(topics, settings, load_state, partition_for, on_state_reset)
    batches, audiences, erasures = topics.batches, topics.audiences, topics.erasures
    for record in _erasures_last(records, erasures):
        if record.topic == batches:
            step = planner.batch
        elif record.topic == audiences:
            step = planner.audience
        elif record.topic == erasures and erasures is not None:
            step = functools.partial(planner.erasure, now_ms=now_ms)
        else:
            raise ValueError(f"record from topic {record.topic!r}, which the processor does not read")
        try:
            step(record)
        except StoreError:
            raise  # the store failed, not this record: the chunk must not be acked
        except Exception as exc:  # a bug must not stop the stream: this record goes to the DLQ
            planner.dead_letter(record, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
    return planner.finish()


def _erasures_last(records: Iterable[InputRecord], erasures: str | None) -> Iterator[InputRecord]:
    """The chunk's records in order, its erasure requests after all the others (in their order)."""
    requests: list[InputRecord] = []
    for record in records:
        if erasures is not None and record.topic == erasures:
            requests.append(record)
        else:
            yield record
    yield from requests


def _timestamp_ms(record: InputRecord) -> int | None:
    timestamp = record.timestamp
    return int(timestamp * 1000) if timestamp and timestamp > 0 else None


def _audience_message_for(value: bytes, mpid: str) -> bytes:
    """The audience message with only the profiles of ``mpid`` (the value already parsed)."""
    message = orjson.loads(value)
    message["user_profiles"] = [
        profile for profile in message["user_profiles"] if mpid_string(profile.get("mpid")) == mpid
    ]
    return orjson.dumps(message)
