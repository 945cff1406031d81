"""`cioproc check [--role processor|sender|all]`: can a worker of this role run here?

In order: the configuration (every variable, and the sender's credentials for the sender
roles), topics.yaml against the app id, for the processor roles the table store (registered
with Faust by the package's entry points), Kafka reachable with the configured security,
the topics the role needs (missing, co-partitioning, drift), and for the sender roles the
Customer.io credentials and region (``GET /api/v1/accounts/region``). Each problem is one
line on stderr; what is fine is one ``ok`` line on stdout. Exit 0 only when all is well,
1 when a check failed, 2 when the configuration itself is invalid.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from typing import Any

from cioproc.config import Config, ConfigError, load_config
from cioproc.kafka import client_id
from cioproc.ops import describe_error, quiet_client_logs

KAFKA_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 15.0


@dataclass
class Report:
    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def print(self) -> None:
        for line in self.ok:
            print(f"ok       {line}")
        for line in self.problems:
            print(f"problem  {line}", file=sys.stderr)


async def check(role: str, config: Config) -> Report:
    """Every check for ``role`` with a valid ``config``."""
    from cioproc.app.factory import group_id
    from cioproc.app.faust_config import TABLE_NAME, check_changelog_topic
    from cioproc.errors import StartupError
    from cioproc.kafka.topics import TopicsFileError, load_topics
    from cioproc.store import store_url

    report = Report()
    if role in ("sender", "all"):
        try:
            config.require_sender_credentials()
        except ConfigError as exc:
            report.problems.extend(f"config: {line}" for line in exc.problems)
    if not report.problems:
        report.ok.append(f"config: valid for role {role}")
    topics = None
    try:
        topics = load_topics(config.topics_file)
        if role in ("processor", "all"):
            check_changelog_topic(group_id(role, config.app_id), topics)
        report.ok.append(f"topics file: {topics.path}")
    except (TopicsFileError, StartupError) as exc:
        report.problems.append(f"topics file: {exc}")
    if role in ("processor", "all"):
        try:
            scheme = store_url(config.store, TABLE_NAME).split(":", 1)[0]
            report.ok.append(f"table store: {scheme} (registered with Faust)")
        except StartupError as exc:
            report.problems.append(f"table store: {exc}")
    await _check_kafka(role, config, topics, report)
    if role in ("sender", "all") and config.site_id and config.api_key:
        await _check_customer_io(config, report)
    return report


async def _check_kafka(role: str, config: Config, topics: Any, report: Report) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    from cioproc.app.startup import ROLE_TOPICS, topic_problems
    from cioproc.kafka.admin import describe_topics

    bootstrap = config.kafka.bootstrap_servers
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id=client_id("check"), request_timeout_ms=int(KAFKA_TIMEOUT_S * 1000),
        **config.kafka.aiokafka_kwargs(),
    )
    try:
        await asyncio.wait_for(admin.start(), KAFKA_TIMEOUT_S)
        actual = None
        if topics is not None:
            names = [topics.by_role(r).name for r in ROLE_TOPICS[role]]
            actual = await asyncio.wait_for(describe_topics(admin, names), KAFKA_TIMEOUT_S)
    except Exception as exc:  # refused, timed out, authentication failed: one line
        detail = describe_error(exc)
        report.problems.append(
            f"kafka: cannot reach KAFKA_BOOTSTRAP_SERVERS={bootstrap} "
            f"(KAFKA_SECURITY_PROTOCOL={config.kafka.security_protocol}): {detail}"
        )
        return
    finally:
        await admin.close()
    report.ok.append(f"kafka: {bootstrap} answers ({config.kafka.security_protocol})")
    if actual is None:
        return
    fatal, drift = topic_problems(topics, role, actual)
    report.problems.extend(f"topics: {line}" for line in fatal + drift)
    if not fatal and not drift:
        report.ok.append(f"topics: the {len(ROLE_TOPICS[role])} topics of role {role} exist as declared")


async def _check_customer_io(config: Config, report: Report) -> None:
    from cioproc.sender import SenderConfig, SenderConfigError
    from cioproc.sender.account import verify_account
    from cioproc.sender.client import TrackClient

    try:
        sender = SenderConfig.from_config(config)
    except SenderConfigError as exc:
        report.problems.append(f"customer.io: {exc}")
        return
    async with TrackClient(sender.base_url, sender.site_id, sender.api_key, total_timeout=HTTP_TIMEOUT_S,
                           connect_timeout=HTTP_TIMEOUT_S) as client:
        result = await verify_account(client, config.region)
    report.problems.extend(f"customer.io: {line}" for line in result.problems)
    if result.ok:
        report.ok.append(
            f"customer.io: credentials accepted at {sender.base_url} (region {result.region}, "
            f"environment {result.environment_id})"
        )


def main(role: str) -> int:
    """Run the checks and print them; the exit status."""
    quiet_client_logs()
    try:
        config = load_config()
    except ConfigError as exc:
        for line in exc.problems:
            print(f"problem  config: {line}", file=sys.stderr)
        return 2
    report = asyncio.run(check(role, config))
    report.print()
    return 0 if not report.problems else 1
