"""Faust's RocksDB store (rocksdict) as a :class:`~cioproc.store.interface.UserStore`, with
the bulk restore.

Faust keeps one RocksDB per partition and the partition's persisted changelog offset in it:
a warm restart reads only the changelog written since, a cold one (empty data directory)
reads it in bulk. Writes are one RocksDB write batch per partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import rocksdict
from faust.stores.rocksdb import Store as FaustRocksDBStore
from faust.types import TP

from cioproc.app.internals import rocksdb_partition_db
from cioproc.store.changelog import ChangelogRestore
from cioproc.store.interface import ChangelogRecord, States


class RocksDBStore(FaustRocksDBStore, ChangelogRestore):
    """Faust's RocksDB store with UserStore and bulk restore from the persisted offset on."""

    # UserStore

    def read_state(self, partition: int, key: bytes) -> bytes | None:
        value: bytes | None = rocksdb_partition_db(self, partition).get(key)
        return value

    def write_states(self, states: States, changelog_offsets: Mapping[int, int]) -> None:
        by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for (partition, key), value in states.items():
            by_partition.setdefault(partition, []).append((key, value))
        for partition, pairs in by_partition.items():
            self._write(partition, pairs)
        for partition, offset in changelog_offsets.items():
            self._advance(partition, offset)

    def apply_changelog(self, partition: int, records: Sequence[ChangelogRecord]) -> None:
        if records:
            self._write(partition, ((key, value) for key, value, _offset in records))
            self._advance(partition, records[-1][2])

    # Faust's store

    async def on_rebalance(self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        await self.restore_from_changelog()

    def _write(self, partition: int, pairs: Iterable[tuple[bytes, bytes | None]]) -> None:
        """One write batch: set, or (value None) delete, each key in order."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in pairs:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        rocksdb_partition_db(self, partition).write(batch)

    def _advance(self, partition: int, offset: int) -> None:
        tp = TP(self.table.changelog_topic.get_topic_name(), partition)
        persisted = self.persisted_offset(tp)
        if persisted is None or offset > persisted:
            self.set_persisted_offset(tp, offset)
