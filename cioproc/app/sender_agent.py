"""The sender: `cio.commands` -> Customer.io Track API, dead letters to `cio.commands.dlq`.

A thin shell around :class:`cioproc.sender.Deliverer`, routed like the processor (see
:mod:`cioproc.app.batching`): each fetch of the commands topic arrives as one chunk. For a
chunk the sender

1. tracks every record with Faust's consumer (a rebalance waits for the chunk),
2. decodes the commands (undecodable bytes are dead-lettered as ``undecodable_command``)
   and hands them to one ``deliver()`` call, which keeps each user's commands in order
   (all of a user's commands share a partition and so a chunk) and delivers different
   users concurrently; it returns only when every command is delivered or refused for good,
3. writes the refused commands to the dead-letter topic with Customer.io's status and error
   in headers, and awaits the broker's acknowledgements,
4. only then acks the chunk's records.

So an offset is committed only after every command before it was delivered or
dead-lettered. While Customer.io rejects the credentials (401/403) ``deliver()`` keeps
probing and does not return: nothing is acked, committed or dead-lettered until the key
works. The dead-letter value is the command's msgpack bytes as consumed, so
``cioproc replay dlq --source commands`` can re-drive it unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from faust.types import Message

from cioproc.app.batching import BatchApp
from cioproc.config import Config
from cioproc.kafka.topics import TopicsFile
from cioproc.models.commands import Command, CommandDecodeError, decode_command
from cioproc.observability import metrics
from cioproc.sender import Deliverer, SenderConfig

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


class Sender:
    """The batch handler for the commands topic (see the module docstring)."""

    def __init__(self, app: BatchApp, sender_config: SenderConfig, dlq_topic: str):
        self.app = app
        self.sender_config = sender_config
        self.dlq_topic = dlq_topic
        self.deliverer: Deliverer | None = None
        self.exporter = StatsExporter()

    async def close(self) -> None:
        if self.deliverer is not None:
            await self.deliverer.close()
            self.deliverer = None

    async def __call__(self, messages: list[Message]) -> None:
        app = self.app
        consumer = app.consumer
        generation = app.consumer_generation_id
        if not consumer.flow_active:
            return  # a rebalance has begun: these records are read again after it
        records = [m for m in messages if m.generation_id == generation]
        if not records:
            return
        for message in records:
            consumer.track_message(message)
        if self.deliverer is None:
            self.deliverer = Deliverer(self.sender_config)  # its aiohttp session needs the running loop
        started = time.monotonic()
        commands: list[Command] = []
        sources: list[Message] = []
        dead: list[tuple[Message, str, int | None, str | None]] = []
        for message in records:
            try:
                commands.append(decode_command(message.value))
                sources.append(message)
            except CommandDecodeError as exc:
                dead.append((message, "undecodable_command", None, str(exc)))
        delivered: Counter[str] = Counter()
        try:
            outcomes = await self.deliverer.deliver(commands) if commands else []
        finally:
            self.exporter.export(self.deliverer)
        for command, message, outcome in zip(commands, sources, outcomes):
            if outcome.delivered:
                delivered[command.kind.value] += 1
            else:
                dead.append((message, outcome.reason or "rejected", outcome.http_status, outcome.error))
        try:
            await self._dead_letter(dead)
        except Exception as exc:  # the producer gave up: stop before these offsets can commit
            log.error("writing %d dead letters failed (%s: %s); stopping the worker", len(dead), type(exc).__name__, exc)
            await app.crash(exc)
            return
        ack = consumer.ack
        for message in records:
            ack(message)
        for kind, count in delivered.items():
            metrics.DELIVERED.labels(type=kind).inc(count)
        metrics.DELIVERY_LATENCY.observe(time.monotonic() - started)
        if dead:
            reasons = Counter(reason for _, reason, _, _ in dead)
            log.warning("dead-lettered %d of %d commands: %s", len(dead), len(records), dict(reasons))

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
    sender = Sender(app, SenderConfig.from_config(config), topics.by_role("commands_dlq").name)
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
