"""The processor worker against the real broker: rules end to end, dead letters, restart, scale-out.

Workers are real processes (``python -m cioproc.app.worker processor``) reading topics
with unique names; inputs are produced and commands read with aiokafka. The expected
commands come from the mapping core applied to each user's inputs in order: the processor
must produce exactly that, whatever the chunking, partitioning and restarts.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from helpers_kafka import (
    WorkerPool,
    committed_offsets,
    create_topics,
    end_offsets,
    produce_sync,
    read_topic_sync,
    wait_committed,
    when_end_offsets_reach,
    write_topics_file,
)

from cioproc.app.dead_letters import read_dead_letter_headers
from cioproc.mapping import map_audience, map_batch, parse_audience_change, parse_batch
from cioproc.models.commands import Command, CommandKind, decode_record
from cioproc.models.settings import MappingSettings

pytestmark = pytest.mark.kafka

SETTINGS = MappingSettings(send_created_at=True, audience_attribute_per_segment=True)
WORKER_ENV = {"CIO_SEND_CREATED_AT": "true", "CIO_AUDIENCE_ATTRIBUTE_PER_SEGMENT": "true"}
T0 = 1_735_689_600_000  # 2025-01-01, ms


# ---- inputs and the reference they must produce ---------------------------------------------


def first_run(ts: int) -> dict:
    return {"event_type": "first_run", "data": {"timestamp_unixtime_ms": ts}}


def track(name: str, ts: int, message_id: str, **data: Any) -> dict:
    body = {"event_name": name, "timestamp_unixtime_ms": ts, "source_message_id": message_id}
    if data:
        body["custom_attributes"] = data
    return {"event_type": "custom_event", "data": body}


def screen(name: str, ts: int, message_id: str) -> dict:
    return {
        "event_type": "screen_view",
        "data": {"screen_name": name, "timestamp_unixtime_ms": ts, "source_message_id": message_id},
    }


def batch(mpid: int, ts: int, events: list[dict], *, identities: dict | None = None, attributes: dict | None = None,
          platform: str = "iOS") -> bytes:
    os_name = {"iOS": "IOS", "Android": "Android", "web": "MobileWeb"}[platform]
    return orjson.dumps(
        {
            "mpid": mpid,
            "timestamp_unixtime_ms": ts,
            "batch_id": ts,
            "user_identities": {"customer_id": f"c-{mpid}", "email": f"u{mpid}@example.com"}
            if identities is None
            else identities,
            "user_attributes": {"$FirstName": "Ann", "$LastName": "Lee", "plan": "gold"}
            if attributes is None
            else attributes,
            "device_info": {"platform": platform},
            "application_info": {"os": os_name},
            "events": events,
        }
    )


def audience(ts: int, *profiles: tuple[int, list[tuple[int, str, str]]]) -> bytes:
    return orjson.dumps({
        "type": "audience_membership_change_request",
        "id": f"a-{ts}",
        "timestamp_ms": ts,
        "user_profiles": [
            {
                "mpid": str(mpid),
                "user_identities": [{"type": "customer", "encoding": "raw", "value": f"c-{mpid}"}],
                "audiences": [{"audience_id": a, "audience_name": n, "action": act} for a, act, n in changes],
            }
            for mpid, changes in profiles
        ],
    })


@dataclass
class Inputs:
    """Records to produce, in order, and the reference mapping of them (per user, in order)."""

    records: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)  # (role, key, value)
    sources: dict[str, list[tuple[str, Command]]] = field(default_factory=lambda: defaultdict(list))  # (role, command)
    states: dict[str, Any] = field(default_factory=dict)

    @property
    def expected(self) -> dict[str, list[Command]]:
        return {mpid: [command for _, command in pairs] for mpid, pairs in self.sources.items()}

    def add_batch(self, raw: bytes, key: bytes | None | str = "mpid") -> None:
        parsed = parse_batch(raw)
        self.records.append(("batches", parsed.mpid.encode() if key == "mpid" else key, raw))
        result = map_batch(parsed, self.states.get(parsed.mpid), SETTINGS)
        self.states[parsed.mpid] = result.state
        self.sources[parsed.mpid].extend(("batches", command) for command in result.commands)

    def add_audience(self, raw: bytes, key: bytes) -> None:
        self.records.append(("audiences", key, raw))
        for profile in parse_audience_change(raw):
            result = map_audience(profile, self.states.get(profile.mpid), SETTINGS)
            self.states[profile.mpid] = result.state
            self.sources[profile.mpid].extend(("audiences", command) for command in result.commands)

    def add_bad(self, key: bytes | None, value: bytes | None) -> None:
        self.records.append(("batches", key, value))


def produce_inputs(bootstrap: str, topics, records) -> None:
    for role in ("batches", "audiences"):
        chosen = [(key, value) for r, key, value in records if r == role]
        if chosen:
            produce_sync(bootstrap, topics.by_role(role).name, chosen)


def produce_in_phases(bootstrap: str, topics, app_id: str, records, workers) -> None:
    """Batches, processed and committed, then audience changes: the two topics have no order
    between them, so the reference (which maps in list order) needs one here."""
    for role in ("batches", "audiences"):
        produce_inputs(bootstrap, topics, [r for r in records if r[0] == role])
        wait_committed(bootstrap, app_id, input_topics(topics), workers=workers)


def by_user(records) -> dict[str, list[Command]]:
    result: dict[str, list[Command]] = defaultdict(list)
    for record in records:
        for command in decode_record(record.value, record.headers):
            assert record.key == command.mpid.encode()
            result[command.mpid].append(command)
    return result


def count_commands(records) -> int:
    """Commands in command records (a record holds one input's commands for one user)."""
    return sum(len(decode_record(record.value, record.headers)) for record in records)


def read_commands(bootstrap: str, topics, at_least: int) -> list:
    """The commands topic's records, once they hold ``at_least`` commands."""
    return read_topic_sync(bootstrap, topics.by_role("commands").name, lambda r: count_commands(r) >= at_least,
                           timeout=60)


def is_subsequence(needle: list, haystack: list) -> bool:
    it = iter(haystack)
    return all(any(x == y for y in it) for x in needle)


def _kafka_env(bootstrap: str, directory, unique: str):
    """Unique topics (4 partitions) and app id, and a pool whose workers die with the fixture."""
    app_id = f"test-{unique}"
    path, topics = write_topics_file(directory, unique, app_id)
    create_topics(bootstrap, topics)
    pool = WorkerPool(directory, {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "CIOPROC_TOPICS_FILE": str(path),
                                  "CIOPROC_APP_ID": app_id, **WORKER_ENV})
    try:
        yield bootstrap, topics, app_id, pool
    finally:
        pool.close()


@pytest.fixture
def kafka_env(kafka_bootstrap, tmp_path, unique):
    yield from _kafka_env(kafka_bootstrap, tmp_path, unique)


@pytest.fixture(scope="module")
def module_kafka_env(kafka_bootstrap, tmp_path_factory):
    yield from _kafka_env(kafka_bootstrap, tmp_path_factory.mktemp("rules"), uuid.uuid4().hex[:10])


def input_topics(topics) -> list[str]:
    return [topics.by_role("batches").name, topics.by_role("audiences").name]


# ---- every mapping rule, end to end; dead letters --------------------------------------------------


def rules_inputs() -> Inputs:
    inputs = Inputs()
    # 1: customer id and email; iOS first run -> created_at; all attributes; events renamed.
    inputs.add_batch(batch(1001, T0, [
        {"event_type": "session_start", "data": {"timestamp_unixtime_ms": T0}},
        first_run(T0 + 1),
        track("  Add to Cart ", T0 + 2000, "m1", sku="A-1", price=9.5),
        screen("Product Detail", T0 + 3000, "m2"),
        {"event_type": "commerce_event", "data": {"timestamp_unixtime_ms": T0 + 3500}},
    ], attributes={"$FirstName": "Ann", "$LastName": "Lee", "$City": "Lisbon", "favourite": ["jazz", "rock"]}))
    # 2: email only -> addressed by email.
    inputs.add_batch(batch(1002, T0 + 10, [track("Search", T0 + 4000, "m3", q="shoes")],
                           identities={"email": "only@example.com"}))
    # 3: no customer id, no email -> nothing forwarded (a counted drop).
    inputs.add_batch(batch(1003, T0 + 20, [track("Search", T0 + 5000, "m4")], identities={}))
    # 4: opt-out -> unsubscribe, once; the profile stays.
    inputs.add_batch(batch(1004, T0 + 30, [
        {"event_type": "opt_out", "data": {"is_opted_out": True, "timestamp_unixtime_ms": T0 + 6000}},
    ]))
    inputs.add_batch(batch(1004, T0 + 40, [
        {"event_type": "opt_out", "data": {"is_opted_out": True, "timestamp_unixtime_ms": T0 + 7000}},
        track("Browse", T0 + 7100, "m5"),
    ]))
    # 5: email first, customer id later -> identify by id carrying the email (identity upgrade).
    inputs.add_batch(batch(1005, T0 + 50, [track("Open", T0 + 8000, "m6")], identities={"email": "up@example.com"}))
    inputs.add_batch(batch(1005, T0 + 60, [track("Open", T0 + 9000, "m7")],
                           identities={"email": "up@example.com", "customer_id": "c-1005"}))
    # 6: audiences: two added, one removed later; "In <name>" per segment.
    inputs.add_batch(batch(1006, T0 + 70, [screen("Home", T0 + 10_000, "m8")]))
    inputs.add_audience(audience(T0 + 11_000, (1006, [(31, "add", "Gold"), (32, "add", "Beta")])), b"1006")
    inputs.add_audience(audience(T0 + 12_000, (1006, [(32, "delete", "Beta")])), b"1006")
    # 7: a later device type becomes the created_at source; unchanged attributes are not re-sent.
    inputs.add_batch(batch(1001, T0 + 80, [first_run(T0 + 13_000), track("Add to Cart", T0 + 13_100, "m9")],
                           attributes={"$FirstName": "Ann", "$LastName": "Lee", "$City": "Lisbon",
                                       "favourite": ["jazz", "rock"]}, platform="Android"))
    # 8: no key at all, and one audience message for two users (split to their partitions).
    inputs.add_batch(batch(1008, T0 + 90, [track("Keyless", T0 + 14_000, "m10")]), key=None)
    inputs.add_audience(audience(T0 + 15_000, (1009, [(40, "add", "New")]), (1010, [(41, "add", "Old")])), b"1009")
    return inputs


BAD = [
    (b"bad-1", b"this is not json", "not_json"),
    (b"bad-2", b'{"hello": "world"}', "missing_mpid"),
    (b"bad-3", b'{"mpid": 77, "user_identities": {}, "events": "none"}', "events_not_a_list"),
    (b"bad-4", bytes(range(256))[::7] + b"\xff\xfe", "not_utf8"),
    (b"bad-5", None, "empty_record"),
]


@pytest.fixture(scope="module")
def rules_run(module_kafka_env):
    """One worker over every rule plus malformed records; returns what it wrote."""
    bootstrap, topics, app_id, pool = module_kafka_env
    inputs = rules_inputs()
    before, after = inputs.records[:6], inputs.records[6:]
    for key, value, _ in BAD:  # malformed records between good ones: processing goes on
        before.append(("batches", key, value))
    produce_inputs(bootstrap, topics, before)
    worker = pool.start()
    produce_in_phases(bootstrap, topics, app_id, after, [worker])
    total = sum(len(v) for v in inputs.expected.values())
    dead = read_topic_sync(bootstrap, topics.by_role("batches_dlq").name, lambda r: len(r) >= len(BAD), timeout=30)
    commands = read_commands(bootstrap, topics, total)  # everything committed: nothing more will come
    return RulesRun(inputs, commands, dead, worker, topics, bootstrap)


@dataclass
class RulesRun:
    inputs: Inputs
    commands: list
    dead: list
    worker: Any
    topics: Any
    bootstrap: str


def test_every_mapping_rule_end_to_end_exact_commands_in_per_user_order(rules_run):
    inputs, worker = rules_run.inputs, rules_run.worker
    got = by_user(rules_run.commands)
    assert got == {mpid: commands for mpid, commands in inputs.expected.items() if commands}
    u1 = got["1001"]
    assert [c.kind for c in u1] == [CommandKind.IDENTIFY, CommandKind.TRACK, CommandKind.SCREEN,
                                    CommandKind.IDENTIFY, CommandKind.TRACK]
    assert (u1[0].id_type, u1[0].id_value) == ("id", "c-1001")
    assert u1[0].attributes["first_name"] == "Ann" and u1[0].attributes["email"] == "u1001@example.com"
    assert u1[0].attributes["created_at"] == (T0 + 1) // 1000
    assert (u1[1].name, u1[1].timestamp, u1[1].attributes) == (
        "Add_to_Cart",
        (T0 + 2000) // 1000,
        {"sku": "A-1", "price": 9.5},
    )
    assert u1[3].attributes == {"created_at": (T0 + 13_000) // 1000}  # Android now; nothing else re-sent
    assert (got["1002"][0].id_type, got["1002"][0].id_value) == ("email", "only@example.com")
    assert "1003" not in got
    assert [c.kind for c in got["1004"]] == [CommandKind.IDENTIFY, CommandKind.UNSUBSCRIBE, CommandKind.TRACK]
    upgrade = got["1005"][2]
    assert (upgrade.kind, upgrade.id_type, upgrade.id_value) == (CommandKind.IDENTIFY, "id", "c-1005")
    assert upgrade.attributes["email"] == "up@example.com"
    assert [c.attributes for c in got["1006"][2:]] == [
        {"SegmentMembership": "'31','32'", "In Gold": True, "In Beta": True},
        {"SegmentMembership": "'31'", "In Beta": False},
    ]
    assert [c.name for c in got["1008"] if c.kind is CommandKind.TRACK] == ["Keyless"]
    assert {"1009", "1010"} <= set(got)
    assert worker.alive()


def test_malformed_input_is_dead_lettered_with_its_reason_and_the_worker_goes_on(rules_run):
    dead, worker, topics = rules_run.dead, rules_run.worker, rules_run.topics
    assert len(dead) == len(BAD)
    source = topics.by_role("batches").name
    by_key = {record.key: record for record in dead}
    for key, value, reason in BAD:
        record = by_key[key]
        assert record.value == value
        info = read_dead_letter_headers(record.headers)
        assert info.reason == reason and info.topic == source and info.detail
    originals = read_topic_sync(rules_run.bootstrap, source, lambda r: False, timeout=2)
    at = {(r.partition, r.offset): r for r in originals}
    for record in dead:
        info = read_dead_letter_headers(record.headers)
        assert at[(info.partition, info.offset)].key == record.key  # the headers point at the input
    assert worker.alive() and "1005" in by_user(rules_run.commands)  # inputs after the bad ones were mapped


# ---- restart and scale-out: state survives in the changelog ----------------------------------------

USERS = list(range(2001, 2041))


def history() -> Inputs:
    """Each user: iOS first run, then Android first run (created_at follows), then audience A."""
    inputs = Inputs()
    for i, mpid in enumerate(USERS):
        inputs.add_batch(batch(mpid, T0 + i, [first_run(T0 + i), track("Signup", T0 + i + 5, f"h{mpid}-1")]))
        inputs.add_batch(
            batch(
                mpid,
                T0 + 10**6 + i,
                [first_run(T0 + 10**6 + i), track("Open", T0 + 10**6 + i + 5, f"h{mpid}-2")],
                platform="Android",
            )
        )
        inputs.add_audience(audience(T0 + 2 * 10**6, (mpid, [(900 + i, "add", f"A{i}")])), str(mpid).encode())
    return inputs


def stream(inputs: Inputs, per_user: int) -> int:
    """Many event-only Android batches (no identify due), then per user: back on iOS, audience B.

    Returns the number of records added. With the state intact, the end of the stream makes
    exactly two identifies per user: created_at from the iOS device seen in the history, and
    SegmentMembership with both audiences.
    """
    start = len(inputs.records)
    clock = T0 + 3 * 10**6
    for n in range(per_user):
        for mpid in USERS:
            clock += 7
            inputs.add_batch(
                batch(
                    mpid,
                    clock,
                    [
                        track("Play", clock, f"s{mpid}-{n}-a"),
                        screen("Feed", clock + 1, f"s{mpid}-{n}-b"),
                        track("Like", clock + 2, f"s{mpid}-{n}-c"),
                    ],
                    platform="Android",
                )
            )
    for i, mpid in enumerate(USERS):
        clock += 7
        inputs.add_batch(batch(mpid, clock, [track("Back", clock, f"e{mpid}")], platform="iOS"))
        inputs.add_audience(audience(clock + 1, (mpid, [(950 + i, "add", f"B{i}")])), str(mpid).encode())
    return len(inputs.records) - start


def check_after_recovery(inputs: Inputs, records, history_commands: dict[str, list[Command]]) -> None:
    """At least once, in order; no identify beyond the reference; the state-dependent ones right."""
    got = by_user(records)
    for mpid, expected in inputs.expected.items():
        mine = got[mpid]
        for role in ("batches", "audiences"):  # in order per input topic (the two have no order between them)
            reference = [command for r, command in inputs.sources[mpid] if r == role]
            assert is_subsequence(reference, mine), f"user {mpid}: {role} commands missing or out of order"
        identifies = [c for c in mine if c.kind is CommandKind.IDENTIFY]
        reference = [c for c in expected if c.kind is CommandKind.IDENTIFY]
        assert all(c in reference for c in identifies), f"user {mpid}: an identify the state should have prevented"
        for command in history_commands[mpid]:  # committed before the stop: never repeated
            if command.kind is CommandKind.IDENTIFY:
                assert identifies.count(command) == 1
        ending = reference[-2:]
        assert ending[0].attributes == {"created_at": int(ending[0].attributes["created_at"])}
        assert ending[0].attributes["created_at"] * 1000 < T0 + 10**6  # the iOS device of the history
        assert ending[1].attributes["SegmentMembership"].count("'") == 4  # both audiences


def history_phase(bootstrap, topics, app_id, pool, **env) -> tuple[Inputs, dict[str, list[Command]], Any]:
    inputs = history()
    worker = pool.start(**env)
    produce_in_phases(bootstrap, topics, app_id, inputs.records, [worker])
    expected_history = {mpid: list(commands) for mpid, commands in inputs.expected.items()}
    assert by_user(read_commands(bootstrap, topics, sum(map(len, expected_history.values())))) == expected_history
    return inputs, expected_history, worker


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_sigkill_mid_stream_then_restart_recovers_the_table_from_the_changelog(kafka_env, store):
    bootstrap, topics, app_id, pool = kafka_env
    env = {"CIOPROC_STORE": store, "CIOPROC_DATA_DIR": str(pool.directory / "data-restart")}
    inputs, history_commands, worker = history_phase(bootstrap, topics, app_id, pool, **env)
    first = len(inputs.records)
    stream(inputs, per_user=120)  # ~15,000 commands: the kill below lands a few hundred in
    commands_topic = topics.by_role("commands").name
    history_records = sum(asyncio.run(end_offsets(bootstrap, [commands_topic])).values())
    produce_inputs(bootstrap, topics, inputs.records[first:])
    asyncio.run(when_end_offsets_reach(  # a record holds one input's commands: 100 records, 300-400 commands
        bootstrap, commands_topic, history_records + 100,
        lambda: worker.process.send_signal(signal.SIGKILL), worker.alive,
    ))
    worker.process.wait(timeout=10)
    mid_records = sum(asyncio.run(end_offsets(bootstrap, [commands_topic])).values())
    mid = count_commands(read_topic_sync(bootstrap, commands_topic, lambda r: len(r) >= mid_records))
    total = sum(map(len, inputs.expected.values()))
    assert mid < total, "the worker finished before it was killed: not a mid-stream kill"

    restarted = pool.start(**env)
    wait_committed(bootstrap, app_id, input_topics(topics), timeout=120, workers=[restarted])
    check_after_recovery(inputs, read_commands(bootstrap, topics, total), history_commands)


def assigned_input_partitions(worker, topic: str) -> bool:
    lines = [line for line in worker.log().splitlines() if "Setting newly assigned partitions" in line]
    return bool(lines) and f"topic='{topic}'" in lines[-1]


def test_two_workers_split_the_partitions_and_one_takes_over_when_the_other_stops(kafka_env):
    bootstrap, topics, app_id, pool = kafka_env
    inputs, history_commands, first_worker = history_phase(bootstrap, topics, app_id, pool)
    second_worker = pool.start()
    batches_topic = topics.by_role("batches").name
    deadline = time.monotonic() + 60
    while not (
        assigned_input_partitions(first_worker, batches_topic)
        and assigned_input_partitions(second_worker, batches_topic)
        and "Worker ready" in second_worker.log().split("Setting newly assigned partitions")[-1]
    ):
        assert time.monotonic() < deadline, second_worker.log()[-3000:]
        time.sleep(0.2)

    first = len(inputs.records)
    stream(inputs, per_user=40)
    commands_topic = topics.by_role("commands").name
    history_records = sum(asyncio.run(end_offsets(bootstrap, [commands_topic])).values())
    produce_inputs(bootstrap, topics, inputs.records[first:])
    while sum(asyncio.run(end_offsets(bootstrap, [commands_topic])).values()) < history_records + 70:  # ~200 commands
        assert time.monotonic() < deadline, first_worker.log()[-3000:]
        time.sleep(0.05)
    assert first_worker.terminate(timeout=30) == 0  # a clean stop: SIGTERM

    total = sum(map(len, inputs.expected.values()))
    wait_committed(bootstrap, app_id, input_topics(topics), timeout=120, workers=[second_worker])
    assert assigned_input_partitions(second_worker, batches_topic)
    check_after_recovery(inputs, read_commands(bootstrap, topics, total), history_commands)


# ---- a write the broker refuses; records that would not fit; mapping bugs ------------------------


async def _create_with_configs(bootstrap: str, topics, overrides: dict[str, dict[str, str]]) -> None:
    """Every topic of the file, some with configs changed (``create_topics`` would call that drift)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(spec.name, spec.partitions, spec.replication_factor,
                                            topic_configs={**spec.config, **overrides.get(spec.name, {})})
                                   for spec in topics.topics])
    finally:
        await admin.close()


def test_a_refused_write_stops_the_worker_and_leaves_the_input_uncommitted(kafka_bootstrap, tmp_path, unique):
    """The dead-letter topic is compacted: the broker refuses a keyless dead letter for good."""
    app_id = f"test-{unique}"
    path, topics = write_topics_file(tmp_path, unique, app_id, partitions=1)
    dlq = topics.by_role("batches_dlq")
    asyncio.run(_create_with_configs(kafka_bootstrap, topics, {dlq.name: {"cleanup.policy": "compact"}}))
    source = topics.by_role("batches").name
    produce_sync(kafka_bootstrap, source, [(b"3001", batch(3001, T0, [track("A", T0, "r1")])),
                                          (None, b"not json, and no key"),
                                          (b"3002", batch(3002, T0, [track("B", T0, "r2")]))])
    pool = WorkerPool(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "CIOPROC_TOPICS_FILE": str(path),
                                 "CIOPROC_APP_ID": app_id})
    try:
        worker = pool.start()
        worker.process.wait(timeout=60)
        assert worker.process.returncode != 0
        assert "stopping the worker so that their offsets are not committed" in worker.log()
        committed = asyncio.run(committed_offsets(kafka_bootstrap, app_id))
        assert all(offset <= 1 for tp, offset in committed.items() if tp.topic == source)  # never past the refused one
    finally:
        pool.close()


def test_records_over_a_topics_max_message_bytes_are_fitted_or_dead_lettered_and_the_worker_goes_on(
    kafka_bootstrap, tmp_path, unique
):
    """Small ``max.message.bytes`` on the commands (3000), dead-letter (2000) and changelog (1500)
    topics: an oversized dead letter is cut (headers kept), an input whose command or state would
    not fit is dead-lettered with its reason, and everything else is mapped and committed."""
    app_id = f"test-{unique}"
    path, topics = write_topics_file(tmp_path, unique, app_id, partitions=1)
    commands_topic, dlq, changelog = (topics.by_role(r) for r in ("commands", "batches_dlq", "table_changelog"))
    asyncio.run(_create_with_configs(kafka_bootstrap, topics, {
        commands_topic.name: {"max.message.bytes": "3000"},
        dlq.name: {"max.message.bytes": "2000"},
        changelog.name: {"max.message.bytes": "1500"},
    }))
    source = topics.by_role("batches").name
    big_event = track("Big", T0 + 1, "r3", blob="b" * 4000)
    wide = {f"a{i:03d}": i for i in range(100)}  # an identify of ~1 KB, a state of ~1.7 KB
    inputs = [
        (b"3001", batch(3001, T0, [track("A", T0, "r1")])),
        (b"big", b"x" * 5000),
        (b"3003", batch(3003, T0, [big_event])),
        (b"3004", batch(3004, T0, [], attributes=wide)),
        (b"3002", batch(3002, T0, [track("B", T0, "r2")])),
    ]
    produce_sync(kafka_bootstrap, source, inputs)
    pool = WorkerPool(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "CIOPROC_TOPICS_FILE": str(path),
                                 "CIOPROC_APP_ID": app_id})
    try:
        worker = pool.start()
        wait_committed(kafka_bootstrap, app_id, [source], timeout=90, workers=[worker])
        dead = read_topic_sync(kafka_bootstrap, dlq.name, lambda r: len(r) >= 3, timeout=30)
        by_reason = {read_dead_letter_headers(r.headers).reason: r for r in dead}
        assert set(by_reason) == {"not_json", "record_too_large", "state_too_large"}
        cut = by_reason["not_json"]
        info = read_dead_letter_headers(cut.headers)
        assert (info.topic, info.partition, info.offset) == (source, 0, 1) and cut.key == b"big"
        assert len(cut.value) > 1000 and (b"x" * 5000).startswith(cut.value) and cut.value != b"x" * 5000
        assert dict(cut.headers)["cioproc.value.truncated"] == b"5000"
        assert read_dead_letter_headers(by_reason["record_too_large"].headers).offset == 2
        assert read_dead_letter_headers(by_reason["state_too_large"].headers).offset == 3
        got = by_user(read_topic_sync(kafka_bootstrap, commands_topic.name, lambda r: False, timeout=3))
        assert set(got) == {"3001", "3002"}
        assert worker.alive() and "Traceback" not in worker.log()
    finally:
        pool.close()


def test_a_bug_in_the_mapping_dead_letters_the_input_and_the_worker_goes_on(kafka_bootstrap, tmp_path, unique):
    """A fault injected into the mapping core (sitecustomize in the worker): MPID 6666 raises."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(
        "import cioproc.mapping.mapper as mapper\n"
        "_real = mapper._map\n"
        "def _map(batch, state, settings, size_each):\n"
        "    if batch.mpid == '6666':\n"
        "        raise ZeroDivisionError('injected mapping bug')\n"
        "    return _real(batch, state, settings, size_each)\n"
        "mapper._map = _map\n"
    )
    app_id = f"test-{unique}"
    path, topics = write_topics_file(tmp_path, unique, app_id, partitions=1)
    create_topics(kafka_bootstrap, topics)
    source = topics.by_role("batches").name
    produce_sync(kafka_bootstrap, source, [(b"3001", batch(3001, T0, [track("A", T0, "r1")])),
                                          (b"6666", batch(6666, T0, [track("X", T0, "r9")])),
                                          (b"3002", batch(3002, T0, [track("B", T0, "r2")]))])
    pool = WorkerPool(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "CIOPROC_TOPICS_FILE": str(path),
                                 "CIOPROC_APP_ID": app_id, "PYTHONPATH": str(inject)})
    try:
        worker = pool.start()
        wait_committed(kafka_bootstrap, app_id, [source], timeout=90, workers=[worker])
        [dead] = read_topic_sync(kafka_bootstrap, topics.by_role("batches_dlq").name, lambda r: len(r) >= 1, timeout=30)
        info = read_dead_letter_headers(dead.headers)
        assert (info.reason, info.topic, info.offset) == ("internal_error", source, 1)
        assert "ZeroDivisionError: injected mapping bug" in info.detail
        assert dead.key == b"6666" and dead.value == batch(6666, T0, [track("X", T0, "r9")])
        got = by_user(read_topic_sync(kafka_bootstrap, topics.by_role("commands").name, lambda r: False, timeout=3))
        assert set(got) == {"3001", "3002"} and worker.alive()
    finally:
        pool.close()
