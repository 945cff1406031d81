"""The users table's store interface (cioproc.store.UserStore), one contract for both stores:
built as the worker builds them (Faust resolves the store URL), used through the interface only.

The bulk restore that calls ``apply_changelog`` against a real changelog: test_recovery_restore.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from faust.types import TP
from helpers_app import UNIT_CHANGELOG, unit_config, unit_topics

from cioproc.app.factory import create_app
from cioproc.app.internals import memory_store_partitions
from cioproc.store import UserStore


def build_store(tmp_path: Path, kind: str) -> UserStore:
    app = create_app("processor", unit_config(tmp_path, CIOPROC_STORE=kind), unit_topics(tmp_path), app_id="unit")
    Path(app.conf.tabledir).mkdir(parents=True, exist_ok=True)
    store: UserStore = app.tables["users"].data
    return store


@pytest.fixture(params=["memory", "rocksdb"])
def store(request, tmp_path) -> Iterator[UserStore]:
    built = build_store(tmp_path, request.param)
    yield built
    for db in getattr(built, "_dbs", {}).values():  # RocksDB: close the partitions' databases
        db.close()


def offsets(store: UserStore, *partitions: int) -> list[int | None]:
    """Faust's persisted offsets: where its recovery (and the bulk restore) start reading."""
    return [store.persisted_offset(TP(UNIT_CHANGELOG, p)) for p in partitions]  # type: ignore[attr-defined]


def test_states_are_written_and_read_back_by_partition_and_tombstones_delete(store):
    assert store.read_state(3, b"u1") is None
    store.write_states({(3, b"u1"): b"s1", (5, b"u2"): b"s2", (5, b"u3"): b"s3"}, {3: 41, 5: 7})
    assert [store.read_state(3, b"u1"), store.read_state(5, b"u2"), store.read_state(5, b"u3")] == [b"s1", b"s2", b"s3"]
    assert store.read_state(5, b"u1") is None  # a state lives in the partition it was written to
    assert offsets(store, 3, 5, 0) == [41, 7, None]

    store.write_states({(3, b"u1"): b"s1b", (5, b"u2"): None}, {3: 42, 5: 8})
    assert store.read_state(3, b"u1") == b"s1b" and store.read_state(5, b"u2") is None
    assert offsets(store, 3, 5) == [42, 8]
    # Faust's own per-key lookups see the same data.
    assert store[b"u3"] == b"s3" and b"u2" not in store and store[b"u1"] == b"s1b"


def test_persisted_offsets_never_go_backwards(store):
    store.write_states({(3, b"u1"): b"s1"}, {3: 42})
    store.write_states({(3, b"u1"): b"s1c"}, {3: 30})
    store.apply_changelog(3, [(b"u9", b"old", 12)])
    assert offsets(store, 3) == [42]
    assert store.read_state(3, b"u1") == b"s1c"


def test_changelog_records_are_applied_in_order(store):
    store.write_states({(7, b"a"): b"before"}, {7: 99})
    store.apply_changelog(7, [(b"a", b"1", 100), (b"b", b"2", 101), (b"a", None, 102), (b"c", b"3", 103),
                              (b"b", b"2b", 104)])
    assert [store.read_state(7, key) for key in (b"a", b"b", b"c")] == [None, b"2b", b"3"]
    assert offsets(store, 7, 6) == [104, None]
    store.apply_changelog(6, [(b"d", None, 0)])  # deleting what is not there
    assert store.read_state(6, b"d") is None and offsets(store, 6) == [0]


def test_the_memory_store_keeps_the_key_partitions_fausts_recovery_uses(tmp_path):
    """Faust's memory store drops, after a rebalance's recovery, the keys of partitions that
    left (``on_recovery_completed``), by its key -> partition map: every write keeps it."""
    store = build_store(tmp_path, "memory")
    store.write_states({(3, b"u1"): b"s1", (5, b"u2"): b"s2"}, {3: 1, 5: 1})
    store.apply_changelog(5, [(b"u3", b"s3", 2), (b"u2", None, 3)])
    store.apply_changelog(4, [(b"u4", b"s4", 0)])
    assert memory_store_partitions(store) == {b"u1": 3, b"u3": 5, b"u4": 4}

    asyncio.run(store.on_recovery_completed({TP(UNIT_CHANGELOG, 3)}, {TP(UNIT_CHANGELOG, 4)}))  # type: ignore[attr-defined]
    assert memory_store_partitions(store) == {b"u1": 3, b"u4": 4}
    assert store.read_state(3, b"u1") == b"s1" and store.read_state(5, b"u3") is None
    assert offsets(store, 3, 4, 5) == [1, 0, None]
