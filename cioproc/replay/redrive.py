"""Re-driving a dead-letter topic back to the records' source topics (`cioproc replay dlq`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from cioproc.models.commands import RECORD_FORMAT_HEADER, record_format
from cioproc.replay.plan import ASSIGNMENT_TIMEOUT_S, REDRIVEN_HEADER, ReplayError, redrive_target


@dataclass
class RedriveResult:
    redriven: int = 0
    by_target: dict[str, int] = field(default_factory=dict)


class _Bounds(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka's class is untyped (Any) to mypy
    """On assignment: seek to the start time (if any) and note where each partition ends."""

    def __init__(self, consumer: AIOKafkaConsumer, from_time: int | None):
        self.consumer = consumer
        self.from_time = from_time
        self.end: dict[TopicPartition, int] = {}

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        assigned = list(assigned)
        if not assigned:
            return
        ends = await self.consumer.end_offsets(assigned)
        for tp in assigned:
            self.end.setdefault(tp, ends[tp])  # fixed at the first assignment: later records are not re-driven
        if self.from_time is not None:
            found = await self.consumer.offsets_for_times({tp: self.from_time for tp in assigned})
            for tp in assigned:
                self.consumer.seek(tp, found[tp].offset if found.get(tp) is not None else self.end[tp])


async def redrive_dlq(
    dlq_topic: str,
    targets: Iterable[str],
    default_target: str,
    group: str,
    bootstrap: str,
    *,
    from_time: int | None = None,
    to_time: int | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **client: Any,
) -> RedriveResult:
    """Send dead-lettered records (key and value as dead-lettered) back to their source topic;
    ``progress(re-driven, re-driven + still to read)`` after each chunk."""
    allowed = tuple(targets)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
        **client,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **client)
    bounds = _Bounds(consumer, from_time)
    result = RedriveResult()
    await consumer.start()
    await producer.start()
    try:
        consumer.subscribe([dlq_topic], listener=bounds)
        deadline = time.monotonic() + ASSIGNMENT_TIMEOUT_S
        stopped: set[TopicPartition] = set()  # reached --to-time
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            sends, positions = [], {}
            for tp, records in batch.items():
                for record in records:
                    if tp in stopped or record.offset >= bounds.end.get(tp, 1 << 62):
                        break
                    if to_time is not None and record.timestamp >= to_time:
                        stopped.add(tp)
                        consumer.pause(tp)
                        break
                    if limit is not None and result.redriven >= limit:
                        break
                    target = redrive_target(record.headers, allowed, default_target)
                    if not dry_run:
                        marker = f"{record.topic}:{record.partition}:{record.offset}".encode()
                        headers = [(REDRIVEN_HEADER, marker)]
                        whole = record_format(record.headers)
                        if whole is not None:  # a multi-command record dead-lettered whole: read it the same way
                            headers.append((RECORD_FORMAT_HEADER, whole))
                        sends.append(await producer.send(target, record.value, key=record.key, headers=headers))
                    result.redriven += 1
                    result.by_target[target] = result.by_target.get(target, 0) + 1
                    positions[tp] = record.offset + 1
            if sends:
                await asyncio.gather(*sends)  # acknowledged before the dead-letter offsets move on
            if positions and not dry_run:
                await consumer.commit(positions)
            assigned = consumer.assignment()
            if progress is not None and assigned:
                ahead = sum([max(0, bounds.end.get(tp, 0) - await consumer.position(tp)) for tp in assigned])
                progress(result.redriven, result.redriven + ahead)
            if not assigned:
                if time.monotonic() > deadline:
                    raise ReplayError(f"no partition of '{dlq_topic}' was assigned to group '{group}' "
                                      f"within {ASSIGNMENT_TIMEOUT_S:.0f}s (another re-drive running?)")
                continue
            if limit is not None and result.redriven >= limit:
                break
            if await _caught_up(consumer, assigned, bounds.end, stopped):
                break
        return result
    finally:
        await producer.stop()
        await consumer.stop()


async def _caught_up(consumer: AIOKafkaConsumer, assigned: Iterable[TopicPartition],
                     end: Mapping[TopicPartition, int], stopped: set[TopicPartition]) -> bool:
    for tp in assigned:
        if tp in stopped:
            continue
        if tp not in end or await consumer.position(tp) < end[tp]:
            return False
    return True

