"""Faust's memory store as a :class:`~cioproc.store.interface.UserStore`, with the bulk restore.

Beyond Faust's: it remembers the last changelog offset it holds per partition (Faust's memory
store reports none, so every rebalance re-read everything), and keeps standby partitions'
data when recovery completes (Faust's dropped it, so a promoted standby was restored from
scratch): a standby worker takes a partition over by reading only the tail.

Every write keeps Faust's key -> partition map (``memory_store_partitions``), which its
recovery and ours use to drop the keys of partitions that left this worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from faust.stores.memory import Store as FaustMemoryStore
from faust.types import TP

from cioproc.app.internals import memory_store_partitions
from cioproc.store.changelog import ChangelogRestore
from cioproc.store.interface import ChangelogRecord, States


class MemoryStore(FaustMemoryStore[bytes, bytes], ChangelogRestore):
    """Faust's memory store with UserStore, bulk restore, persisted offsets and kept standbys."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._offsets: dict[int, int] = {}  # partition -> last changelog offset held

    # UserStore

    def read_state(self, partition: int, key: bytes) -> bytes | None:
        if memory_store_partitions(self).get(key) != partition:
            return None
        value: bytes | None = self.data.get(key)
        return value

    def write_states(self, states: States, changelog_offsets: Mapping[int, int]) -> None:
        data, partitions = self.data, memory_store_partitions(self)
        for (partition, key), value in states.items():
            _put(data, partitions, partition, key, value)
        for partition, offset in changelog_offsets.items():
            self._advance(partition, offset)

    def apply_changelog(self, partition: int, records: Sequence[ChangelogRecord]) -> None:
        data, partitions = self.data, memory_store_partitions(self)
        for key, value, _offset in records:
            _put(data, partitions, partition, key, value)
        if records:
            self._advance(partition, records[-1][2])

    # Faust's store

    def persisted_offset(self, tp: TP) -> int | None:
        return self._offsets.get(tp.partition)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self._advance(tp.partition, offset)

    def apply_changelog_batch(self, batch: Iterable[Any], to_key: Any, to_value: Any) -> None:
        """Faust's recovery (per record), which also moves the persisted offsets."""
        events = list(batch)
        super().apply_changelog_batch(events, to_key, to_value)
        for event in events:
            self._advance(event.message.partition, event.message.offset)

    async def on_rebalance(self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        await self.restore_from_changelog()

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

    def _advance(self, partition: int, offset: int) -> None:
        if offset > self._offsets.get(partition, -1):
            self._offsets[partition] = offset


def _put(data: Any, partitions: dict[bytes, int], partition: int, key: bytes, value: bytes | None) -> None:
    """Set or (``value`` None) delete a key, and its partition in Faust's map."""
    if value is None:
        data.pop(key, None)
        partitions.pop(key, None)
    else:
        data[key] = value
        partitions[key] = partition
