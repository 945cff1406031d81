"""Moving a consumer group's committed offsets back to a start point (`cioproc replay
batches|audiences|commands`): the group's state, the topic's partitions, the scan of a
commands replay for irreversible commands, and the reset itself."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from cioproc.replay.plan import (
    INACTIVE_STATES,
    ForwardMoveRefused,
    IrreversibleReplayRefused,
    ReplayError,
    choose_commands_group,
    consumer_group,
    forward_moves,
    irreversible_kinds,
    replayed_ranges,
    start_offsets,
)

Progress = Callable[[float, float], None]  # (records done, records in all)


@dataclass
class GroupState:
    state: str
    members: int

    @property
    def active(self) -> bool:
        return self.state not in INACTIVE_STATES


async def group_state(bootstrap: str, group: str, **client: Any) -> GroupState:
    """The consumer group's state and member count as the broker reports them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    for response in described:
        for entry in response.groups:
            # (error_code, group_id, state, protocol_type, protocol, members[, authorized ops])
            if entry[1] == group:
                return GroupState(entry[2], len(entry[5]))
    return GroupState("Dead", 0)


async def topic_partitions(bootstrap: str, topic: str, **client: Any) -> list[int]:
    """The topic's partition numbers; ReplayError when it does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            raise ReplayError(f"topic '{topic}' does not exist: check the topics file (or run `cioproc topics apply`)")
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for t in described if t["topic"] == topic for p in t["partitions"])


async def committed_offsets(bootstrap: str, group: str, topic: str, **client: Any) -> dict[int, int]:
    """The group's committed offsets on ``topic`` (partitions without one left out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


async def resolve_commands_group(bootstrap: str, topic: str, app_id: str, **client: Any) -> str:
    candidates = (consumer_group("sender", app_id), consumer_group("all", app_id))
    has = {g: bool(await committed_offsets(bootstrap, g, topic, **client)) for g in candidates}
    return choose_commands_group(app_id, has)


@dataclass
class ResetResult:
    """The plan of an offset reset, and whether it was executed."""

    group: str
    topic: str
    before: dict[int, int | None]  # committed offset per partition before (None: none)
    after: dict[int, int]  # the offsets to set
    end: dict[int, int]
    beginning: dict[int, int] = field(default_factory=dict)
    executed: bool = False
    irreversible: dict[str, int] = field(default_factory=dict)  # commands replays: kind -> count re-delivered

    def forward(self) -> dict[int, tuple[int, int]]:
        return forward_moves(self.before, self.beginning, self.after)

    def skipped(self) -> int:
        """Records never processed that the plan skips (forward moves)."""
        return sum(target - resume for resume, target in self.forward().values())

    def to_reprocess(self) -> int:
        return sum(self.end[p] - offset for p, offset in self.after.items())


async def reset_offsets(
    topic: str,
    group: str,
    bootstrap: str,
    *,
    from_time: int | None = None,
    from_offsets: dict[int, int] | None = None,
    from_beginning: bool = False,
    execute: bool = False,
    allow_forward: bool = False,
    check_irreversible: bool = False,
    allow_irreversible: bool = False,
    progress: Progress | None = None,
    **client: Any,
) -> ResetResult:
    """The plan to move the group's offsets on ``topic`` back to the start point, committed only if ``execute``.

    ReplayError while the group is active; ForwardMoveRefused (nothing committed) when the plan
    moves a partition forward and ``allow_forward`` is false. With ``check_irreversible`` (a
    commands topic) the records the group would read again are scanned for merge and erase
    commands (``progress`` follows the scan); IrreversibleReplayRefused (nothing committed)
    when there are any, ``execute`` is set and ``allow_irreversible`` is not.
    """
    state = await group_state(bootstrap, group, **client)
    if state.active:
        raise ReplayError(
            f"consumer group '{group}' is active ({state.state}, {state.members} member(s)): stop the workers "
            f"of this group first; a running worker would overwrite the replayed offsets with its next commit "
            f"(a killed worker stays a member until its session times out)"
        )
    partitions = await topic_partitions(bootstrap, topic, **client)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, **client)
    await consumer.start()
    try:
        tps = {p: TopicPartition(topic, p) for p in partitions}
        consumer.assign(list(tps.values()))
        beginning = {tp.partition: o for tp, o in (await consumer.beginning_offsets(list(tps.values()))).items()}
        end = {tp.partition: o for tp, o in (await consumer.end_offsets(list(tps.values()))).items()}
        by_time = None
        if from_time is not None:
            found = await consumer.offsets_for_times({tp: from_time for tp in tps.values()})
            by_time = {tp.partition: (meta.offset if meta is not None else None) for tp, meta in found.items()}
        targets = start_offsets(beginning, end, from_beginning=from_beginning, by_time=by_time,
                                from_offsets=from_offsets)
        before = {p: await consumer.committed(tps[p]) for p in tps}
        plan = ResetResult(group, topic, before, targets, end, beginning)
        if plan.forward() and not allow_forward:
            raise ForwardMoveRefused(plan)
        if check_irreversible:
            ranges = replayed_ranges(before, beginning, targets, end)
            plan.irreversible = dict(await count_irreversible(consumer, tps, ranges, progress))
            if plan.irreversible and execute and not allow_irreversible:
                raise IrreversibleReplayRefused(plan)
        if execute and targets:
            if (await group_state(bootstrap, group, **client)).active:  # a worker joined meanwhile
                raise ReplayError(f"consumer group '{group}' became active: nothing was changed, stop its workers")
            await consumer.commit({tps[p]: offset for p, offset in targets.items()})
            plan.executed = True
        return plan
    finally:
        await consumer.stop()



async def count_irreversible(
    consumer: AIOKafkaConsumer,
    tps: Mapping[int, TopicPartition],
    ranges: Mapping[int, tuple[int, int]],
    progress: Progress | None = None,
) -> Counter[str]:
    """The irreversible commands (by kind) in ``ranges`` ({partition: (start, stop)}), read with
    ``consumer`` (assigned ``tps``; it commits nothing here)."""
    counts: Counter[str] = Counter()
    stops = {tps[p]: stop for p, (start, stop) in ranges.items()}
    for p, (start, _stop) in ranges.items():
        consumer.seek(tps[p], start)
    whole, done = sum(stop - start for start, stop in ranges.values()), 0
    while stops:
        fetched = await consumer.getmany(*stops, timeout_ms=1000)
        for tp, records in fetched.items():
            stop = stops.get(tp, -1)
            for record in records:
                if record.offset >= stop:
                    break
                counts.update(irreversible_kinds(record.value, record.headers))
                done += 1
        for tp in list(stops):  # compaction can leave the stop offset without a record
            if await consumer.position(tp) >= stops[tp]:
                del stops[tp]
        if progress is not None:
            progress(done, whole)
    return counts
