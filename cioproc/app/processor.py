"""The processor: chunks of mParticle input -> Customer.io commands, with the users table.

Each fetch of the input topics arrives as one chunk (see :mod:`cioproc.app.batching`).
For a chunk the processor

1. tracks every record with Faust's consumer (a rebalance now waits for the chunk),
2. plans it with the pure core (:func:`cioproc.app.plan.plan_chunk`): commands, dead
   letters, re-keyed forwards, and each changed user's final state, read once and written
   once per chunk,
3. produces the commands, dead letters and forwards as one producer batch per partition
   (aiokafka's ``create_batch``/``send_batch``: no per-record future or partitioner call),
   then awaits all their broker acknowledgements (``acks=all``),
4. only then produces the changed states to the table's changelog (with the input
   partition: the table is co-partitioned with its inputs; an erased user's is a
   tombstone) and awaits those,
5. writes the states to the local store, and acks the chunk's records with Faust.

Steps 3-5 finish even when the fetch loop is cancelled meanwhile (Faust's fetcher is
cancelled first on SIGTERM): records already handed to the producer get written anyway, so
their inputs are acked, and the drain commits them.

How "an input offset is committed only after its commands and table update are
acknowledged by the broker" is met: Faust commits, per partition, the offset after the
longest run of acked records (``Consumer._new_offset``), from its commit timer, every
``broker_commit_every`` acks and during rebalances. A record is acked in step 5 only, after
every record it produced was acknowledged in steps 3-4; a record whose writes failed is
never acked. Faust's own safety net (``producer.flush()`` before each commit) is not
relied on: it waits for what is buffered but does not surface failed sends.

Why changelog after commands: the stored state records what was sent (attribute digests,
devices, audiences). If a crash lost commands whose state change was already in the
changelog, the re-processed input would find "already sent" and never send them. In this
order a crash can only leave commands without their state change, and re-processing sends
them again: at least once, never lost. Track and screen events carry deterministic ids,
so Customer.io drops the repeats.

A send that fails after the producer's own retries stops the worker (``app.crash``) with
the chunk unacked, and the processor takes no further chunk, so no later offset of those
partitions is acked or committed past it; the restarted worker re-processes from the last
commit. This matters because Faust's ``_new_offset`` commits past a gap of exactly one
unacked record. Faust's ``ProducerBuffer.flush`` (used before commits) also returns after
0.1 s without progress, with messages still buffered: another reason to rely on awaited
acknowledgements rather than on the flush.

Record sizes: the planner makes every record fit its topic's ``max.message.bytes`` (read
from the cluster at start-up, :meth:`Processor.use_topic_limits`), and a producer batch is
cut before it would pass that limit, so the broker never refuses a write for its size (a
refusal would stop the worker and, on restart, refuse the same chunk again: a crash loop).

Per-partition order: the chunk's records for one partition go in one or more batches
sent in order; aiokafka keeps one request in flight per broker and mutes a partition
while its batch is in flight, retries included, so a user's commands stay in order. The
next chunk starts only after this one is acknowledged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiokafka.partitioner import murmur2
from faust.types import Message

from cioproc.app.batching import BatchApp
from cioproc.app.dead_letters import BATCH_OVERHEAD_BYTES, KAFKA_DEFAULT_MAX_MESSAGE_BYTES, record_bytes
from cioproc.app.gc_tuning import tune_gc
from cioproc.app.internals import aiokafka_producer
from cioproc.app.plan import plan_chunk
from cioproc.app.plan_records import ChunkPlan, Outgoing, PlanTopics
from cioproc.app.stats import ProcessorStats
from cioproc.kafka.topics import ActualTopic, TopicsFile
from cioproc.models.settings import MappingSettings
from cioproc.models.state import StateDecodeError
from cioproc.store import UserStore

log = logging.getLogger("cioproc.processor")


@functools.lru_cache(maxsize=1 << 15)  # users come back; aiokafka's murmur2 is pure Python (~4 us a call)
def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java and aiokafka) gives a keyed record."""
    partition: int = (murmur2(key) & 0x7FFFFFFF) % partitions
    return partition


