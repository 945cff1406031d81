"""The sender: `cio.commands` -> Customer.io Track API, dead letters to `cio.commands.dlq`.

A thin shell around :class:`cioproc.sender.Deliverer`, routed like the processor (see
:mod:`cioproc.app.batching`): each fetch of the commands topic arrives as one chunk. The
sender tracks every record with Faust's consumer (a rebalance waits for them) and splits
the chunk by partition. Each partition's part is delivered by a task that starts only when
the previous part of the same partition has finished, so a partition's commands (and so
each user's, as commands are keyed by MPID) go out in order, while different partitions,
and further fetches, overlap; at most ``MAX_CHUNKS_IN_FLIGHT`` parts are under way before
the fetch loop waits. A part's task

1. decodes the commands, for the v2 transport straight into batch entries (undecodable
   bytes are dead-lettered as ``undecodable_command``), without waiting for the previous
   part, then, once that part is done, hands them to one ``deliver()`` /
   ``deliver_entries()`` call, which returns only when every command is delivered or
   refused for good,
2. writes the refused commands to the dead-letter topic with Customer.io's status and error
   in headers, and awaits the broker's acknowledgements,
3. only then acks the part's records.

An ``erase`` command (a data subject's erasure) is sent as one delete/suppress per
identifier, in its place in the partition's order; the commands of the same MPID before it
in the same fetch are not sent at all, and its result goes to the ``erasure_results``
topic once its steps are settled, before its ack (see :mod:`cioproc.app.erasure_sender`).

So an offset is committed only after every command before it was delivered or
dead-lettered. While Customer.io rejects the credentials (401/403) ``deliver()`` keeps
probing and does not return: nothing is acked, committed or dead-lettered until the key
works. The dead-letter value is the command's msgpack bytes as consumed, so
``cioproc replay dlq --source commands`` can re-drive it unchanged.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from faust.types import Message

from cioproc.app.batching import BatchApp
from cioproc.app.erasure_sender import Erasure, erasure_positions, prepare_erasures, settle_erasures
from cioproc.config import Config
from cioproc.kafka.topics import TopicsFile
from cioproc.models.commands import Command, CommandDecodeError, decode_command
from cioproc.observability import metrics
from cioproc.sender import Deliverer, SenderConfig
from cioproc.sender.payloads import PayloadError, v2_entry_from_wire

log = logging.getLogger("cioproc.sender")

# Headers of a command dead letter (UTF-8 text values).
REASON = "cioproc.reason"
HTTP_STATUS = "cioproc.http_status"
ERROR = "cioproc.error"
SOURCE_TOPIC = "cioproc.source.topic"
SOURCE_PARTITION = "cioproc.source.partition"
SOURCE_OFFSET = "cioproc.source.offset"
MAX_ERROR_BYTES = 2000
EXPORT_INTERVAL_S = 1.0
MAX_CHUNKS_IN_FLIGHT = 8  # partition chunks being delivered at once; more makes the fetch loop wait
# A fetch holds thousands of records (and their entries) alive until its acks, so the collector's
# young generations fill and promote them, and full collections walk every object Faust, aiokafka
# and aiohttp made at start-up: measured, 100-190 ms of collections per 20,000 commands. Once the
# worker runs, the start-up objects are frozen out of collections, and the youngest generation
# is collected every GC_GEN0_THRESHOLD allocations instead of Python's 700 (the sender role only).
GC_GEN0_THRESHOLD = 10_000


def dead_letter_headers(message: Message, reason: str, status: int | None, error: str | None) -> list[tuple[str, bytes]]:
    headers = [
        (REASON, reason.encode()),
        (SOURCE_TOPIC, message.topic.encode()),
        (SOURCE_PARTITION, str(message.partition).encode()),
        (SOURCE_OFFSET, str(message.offset).encode()),
    ]
    if status is not None:
        headers.append((HTTP_STATUS, str(status).encode()))
    if error:
        headers.append((ERROR, error.encode("utf-8", "replace")[:MAX_ERROR_BYTES]))
    return headers


def tune_gc() -> None:
    """Once the worker runs: freeze what start-up made, collect the young generation less often."""
    gc.freeze()
    gen0, *older = gc.get_threshold()
    gc.set_threshold(max(GC_GEN0_THRESHOLD, gen0), *older)


class StatsExporter:
    """Copies the deliverer's running counters into Prometheus as deltas."""

    def __init__(self) -> None:
        self._requests: Counter[str] = Counter()
        self._retries = 0

    def export(self, deliverer: Deliverer) -> None:
        stats = deliverer.stats
        for status, count in list(stats.requests.items()):
            delta = count - self._requests[status]
            if delta:
                label = "0" if status in ("timeout", "transport") else str(status)
                metrics.HTTP_RESPONSES.labels(status=label).inc(delta)
                self._requests[status] = count
        if stats.retries > self._retries:
            metrics.HTTP_RETRIES.inc(stats.retries - self._retries)
            self._retries = stats.retries
        metrics.AUTH_BLOCKED.set(1 if stats.auth_blocked else 0)


