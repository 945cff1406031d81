"""The sender worker against the real broker and the sandbox (issue 11, items 1, 2 and 8):
nothing is committed past a chunk that failed, poison commands are dead-lettered while the
worker goes on, and one partition stuck on 5xx does not stop the others."""

from __future__ import annotations

import asyncio
import time

import msgpack
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from helpers_kafka import write_topics_file
from pipeline_harness import Pipeline

from cioproc.app.factory import group_id
from cioproc.app.processor import key_partition
from cioproc.models.commands import Command, CommandKind, encode_command

pytestmark = pytest.mark.kafka

ULID = "01HZX3K9T6Q8WJ1V5N2M4R"


def track(person: str, n: int, **attributes: object) -> tuple[str, str, bytes]:
    command = Command(CommandKind.TRACK, f"mp-{person}", "id", person, 1_700_000_000 + n, dict(attributes),
                      "Played", f"{ULID}{n:04d}")
    return ("commands", command.mpid, encode_command(command))


def sender_group(p: Pipeline) -> str:
    return group_id("sender", p.app_id)


def shrink_dead_letter_topic(bootstrap: str, name: str) -> None:
    """Lower the dead-letter topic's max.message.bytes to 2000 while a worker runs (the worker
    read the old limit at start, so its next large dead letter is refused by the broker)."""

    async def alter() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name,
                                                      {"max.message.bytes": "2000"})])
        finally:
            await admin.close()

    asyncio.run(alter())


def small_dead_letter_topic(bootstrap: str, tmp_path, unique: str, partitions: int) -> None:
    """Create the commands dead-letter topic first, accepting at most 2000-byte records."""
    _path, topics = write_topics_file(tmp_path, unique, f"cioproc-e2e-{unique}", partitions)
    dlq = topics.by_role("commands_dlq")

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(dlq.name, dlq.partitions, dlq.replication_factor,
                                                topic_configs={**dlq.config, "max.message.bytes": "2000"})])
        finally:
            await admin.close()

    asyncio.run(create())


@pytest.mark.parametrize("prior_commit", [False, True])
def test_a_chunk_whose_dead_letter_fails_is_never_committed_past(kafka_bootstrap, unique, tmp_path, prior_commit):
    """Chunk 1 (one command of "bad", 3 KB) retries on 503 while chunk 2 (good commands of the same
    partition) arrives; then the sandbox rejects "bad" for good and its dead letter is too large for
    the dead-letter topic (its limit lowered after the worker read it). Chunk 2 must not be acked:
    the commit stays at the failed record."""
    p = Pipeline(kafka_bootstrap, unique, tmp_path, partitions=1)
    try:
        p.start_sandbox()
        p.set_faults(unavailable_ids=["bad"])
        p.start_worker("sender", role="sender")
        p.wait_for(lambda: "dead letters fitted to" in p.log("sender"), 60, "the sender to read its limits")
        bad_offset = 0
        if prior_commit:
            p.produce([track("good-0", 0)])
            p.wait_for(lambda: p.offsets("commands", sender_group(p)) == {0: 1}, 90, "the first commit")
            bad_offset = 1
        p.produce([track("bad", 1, pad="x" * 3000)])
        p.wait_for(lambda: p.stats()["faults_injected"].get("503", 0) >= 1, 60, "the bad command to be retried")
        p.produce([track(f"good-{n}", n) for n in range(2, 7)])
        time.sleep(2.0)  # the worker fetches chunk 2; it waits behind chunk 1
        shrink_dead_letter_topic(kafka_bootstrap, p.topics.by_role("commands_dlq").name)
        p.set_faults(reject_ids=["bad"])  # the next retry is refused for good: dead letter, which fails
        assert p.processes["sender"].wait(timeout=90) != 0
        log = p.log("sender")
        assert "MessageSizeTooLarge" in log, log[-3000:]
        assert p.offsets("commands", sender_group(p)) == {0: bad_offset}, log[-3000:]
        assert not {"good-2", "good-6"} & {e["person"]["id"] for e in p.events()}  # later ones held back
    finally:
        p.close()


POISON = [
    msgpack.packb([1, "merge", "mp-x", "id", "u1", 5, {}, None, None, 7]),  # secondary an int
    msgpack.packb([1, "merge", "mp-x", "id", "u1", 5, {}, None, None, 2.5]),  # a float
    msgpack.packb([1, "merge", "mp-x", "id", "u1", 5, {}, None, None, True]),  # a bool
    msgpack.packb([1, "track", "mp-x", "id", "u1", 5, {}, 7, "e", None]),  # a number as name
    msgpack.packb({"not": "a command"}),
    b"\xc1\x00 arbitrary bytes",
    b"",
]