class Processor:
    """The batch handler for the batches, audiences and erasures topics (see the module docstring)."""

    def __init__(self, app: BatchApp, table: Any, topics: TopicsFile, settings: MappingSettings, stats: ProcessorStats):
        self.app = app
        self.settings = settings
        self.stats = stats
        self.topics = PlanTopics(
            batches=topics.by_role("batches").name,
            audiences=topics.by_role("audiences").name,
            commands=topics.by_role("commands").name,
            dead_letters=topics.by_role("batches_dlq").name,
            changelog=topics.by_role("table_changelog").name,
            erasures=topics.by_role("erasures").name,
            erasure_results=topics.by_role("erasure_results").name,
        )
        self.changelog_topic = self.topics.changelog
        self.max_record_bytes: dict[str, int] = {}  # topic -> max.message.bytes; Kafka's default if absent
        self.partitions = {
            self.topics.batches: topics.by_role("batches").partitions,
            self.topics.audiences: topics.by_role("audiences").partitions,
            self.topics.erasures: topics.by_role("erasures").partitions,
        }
        self.store: UserStore = table.data  # cioproc's table store (see cioproc.store.interface)
        self.failed = False  # set for good when a chunk could not be written: nothing later is acked

    def use_topic_limits(self, actual: Mapping[str, ActualTopic]) -> None:
        """Take each written topic's ``max.message.bytes`` from what the cluster reported."""
        topics = self.topics
        for name in (topics.batches, topics.audiences, topics.commands, topics.dead_letters, topics.changelog):
            found = actual.get(name)
            value = found.config.get("max.message.bytes") if found is not None else None
            if value is not None and value.isdigit():
                self.max_record_bytes[name] = int(value)
        log.info("record size limits (max.message.bytes): %s", self.max_record_bytes)

    def partition_for(self, topic: str, key: bytes) -> int:
        return key_partition(key, self.partitions[topic])

    async def __call__(self, messages: list[Message]) -> None:
        app = self.app
        if self.failed:
            return
        records = app.track_current(messages)
        if not records:
            return
        tune_gc()  # (the first chunk: start-up is over)
        try:
            plan = plan_chunk(records, self.topics, self.settings, self.store.read_state, self.partition_for,
                              _state_reset, self.max_record_bytes, now_ms=int(time.time() * 1000))
            writing = asyncio.ensure_future(self._write(plan))
            try:
                offsets = await asyncio.shield(writing)
            except asyncio.CancelledError:
                # The fetcher is stopping (SIGTERM): this chunk's records are on their way to the
                # broker already. Finish it, so that what gets written is acked (and committed by
                # the drain) rather than written and read again after the restart.
                await asyncio.wait([writing])
                if not writing.cancelled() and writing.exception() is None:
                    self._done(records, plan, writing.result())
                else:
                    self.failed = True
                raise
        except Exception as exc:  # the producer gave up, or the store: stop before anything later is acked
            self.failed = True
            log.error(
                "processing %d input records failed (%s: %s); stopping the worker so that "
                "their offsets are not committed",
                len(records),
                type(exc).__name__,
                exc,
            )
            await app.crash(exc)
            return
        self._done(records, plan, offsets)

    async def _write(self, plan: ChunkPlan) -> dict[int, int]:
        """Commands, dead letters, forwards and request results, then the states, all
        acknowledged (steps 3-4)."""
        await self._send(plan.commands + plan.dead_letters + plan.forwards + plan.results)
        return await self._send_states(plan)

    def _done(self, records: list[Message], plan: ChunkPlan, offsets: dict[int, int]) -> None:
        """Store the states and ack the records (step 5)."""
        self.store.write_states(plan.states, offsets)
        ack = self.app.consumer.ack
        done = self.app.sensors.on_message_out
        for message in records:
            ack(message)
            done(message.tp, message.offset, message)
        self.stats.record(plan.counts)

    async def _send(self, records: list[Outgoing]) -> None:
        """Produce records (each to its given partition, else its key's) and await every acknowledgement."""
        if not records:
            return
        producer = aiokafka_producer(self.app)
        counts: dict[str, int] = {}
        groups: dict[tuple[str, int], list[Outgoing]] = {}
        partition_of: dict[tuple[str, bytes | None], int] = {}
        for record in records:
            partition = record.partition
            if partition is None:
                topic, key = record.topic, record.key
                partition = partition_of.get((topic, key))
                if partition is None:
                    n = counts.get(topic)
                    if n is None:
                        n = counts[topic] = len(await producer.partitions_for(topic))
                    partition = partition_of[(topic, key)] = key_partition(key, n) if key else 0  # keyless: 0
            group = groups.get((record.topic, partition))
            if group is None:
                group = groups[(record.topic, partition)] = []
            group.append(record)
        await _send_groups(producer, groups, self.max_record_bytes)

    async def _send_states(self, plan: ChunkPlan) -> dict[int, int]:
        """Produce the changed states to the changelog; the highest acknowledged offset per partition."""
        if not plan.states:
            return {}
        producer = aiokafka_producer(self.app)
        topic = self.changelog_topic
        groups: dict[tuple[str, int], list[Outgoing]] = {}
        for (partition, key), value in plan.states.items():
            group = groups.get((topic, partition))
            if group is None:
                group = groups[(topic, partition)] = []
            group.append(Outgoing(topic, key, value))
        last = await _send_groups(producer, groups, self.max_record_bytes)
        return {partition: offset for (_, partition), offset in last.items()}


