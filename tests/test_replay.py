"""`cioproc replay` against the real broker, the sandbox and real workers.

A clean run of generated input gives the reference workspace (the same one the pure
mapping predicts, see test_pipeline_e2e); replays must leave it exactly as it is, and a
dead-letter re-drive must complete it.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter

import pytest
from pipeline_harness import Pipeline, batches, expected_workspace

from cioproc.models.commands import decode_record

pytestmark = pytest.mark.kafka

SETTLE_S = 120


def run_to_end(p: Pipeline, worker: str, **env: str) -> None:
    """Start a worker and wait until it committed every input record and every command."""
    p.start_worker(worker, **env)
    p.wait_for(lambda: p.caught_up(p.app_id, "batches", "commands"), SETTLE_S, f"{worker} to catch up")


def stop(p: Pipeline, worker: str) -> None:
    """SIGTERM: the worker leaves its group at once (a killed one would stay a member for the session timeout)."""
    assert p.kill(worker, signal.SIGTERM, timeout=60) == 0, p.log(worker)[-3000:]


def no_event_twice(events: list[dict]) -> None:
    assert not [i for i, n in Counter(e["event_id"] for e in events).items() if n > 1]


def replay(p: Pipeline, *args: str) -> str:
    done = p.cli("replay", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_replays_leave_the_workspace_as_it_was(pipeline):
    """One completed run, then each kind of replay in turn; after each the workspace is the clean run's.

    Steps share one pipeline because every step needs a completed run and a worker restart
    (about 7 s each on this machine).
    """
    records = batches(users=200, events=2500, seed=31)
    people, events, n_commands = expected_workspace(records)
    half = len(records) // 2
    pipeline.start_sandbox()
    pipeline.produce(records[:half])
    time.sleep(1.0)
    middle_ms = int(time.time() * 1000)
    time.sleep(1.0)
    pipeline.produce(records[half:])
    run_to_end(pipeline, "first")
    assert pipeline.people() == people and pipeline.events() == events

    # Refused while a worker of the group runs: clear message, exit 1, nothing moved.
    committed = pipeline.offsets("batches", pipeline.app_id)
    for argv in (["batches", "--from-beginning", "--execute"], ["commands", "--from-time", "0", "--execute"],
                 ["batches", "--from-beginning"]):
        refused = pipeline.cli("replay", *argv)
        assert refused.returncode == 1, refused.stdout
        assert f"consumer group '{pipeline.app_id}' is active" in refused.stderr
        assert "stop the workers" in refused.stderr and "Traceback" not in refused.stderr
    assert pipeline.offsets("batches", pipeline.app_id) == committed
    stop(pipeline, "first")
    assert "would set" in replay(pipeline, "batches", "--from-beginning", "--dry-run")
    assert pipeline.offsets("batches", pipeline.app_id) == committed

    # Input from a middle time: only the second half is mapped again.
    out = replay(pipeline, "batches", "--from-time", str(middle_ms), "--execute")
    assert f"{len(records) - half} record(s) to re-process" in out
    run_to_end(pipeline, "from-middle")
    assert pipeline.metric("cioproc_batches_in_total", "from-middle") >= len(records) - half  # really re-processed
    assert pipeline.people() == people
    got = pipeline.events()
    assert got == events
    no_event_twice(got)
    stop(pipeline, "from-middle")

    # The whole input.
    out = replay(pipeline, "batches", "--from-beginning", "--execute")
    assert f"{len(records)} record(s) to re-process" in out
    assert pipeline.offsets("batches", pipeline.app_id) == {p: 0 for p in range(4)}
    delivered = pipeline.stats()
    run_to_end(pipeline, "from-beginning")
    assert pipeline.metric("cioproc_batches_in_total", "from-beginning") >= len(records)
    assert pipeline.metric("cioproc_commands_delivered_total", "from-beginning") > 0  # and re-sent
    assert pipeline.stats() != delivered
    assert pipeline.people() == people
    got = pipeline.events()
    assert got == events
    no_event_twice(got)
    stop(pipeline, "from-beginning")

    # Every command again (role all: the sender's group is the app id).
    out = replay(pipeline, "commands", "--from-beginning", "--execute")
    assert f"group '{pipeline.app_id}'" in out
    assert f"{len(pipeline.read('commands'))} record(s) to re-deliver" in out
    run_to_end(pipeline, "commands")
    assert pipeline.metric("cioproc_commands_delivered_total", "commands") >= n_commands
    assert pipeline.metric("cioproc_batches_in_total", "commands") == 0  # the input was not touched
    assert pipeline.people() == people
    got = pipeline.events()
    assert got == events
    no_event_twice(got)


def test_dlq_redrive_delivers_what_the_sandbox_refused_once_it_accepts(pipeline):
    records = batches(users=150, events=1500, seed=35)
    people, events, n_commands = expected_workspace(records)
    refused_names = ["Search", "Home"]
    refused = [e for e in events if e["name"] in refused_names]
    assert len(refused) > 20
    pipeline.start_sandbox()
    pipeline.set_faults(reject_event_names=refused_names)
    pipeline.produce(records)
    run_to_end(pipeline, "worker")
    dead = pipeline.read("commands_dlq")
    assert len(dead) == len(refused)
    assert {dict(r.headers)["cioproc.reason"] for r in dead} == {b"rejected"}
    assert pipeline.events() == [e for e in events if e["name"] not in refused_names]

    pipeline.set_faults()  # the cause is fixed
    dry = pipeline.cli("replay", "dlq", "--source", "commands", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would re-drive {len(refused)} record(s)" in dry.stdout
    done = pipeline.cli("replay", "dlq", "--source", "commands")  # while the worker runs
    assert done.returncode == 0, done.stderr
    assert f"re-drove {len(refused)} record(s)" in done.stdout
    pipeline.wait_for(lambda: pipeline.caught_up(pipeline.app_id, "commands"), SETTLE_S, "re-driven delivery")
    got = pipeline.events()
    assert got == events
    assert pipeline.people() == people
    no_event_twice(got)
    assert sum(len(decode_record(r.value, r.headers)) for r in pipeline.read("commands")) == n_commands + len(refused)

    again = pipeline.cli("replay", "dlq", "--source", "commands")  # each dead letter is re-driven once
    assert again.returncode == 0, again.stderr
    assert "re-drove 0 record(s)" in again.stdout


def test_dlq_redrive_sends_each_dead_letter_back_once_to_its_source_topic(pipeline):
    """No worker: dead letters written as the processor writes them, re-driven in steps."""
    from aiokafka import AIOKafkaProducer

    from cioproc.app.dead_letters import dead_letter_headers

    base = int(time.time() * 1000) - 3_600_000
    letters = []  # (source role, key, value, timestamp)
    for i in range(30):
        role = "audiences" if i % 3 == 0 else "batches"
        letters.append((role, f"mpid-{i}".encode(), f"not json {i}".encode(), base + i * 1000))

    async def write() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=pipeline.bootstrap, acks="all")
        await producer.start()
        try:
            for role, key, value, ts in letters:
                source = pipeline.topics.by_role(role).name
                headers = dead_letter_headers("not_json", "expected JSON", source, 0, 1)
                await producer.send_and_wait(pipeline.topics.by_role("batches_dlq").name, value, key=key,
                                             timestamp_ms=ts, headers=headers)
        finally:
            await producer.stop()

    asyncio.run(write())

    def redriven() -> list[tuple[str, bytes, bytes]]:
        return [(role, r.key, r.value) for role in ("batches", "audiences") for r in pipeline.read(role)]

    out = replay(pipeline, "dlq", "--source", "batches", "--to-time", str(base + 10_000))
    assert "re-drove 10 record(s)" in out
    first = redriven()
    assert sorted(first) == sorted((role, key, value) for role, key, value, ts in letters[:10])
    assert "re-drove 4 record(s)" in replay(pipeline, "dlq", "--source", "batches", "--limit", "4")
    assert "re-drove 16 record(s)" in replay(pipeline, "dlq", "--source", "batches")
    assert "re-drove 0 record(s)" in replay(pipeline, "dlq", "--source", "batches")
    everything = redriven()
    assert sorted(everything) == sorted((role, key, value) for role, key, value, ts in letters)  # each once
    for record in pipeline.read("batches") + pipeline.read("audiences"):
        (name, marker), = record.headers
        assert name == "cioproc.redriven" and marker.startswith(pipeline.topics.by_role("batches_dlq").name.encode())

    # An explicit start time re-drives again from there, whatever was re-driven before.
    assert "would re-drive 5 record(s)" in replay(pipeline, "dlq", "--source", "batches", "--from-time",
                                                  str(base + 25_000), "--dry-run")
    assert len(redriven()) == 30


def test_commands_replay_finds_the_group_that_has_been_delivering(pipeline):
    """Separate sender workers commit in `<app id>-sender`; role all in `<app id>` (no worker needed)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    pipeline.produce([("commands", f"k{i}", b"x") for i in range(12)])
    topic = pipeline.topics.by_role("commands").name

    def commit(group: str) -> None:
        async def run() -> None:
            consumer = AIOKafkaConsumer(bootstrap_servers=pipeline.bootstrap, group_id=group, enable_auto_commit=False)
            await consumer.start()
            try:
                tps = [TopicPartition(topic, p) for p in range(4)]
                consumer.assign(tps)
                await consumer.commit(await consumer.end_offsets(tps))
            finally:
                await consumer.stop()

        asyncio.run(run())

    assert f"group '{pipeline.app_id}'" in replay(pipeline, "commands", "--from-beginning", "--dry-run")
    commit(f"{pipeline.app_id}-sender")
    out = replay(pipeline, "commands", "--from-beginning", "--dry-run")
    assert f"group '{pipeline.app_id}-sender'" in out and "12 record(s) to re-deliver" in out
    commit(pipeline.app_id)
    both = pipeline.cli("replay", "commands", "--from-beginning", "--execute")
    assert both.returncode == 1 and "--group" in both.stderr
    replay(pipeline, "commands", "--from-beginning", "--group", f"{pipeline.app_id}-sender", "--execute")
    assert pipeline.offsets("commands", f"{pipeline.app_id}-sender") == {p: 0 for p in range(4)}
    assert sum(pipeline.offsets("commands", pipeline.app_id).values()) == 12  # the other group is untouched


