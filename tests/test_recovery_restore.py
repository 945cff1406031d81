"""The bulk table restore (cioproc.store.changelog) against the real broker: what it reads,
where it starts, what the stores hold and report afterwards.

The worker-level proof that a restored table maps exactly as before (memory and RocksDB, a
killed worker restarted, a second worker taking over) is in test_processor_kafka; the
restore's speed is measured by bench/recovery.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from faust.types import TP
from helpers_kafka import create_topics, produce_sync, write_topics_file

from cioproc.app.factory import create_app
from cioproc.config import parse_config
from cioproc.store import store_url
from cioproc.store.changelog import read_changelog
from cioproc.store.memory import MemoryStore
from cioproc.store.rocksdb import RocksDBStore

pytestmark = pytest.mark.kafka

PARTITIONS = 3


@pytest.fixture
def changelog(kafka_bootstrap, unique, tmp_path):
    """An app id and its changelog topic (3 partitions) on the test broker."""
    app_id = f"restore-{unique}"
    path, topics = write_topics_file(tmp_path, unique, app_id, partitions=PARTITIONS)
    create_topics(kafka_bootstrap, topics)
    return app_id, topics, topics.by_role("table_changelog").name


def produce(bootstrap: str, topic: str, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
    produce_sync(bootstrap, topic, records, partition=partition)


def test_read_changelog_reads_each_partition_from_its_start_to_the_end_it_had(kafka_bootstrap, changelog):
    _app_id, _topics, topic = changelog
    produce(kafka_bootstrap, topic, 0, [(b"a", b"1"), (b"b", b"2"), (b"a", b"3")])
    produce(kafka_bootstrap, topic, 1, [(b"c", b"4"), (b"c", None), (b"d", b"5")])
    seen: dict[int, list] = {}

    def apply(partition, records):
        seen.setdefault(partition, []).extend(records)

    last, count = asyncio.run(read_changelog(kafka_bootstrap, topic, {0: 0, 1: 1, 2: 0}, apply))
    assert seen == {0: [(b"a", b"1", 0), (b"b", b"2", 1), (b"a", b"3", 2)], 1: [(b"c", None, 1), (b"d", b"5", 2)]}
    assert last == {0: 2, 1: 2} and count == 5  # partition 2 is empty: nothing to read, no offset

    seen.clear()
    last, count = asyncio.run(read_changelog(kafka_bootstrap, topic, {0: 3, 1: 3}, apply))
    assert (seen, last, count) == ({}, {}, 0)  # already at the end
    assert asyncio.run(read_changelog(kafka_bootstrap, topic, {}, apply)) == ({}, 0)


def store_for(tmp_path: Path, bootstrap: str, app_id: str, topics, store: str, monkeypatch, actives, standbys):
    """The users table's store of a processor app, with the assignment a rebalance would give it."""
    config = parse_config({"CIOPROC_DATA_DIR": str(tmp_path / "data"), "CIOPROC_STORE": store,
                           "KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    app = create_app("processor", config, topics, app_id=app_id)
    Path(app.conf.tabledir).mkdir(parents=True, exist_ok=True)
    table = app.tables["users"]
    topic = topics.by_role("table_changelog").name
    monkeypatch.setattr(app.assignor, "assigned_actives", lambda: {TP(topic, p) for p in actives})
    monkeypatch.setattr(app.assignor, "assigned_standbys", lambda: {TP(topic, p) for p in standbys})
    return table.data


def test_the_stores_are_faust_stores_with_a_bulk_restore():
    assert store_url("memory", "users") == "cioproc-memory:users"
    assert store_url("rocksdb", "users") == "cioproc-rocksdb:users"


def test_memory_store_restores_in_bulk_remembers_offsets_and_keeps_standbys(kafka_bootstrap, changelog, tmp_path,
                                                                           monkeypatch):
    app_id, topics, topic = changelog
    for p in range(PARTITIONS):
        produce(kafka_bootstrap, topic, p, [(f"u{p}-{i}".encode(), f"s{p}-{i}".encode()) for i in range(50)])
    produce(kafka_bootstrap, topic, 1, [(b"u1-0", b"newer"), (b"u1-1", None)])
    store = store_for(tmp_path, kafka_bootstrap, app_id, topics, "memory", monkeypatch, {0, 1}, {2})
    assert isinstance(store, MemoryStore)

    asyncio.run(store.on_rebalance(set(), set(), set(), 0))
    assert len(store.data) == 149  # 150 users, one deleted
    assert store.data[b"u1-0"] == b"newer" and b"u1-1" not in store.data
    assert store.data[b"u2-7"] == b"s2-7" and store._key_partition[b"u2-7"] == 2
    assert [store.persisted_offset(TP(topic, p)) for p in range(PARTITIONS)] == [49, 51, 49]

    # The next rebalance reads only what was written since.
    produce(kafka_bootstrap, topic, 0, [(b"u0-3", b"later")])
    reads = []
    original = store.apply_changelog
    monkeypatch.setattr(store, "apply_changelog",
                        lambda p, records: (reads.append((p, len(records))), original(p, records)))
    asyncio.run(store.on_rebalance(set(), set(), set(), 1))
    assert reads == [(0, 1)] and store.data[b"u0-3"] == b"later"
    assert store.persisted_offset(TP(topic, 0)) == 50

    # Recovery done with 0 active and 2 standby: partition 1's data and offset go, the standby stays.
    asyncio.run(store.on_recovery_completed({TP(topic, 0)}, {TP(topic, 2)}))
    assert {store._key_partition[k] for k in store.data} == {0, 2}
    assert store.persisted_offset(TP(topic, 1)) is None and store.persisted_offset(TP(topic, 2)) == 49


def test_rocksdb_store_restores_cold_in_bulk_and_warm_from_its_persisted_offset(kafka_bootstrap, changelog, tmp_path,
                                                                                monkeypatch):
    app_id, topics, topic = changelog
    for p in range(PARTITIONS):
        produce(kafka_bootstrap, topic, p, [(f"u{p}-{i}".encode(), f"s{p}-{i}".encode()) for i in range(40)])
    produce(kafka_bootstrap, topic, 2, [(b"u2-5", None)])

    cold = store_for(tmp_path, kafka_bootstrap, app_id, topics, "rocksdb", monkeypatch, {0, 1, 2}, set())
    assert isinstance(cold, RocksDBStore)
    asyncio.run(cold.on_rebalance({TP(topic, p) for p in range(PARTITIONS)}, set(),
                                  {TP(topic, p) for p in range(PARTITIONS)}, 0))
    assert cold._db_for_partition(1).get(b"u1-39") == b"s1-39"
    assert cold._db_for_partition(2).get(b"u2-5") is None
    assert [cold.persisted_offset(TP(topic, p)) for p in range(PARTITIONS)] == [39, 39, 40]
    for db in cold._dbs.values():
        db.close()

    # A restart on the same data directory: only the record written since is read.
    produce(kafka_bootstrap, topic, 1, [(b"u1-0", b"changed")])
    warm = store_for(tmp_path, kafka_bootstrap, app_id, topics, "rocksdb", monkeypatch, {0, 1, 2}, set())
    reads = []
    original = warm.apply_changelog
    monkeypatch.setattr(warm, "apply_changelog",
                        lambda p, records: (reads.append((p, len(records))), original(p, records)))
    asyncio.run(warm.on_rebalance({TP(topic, p) for p in range(PARTITIONS)}, set(),
                                  {TP(topic, p) for p in range(PARTITIONS)}, 0))
    assert reads == [(1, 1)]
    assert warm._db_for_partition(1).get(b"u1-0") == b"changed"
    assert warm._db_for_partition(0).get(b"u0-12") == b"s0-12"
    assert warm.persisted_offset(TP(topic, 1)) == 40
    for db in warm._dbs.values():
        db.close()


def test_the_processors_writes_are_not_read_back_by_the_next_rebalance(kafka_bootstrap, changelog, tmp_path,
                                                                        monkeypatch):
    """The processor's own writes count as applied: the next rebalance reads only what follows them."""
    app_id, topics, topic = changelog
    produce(kafka_bootstrap, topic, 0, [(b"u", b"state-0"), (b"u", b"state-1"), (b"v", b"state-2")])
    store = store_for(tmp_path, kafka_bootstrap, app_id, topics, "memory", monkeypatch, {0}, set())
    store.write_states({(0, b"u"): b"state-1"}, {0: 1})  # as the processor does, once records 0-1 are acked
    reads = []
    original = store.apply_changelog
    monkeypatch.setattr(store, "apply_changelog",
                        lambda p, records: (reads.append(records), original(p, records)))
    asyncio.run(store.on_rebalance(set(), set(), set(), 0))
    assert reads == [[(b"v", b"state-2", 2)]]
    assert store.read_state(0, b"u") == b"state-1" and store.persisted_offset(TP(topic, 0)) == 2


def test_a_second_worker_takes_over_from_its_standby_copy(kafka_bootstrap, unique, tmp_path):
    """Two processors: each holds a standby copy of the other's partitions. When one stops, the
    other takes its partitions over reading (almost) nothing from the changelog."""
    import signal

    from pipeline_harness import Pipeline, batches

    assigned = "Setting newly assigned partitions"

    def since_last_assignment(name: str) -> str:
        log = p.log(name)
        return log.rsplit(assigned, 1)[-1] if assigned in log else ""

    p = Pipeline(kafka_bootstrap, unique, tmp_path)
    try:
        p.start_worker("one", "processor")
        p.start_worker("two", "processor")
        p.wait_for(lambda: all("Worker ready" in since_last_assignment(n) for n in ("one", "two")), 60,
                   "both workers ready")
        records = batches(users=1000, events=6000, seed=71)
        p.produce(records)
        p.wait_for(lambda: p.caught_up(p.app_id, "batches"), 60, "the input processed")
        states = len(p.read("table_changelog"))
        assert states > 1000
        time.sleep(2)  # standby copies follow the changelog
        assert p.kill("one", signal.SIGTERM) == 0
        p.wait_for(lambda: "Worker ready" in since_last_assignment("two") and p.log("two").count(assigned) >= 2,
                   60, "the takeover")
        takeover = since_last_assignment("two")
        read = sum(int(line.split("bulk-restored ", 1)[1].split()[0])
                   for line in takeover.splitlines() if "bulk-restored" in line)
        assert read < states // 20, takeover[-3000:]  # the standby copy was current: only a tail, if anything
        p.produce(batches(users=1000, events=2000, seed=72))
        p.wait_for(lambda: p.caught_up(p.app_id, "batches"), 60, "input after the takeover")
    finally:
        p.close()


def test_a_failed_bulk_restore_leaves_the_work_to_fausts_recovery(changelog, tmp_path, monkeypatch, caplog):
    app_id, topics, topic = changelog
    store = store_for(tmp_path, "127.0.0.1:1", app_id, topics, "memory", monkeypatch, {0, 1}, set())
    asyncio.run(store.on_rebalance(set(), set(), set(), 0))  # no broker there: no exception either
    assert "Faust's recovery reads the changelog instead" in caplog.text
    assert store.persisted_offset(TP(topic, 0)) is None and not store.data
