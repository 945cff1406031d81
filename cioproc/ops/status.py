"""`cioproc status [--json]`: how far behind is each consumer group, and what is dead-lettered.

For each consumer group of the app, the processor's (``<app id>``, also roles ``all``), the
sender's (``<app id>-sender``) and the dead-letter re-drive's (``<app id>-dlq-redrive``):
its state, its members (Kafka client id, host, assigned partitions), and per partition of
the topics it reads the committed offset, the end offset and the lag between them (a
partition without a committed offset lags by all it holds, as a new member would read it
from the beginning). Then the number of records in each dead-letter topic.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from cioproc.config import Config, load_config
from cioproc.kafka import client_id
from cioproc.kafka.topics import TopicsFile, load_topics
from cioproc.ops import describe_error, quiet_client_logs
from cioproc.ops.check import KAFKA_TIMEOUT_S
from cioproc.replay import consumer_group

# (what the group does, its role for cioproc.replay.consumer_group, the topic roles it reads)
GROUPS = (
    ("processor", "processor", ("batches", "audiences", "commands")),  # commands: only for role all
    ("sender", "sender", ("commands",)),
    ("re-drive", "dlq-redrive", ("batches_dlq", "commands_dlq")),
)
OPTIONAL_ROLES = {("processor", "commands"), ("re-drive", "batches_dlq"), ("re-drive", "commands_dlq")}
DEAD_LETTER_ROLES = ("batches_dlq", "commands_dlq")


@dataclass
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int


@dataclass
class Member:
    client_id: str
    host: str
    partitions: dict[str, list[int]]


@dataclass
class GroupStatus:
    name: str  # processor, sender, re-drive
    group: str
    state: str
    members: list[Member] = field(default_factory=list)
    partitions: list[PartitionLag] = field(default_factory=list)

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


@dataclass
class DeadLetterTopic:
    topic: str
    records: int


@dataclass
class Status:
    groups: list[GroupStatus]
    dead_letters: list[DeadLetterTopic]

    def to_json(self) -> dict[str, Any]:
        return {
            "groups": [{**asdict(g), "lag": g.lag} for g in self.groups],
            "dead_letters": [asdict(d) for d in self.dead_letters],
        }


def lag_of(committed: int | None, beginning: int, end: int) -> int:
    """Records a group has yet to read in a partition (pure)."""
    start = beginning if committed is None else max(committed, beginning)
    return max(0, end - start)


def decode_members(members: list[tuple[Any, ...]]) -> list[Member]:
    """Members of a DescribeGroups answer: (member id, [instance id,] client id, host, metadata, assignment)."""
    decoded = []
    for member in members:
        client, host, assignment = member[-4], member[-3], member[-1]
        partitions: dict[str, list[int]] = {}
        if assignment:
            try:
                for topic, numbers in ConsumerProtocolMemberAssignment.decode(assignment).assignment:
                    partitions[topic] = sorted(numbers)
            except Exception:  # not the consumer protocol: members are still worth listing
                pass
        decoded.append(Member(client, host, dict(sorted(partitions.items()))))
    return sorted(decoded, key=lambda m: (m.client_id, m.host))


async def collect(config: Config, topics: TopicsFile) -> Status:
    """The status of every group and dead-letter topic, read from the cluster."""
    bootstrap, security = config.kafka.bootstrap_servers, config.kafka.aiokafka_kwargs()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id("status"),
                                request_timeout_ms=int(KAFKA_TIMEOUT_S * 1000), **security)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id=client_id("status"), group_id=None,
                                enable_auto_commit=False, request_timeout_ms=int(KAFKA_TIMEOUT_S * 1000), **security)
    try:
        await asyncio.wait_for(admin.start(), KAFKA_TIMEOUT_S)
        await asyncio.wait_for(consumer.start(), KAFKA_TIMEOUT_S)
        existing = set(await admin.list_topics())
        partitions: dict[str, list[int]] = {}
        for spec in topics.topics:
            if spec.name in existing:
                found = consumer.partitions_for_topic(spec.name) or set()
                if not found:
                    await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka's only way
                    found = consumer.partitions_for_topic(spec.name) or set()
                partitions[spec.name] = sorted(found)
        tps = [TopicPartition(t, p) for t, ps in partitions.items() for p in ps]
        beginning = await consumer.beginning_offsets(tps) if tps else {}
        end = await consumer.end_offsets(tps) if tps else {}
        groups = []
        for name, group_role, roles in GROUPS:
            group = consumer_group(group_role, config.app_id)
            groups.append(await _group(admin, name, group, roles, topics, partitions, beginning, end))
        dead = [
            DeadLetterTopic(spec.name, sum(end[tp] - beginning[tp] for tp in tps if tp.topic == spec.name))
            for spec in (topics.by_role(r) for r in DEAD_LETTER_ROLES) if spec.name in partitions
        ]
        return Status(groups, dead)
    finally:
        await consumer.stop()
        await admin.close()


async def _group(admin: AIOKafkaAdminClient, name: str, group: str, roles: tuple[str, ...], topics: TopicsFile,
                 partitions: dict[str, list[int]], beginning: dict[TopicPartition, int],
                 end: dict[TopicPartition, int]) -> GroupStatus:
    state, members = "Dead", []
    for response in await admin.describe_consumer_groups([group]):
        for entry in response.groups:  # (error, group id, state, protocol type, protocol, members, ...)
            if entry[1] == group:
                state, members = entry[2], decode_members(entry[5])
    committed = {
        (tp.topic, tp.partition): meta.offset
        for tp, meta in (await admin.list_consumer_group_offsets(group)).items() if meta.offset >= 0
    }
    committed_topics = {topic for topic, _ in committed}
    status = GroupStatus(name, group, state, members)
    for role in roles:
        topic = topics.by_role(role).name
        if topic not in partitions or ((name, role) in OPTIONAL_ROLES and topic not in committed_topics):
            continue  # a topic the group has never read (role all reads commands, the re-drive may never run)
        for partition in partitions[topic]:
            tp = TopicPartition(topic, partition)
            offset = committed.get((topic, partition))
            lag = lag_of(offset, beginning[tp], end[tp])
            status.partitions.append(PartitionLag(topic, partition, offset, end[tp], lag))
    return status


def render(status: Status) -> str:
    """The status as tables for a terminal."""
    lines = []
    for g in status.groups:
        lines.append(f"{g.name} group '{g.group}': {g.state}, {len(g.members)} member(s), lag {g.lag}")
        for m in g.members:
            assigned = ", ".join(f"{t}{_ranges(ps)}" for t, ps in m.partitions.items()) or "no partitions"
            lines.append(f"  member {m.client_id} at {m.host}: {assigned}")
        if g.partitions:
            width = max(len(p.topic) for p in g.partitions)
            lines.append(f"  {'topic':<{width}}  partition  committed        end        lag")
            for p in g.partitions:
                committed = "-" if p.committed is None else str(p.committed)
                lines.append(f"  {p.topic:<{width}}  {p.partition:>9}  {committed:>9}  {p.end:>9}  {p.lag:>9}")
    lines.append("dead letters:")
    for d in status.dead_letters:
        lines.append(f"  {d.topic}: {d.records} record(s)")
    return "\n".join(lines)


def _ranges(numbers: list[int]) -> str:
    parts, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return "[" + ",".join(parts) + "]"


def main(as_json: bool = False) -> int:
    quiet_client_logs()
    config = load_config()  # a CioprocError goes to the command line, which prints it
    topics = load_topics(config.topics_file)
    try:
        status = asyncio.run(collect(config, topics))
    except Exception as exc:  # a broker that is down or refuses: one line
        detail = describe_error(exc)
        print(f"error: cannot read status from Kafka at {config.kafka.bootstrap_servers}: {detail}", file=sys.stderr)
        return 1
    print(json.dumps(status.to_json(), indent=2) if as_json else render(status))
    return 0
