"""Partition-explicit access to the users table's local store.

Faust's stores find a key's partition through the event being processed (a context
variable set by ``async for event in stream``). The processor maps a whole chunk of
records outside that loop, so it names the partition itself: a record's state lives in the
partition the record came from (the input topics and the changelog are co-partitioned).

Writes happen only after the changelog records for them are acknowledged (see
:mod:`cioproc.app.processor`), so the local store is never ahead of the changelog. For the
RocksDB store the changelog offset is recorded with the data (Faust's "persisted offset"),
which lets a restarted worker read only the changelog written since; the memory store of
:mod:`cioproc.app.fast_restore` keeps it too, so a rebalance reads only what is newer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from faust.stores.memory import Store as MemoryStore
from faust.types import TP

from cioproc.app.internals import memory_store_partitions, rocksdb_partition_db

try:  # optional: only the RocksDB store needs it
    import rocksdict
    from faust.stores.rocksdb import Store as RocksDBStore
except ImportError:  # pragma: no cover - rocksdict is a declared extra
    rocksdict = None  # type: ignore[assignment]
    RocksDBStore = None  # type: ignore[assignment,misc]


class TableStore:
    """Read and write raw state bytes by (partition, key) in a Faust table's store."""

    def __init__(self, table: Any, changelog_topic: str):
        self.table = table
        self.changelog_topic = changelog_topic

    @property
    def store(self) -> Any:
        return self.table.data

    def get(self, partition: int, key: bytes) -> bytes | None:
        store = self.store
        value: bytes | None
        if isinstance(store, MemoryStore):
            value = store.data.get(key)
            return value
        if RocksDBStore is not None and isinstance(store, RocksDBStore):
            value = rocksdb_partition_db(store, partition).get(key)
            return value
        raise TypeError(f"unsupported table store {type(store).__name__}")

    def put(self, states: Mapping[tuple[int, bytes], bytes | None], changelog_offsets: Mapping[int, int]) -> None:
        """Store states whose changelog records are acknowledged at ``changelog_offsets`` (per
        partition); a ``None`` state (a tombstone) deletes the key."""
        store = self.store
        if isinstance(store, MemoryStore):
            data, partitions = store.data, memory_store_partitions(store)
            for (partition, key), value in states.items():
                if value is None:
                    data.pop(key, None)
                    partitions.pop(key, None)
                    continue
                data[key] = value
                partitions[key] = partition
            for partition, offset in changelog_offsets.items():  # cioproc's memory store keeps these
                store.set_persisted_offset(TP(self.changelog_topic, partition), offset)
            return
        if RocksDBStore is not None and isinstance(store, RocksDBStore):
            batches: dict[int, Any] = defaultdict(lambda: rocksdict.WriteBatch(raw_mode=True))
            for (partition, key), value in states.items():
                if value is None:
                    batches[partition].delete(key)
                else:
                    batches[partition].put(key, value)
            for partition, batch in batches.items():
                rocksdb_partition_db(store, partition).write(batch)
            for partition, offset in changelog_offsets.items():
                store.set_persisted_offset(TP(self.changelog_topic, partition), offset)
            return
        raise TypeError(f"unsupported table store {type(store).__name__}")