def test_poison_commands_are_dead_lettered_and_the_worker_goes_on(kafka_bootstrap, unique, tmp_path):
    p = Pipeline(kafka_bootstrap, unique, tmp_path, partitions=2)
    p._must_run = {"sandbox", "sender"}  # a crash fails the test at once
    try:
        p.start_sandbox()
        p.start_worker("sender", role="sender")
        good_before = [track(f"before-{n}", n) for n in range(10)]
        good_after = [track(f"after-{n}", 100 + n) for n in range(10)]
        poison = [("commands", f"mp-poison-{i}", value) for i, value in enumerate(POISON)]
        p.produce(good_before + poison)
        p.wait_for(lambda: len(p.events()) >= 10, 90, "the commands before the poison")
        p.produce(good_after)
        p.wait_for(lambda: p.caught_up(sender_group(p), "commands"), 90, "every command settled and committed")
        assert p.alive("sender")
        assert {e["person"]["id"] for e in p.events()} == {f"before-{n}" for n in range(10)} | {
            f"after-{n}" for n in range(10)}
        dead = p.read("commands_dlq")
        assert sorted(r.value for r in dead) == sorted(POISON)
        assert all(dict(r.headers)["cioproc.reason"] == b"undecodable_command" for r in dead)
    finally:
        p.close()


def test_a_partition_stuck_on_5xx_does_not_stop_the_others(kafka_bootstrap, unique, tmp_path):
    """"stuck" gets 503 for every request; its partition gets a new command with each of 14 fetches
    (more than the sender ever kept in flight). The other partitions deliver everything."""
    partitions = 4
    stuck_partition = key_partition(b"mp-stuck", partitions)
    others = [person for person in (f"user-{n}" for n in range(60))
              if key_partition(f"mp-{person}".encode(), partitions) != stuck_partition][:6]
    p = Pipeline(kafka_bootstrap, unique, tmp_path, partitions=partitions)
    p._must_run = {"sandbox", "sender"}
    try:
        p.start_sandbox()
        p.set_faults(unavailable_ids=["stuck"])
        p.start_worker("sender", role="sender")
        p.produce([track(others[0], 9999)])  # the worker is up and delivering before the rounds start
        p.wait_for(lambda: len(p.events()) == 1, 90, "the first delivery")
        rounds = 14
        for n in range(rounds):
            p.produce([track("stuck", n)] + [track(person, 1000 * (i + 1) + n) for i, person in enumerate(others)])
            time.sleep(0.4)  # each round is a fetch of its own
        expected = 1 + rounds * len(others)
        p.wait_for(lambda: len(p.events()) >= expected, 120, f"{expected} commands of the other partitions")
        assert {e["person"]["id"] for e in p.events()} == set(others)
        group = sender_group(p)
        ends = p.offsets("commands")
        p.wait_for(lambda: all(offset == ends[partition] for partition, offset in p.offsets("commands", group).items()
                               if partition != stuck_partition), 60, "the other partitions committed")
        assert p.offsets("commands", group)[stuck_partition] == 0  # never past the stuck command
        topic = p.topics.by_role("commands").name
        p.wait_for(lambda: p.metric("cioproc_sender_partition_blocked_seconds", "sender", topic=topic,
                                    partition=str(stuck_partition)) > 0, 30, "the blocked gauge")
        assert p.metric("cioproc_sender_partition_blocked_seconds", "sender", topic=topic) == p.metric(
            "cioproc_sender_partition_blocked_seconds", "sender", topic=topic, partition=str(stuck_partition))

        p.set_faults()  # the outage ends: the paused partition resumes and catches up, in order
        p.wait_for(lambda: p.caught_up(group, "commands"), 120, "the stuck partition to catch up")
        stuck_events = [e["event_id"] for e in p.events() if e["person"]["id"] == "stuck"]
        assert sorted(stuck_events) == [f"{ULID}{n:04d}" for n in range(rounds)]
        p.wait_for(lambda: p.metric("cioproc_sender_partition_blocked_seconds", "sender", topic=topic) == 0, 30,
                   "the blocked gauge back at 0")
    finally:
        p.close()


def test_a_dead_letter_over_the_topics_record_size_is_truncated_and_the_worker_goes_on(
    kafka_bootstrap, unique, tmp_path
):
    """Issue 11 item 6 for the sender: a refused command larger than the dead-letter topic's
    max.message.bytes is written cut to fit, with its headers and original offset, and a
    header giving its original size; the worker does not stop and commits past it."""
    small_dead_letter_topic(kafka_bootstrap, tmp_path, unique, 1)
    p = Pipeline(kafka_bootstrap, unique, tmp_path, partitions=1)
    p._must_run = {"sandbox", "sender"}  # a crash fails the test at once
    try:
        p.start_sandbox()
        p.set_faults(reject_ids=["bad"])
        p.start_worker("sender", role="sender")
        p.produce([track("bad", 0, pad="x" * 3000)] + [track(f"good-{n}", n) for n in range(1, 4)])
        p.wait_for(lambda: p.offsets("commands", sender_group(p)) == {0: 4}, 90, "everything committed")
        [letter] = p.read("commands_dlq")
        headers = {name: value for name, value in letter.headers}
        assert len(letter.value) < 2000 and letter.key == b"mp-bad"
        assert int(headers["cioproc.value.truncated"]) > 3000
        assert headers["cioproc.source.offset"] == b"0"
        assert {"good-1", "good-2", "good-3"} <= {e["person"]["id"] for e in p.events()}
    finally:
        p.close()