def commit_offsets(p: Pipeline, role: str, group: str, offsets: dict[int, int]) -> None:
    """Commit ``offsets`` for ``group`` on a topic, as a worker of that group would have."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=p.bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            name = p.topics.by_role(role).name
            consumer.assign([TopicPartition(name, partition) for partition in offsets])
            await consumer.commit({TopicPartition(name, partition): o for partition, o in offsets.items()})
        finally:
            await consumer.stop()

    asyncio.run(run())


def test_replay_never_moves_a_lagging_group_forward_and_changes_nothing_without_execute(kafka_bootstrap, unique,
                                                                                        tmp_path):
    """A group at 1000 of 1300 records asked to restart at 1200 would skip 200 records it never processed."""
    p = Pipeline(kafka_bootstrap, unique, tmp_path, partitions=1)
    try:
        p.produce([("batches", f"k{i}", b"{}") for i in range(1300)])
        group = f"lagging-{unique}"
        commit_offsets(p, "batches", group, {0: 1000})
        topic = p.topics.by_role("batches").name

        def attempt(*args: str) -> subprocess.CompletedProcess:
            return p.cli("replay", "batches", "--group", group, *args)

        for args in ([], ["--execute"], ["--dry-run"]):  # refused, whether planned or executed
            refused = attempt("--from-offsets", "0:1200", *args)
            assert refused.returncode == 1, refused.stdout + refused.stderr
            assert f"{topic}[0] offset of group '{group}': 1000 -> 1200" in refused.stdout
            assert "--allow-forward" in refused.stderr and "Traceback" not in refused.stderr
            assert p.offsets("batches", group) == {0: 1000}
        future = attempt("--from-time", str(int(time.time() * 1000) + 3_600_000), "--execute")  # past the end
        assert future.returncode == 1 and "1000 -> 1300" in future.stdout and "--allow-forward" in future.stderr
        assert p.offsets("batches", group) == {0: 1000}

        planned = attempt("--from-offsets", "0:1200", "--allow-forward")  # allowed, but only a plan
        assert planned.returncode == 0, planned.stderr
        assert "1000 -> 1200" in planned.stdout and "skips 200 record(s)" in planned.stdout
        assert "--execute" in planned.stdout
        back = attempt("--from-offsets", "0:800")
        assert back.returncode == 0 and "1000 -> 800" in back.stdout and "500 record(s) to re-process" in back.stdout
        assert p.offsets("batches", group) == {0: 1000}  # no change without --execute

        done = attempt("--from-offsets", "0:800", "--execute")
        assert done.returncode == 0, done.stderr
        assert f"set {topic}[0] offset of group '{group}': 1000 -> 800" in done.stdout
        assert p.offsets("batches", group) == {0: 800}
        forward = attempt("--from-offsets", "0:1200", "--allow-forward", "--execute")
        assert forward.returncode == 0, forward.stderr
        assert "800 -> 1200" in forward.stdout and "skips 400 record(s)" in forward.stdout
        assert p.offsets("batches", group) == {0: 1200}
    finally:
        p.close()


def produce_with_headers(p: Pipeline, role: str, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]) -> None:
    """Records as (key, value, headers) on one topic, in order."""
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=p.bootstrap, acks="all", **p.client)
        await producer.start()
        try:
            for key, value, headers in records:
                await producer.send_and_wait(p.topics.by_role(role).name, value, key=key, headers=headers)
        finally:
            await producer.stop()

    asyncio.run(run())


def test_replaying_commands_re_delivers_merges_and_erasures_only_when_asked_to(kafka_bootstrap, unique, tmp_path):
    """Merge and erase act again in Customer.io (a secondary re-created since is merged away again, a
    person who came back is erased again): a commands replay whose range holds any is refused unless
    --allow-irreversible; the dry run counts them; a range after them replays freely."""
    from cioproc.models.commands import (
        COMMAND_LIST_FORMAT,
        RECORD_FORMAT_HEADER,
        Command,
        CommandKind,
        encode_command,
        encode_commands,
    )

    p = Pipeline(kafka_bootstrap, unique, tmp_path, partitions=1)
    try:
        listed = [(RECORD_FORMAT_HEADER, COMMAND_LIST_FORMAT)]
        track = Command(CommandKind.TRACK, "1", "id", "c1", 1, {}, "viewed", "01J")
        merge = Command(CommandKind.MERGE, "1", "id", "c1", 1, {}, None, None, ("id", "c2"))
        erase = Command(CommandKind.ERASE, "2", "id", "c3", 0, {"identifiers": [["id", "c3"]]})
        identify = Command(CommandKind.IDENTIFY, "3", "id", "c4", 1, {"a": 1})
        produce_with_headers(p, "commands", [
            (b"1", encode_commands([track, merge, track]), listed),  # offset 0
            (b"2", encode_command(erase), []),  # 1: an erase is a record of its own
            (b"3", encode_commands([identify]), listed),  # 2
            (b"4", b"not a command", []),  # 3: the sender dead-letters it; nothing irreversible
            (b"3", encode_commands([identify, track]), listed),  # 4
        ])
        group = f"sender-{unique}"
        commit_offsets(p, "commands", group, {0: 5})

        def attempt(*args: str) -> subprocess.CompletedProcess:
            return p.cli("replay", "commands", "--group", group, *args)

        planned = attempt("--from-beginning")
        assert planned.returncode == 0, planned.stderr
        assert "re-delivers 1 merge and 1 erase command(s)" in planned.stdout, planned.stdout
        assert "--allow-irreversible" in planned.stdout
        refused = attempt("--from-beginning", "--execute")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "--allow-irreversible" in refused.stderr and "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert p.offsets("commands", group) == {0: 5}  # nothing changed

        after = attempt("--from-offsets", "0:2", "--execute")  # identifies, a poison record, a track
        assert after.returncode == 0, after.stderr
        assert "merge" not in after.stdout and p.offsets("commands", group) == {0: 2}

        commit_offsets(p, "commands", group, {0: 1})  # the group never delivered the erase at 1 yet:
        first_time = attempt("--from-offsets", "0:1", "--execute")  # not a replay of it
        assert first_time.returncode == 0, first_time.stderr
        commit_offsets(p, "commands", group, {0: 5})

        allowed = attempt("--from-beginning", "--execute", "--allow-irreversible")
        assert allowed.returncode == 0, allowed.stderr
        assert "re-delivers 1 merge and 1 erase command(s)" in allowed.stdout
        assert p.offsets("commands", group) == {0: 0}
    finally:
        p.close()
