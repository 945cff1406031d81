"""`cioproc topics apply` and `cioproc topics check` against a real cluster (aiokafka admin)."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from cioproc.kafka.failures import watch_connections
from cioproc.kafka.topics import ActualTopic, TopicsFile, drift, load_topics


@dataclass
class TopicsReport:
    created: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.drift and not self.missing


async def describe_topics(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, ActualTopic]:
    """The named topics that exist, with partitions, replication factor and configs."""
    existing = set(await admin.list_topics())
    present = [n for n in names if n in existing]
    if not present:
        return {}
    described = await admin.describe_topics(present)
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in present]
    configs: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for resource in response.resources:
            error_code, _msg, _type, name, entries = resource[:5]
            if error_code:
                raise RuntimeError(f"describe_configs for {name} failed with error code {error_code}")
            configs[name] = {entry[0]: entry[1] for entry in entries}
    result = {}
    for topic in described:
        partitions = topic["partitions"]
        replicas = max((len(p["replicas"]) for p in partitions), default=0)
        name = topic["topic"]
        result[name] = ActualTopic(name, len(partitions), replicas, configs.get(name, {}))
    return result


async def reconcile(topics: TopicsFile, bootstrap: str, create: bool, **client: Any) -> TopicsReport:
    """Compare declared topics with the cluster; with ``create``, create the missing ones."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000, **client)
    await admin.start()
    try:
        names = [t.name for t in topics.topics]
        actual = await describe_topics(admin, names)
        report = TopicsReport()
        to_create = []
        for spec in topics.topics:
            if spec.name in actual:
                problems = drift(spec, actual[spec.name])
                report.drift.extend(problems)
                if not problems:
                    report.unchanged.append(spec.name)
            elif create:
                to_create.append(
                    NewTopic(spec.name, spec.partitions, spec.replication_factor, topic_configs=dict(spec.config))
                )
            else:
                report.missing.append(spec.name)
        if to_create:
            response = await admin.create_topics(to_create)
            for name, code, message in getattr(response, "topic_errors", []) or []:
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (a concurrent apply)
                    raise RuntimeError(f"creating topic '{name}' failed: {message or code}")
            report.created.extend(t.name for t in to_create)
        return report
    finally:
        await admin.close()


def main(action: str, bootstrap: str, path: str, **client: Any) -> int:
    """Run apply or check and print one line per topic; non-zero exit on drift or missing."""
    topics = load_topics(path)  # a TopicsFileError goes to the command line, which prints it
    with watch_connections() as failures:
        try:
            report = asyncio.run(reconcile(topics, bootstrap, create=(action == "apply"), **client))
        except Exception as exc:  # a broker that is down or refuses: one clear line
            print(
                f"error: topics {action} against {bootstrap} failed: {failures.describe(exc, bootstrap)}",
                file=sys.stderr,
            )
            return 1
    for name in report.created:
        print(f"created   {name}")
    for name in report.unchanged:
        print(f"ok        {name}")
    for name in report.missing:
        print(f"missing   {name} (run `cioproc topics apply`)")
    for line in report.drift:
        print(f"DRIFT     {line}", file=sys.stderr)
    return 0 if report.ok else 1