_NO_HEADERS: list[tuple[str, bytes]] = []  # aiokafka's batch builder wants a list


async def _send_groups(
    producer: Any, groups: dict[tuple[str, int], list[Outgoing]], limits: Mapping[str, int]
) -> dict[tuple[str, int], int]:
    """Send records as one producer batch per (topic, partition), more when one is full or would
    pass the topic's ``max.message.bytes``; the last offset of each (topic, partition)."""
    pending: list[tuple[Any, str, int, int]] = []  # (future, topic, partition, records in the batch)
    for (topic, partition), records in groups.items():
        limit = limits.get(topic, KAFKA_DEFAULT_MAX_MESSAGE_BYTES)
        batch, count, size = producer.create_batch(), 0, BATCH_OVERHEAD_BYTES
        for record in records:
            headers = record.headers or _NO_HEADERS
            added = record_bytes(record.key, record.value, headers)
            if count and size + added > limit:  # (the planner made each record fit alone)
                pending.append((await producer.send_batch(batch, topic, partition=partition), topic, partition, count))
                batch, count, size = producer.create_batch(), 0, BATCH_OVERHEAD_BYTES
            if batch.append(timestamp=None, key=record.key, value=record.value, headers=headers) is None:
                pending.append((await producer.send_batch(batch, topic, partition=partition), topic, partition, count))
                batch, count, size = producer.create_batch(), 0, BATCH_OVERHEAD_BYTES
                batch.append(timestamp=None, key=record.key, value=record.value, headers=headers)  # fits: empty
            count += 1
            size += added
        pending.append((await producer.send_batch(batch, topic, partition=partition), topic, partition, count))
    results = await asyncio.gather(*(future for future, *_ in pending))
    last: dict[tuple[str, int], int] = {}
    for metadata, (_, topic, partition, count) in zip(results, pending, strict=True):
        offset = metadata.offset + count - 1
        if offset > last.get((topic, partition), -1):
            last[(topic, partition)] = offset
    return last


def _state_reset(key: bytes, exc: StateDecodeError) -> None:
    log.warning(
        "stored state of MPID %s is unreadable (%s); mapping it as a new user", key.decode(errors="replace"), exc
    )
