"""Table stores that rebuild the users table from its changelog in bulk, before Faust's recovery.

Why: Faust's recovery hands every changelog record one at a time through its consumer
callback, the conductor, a queue and its recovery loop (tasks and bookkeeping per record):
about 200 µs per record on a 2-core machine, so a table of a million users took over three
minutes to restore, while a plain aiokafka consumer reads the same changelog in a few seconds.

How: on every rebalance, Faust calls the store's ``on_rebalance`` before its recovery
decides where to start reading. The stores here read, for each changelog partition assigned
to this worker (active and standby), from the offset after the last one the store holds to
the partition's end offset at that moment, with a plain aiokafka consumer and large
fetches, and write the records in bulk (a dict update; a RocksDB write batch per chunk).
They then report that offset as the persisted one, so Faust's recovery starts there and
reads only what was written since (normally nothing): Faust still does the final catch-up,
the highwater checks and the standby bookkeeping, unchanged.

- :class:`MemoryStore` remembers the last changelog offset it applied per partition (Faust's
  memory store reports none, so every rebalance re-read everything), and keeps standby
  partitions' data when recovery completes (Faust's dropped it, so a promoted standby was
  restored from scratch): a standby worker takes a partition over by reading only the tail.
- :class:`RocksDBStore` keeps Faust's persisted offsets in RocksDB; a warm restart reads only
  the tail, a cold one (empty data directory) reads in bulk.

The stores are registered with Faust under the URL schemes ``cioproc-memory`` and
``cioproc-rocksdb`` (see :func:`store_url`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores import STORES
from faust.stores.memory import Store as FaustMemoryStore
from faust.types import TP

from cioproc.app.internals import memory_store_partitions, rocksdb_partition_db

try:  # optional: only the RocksDB store needs it
    import rocksdict
    from faust.stores.rocksdb import Store as FaustRocksDBStore
except ImportError:  # pragma: no cover - rocksdict is a declared extra
    rocksdict = None  # type: ignore[assignment]
    FaustRocksDBStore = None  # type: ignore[assignment,misc]

log = logging.getLogger("cioproc.restore")

FETCH_BYTES = 64 * 1024 * 1024  # per fetch response; a partition's share is bounded below
PARTITION_FETCH_BYTES = 8 * 1024 * 1024
CHUNK_RECORDS = 20_000

# partition -> records (key, value or None for a deletion, offset), in offset order
Apply = Callable[[int, list[tuple[bytes, bytes | None, int]]], None]


def store_url(store: str, table: str) -> str:
    """The Faust store URL of ``table`` for cioproc's ``CIOPROC_STORE`` (``memory`` or ``rocksdb``).

    The path is the table's name (what Faust's RocksDB store names its files by): a URL
    without one is false in Faust's eyes and would fall back to the app's store.
    """
    return f"cioproc-{'rocksdb' if store == 'rocksdb' else 'memory'}:{table}"


async def read_changelog(
    bootstrap: str, topic: str, starts: Mapping[int, int], apply: Apply, **client: Any
) -> tuple[dict[int, int], int]:
    """Read each partition from ``starts[p]`` to its end offset now, passing chunks to ``apply``.

    Returns the last offset read per partition (partitions with nothing to read left out)
    and the number of records.
    """
    if not starts:
        return {}, 0
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        fetch_max_bytes=FETCH_BYTES,
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
        **client,
    )
    await consumer.start()
    try:
        tps = {p: TopicPartition(topic, p) for p in starts}
        consumer.assign(list(tps.values()))
        ends = await consumer.end_offsets(list(tps.values()))
        beginnings = await consumer.beginning_offsets(list(tps.values()))
        remaining: set[TopicPartition] = set()
        for p, tp in tps.items():
            start = max(starts[p], beginnings[tp])
            if start < ends[tp]:
                consumer.seek(tp, start)
                remaining.add(tp)
        last: dict[int, int] = {}
        count = 0
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000, max_records=CHUNK_RECORDS)
            for tp, records in fetched.items():
                end = ends[tp]
                chunk = [(r.key, r.value, r.offset) for r in records if r.offset < end]
                if chunk:
                    apply(tp.partition, chunk)
                    last[tp.partition] = chunk[-1][2]
                    count += len(chunk)
                if records and records[-1].offset + 1 >= end:
                    remaining.discard(tp)
            for tp in list(remaining):  # compaction can leave the end offset without a record
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return last, count
    finally:
        await consumer.stop()


class _BulkRestore:
    """What both stores share: which partitions to read, the read itself, the log line."""

    app: Any
    table: Any

    def _changelog_tps(self) -> tuple[str, set[int]]:
        topic = self.table.changelog_topic.get_topic_name()
        assignor = self.app.assignor
        assigned = assignor.assigned_actives() | assignor.assigned_standbys()
        return topic, {tp.partition for tp in assigned if tp.topic == topic}

    def _kafka(self) -> tuple[str, dict[str, Any]]:
        config = self.app.config  # cioproc's Config (CioprocApp)
        return config.kafka.bootstrap_servers, config.kafka.aiokafka_kwargs()

    async def _bulk_restore(self, starts: dict[int, int], apply: Apply) -> dict[int, int]:
        """Read and apply; on failure log it and leave the rest to Faust's recovery (correct, slower)."""
        topic = self.table.changelog_topic.get_topic_name()
        bootstrap, client = self._kafka()
        started = time.monotonic()
        try:
            last, count = await read_changelog(bootstrap, topic, starts, apply, **client)
        except Exception as exc:  # what was applied is re-applied by Faust's recovery: same result
            log.warning("bulk restore of %s failed (%s: %s); Faust's recovery reads the changelog instead",
                        topic, type(exc).__name__, exc)
            return {}
        if count:
            log.info(
                "bulk-restored %d changelog records of %d partition(s) of %s in %.1fs",
                count, len(starts), topic, time.monotonic() - started,
            )
        return last


