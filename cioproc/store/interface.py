"""The one interface of the users table's stores, by (partition, MPID key) and raw bytes.

Faust's stores find a key's partition through the event being processed (a context variable
set by ``async for event in stream``). The processor plans a whole chunk of records outside
that loop, and the bulk restore reads the changelog itself, so both name the partition: a
user's state lives in the partition its records came from (the input topics and the
changelog are co-partitioned).

Writes follow the changelog: the processor writes a chunk's states only after their
changelog records are acknowledged (:mod:`cioproc.app.processor`) and passes those offsets,
and the bulk restore applies records read from the changelog. Either way the store records
the changelog offset it now holds per partition (Faust's *persisted offset*, never moved
back), which is where the next rebalance's restore starts reading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

# A changelog record: (key, value or None for a deletion, offset).
ChangelogRecord = tuple[bytes, bytes | None, int]
# A chunk's states: (partition, key) -> state, or None for a deletion.
States = Mapping[tuple[int, bytes], bytes | None]


class UserStore(Protocol):
    """Read a user's raw state, write a chunk's states, apply changelog records."""

    def read_state(self, partition: int, key: bytes) -> bytes | None:
        """The stored state of ``key`` in ``partition``; None when there is none."""

    def write_states(self, states: States, changelog_offsets: Mapping[int, int]) -> None:
        """Store a chunk's states by (partition, key), a None state (a tombstone) deleting the key,
        whose changelog records are acknowledged up to ``changelog_offsets`` (per partition)."""

    def apply_changelog(self, partition: int, records: Sequence[ChangelogRecord]) -> None:
        """Apply one partition's changelog records, in offset order (a None value deletes),
        and advance the partition's persisted offset to the last record's."""