@dataclass
class _Prepared:
    """A partition's chunk, decoded: what to send (Commands for v1, v2 entries otherwise), the
    record of each, and the records already bound for the dead-letter topic."""

    records: list[Message]
    started: float
    kinds: list[str] = field(default_factory=list)
    sources: list[Message] = field(default_factory=list)
    mpids: list[str] = field(default_factory=list)
    entries: list[bytes] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    dead: list[tuple[Message, str, int | None, str | None]] = field(default_factory=list)
    erasures: list[Erasure] = field(default_factory=list)  # erase commands and their steps' positions
    erase_sources: set[int] = field(default_factory=set)  # id() of the erase records


class Sender:
    """The batch handler for the commands topic (see the module docstring)."""

    def __init__(self, app: BatchApp, sender_config: SenderConfig, dlq_topic: str, results_topic: str | None = None):
        self.app = app
        self.sender_config = sender_config
        self.dlq_topic = dlq_topic
        self.results_topic = results_topic  # erasure_results
        self.deliverer: Deliverer | None = None
        self.exporter = StatsExporter()
        self._tails: dict[tuple[str, int], asyncio.Future] = {}  # last delivery task per partition
        self._in_flight = asyncio.Semaphore(MAX_CHUNKS_IN_FLIGHT)

    def _deliverer(self) -> Deliverer:
        if self.deliverer is None:
            self.deliverer = Deliverer(self.sender_config)  # its aiohttp session needs the running loop
        return self.deliverer

    async def close(self) -> None:
        pending = [task for task in self._tails.values() if not task.done()]
        for task in pending:  # unacked: their records are read again after a restart
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        if self.deliverer is not None:
            await self.deliverer.close()
            self.deliverer = None

    async def __call__(self, messages: list[Message]) -> None:
        records = self.app.track_current(messages)
        if not records:
            return
        if self.deliverer is None:
            tune_gc()  # the first fetch: start-up is over
        self._deliverer()
        by_partition: dict[tuple[str, int], list[Message]] = {}
        for message in records:
            by_partition.setdefault((message.topic, message.partition), []).append(message)
        for tp, part in by_partition.items():
            # Deliveries of different partitions overlap; those of one partition follow each other.
            await self._in_flight.acquire()  # back-pressure: the fetch loop waits here
            previous = self._tails.get(tp)
            task = asyncio.ensure_future(self._deliver_after(previous, part))
            self._tails[tp] = task
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future) -> None:
        self._in_flight.release()
        for tp, tail in list(self._tails.items()):
            if tail is task:
                del self._tails[tp]
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("delivering commands failed (%s: %s); stopping the worker", type(exc).__name__, exc)
            asyncio.ensure_future(self.app.crash(exc))

    async def _deliver_after(self, previous: asyncio.Future | None, records: list[Message]) -> None:
        # Decoding and encoding need not wait for the partition's previous chunk: only sending does.
        chunk = self.prepare(records)
        if previous is not None:
            await asyncio.wait([previous])  # its failure is reported by its own callback
        await self.deliver_prepared(chunk)

    async def deliver_chunk(self, records: list[Message]) -> None:
        """Deliver one partition's chunk, dead-letter what is refused, then ack every record."""
        await self.deliver_prepared(self.prepare(records))

    def prepare(self, records: list[Message]) -> _Prepared:
        """Decode (and for v2 encode) a chunk's records; undecodable or inexpressible ones are
        set aside for the dead-letter topic. A chunk with erasures takes
        :func:`cioproc.app.erasure_sender.prepare_erasures`."""
        chunk = _Prepared(records, time.monotonic())
        erasing = erasure_positions(records)
        if erasing:
            return prepare_erasures(self, chunk, erasing)
        return self.add_records(chunk, records)

    def add_records(self, chunk: _Prepared, records: list[Message]) -> _Prepared:
        """Decode (and for v2 encode) records onto ``chunk`` (none of them an erase)."""
        if self.sender_config.transport != "v2":
            for message in records:
                try:
                    chunk.commands.append(decode_command(message.value))
                    chunk.sources.append(message)
                except CommandDecodeError as exc:
                    chunk.dead.append((message, "undecodable_command", None, str(exc)))
            chunk.kinds.extend(command.kind.value for command in chunk.commands[len(chunk.kinds):])
            return chunk
        append_kind, append_mpid, append_entry, append_source = (
            chunk.kinds.append, chunk.mpids.append, chunk.entries.append, chunk.sources.append
        )
        for message in records:
            try:
                mpid, kind, entry = v2_entry_from_wire(message.value)
            except CommandDecodeError as exc:
                chunk.dead.append((message, "undecodable_command", None, str(exc)))
                continue
            except PayloadError as exc:  # as deliver() would refuse it
                chunk.dead.append((message, exc.reason, None, self._deliverer().client.redact(str(exc))))
                continue
            append_kind(kind)
            append_mpid(mpid)
            append_entry(entry)
            append_source(message)
        return chunk

    async def deliver_prepared(self, chunk: _Prepared) -> None:
        """Deliver a prepared chunk, dead-letter what is refused, then ack every record."""
        deliverer = self._deliverer()
        try:
            if chunk.commands:
                outcomes = await deliverer.deliver(chunk.commands)
            elif chunk.entries:
                merges = [kind == "merge" for kind in chunk.kinds]
                outcomes = await deliverer.deliver_entries(chunk.mpids, chunk.entries, merges)
            else:
                outcomes = []
        finally:
            self.exporter.export(deliverer)
        dead = chunk.dead
        delivered: Counter[str] = Counter()
        erase_sources = chunk.erase_sources
        for kind, message, outcome in zip(chunk.kinds, chunk.sources, outcomes):
            if erase_sources and id(message) in erase_sources:
                continue  # an erase's steps: it is counted, and dead-lettered, once below
            if outcome.delivered:
                delivered[kind] += 1
            else:
                dead.append((message, outcome.reason or "rejected", outcome.http_status, outcome.error))
        results = settle_erasures(chunk, outcomes, dead) if chunk.erasures else []
        completed = sum(1 for _, _, status in results if status == "completed")
        if completed:
            delivered["erase"] += completed
        await self._dead_letter(dead)  # raises if the producer gave up: these records stay unacked
        await self._write_results(results)  # likewise: a request's result is written before its ack
        records = chunk.records
        ack = self.app.consumer.ack
        for message in records:
            ack(message)
        for kind, count in delivered.items():
            metrics.DELIVERED.labels(type=kind).inc(count)
        metrics.DELIVERY_LATENCY.observe(time.monotonic() - chunk.started)
        if dead:
            reasons = Counter(reason for _, reason, _, _ in dead)
            log.warning("dead-lettered %d of %d commands: %s", len(dead), len(records), dict(reasons))

    async def _write_results(self, results: list[tuple[bytes, bytes, str]]) -> None:
        """Produce erasure results ``(key, value, status)`` and await their acknowledgements."""
        if not results:
            return
        if self.results_topic is None:
            raise RuntimeError("erasure results to write, but no erasure_results topic")
        send = self.app.producer.send
        futures = [await send(self.results_topic, key, value, None, None, None) for key, value, _ in results]
        await asyncio.gather(*futures)
        for _, _, status in results:
            metrics.ERASURE_RESULTS.labels(status=status).inc()

    async def _dead_letter(self, dead: list[tuple[Message, str, int | None, str | None]]) -> None:
        if not dead:
            return
        send = self.app.producer.send
        futures = []
        for message, reason, status, error in dead:
            headers = dead_letter_headers(message, reason, status, error)
            futures.append(await send(self.dlq_topic, message.key, message.value, None, None, headers))
            metrics.DLQ_WRITES.labels(topic="commands", reason=reason).inc()
        await asyncio.gather(*futures)


def attach(app: BatchApp, config: Config, topics: TopicsFile) -> Sender:
    """Route the commands topic to a :class:`Sender` on ``app``; ConfigError without credentials."""
    config.require_sender_credentials()
    sender = Sender(
        app, SenderConfig.from_config(config), topics.by_role("commands_dlq").name, topics.by_role("erasure_results").name
    )
    topic = app.topic(topics.by_role("commands").name, key_type=bytes, value_type=bytes, acks=True)
    app.route_batches(topic, sender)

    async def close_deliverer(_app: Any, **_kwargs: Any) -> None:
        await sender.close()

    app.on_before_shutdown.connect(close_deliverer)  # after the consumer stopped: no chunk in flight

    async def export_stats() -> None:  # also while deliver() waits out bad credentials or retries
        if sender.deliverer is not None:
            sender.exporter.export(sender.deliverer)

    app.timer(EXPORT_INTERVAL_S, on_leader=False)(export_stats)
    return sender