class MemoryStore(FaustMemoryStore[bytes, bytes], _BulkRestore):
    """Faust's memory store with bulk restore, persisted offsets in memory and kept standbys."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._offsets: dict[int, int] = {}  # partition -> last changelog offset applied

    def persisted_offset(self, tp: TP) -> int | None:
        return self._offsets.get(tp.partition)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        if offset > self._offsets.get(tp.partition, -1):
            self._offsets[tp.partition] = offset

    def apply_changelog_batch(self, batch: Iterable[Any], to_key: Any, to_value: Any) -> None:
        events = list(batch)
        super().apply_changelog_batch(events, to_key, to_value)
        for event in events:
            message = event.message
            self.set_persisted_offset(message.tp, message.offset)

    def _apply(self, partition: int, records: list[tuple[bytes, bytes | None, int]]) -> None:
        data, partitions = self.data, memory_store_partitions(self)
        for key, value, _offset in records:
            if value is None:
                data.pop(key, None)
                partitions.pop(key, None)
            else:
                data[key] = value
                partitions[key] = partition

    async def on_rebalance(self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        _topic, partitions = self._changelog_tps()
        starts = {p: self._offsets.get(p, -1) + 1 for p in partitions}
        for partition, offset in (await self._bulk_restore(starts, self._apply)).items():
            self._offsets[partition] = offset

    async def on_recovery_completed(self, active_tps: Any, standby_tps: Any) -> None:
        """Drop the data of partitions neither active nor standby here (Faust's dropped standbys too)."""
        keep = {tp.partition for tp in active_tps} | {tp.partition for tp in standby_tps}
        key_partition = memory_store_partitions(self)
        gone = [key for key, partition in key_partition.items() if partition not in keep]
        for key in gone:
            self.data.pop(key, None)
            key_partition.pop(key, None)
        for partition in [p for p in self._offsets if p not in keep]:
            del self._offsets[partition]


if FaustRocksDBStore is not None:

    class RocksDBStore(FaustRocksDBStore, _BulkRestore):
        """Faust's RocksDB store (rocksdict) with bulk restore from the persisted offset on."""

        def _apply(self, partition: int, records: list[tuple[bytes, bytes | None, int]]) -> None:
            batch = rocksdict.WriteBatch(raw_mode=True)
            for key, value, _offset in records:
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            rocksdb_partition_db(self, partition).write(batch)
            self.set_persisted_offset(TP(self.table.changelog_topic.get_topic_name(), partition), records[-1][2])

        async def on_rebalance(
            self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0
        ) -> None:
            await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
            topic, partitions = self._changelog_tps()
            starts = {}
            for p in partitions:
                persisted = self.persisted_offset(TP(topic, p))
                starts[p] = (persisted if persisted is not None else -1) + 1
            await self._bulk_restore(starts, self._apply)

    STORES.aliases["cioproc-rocksdb"] = f"{__name__}:RocksDBStore"

STORES.aliases["cioproc-memory"] = f"{__name__}:MemoryStore"
