"""The sender: `cio.commands` -> Customer.io Track API, dead letters to `cio.commands.dlq`.

A thin shell around :class:`cioproc.sender.Deliverer`, routed like the processor (see
:mod:`cioproc.app.batching`): each fetch of the commands topic arrives as one chunk. The
sender tracks every record with Faust's consumer (a rebalance waits for them) and splits
the chunk by partition. Each partition's parts are delivered in order, different partitions
and further fetches overlap, and a partition with too many parts under way is paused
(:mod:`cioproc.app.sender_lanes`). A part's task

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
latches its partition: nothing of it after the failed part is acked, and the worker stops
(:mod:`cioproc.app.sender_lanes`); after a restart the partition is read again from its last commit.
While Customer.io rejects the credentials (401/403), or answers as if the URL were wrong
(404, 3xx, ...), ``deliver()`` keeps probing and does not return: nothing is acked,
committed or dead-lettered until it works. A record that cannot become a request (not
msgpack, a field of the wrong type) is dead-lettered as ``undecodable_command``. The
dead-letter value is the command's msgpack bytes as consumed (one command of a multi-command
record: that command's bytes alone, and its index in the record in ``cioproc.source.index``),
so ``cioproc replay dlq --source commands`` can re-drive it unchanged; reason, error and the
metric labels taken from a response are cut to ``MAX_HEADER_BYTES`` (on a UTF-8 boundary,
see :mod:`cioproc.app.sender_chunk`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from faust.types import Message

from cioproc.app.batching import BatchApp
from cioproc.app.dead_letters import KAFKA_DEFAULT_MAX_MESSAGE_BYTES, fit_dead_letter, utf8_prefix
from cioproc.app.erasure_sender import erasure_positions, prepare_erasures, settle_erasures
from cioproc.app.gc_tuning import tune_gc
from cioproc.app.sender_chunk import (
    MAX_HEADER_BYTES,
    CommandPart,
    DeadLetter,
    PreparedChunk,
    dead_letter_headers,
    input_timestamp,
)
from cioproc.app.sender_lanes import PartitionLanes
from cioproc.app.sender_stats import StatsExporter
from cioproc.config import Config
from cioproc.kafka.topics import ActualTopic, TopicsFile
from cioproc.models.commands import decode_command, record_format, split_record
from cioproc.observability import metrics
from cioproc.sender import Deliverer, SenderConfig
from cioproc.sender.payloads import PayloadError, v2_entry_from_wire

log = logging.getLogger("cioproc.sender")

EXPORT_INTERVAL_S = 1.0


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
        self.lanes: PartitionLanes[PreparedChunk] = PartitionLanes(app, self.prepare, self.deliver_prepared)

    def _deliverer(self) -> Deliverer:
        if self.lanes.closed:
            raise RuntimeError("the sender is closed")
        if self.deliverer is None:
            self.deliverer = Deliverer(self.sender_config)  # its aiohttp session needs the running loop
        return self.deliverer

    async def close(self) -> None:
        """Cancel every delivery under way (unacked: read again after a restart), then close
        the HTTP session; nothing is sent, and no session opened, after this."""
        await self.lanes.close()
        if self.deliverer is not None:
            await self.deliverer.close()
            self.deliverer = None

    async def __call__(self, messages: list[Message]) -> None:
        lanes = self.lanes
        if lanes.closed:
            return
        records = self.app.track_current(lanes.live(messages))
        if not records:
            return
        if self.deliverer is None:
            tune_gc()  # the first fetch: start-up is over
        self._deliverer()
        await lanes.run(records)

    def prepare(self, records: list[Message]) -> PreparedChunk:
        """Decode (and for v2 encode) a chunk's records, a multi-command record command by
        command; any command that cannot become a request is set aside for the dead-letter
        topic (a record whose command list cannot be read: the whole record), never raised. A
        chunk with erasures takes :func:`cioproc.app.erasure_sender.prepare_erasures`."""
        chunk = PreparedChunk(records, time.monotonic())
        erasing = erasure_positions(records)
        if erasing:
            return prepare_erasures(self, chunk, erasing)
        return self.add_records(chunk, records)

    def add_records(self, chunk: PreparedChunk, records: list[Message]) -> PreparedChunk:
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

    def _prepare_v1(self, chunk: PreparedChunk, source: Message | CommandPart, value: bytes) -> None:
        try:
            chunk.commands.append(decode_command(value))
            chunk.sources.append(source)
        except Exception as exc:  # CommandDecodeError, or anything else these bytes provoke
            chunk.dead.append((source, "undecodable_command", None, str(exc)))

    def _prepare_v2(self, chunk: PreparedChunk, source: Message | CommandPart, value: bytes) -> None:
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

    async def settle(self, chunk: PreparedChunk) -> tuple[list[DeadLetter], Counter[str]]:
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

    async def deliver_prepared(self, chunk: PreparedChunk) -> None:
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
