"""Checks a worker makes before it joins the consumer group.

The worker never creates topics (``cioproc topics apply`` does, from topics.yaml). It
refuses to start when a topic its role needs is missing, or when a keyed topic's
partition count differs from the table changelog's: co-partitioning by MPID is what keeps
a user's input and state on one worker. Other drift (a changed retention, say) is logged.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from cioproc.errors import StartupError
from cioproc.kafka.admin import describe_topics
from cioproc.kafka.failures import watch_connections
from cioproc.kafka.topics import ActualTopic, TopicsFile, drift

log = logging.getLogger("cioproc.worker")

ROLE_TOPICS = {
    "processor": ("batches", "audiences", "commands", "batches_dlq", "table_changelog", "erasures", "erasure_results"),
    "sender": ("commands", "commands_dlq", "erasure_results"),
}
ROLE_TOPICS["all"] = tuple(dict.fromkeys(ROLE_TOPICS["processor"] + ROLE_TOPICS["sender"]))
COPARTITIONED = ("batches", "audiences", "table_changelog", "erasures")


def topic_problems(topics: TopicsFile, role: str, actual: dict[str, ActualTopic]) -> tuple[list[str], list[str]]:
    """(fatal problems, warnings) for the topics ``role`` needs, given what the cluster has."""
    fatal: list[str] = []
    warnings: list[str] = []
    for topic_role in ROLE_TOPICS[role]:
        spec = topics.by_role(topic_role)
        found = actual.get(spec.name)
        if found is None:
            fatal.append(f"topic '{spec.name}' ({topic_role}) does not exist: run `cioproc topics apply`")
            continue
        if topic_role in COPARTITIONED and found.partitions != spec.partitions:
            fatal.append(
                f"topic '{spec.name}' has {found.partitions} partitions, topics.yaml declares {spec.partitions}: "
                f"inputs and the table changelog must be co-partitioned by MPID"
            )
            continue
        warnings.extend(drift(spec, found))
    return fatal, warnings


async def verify_topics(topics: TopicsFile, role: str, bootstrap: str, **client: Any) -> dict[str, ActualTopic]:
    """Raise StartupError (one line) when the cluster lacks what ``role`` needs; log other drift.

    Returns what the cluster reported of the role's topics (configs included)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000, **client)
    with watch_connections() as failures:
        try:
            await admin.start()
            names = [topics.by_role(r).name for r in ROLE_TOPICS[role]]
            actual = await describe_topics(admin, names)
        except Exception as exc:
            raise StartupError(
                f"cannot read topic metadata from Kafka at {bootstrap}: {failures.describe(exc, bootstrap)}"
            ) from None
        finally:
            await admin.close()
    fatal, warnings = topic_problems(topics, role, actual)
    for line in warnings:
        log.warning("topic drift (not changed by the worker): %s", line)
    if fatal:
        raise StartupError(fatal[0] + (f" (and {len(fatal) - 1} more)" if len(fatal) > 1 else ""))
    return actual
