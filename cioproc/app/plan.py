"""The processor's functional core: a chunk of input records -> what to write, and the new states.

No Kafka and no Faust here. :func:`plan_chunk` reads the stored state of each user it meets
once (through ``load_state``), maps the chunk's records in order with the mapping core, and
returns a :class:`ChunkPlan`:

- ``commands``: per input and user, one record holding that user's commands in the order the
  mapping made them (``commands/1``, see :mod:`cioproc.models.commands`; several records in
  order when one would not fit), keyed by MPID (per user, that is input order);
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
one record, in the mapping core or here (a bug), dead-letters that record as
``internal_error``. An input's results are taken whole (the commands, states and forwards
of all its profiles) or not at all, so state never claims unsent commands.

Every record planned fits its topic's ``max.message.bytes`` (``max_record_bytes``, read
from the cluster by the worker; Kafka's default when unknown), so the broker never refuses
one and the worker never crash-loops on one: a user's commands that would not fit one record
are split over several; an input with one command or a forward that alone would not fit is
dead-lettered as ``record_too_large``; one that would leave its user's state over
:data:`~cioproc.models.state.MAX_STATE_BYTES` (or over the changelog's limit) as
``state_too_large``, the state staying as it was; a dead letter that would not fit is cut
(:func:`~cioproc.app.dead_letters.fit_dead_letter`). A stored state over the limit (written
before the state was capped) is mapped afresh, as an unreadable one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import orjson

from cioproc.app.dead_letters import (
    KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
    dead_letter_headers,
    fit_dead_letter,
    record_size,
)
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
from cioproc.models.commands import (
    COMMAND_LIST_FORMAT,
    INPUT_TIMESTAMP_HEADER,
    RECORD_FORMAT_HEADER,
    Command,
    CommandKind,
    encode_command,
    encode_commands,
    join_commands,
    record_format,
    split_record,
)
from cioproc.models.settings import MappingSettings
from cioproc.models.state import MAX_STATE_BYTES, StateDecodeError, UserState, decode_state, encode_state

__all__ = ["ChunkPlan", "InputRecord", "Outgoing", "PlanTopics", "StoreError", "plan_chunk", "record_size"]

class _Keyed(Protocol):
    """A parsed one-user record: a batch or a subject request."""

    @property
    def mpid(self) -> str: ...


_Parsed = TypeVar("_Parsed", bound=_Keyed)

EMPTY_RECORD = "empty_record"  # dead-letter reason: a record without a value (a tombstone)
INTERNAL_ERROR = "internal_error"  # dead-letter reason: an exception while planning the record
RECORD_TOO_LARGE = "record_too_large"  # dead-letter reason: a command or forward over its topic's limit
STATE_TOO_LARGE = "state_too_large"  # dead-letter reason: the user's new state would be over its limit

_LIST_FORMAT = (RECORD_FORMAT_HEADER, COMMAND_LIST_FORMAT)
_KIND_NAMES = {kind: kind.value for kind in CommandKind}  # a dict lookup: 5x faster than Enum.value
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
    encoded: bytes | None = None  # ``state`` encoded, set when a record changes it
    erased: bool = False  # an erasure request forgot the user in this chunk


class _Planner:
    def __init__(
        self,
        topics: PlanTopics,
        settings: MappingSettings,
        load_state: StateLoader,
        partition_for: Partitioner,
        on_state_reset: Callable[[bytes, StateDecodeError], None] | None,
        max_record_bytes: Mapping[str, int] | None,
    ):
        self.topics = topics
        self.settings = settings
        self.load_state = load_state
        self.partition_for = partition_for
        self.on_state_reset = on_state_reset
        limits = max_record_bytes or {}
        self.limits = limits
        self.commands_limit = limits.get(topics.commands, KAFKA_DEFAULT_MAX_MESSAGE_BYTES)
        self.changelog_limit = limits.get(topics.changelog, KAFKA_DEFAULT_MAX_MESSAGE_BYTES)
        self.plan = ChunkPlan()
        self.users: dict[tuple[int, bytes], _User] = {}

    # ---- one record -------------------------------------------------------------------

    def keyed(
        self, record: InputRecord, parse: Callable[[bytes], _Parsed | Rejection]
    ) -> tuple[_Parsed, bytes] | None:
        """A one-user record parsed and keyed by its MPID when this worker maps it; None when
        it was dead-lettered (no value, rejected) or forwarded to its MPID's partition."""
        value = record.value
        if value is None:
            self.dead_letter(record, EMPTY_RECORD, "the record has no value")
            return None
        parsed = parse(value)
        if isinstance(parsed, Rejection):
            self.dead_letter(record, parsed.reason, parsed.detail)
            return None
        key = parsed.mpid.encode()
        if not self.belongs_here(record, key):
            self.forward(record, [self.forwarded(record, key, value)])
            return None
        return parsed, key

    def batch(self, record: InputRecord) -> None:
        taken = self.keyed(record, functools.partial(parse_batch, default_timestamp_ms=_timestamp_ms(record)))
        if taken is None:
            return
        parsed, key = taken
        user = self.user(record.partition, key)
        result = map_batch(parsed, user.state, self.settings)
        self.apply([(user, key, result)], record)
        counts = self.plan.counts
        counts.batches += 1
        counts.events += len(parsed.events)

    def audience(self, record: InputRecord) -> None:
        """Map the profiles of this partition's users, forward the others: all of it, or none."""
        value = record.value
        if value is None:
            return self.dead_letter(record, EMPTY_RECORD, "the record has no value")
        parsed = parse_audience_change(value, _timestamp_ms(record))
        if type(parsed) is Rejection:
            return self.dead_letter(record, parsed.reason, parsed.detail)
        elsewhere: dict[str, None] = {}  # MPIDs of other partitions, in order of appearance
        results: list[tuple[_User, bytes, MapResult]] = []
        staged: dict[int, UserState | None] = {}  # id(user) -> its state after this message so far
        for profile in parsed:
            key = profile.mpid.encode()
            if not self.belongs_here(record, key):
                elsewhere[profile.mpid] = None
                continue
            user = self.user(record.partition, key)
            state = staged.get(id(user), user.state)
            result = map_audience(profile, state, self.settings)
            staged[id(user)] = result.state
            results.append((user, key, result))
        forwards = []
        if elsewhere:
            for mpid, message in _audience_messages(value, elsewhere).items():
                forwards.append(self.forwarded(record, mpid.encode(), message))
        self.apply(results, record)
        self.forward(record, forwards)
        self.plan.counts.audience_profiles += len(results)

    def erasure(self, record: InputRecord, now_ms: int) -> None:
        taken = self.keyed(record, functools.partial(parse_subject_request, key=record.key))
        if taken is None:
            return
        parsed, key = taken
        counts = self.plan.counts
        if not parsed.is_erasure:
            result = result_value(parsed.request_id, parsed.request_type, NOT_SUPPORTED, now_ms,
                                  f"only erasure requests are supported, not {parsed.request_type!r}")
            assert self.topics.erasure_results is not None  # read only with its results topic
            self.plan.results.append(Outgoing(self.topics.erasure_results, key, result))
            counts.drops["subject_request_not_supported"] += 1
            return
        user = self.user(record.partition, key)
        command = erase_command(parsed, user.state, self.settings.erasure_action)
        commands = self.plan.commands
        kept = [outgoing for outgoing in commands if outgoing.key != key]
        if len(kept) != len(commands):  # planned before the erasure, never produced: drop them
            counts.drops["erased_before_sending"] += sum(  # commands, not records (a record holds several)
                len(split_record(o.value, record_format(o.headers))) for o in commands if o.key == key
            )
            commands[:] = kept
        commands.append(Outgoing(self.topics.commands, key, encode_command(command)))
        counts.commands[command.kind.value] += 1
        user.state = user.encoded = None
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
                    if len(raw) > MAX_STATE_BYTES:
                        raise StateDecodeError(f"{len(raw)} bytes, over the {MAX_STATE_BYTES}-byte limit")
                    state = decode_state(raw)
                except StateDecodeError as exc:
                    self.plan.counts.state_resets += 1
                    if self.on_state_reset is not None:
                        self.on_state_reset(key, exc)
            user = self.users[slot] = _User(state, state)
        return user

    def apply(self, results: list[tuple[_User, bytes, MapResult]], record: InputRecord) -> None:
        """Take one input's mapping results, or raise Refused (taking nothing) when one does not fit.

        Each command record carries the input record's timestamp in the ``cioproc.input.ts``
        header, so the sender can measure the end-to-end latency (input written -> Customer.io
        accepted). A header, not the record's own timestamp: commands made from replayed input
        would otherwise look days old to the commands topic's time-based retention."""
        stamp = _timestamp_ms(record)
        headers = [(INPUT_TIMESTAMP_HEADER, b"%d" % stamp), _LIST_FORMAT] if stamp is not None else [_LIST_FORMAT]
        by_user: dict[bytes, list[Command]] = {}  # one record per user (a batch has one), commands in order
        for _, key, result in results:
            if result.commands:
                commands = by_user.get(key)
                if commands is None:
                    by_user[key] = list(result.commands)
                else:
                    commands.extend(result.commands)
        encoded: list[Outgoing] = []
        for key, commands in by_user.items():
            self.command_records(key, commands, headers, encoded)
        final: dict[int, tuple[_User, bytes, UserState]] = {}
        for user, key, result in results:
            final[id(user)] = (user, key, result.state)
        states: list[tuple[_User, UserState, bytes]] = []
        for user, key, state in final.values():
            value = encode_state(state)
            if len(value) > MAX_STATE_BYTES or record_size(key, value, None) > self.changelog_limit:
                raise Refused(STATE_TOO_LARGE, f"the user's state would be {len(value)} bytes, over the limit "
                                               f"({min(MAX_STATE_BYTES, self.changelog_limit)})")
            states.append((user, state, value))
        self.plan.commands.extend(encoded)
        for user, state, value in states:
            user.state, user.encoded = state, value
        counts = self.plan.counts
        by_kind = counts.commands
        for _, _, result in results:
            for command in result.commands:
                by_kind[_KIND_NAMES[command.kind]] += 1
            for drop in result.drops:
                counts.drops[drop.reason] += 1

    def command_records(self, key: bytes, commands: list[Command], headers: list[tuple[str, bytes]],
                        out: list[Outgoing]) -> None:
        """One user's commands as ``commands/1`` records appended to ``out``: one record, or when
        that would not fit the topic's ``max.message.bytes`` as many as it takes, in order;
        Refused when one command alone would not fit."""
        topic, limit = self.topics.commands, self.commands_limit
        value = encode_commands(commands)
        if len(value) + 200 <= limit or record_size(key, value, headers) <= limit:
            out.append(Outgoing(topic, key, value, headers))
            return
        room = limit - record_size(key, b"", headers) - 5  # 5: the largest msgpack array header
        run: list[bytes] = []
        size = 0
        for command in commands:
            part = encode_command(command)
            if len(part) > room:
                raise Refused(RECORD_TOO_LARGE, f"a {command.kind.value} command of {len(part)} bytes, "
                                                f"over {topic}'s max.message.bytes ({limit})")
            if run and size + len(part) > room:
                out.append(Outgoing(topic, key, join_commands(run), headers))
                run, size = [], 0
            run.append(part)
            size += len(part)
        out.append(Outgoing(topic, key, join_commands(run), headers))

    def dead_letter(self, record: InputRecord, reason: str, detail: str) -> None:
        headers = dead_letter_headers(reason, detail, record.topic, record.partition, record.offset)
        topic = self.topics.dead_letters
        limit = self.limits.get(topic, KAFKA_DEFAULT_MAX_MESSAGE_BYTES)
        key, value, headers = fit_dead_letter(record.key, record.value, headers, limit)
        self.plan.dead_letters.append(Outgoing(topic, key, value, headers))
        self.plan.counts.dead_letters[reason] += 1

    def forwarded(self, record: InputRecord, key: bytes, value: bytes) -> Outgoing:
        """The record re-keyed to ``key``, for the partition of that key; Refused when too large."""
        headers = list(record.headers) if record.headers else None
        limit = self.limits.get(record.topic, KAFKA_DEFAULT_MAX_MESSAGE_BYTES)
        if record_size(key, value, headers) > limit:
            raise Refused(RECORD_TOO_LARGE, f"a forward of {len(value)} bytes, over {record.topic}'s "
                                            f"max.message.bytes ({limit})")
        return Outgoing(record.topic, key, value, headers, self.partition_for(record.topic, key))

    def forward(self, record: InputRecord, forwards: list[Outgoing]) -> None:
        self.plan.forwards.extend(forwards)
        self.plan.counts.forwarded += len(forwards)

    def finish(self) -> ChunkPlan:
        states = self.plan.states
        for slot, user in self.users.items():
            if user.state is not None and user.state != user.loaded:
                states[slot] = user.encoded if user.encoded is not None else encode_state(user.state)
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
    max_record_bytes: Mapping[str, int] | None = None,
    now_ms: int = 0,
) -> ChunkPlan:
    """Map a chunk of records from the batches, audiences and erasures topics (see the module
    docstring).

    ``max_record_bytes``: each written topic's ``max.message.bytes`` (by topic name);
    ``now_ms``: the time written on request results.
    """
    planner = _Planner(topics, settings, load_state, partition_for, on_state_reset, max_record_bytes)
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
        except Refused as refused:
            planner.dead_letter(record, refused.reason, refused.detail)
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


def _audience_messages(value: bytes, mpids: Iterable[str]) -> dict[str, bytes]:
    """The audience message once per MPID in ``mpids``, each with only that user's profiles.

    One parse and one pass over the profiles, whatever the number of users (the value was
    validated by ``parse_audience_change`` already).
    """
    message = orjson.loads(value)
    groups: dict[str, list[Any]] = {mpid: [] for mpid in mpids}
    for profile in message["user_profiles"]:
        group = groups.get(mpid_string(profile.get("mpid")))  # type: ignore[arg-type]
        if group is not None:
            group.append(profile)
    split = {}
    for mpid, profiles in groups.items():
        message["user_profiles"] = profiles
        split[mpid] = orjson.dumps(message)
    return split
