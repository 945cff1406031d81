"""A chunk's plan as it is built: users' states and records that fit their topics.

:class:`PlanBuilder` holds what :func:`cioproc.app.plan.plan_chunk` has planned so far: each
user's state as loaded (once per chunk) and as the chunk's records left it, and the records
to write. It takes one input's mapping results whole or not at all (:meth:`PlanBuilder.apply`
raises :class:`~cioproc.app.plan_records.Refused`, taking nothing, when a record or state
would not fit its limit), splits a user's commands over several ``commands/1`` records when
one would not fit, cuts dead letters to fit, and re-keys forwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from cioproc.app.dead_letters import (
    KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
    dead_letter_headers,
    fit_dead_letter,
    record_size,
)
from cioproc.app.plan_records import (
    RECORD_TOO_LARGE,
    STATE_TOO_LARGE,
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
from cioproc.mapping import MapResult
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
)
from cioproc.models.settings import MappingSettings
from cioproc.models.state import MAX_STATE_BYTES, StateDecodeError, UserState, decode_state, encode_state

_LIST_FORMAT = (RECORD_FORMAT_HEADER, COMMAND_LIST_FORMAT)
_KIND_NAMES = {kind: kind.value for kind in CommandKind}  # a dict lookup: 5x faster than Enum.value


@dataclass(slots=True)
class ChunkUser:
    """A user met in the chunk."""

    loaded: UserState | None  # as stored before this chunk
    state: UserState | None  # after the chunk's records so far
    encoded: bytes | None = None  # ``state`` encoded, set when a record changes it
    erased: bool = False  # an erasure request forgot the user in this chunk


class PlanBuilder:
    """The plan of one chunk under way (see the module docstring); :meth:`finish` returns it."""

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
        self.users: dict[tuple[int, bytes], ChunkUser] = {}

    def user(self, partition: int, key: bytes) -> ChunkUser:
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
            user = self.users[slot] = ChunkUser(state, state)
        return user

    def apply(self, results: list[tuple[ChunkUser, bytes, MapResult]], record: InputRecord) -> None:
        """Take one input's mapping results, or raise Refused (taking nothing) when one does not fit.

        Each command record carries the input record's timestamp in the ``cioproc.input.ts``
        header, so the sender can measure the end-to-end latency (input written -> Customer.io
        accepted). A header, not the record's own timestamp: commands made from replayed input
        would otherwise look days old to the commands topic's time-based retention."""
        stamp = timestamp_ms(record)
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
        final: dict[int, tuple[ChunkUser, bytes, UserState]] = {}
        for user, key, result in results:
            final[id(user)] = (user, key, result.state)
        states: list[tuple[ChunkUser, UserState, bytes]] = []
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


def audience_messages(value: bytes, mpids: Iterable[str]) -> dict[str, bytes]:
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
