"""The sender: `cio.commands` -> Customer.io Track API, dead letters to `cio.commands.dlq`.

A thin shell around :class:`cioproc.sender.Deliverer`, routed like the processor (see
:mod:`cioproc.app.batching`): each fetch of the commands topic arrives as one chunk. The
sender tracks every record with Faust's consumer (a rebalance waits for them) and splits
the chunk by partition. Each partition's part is delivered by a task that starts only when
the previous part of the same partition has finished, so a partition's commands (and so
each user's, as commands are keyed by MPID) go out in order, while different partitions,
and further fetches, overlap. Partitions are independent: a partition with
``MAX_CHUNKS_PER_PARTITION`` parts under way is paused (Faust's ``pause_partitions``: its
fetched records wait in aiokafka's buffer) until one finishes, so a partition stuck on 5xx
or timeouts holds only its own parts and the others go on. Only when every partition of
the worker is paused does the fetch loop wait. A part's task

1. decodes the commands, for the v2 transport straight into batch entries (undecodable
   bytes are dead-lettered as ``undecodable_command``; a record holding several commands,
   see :mod:`cioproc.models.commands`, is split into its commands first, and one whose list
   cannot be read is dead-lettered whole, with its format header), without waiting for the previous
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
dead-lettered. A part that fails (the dead-letter write refused, anything unexpected)
latches its partition: no later part of that partition is delivered or acked (their records
are untracked, never acked, so Faust's ``_new_offset`` cannot commit past the failed one),
and the worker stops; after a restart the partition is read again from its last commit.
While Customer.io rejects the credentials (401/403), or answers as if the URL were wrong
(404, 3xx, ...), ``deliver()`` keeps probing and does not return: nothing is acked,
committed or dead-lettered until it works. A record that cannot become a request (not
msgpack, a field of the wrong type) is dead-lettered as ``undecodable_command``. The
dead-letter value is the command's msgpack bytes as consumed (one command of a multi-command
record: that command's bytes alone, and its index in the record in ``cioproc.source.index``),
so ``cioproc replay dlq --source commands`` can re-drive it unchanged; reason, error and the
metric labels taken from a response are cut to ``MAX_HEADER_BYTES`` (on a UTF-8 boundary).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from faust.types import TP, Message

from cioproc.app.batching import BatchApp
from cioproc.app.dead_letters import KAFKA_DEFAULT_MAX_MESSAGE_BYTES, fit_dead_letter, utf8_prefix
from cioproc.app.erasure_sender import Erasure, erasure_positions, prepare_erasures, settle_erasures
from cioproc.app.gc_tuning import tune_gc
from cioproc.app.internals import unacked_messages
from cioproc.config import Config
from cioproc.kafka.topics import ActualTopic, TopicsFile
from cioproc.models.commands import (
    INPUT_TIMESTAMP_HEADER,
    RECORD_FORMAT_HEADER,
    Command,
    decode_command,
    record_format,
    split_record,
)
from cioproc.names import ERROR, HTTP_STATUS, REASON, SOURCE_INDEX, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC
from cioproc.observability import metrics
from cioproc.sender import Deliverer, SenderConfig
from cioproc.sender.delivery import DELIVERY_PARTITION
from cioproc.sender.payloads import PayloadError, v2_entry_from_wire

log = logging.getLogger("cioproc.sender")

# Headers of a command dead letter: see cioproc.names.
MAX_HEADER_BYTES = 256  # reason and error headers, and metric labels, taken from a response
EXPORT_INTERVAL_S = 1.0
MAX_CHUNKS_PER_PARTITION = 2  # one being delivered, the next decoded; more pauses the partition
BLOCKED_WARNING_S = 600.0  # a partition retrying this long is logged (cio.commands retention bounds it)


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


class StatsExporter:
    """Copies the deliverer's running counters into Prometheus as deltas, and how long each
    partition has been blocked (logged once a block passes ``BLOCKED_WARNING_S``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._requests: Counter[str] = Counter()
        self._retries = 0
        self._clock = clock
        self._blocked_shown: set[tuple[str, int]] = set()
        self._warned: set[tuple[tuple[str, int], float]] = set()

    def export(self, deliverer: Deliverer) -> None:
        stats = deliverer.stats
        for status, count in list(stats.requests.items()):
            delta = count - self._requests[status]
            if delta:
                if status in ("timeout", "transport"):
                    metrics.HTTP_TRANSPORT_ERRORS.labels(reason=status).inc(delta)
                else:
                    metrics.HTTP_RESPONSES.labels(code=str(status)).inc(delta)
                self._requests[status] = count
        for latency in stats.drain_latencies():
            metrics.TRACK_REQUEST_LATENCY.observe(latency)
        if stats.retries > self._retries:
            metrics.HTTP_RETRIES.inc(stats.retries - self._retries)
            self._retries = stats.retries
        metrics.AUTH_BLOCKED.set(1 if stats.auth_blocked else 0)
        self._export_blocked(dict(stats.blocked_since))

    def _export_blocked(self, blocked_since: dict[tuple[str, int], float]) -> None:
        gauge = metrics.PARTITION_BLOCKED_SECONDS
        for topic, partition in self._blocked_shown - blocked_since.keys():
            gauge.labels(topic=topic, partition=str(partition)).set(0)
        now = self._clock()
        for (topic, partition), since in blocked_since.items():
            seconds = now - since
            gauge.labels(topic=topic, partition=str(partition)).set(seconds)
            if seconds >= BLOCKED_WARNING_S and ((topic, partition), since) not in self._warned:
                self._warned.add(((topic, partition), since))
                log.warning(
                    "commands partition %s/%d has been blocked for %.0f s, retrying a request Customer.io "
                    "keeps failing; its commands are safe only while the topic's retention keeps them",
                    topic, partition, seconds,
                )
        self._blocked_shown = set(blocked_since)
        self._warned = {warned for warned in self._warned if warned[0] in blocked_since}


@dataclass
class _Prepared:
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


class Sender:
    """The batch handler for the commands topic (see the module docstring)."""

    def __init__(self, app: BatchApp, sender_config: SenderConfig, dlq_topic: str, results_topic: str | None = None):
        self.app = app
        self.sender_config = sender_config
        self.dlq_topic = dlq_topic
        self.dlq_limit = KAFKA_DEFAULT_MAX_MESSAGE_BYTES  # the dead-letter topic's max.message.bytes
        self.results_topic = results_topic  # erasure_results
        self.deliverer: Deliverer | None = None
        self.exporter = StatsExporter()
        self._tails: dict[TP, asyncio.Future[None]] = {}  # last delivery task per partition
        self._under_way: Counter[TP] = Counter()  # delivery tasks per partition
        self._tasks: set[asyncio.Future[None]] = set()  # every delivery task not finished
        self._failed: dict[TP, BaseException] = {}  # latched partitions: nothing later is acked
        self._paused: set[TP] = set()
        self._resumed = asyncio.Event()
        self._closed = False

    def _deliverer(self) -> Deliverer:
        if self._closed:
            raise RuntimeError("the sender is closed")
        if self.deliverer is None:
            self.deliverer = Deliverer(self.sender_config)  # its aiohttp session needs the running loop
        return self.deliverer

    async def close(self) -> None:
        """Cancel every delivery under way (unacked: read again after a restart), then close
        the HTTP session; nothing is sent, and no session opened, after this."""
        self._closed = True
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        if self.deliverer is not None:
            await self.deliverer.close()
            self.deliverer = None

    async def __call__(self, messages: list[Message]) -> None:
        if self._closed:
            return
        if self._failed:  # neither tracked nor acked: read again after the restart
            messages = [message for message in messages if message.tp not in self._failed]
        records = self.app.track_current(messages)
        if not records:
            return
        if self.deliverer is None:
            tune_gc()  # the first fetch: start-up is over
        self._deliverer()
        by_partition: dict[TP, list[Message]] = {}
        for message in records:
            part = by_partition.get(message.tp)
            if part is None:  # keyed by Faust's TP: resume_partitions() stores what it is given
                part = by_partition[TP(message.topic, message.partition)] = []
            part.append(message)
        consumer = self.app.consumer
        for tp, part in by_partition.items():
            # Deliveries of different partitions overlap; those of one partition follow each other.
            self.dispatch(tp, part)
            if self._under_way[tp] >= MAX_CHUNKS_PER_PARTITION:
                consumer.pause_partitions([tp])  # its next records wait in aiokafka's buffer (idempotent)
                self._paused.add(tp)
        # Back-pressure: with every partition paused the fetch loop would only sleep; wait here.
        while self._paused and not self._closed and not (set(consumer.assignment()) - self._paused):
            self._resumed.clear()
            await self._resumed.wait()

    def dispatch(self, tp: TP, records: list[Message]) -> asyncio.Future[None]:
        """Start delivering one partition's chunk after that partition's previous one."""
        if self._closed:
            raise RuntimeError("the sender is closed")
        task = asyncio.ensure_future(self._deliver_after(tp, self._tails.get(tp), records))
        self._tails[tp] = task
        self._under_way[tp] += 1
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._finished, tp))
        return task

    def _finished(self, tp: TP, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        self._under_way[tp] -= 1
        if self._under_way[tp] <= 0:
            del self._under_way[tp]
        if self._tails.get(tp) is task:
            del self._tails[tp]
        if tp in self._paused and self._under_way[tp] < MAX_CHUNKS_PER_PARTITION:
            self._paused.discard(tp)
            if not self._closed and tp in self.app.consumer.assignment():
                self.app.consumer.resume_partitions([tp])
            self._resumed.set()
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            log.error(
                "delivering commands of %s/%d failed (%s: %s); stopping the worker, nothing of that "
                "partition after the failed records is acked", tp[0], tp[1], type(exc).__name__, exc,
            )
            asyncio.ensure_future(self.app.crash(exc))

    async def _deliver_after(self, tp: TP, previous: asyncio.Future[None] | None, records: list[Message]) -> None:
        DELIVERY_PARTITION.set((tp[0], tp[1]))  # this task's context: the deliverer's blocked-partition bookkeeping
        try:
            # Decoding and encoding need not wait for the partition's previous chunk: only sending does.
            chunk = self.prepare(records)
            if previous is not None:
                await asyncio.wait([previous])  # its failure is reported by its own callback
            if tp in self._failed:
                self._untrack(records)
                return
            await self.deliver_prepared(chunk)
        except Exception as exc:
            self._failed.setdefault(tp, exc)
            self._untrack(records)
            raise

    def _untrack(self, records: list[Message]) -> None:
        """Records of a latched partition will never be acked: stop waiting for them (on stop
        and rebalance). Untracking does not commit them; commits follow acks only."""
        unacked = unacked_messages(self.app.consumer)  # Faust's set of tracked records
        for message in records:
            unacked.discard(message)

    def prepare(self, records: list[Message]) -> _Prepared:
        """Decode (and for v2 encode) a chunk's records, a multi-command record command by
        command; any command that cannot become a request is set aside for the dead-letter
        topic (a record whose command list cannot be read: the whole record), never raised. A
        chunk with erasures takes :func:`cioproc.app.erasure_sender.prepare_erasures`."""
        chunk = _Prepared(records, time.monotonic())
        erasing = erasure_positions(records)
        if erasing:
            return prepare_erasures(self, chunk, erasing)
        return self.add_records(chunk, records)

    def add_records(self, chunk: _Prepared, records: list[Message]) -> _Prepared:
        """Decode (and for v2 encode) records onto ``chunk`` (none of them an erase)."""
        v2 = self.sender_config.transport == "v2"
        prepare_one = self._prepare_v2 if v2 else self._prepare_v1
        dead = chunk.dead
        for message in records:
            whole = record_format(message.headers) if message.headers else None
            if whole is None:
                prepare_one(chunk, message, message.value or b"")  # no value: undecodable, dead-lettered
                continue
            try:
                parts = split_record(message.value, whole)
            except Exception as exc:  # CommandDecodeError, or anything else these bytes provoke
                dead.append((message, "undecodable_command", None, str(exc)))
                continue
            for index, part in enumerate(parts):
                prepare_one(chunk, CommandPart(message, part, index), part)
        if not v2:
            chunk.kinds.extend(command.kind.value for command in chunk.commands[len(chunk.kinds):])
        return chunk

    def _prepare_v1(self, chunk: _Prepared, source: Message | CommandPart, value: bytes) -> None:
        try:
            chunk.commands.append(decode_command(value))
            chunk.sources.append(source)
        except Exception as exc:  # CommandDecodeError, or anything else these bytes provoke
            chunk.dead.append((source, "undecodable_command", None, str(exc)))

    def _prepare_v2(self, chunk: _Prepared, source: Message | CommandPart, value: bytes) -> None:
        try:
            mpid, kind, entry = v2_entry_from_wire(value)
        except PayloadError as exc:  # as deliver() would refuse it
            chunk.dead.append((source, exc.reason, None, self._deliverer().client.redact(str(exc))))
            return
        except Exception as exc:  # CommandDecodeError, or anything else these bytes provoke
            chunk.dead.append((source, "undecodable_command", None, str(exc)))
            return
        chunk.kinds.append(kind)
        chunk.mpids.append(mpid)
        chunk.entries.append(entry)
        chunk.sources.append(source)

    async def settle(self, chunk: _Prepared) -> tuple[list[DeadLetter], Counter[str]]:
        """Deliver a prepared chunk: what must be dead-lettered (reason and error bounded), and
        how many commands of each kind were delivered."""
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
        dead = list(chunk.dead)
        delivered: Counter[str] = Counter()
        accepted_at = time.time()
        end_to_end = metrics.END_TO_END_LATENCY.observe
        erase_sources = chunk.erase_sources
        for kind, message, outcome in zip(chunk.kinds, chunk.sources, outcomes, strict=True):
            if erase_sources and id(message) in erase_sources:
                continue  # an erase's steps: it is counted, and dead-lettered, once below
            if outcome.delivered:
                delivered[kind] += 1
                written = input_timestamp(message)
                if written is not None:
                    end_to_end(max(0.0, accepted_at - written))
            else:
                reason = utf8_prefix(outcome.reason or "rejected", MAX_HEADER_BYTES)
                error = utf8_prefix(outcome.error, MAX_HEADER_BYTES) if outcome.error else outcome.error
                dead.append((message, reason, outcome.http_status, error))
        if chunk.erasures:
            chunk.results = settle_erasures(chunk, outcomes, dead)
            completed = sum(1 for _, _, status in chunk.results if status == "completed")
            if completed:
                delivered["erase"] += completed
        return dead, delivered

    async def deliver_prepared(self, chunk: _Prepared) -> None:
        """Deliver a prepared chunk, dead-letter what is refused, write erasure results, then
        ack every record."""
        dead, delivered = await self.settle(chunk)
        await self._dead_letter(dead)  # raises if the producer gave up: these records stay unacked
        await self._write_results(chunk.results)  # likewise: a request's result is written before its ack
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

    def use_topic_limits(self, actual: Mapping[str, ActualTopic]) -> None:
        """Take the dead-letter topic's ``max.message.bytes`` from what the cluster reported."""
        found = actual.get(self.dlq_topic)
        value = found.config.get("max.message.bytes") if found is not None else None
        if value is not None and value.isdigit():
            self.dlq_limit = int(value)
        log.info("dead letters fitted to %s's max.message.bytes (%d)", self.dlq_topic, self.dlq_limit)

    async def _dead_letter(self, dead: list[DeadLetter]) -> None:
        """Write dead letters, each cut to the topic's record size (headers and the original
        offset kept, the value truncated), so a large command never makes the write fail."""
        if not dead:
            return
        send = self.app.producer.send
        limit = self.dlq_limit
        futures = []
        for message, reason, status, error in dead:
            key, value, headers = fit_dead_letter(
                message.key, message.value, dead_letter_headers(message, reason, status, error), limit
            )
            futures.append(await send(self.dlq_topic, key, value, None, None, headers))
            metrics.DLQ_WRITES.labels(topic=self.dlq_topic, reason=utf8_prefix(reason, MAX_HEADER_BYTES)).inc()
        await asyncio.gather(*futures)


def attach(app: BatchApp, config: Config, topics: TopicsFile) -> Sender:
    """Route the commands topic to a :class:`Sender` on ``app``; ConfigError without credentials."""
    config.require_sender_credentials()
    sender = Sender(
        app,
        SenderConfig.from_config(config),
        topics.by_role("commands_dlq").name,
        topics.by_role("erasure_results").name,
    )
    topic = app.topic(topics.by_role("commands").name, key_type=bytes, value_type=bytes, acks=True)
    app.route_batches(topic, sender)

    async def close_deliverer(*_args: Any, **_kwargs: Any) -> None:  # mode passes (app, signal=...)
        await sender.close()

    app.on_before_shutdown.connect(close_deliverer)  # after the consumer stopped: no chunk in flight

    async def export_stats() -> None:  # also while deliver() waits out bad credentials or retries
        if sender.deliverer is not None:
            sender.exporter.export(sender.deliverer)

    app.timer(EXPORT_INTERVAL_S, on_leader=False)(export_stats)

    async def check_credentials() -> None:  # the same check as `cioproc check`; delivery does not wait for it
        await log_account_check(sender.sender_config)

    app.task(check_credentials)
    return sender


async def log_account_check(sender_config: SenderConfig) -> None:
    """Ask Customer.io whether the credentials work, for the configured region, and log the answer."""
    from cioproc.sender.account import verify_account
    from cioproc.sender.client import TrackClient

    config = sender_config
    async with TrackClient(config.base_url, config.site_id, config.api_key, total_timeout=config.total_timeout,
                           connect_timeout=config.connect_timeout) as client:
        result = await verify_account(client, config.region)
    if result.http_status is not None:  # a Track API request like any other: counted the same way
        metrics.HTTP_RESPONSES.labels(code=str(result.http_status)).inc()
    elif result.transport_error is not None:
        metrics.HTTP_TRANSPORT_ERRORS.labels(reason=result.transport_error).inc()
    if result.ok:
        log.info("Customer.io accepts the credentials: region %s, environment %s", result.region, result.environment_id)
    for line in result.problems:
        log.error("Customer.io credentials check: %s", line)
