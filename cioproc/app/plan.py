"""The processor's functional core: a chunk of input records -> what to write, and the new states.

No Kafka and no Faust here. :func:`plan_chunk` reads the stored state of each user it meets
once (through ``load_state``), maps the chunk's records in order with the mapping core, and
returns a :class:`~cioproc.app.plan_records.ChunkPlan`:

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

This module routes each record by its topic and maps it; taking the results into the plan
and fitting records to their topics is :mod:`cioproc.app.plan_builder`'s part, and the
records in and out are :mod:`cioproc.app.plan_records`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol, TypeVar

from cioproc.app.plan_builder import ChunkUser, PlanBuilder, audience_messages
from cioproc.app.plan_records import (
    EMPTY_RECORD,
    INTERNAL_ERROR,
    ChunkPlan,
    InputRecord,
    Outgoing,
    Partitioner,
    PlanTopics,
    Refused,
    StateLoader,
    StoreError,
    timestamp_ms,
)
from cioproc.mapping import (
    MapResult,
    Rejection,
    map_audience,
    map_batch,
    parse_audience_change,
    parse_batch,
)
from cioproc.mapping.erasure import NOT_SUPPORTED, erase_command, parse_subject_request, result_value
from cioproc.models.commands import encode_command, record_format, split_record
from cioproc.models.settings import MappingSettings
from cioproc.models.state import StateDecodeError, UserState

__all__ = ["plan_chunk"]


class _Keyed(Protocol):
    """A parsed one-user record: a batch or a subject request."""

    @property
    def mpid(self) -> str: ...


_Parsed = TypeVar("_Parsed", bound=_Keyed)


class _Planner(PlanBuilder):
    """Plans each record by its topic onto the plan being built (see the module docstring)."""

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
        taken = self.keyed(record, functools.partial(parse_batch, default_timestamp_ms=timestamp_ms(record)))
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
        parsed = parse_audience_change(value, timestamp_ms(record))
        if type(parsed) is Rejection:
            return self.dead_letter(record, parsed.reason, parsed.detail)
        elsewhere: dict[str, None] = {}  # MPIDs of other partitions, in order of appearance
        results: list[tuple[ChunkUser, bytes, MapResult]] = []
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
            for mpid, message in audience_messages(value, elsewhere).items():
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

    def belongs_here(self, record: InputRecord, key: bytes) -> bool:
        """Keyed by its MPID (the normal case), or its MPID maps to this partition anyway."""
        return record.key == key or self.partition_for(record.topic, key) == record.partition


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

