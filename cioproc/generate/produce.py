"""Write records to the input topics with aiokafka: pipelined sends, acks=all, compressed.

Sends are not awaited one by one: up to ``max_in_flight`` messages wait in the producer's
accumulator (batched per partition, lingering ``linger_ms``), the oldest acknowledgement
is awaited only when the window is full, and everything is flushed at the end. The
producer is idempotent (acks=all), so a retried send does not duplicate a message.
Compression is lz4 or zstd when their libraries are installed, else none (see
:func:`best_compression`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.codec import has_gzip, has_lz4, has_zstd

from cioproc.errors import KafkaFailure
from cioproc.generate.model import INPUT_ROLES, Record
from cioproc.kafka.topics import TopicsFile

START_TIMEOUT_S = 30.0
METADATA_TIMEOUT_S = 15.0
PROGRESS_EVERY = 1000


class ProduceError(KafkaFailure, RuntimeError):
    """Producing failed: the broker is unreachable, a topic is missing, or a send was refused."""


COMPRESSIONS = ("auto", "lz4", "zstd", "gzip", "none")


def best_compression() -> str | None:
    """lz4 or zstd when their libraries are installed, else none.

    gzip is always available but is not the default: sending 100,000 generated events
    (21,230 messages, 64 MB of JSON) to a local broker took 3.7-4.9 s with gzip against
    1.0-1.2 s uncompressed (two runs each, same session), and consumers pay again to
    decompress. Ask for it (``compression="gzip"``) when the network is the
    bottleneck.
    """
    for name, available in (("lz4", has_lz4), ("zstd", has_zstd)):
        if available():
            return name
    return None


def compression_type(name: str | None) -> str | None:
    """aiokafka's compression_type for a COMPRESSIONS name; ProduceError if its library is missing."""
    if name in (None, "none"):
        return None
    if name == "auto":
        return best_compression()
    available = {"lz4": has_lz4, "zstd": has_zstd, "gzip": has_gzip}.get(name)
    if available is None:
        raise ProduceError(f"unknown compression {name!r} (use {', '.join(COMPRESSIONS)})")
    if not available():
        raise ProduceError(f"compression {name} needs a library that is not installed (python-{name})")
    return name


async def produce_records(
    records: Iterable[Record] | AsyncIterable[Record],
    bootstrap: str,
    topics: TopicsFile,
    *,
    compression: str | None = "auto",
    linger_ms: int = 20,
    max_in_flight: int = 20_000,
    progress: Callable[[int], None] | None = None,
    **kafka_kwargs: Any,
) -> int:
    """Send every record to the topic of its role; return how many the brokers acknowledged.

    ``compression`` is one of COMPRESSIONS. ``kafka_kwargs`` go to ``AIOKafkaProducer``
    (security settings from ``KafkaSettings.aiokafka_kwargs()``). ``progress`` is called with the number of
    acknowledged messages every 1000 messages and at the end. Raises ProduceError.
    """
    names = {role: topics.by_role(role).name for role in INPUT_ROLES}
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        compression_type=compression_type(compression),
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
        **kafka_kwargs,
    )
    try:
        await asyncio.wait_for(producer.start(), START_TIMEOUT_S)
    except Exception as exc:  # TimeoutError, aiokafka's KafkaConnectionError
        await _stop(producer)
        raise ProduceError(f"cannot connect to Kafka at {bootstrap}: {_reason(exc)}") from None

    pending: deque[asyncio.Future[Any]] = deque()
    acked = reported = sent = 0
    try:
        existing = await _existing_topics(producer, bootstrap)
        async for record in _aiter(records):
            topic = names.get(record.topic_role)
            if topic is None:
                raise ProduceError(f"no input topic for role {record.topic_role!r} (use {' or '.join(INPUT_ROLES)})")
            if topic not in existing:
                raise ProduceError(
                    f"topic {topic!r} (role {record.topic_role}) does not exist on {bootstrap}: "
                    "create it with `cioproc topics apply`"
                )
            pending.append(await producer.send(topic, value=orjson.dumps(record.value), key=record.key.encode()))
            sent += 1
            if sent % 100 == 0:
                await asyncio.sleep(0)  # let the sender task ship batches while the input is read
            while len(pending) > max_in_flight or (pending and pending[0].done()):
                acked += await _ack(pending.popleft())
            if progress and acked - reported >= PROGRESS_EVERY:
                reported = acked
                progress(acked)
        await producer.flush()
        while pending:
            acked += await _ack(pending.popleft())
        if progress:
            progress(acked)
        return acked
    finally:
        for future in pending:
            future.cancel()
        await _stop(producer)


async def _existing_topics(producer: AIOKafkaProducer, bootstrap: str) -> set[str]:
    """Every topic on the cluster (one metadata request, so a missing topic fails at once)."""
    try:
        metadata = await asyncio.wait_for(producer.client.fetch_all_metadata(), METADATA_TIMEOUT_S)
    except Exception as exc:
        raise ProduceError(f"cannot read the topic list from {bootstrap}: {_reason(exc)}") from None
    return set(metadata.topics())


async def _ack(future: asyncio.Future[Any]) -> int:
    try:
        await future
    except Exception as exc:
        raise ProduceError(f"Kafka refused a message: {_reason(exc)}") from None
    return 1


async def _aiter(records: Iterable[Record] | AsyncIterable[Record]) -> AsyncIterator[Record]:
    if hasattr(records, "__aiter__"):
        async for record in records:
            yield record
    else:
        for record in records:
            yield record


async def _stop(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), START_TIMEOUT_S)
    except Exception:
        pass


def _reason(exc: BaseException) -> str:
    name, text = type(exc).__name__, str(exc).strip()
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"
