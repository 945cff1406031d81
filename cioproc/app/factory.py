"""Builds the Faust app for a role: ``processor``, ``sender`` or ``all``.

- ``processor``: the users table (changelog-backed, keyed by MPID) and the batch handler
  for the batches and audiences topics (:mod:`cioproc.app.processor`).
- ``sender``: whatever :mod:`cioproc.app.sender_agent` attaches. That module provides::

      def attach(app: faust.App, config: cioproc.config.Config, topics: cioproc.kafka.topics.TopicsFile) -> None

  which registers the sender's agents, tasks or batch routes on ``app`` (it reads the
  ``commands`` topic and writes ``commands_dlq``, both by role from ``topics``). It is
  imported only for the ``sender`` and ``all`` roles, so a processor never loads the
  HTTP client.
- ``all``: both, in one process.

Every role serves ``/metrics``, ``/healthz`` and ``/readyz`` on ``CIOPROC_METRICS_PORT``
(0: any free port) from start-up on, also while table recovery runs.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Any

from mode import Service

from cioproc import names
from cioproc.app.batching import BatchApp
from cioproc.app.faust_config import (
    TABLE_NAME,
    check_changelog_topic,
    faust_settings,
    table_options,
)
from cioproc.app.internals import check_faust_version
from cioproc.app.lag import LAG_INTERVAL_S, LagReporter
from cioproc.app.processor import Processor
from cioproc.app.startup import verify_topics
from cioproc.app.stats import ProcessorStats
from cioproc.config import ROLES, Config, load_config
from cioproc.errors import StartupError
from cioproc.kafka import client_id
from cioproc.kafka.topics import ActualTopic, TopicsFile, load_topics
from cioproc.observability.metrics import MetricsServer
from cioproc.store import store_url

log = logging.getLogger("cioproc.worker")

SENDER_MODULE = "cioproc.app.sender_agent"
SUMMARY_INTERVAL_S = 30.0
DRAIN_TIMEOUT_S = 15.0  # on stop: how long in-flight chunks may take to finish and be committed


class CioprocApp(BatchApp):
    """The cioproc Faust app; ``role``, ``config`` and ``topics`` say what it runs."""

    role: str
    config: Config
    topics_file: TopicsFile
    processor: Processor | None = None
    sender: Any = None  # cioproc.app.sender_agent.Sender, for the sender roles
    topics_verified = False  # set when the caller already ran verify_topics

    def use_topic_limits(self, actual: Mapping[str, ActualTopic]) -> None:
        """The records the workers write must fit the topics' ``max.message.bytes``."""
        if self.processor is not None:
            self.processor.use_topic_limits(actual)
        if self.sender is not None:
            self.sender.use_topic_limits(actual)

    async def on_first_start(self) -> None:
        if not self.topics_verified:
            actual = await verify_topics(
                self.topics_file, self.role, self.config.kafka.bootstrap_servers, **self.config.kafka.aiokafka_kwargs()
            )
            self.use_topic_limits(actual)
        # Faust creates only the last level; once at start-up, so blocking is fine.
        Path(self.conf.datadir).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
        await super().on_first_start()
        await self.add_runtime_dependency(_MetricsService(self, self.config.metrics_port, self.config.metrics_host))

    async def wait_for_acks(self, consumer: Any, logger: Any, faust_wait: Awaitable[None]) -> None:
        """On stop (SIGTERM), drain: wait for in-flight chunks to be acked and commit them, for at
        most DRAIN_TIMEOUT_S. What is still unfinished then (a sender waiting out refused
        credentials, say) stays uncommitted and is done again after a restart; the stop goes on.

        During a rebalance Faust's unbounded wait is kept: a partition must not move to another
        worker while a delivery for it is still running here.
        """
        if not self.should_stop:
            await faust_wait
            return
        # Faust's wait_empty swallows cancellation, so it cannot be cut short with wait_for.
        waiting = asyncio.ensure_future(faust_wait)
        done, _ = await asyncio.wait([waiting], timeout=DRAIN_TIMEOUT_S)
        if not done:
            logger.warning(
                "stopping with work still in flight after %.0fs; its records are not committed and are "
                "processed again after a restart", DRAIN_TIMEOUT_S
            )
            # wait_empty loops while this (weak) set is non-empty; commits follow acks, not this set,
            # so what did not finish stays uncommitted. It then commits what did finish and returns.
            consumer.unacked.clear()
        await waiting


def create_app(
    role: str = "all",
    config: Config | None = None,
    topics: TopicsFile | None = None,
    app_id: str | None = None,
) -> CioprocApp:
    """The app for ``role``; StartupError (one line) when it cannot run with this configuration."""
    check_faust_version()
    if role not in ROLES:
        raise StartupError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    config = config if config is not None else load_config()
    topics = topics if topics is not None else load_topics(config.topics_file)
    app_id = group_id(role, app_id or config.app_id)
    if role in ("processor", "all"):
        check_changelog_topic(app_id, topics)
    app = CioprocApp(**faust_settings(config, app_id), broker_client_id=client_id(role))  # shown by `cioproc status`
    app.role, app.config, app.topics_file = role, config, topics
    if role in ("processor", "all"):
        app.processor = attach_processor(app, config, topics)
    if role in ("sender", "all"):
        app.sender = attach_sender(app, config, topics)
    attach_lag_reporter(app)
    return app


def attach_lag_reporter(app: BatchApp) -> LagReporter:
    """Report consumer lag of the routed input topics every few seconds."""
    reporter = LagReporter(set(app.batch_routes))

    async def report_lag() -> None:
        if not app.rebalancing:
            reporter.report(app.consumer)

    app.timer(LAG_INTERVAL_S, on_leader=False)(report_lag)
    return reporter


def group_id(role: str, app_id: str) -> str:
    """The Faust app id (and so the consumer group) a role runs under: see
    :func:`cioproc.names.group_id` (``processor`` and ``all`` share ``<app id>``, senders get
    ``<app id>-sender``; do not mix ``processor`` and ``all`` in one deployment either)."""
    return names.group_id(role, app_id)


def attach_processor(app: BatchApp, config: Config, topics: TopicsFile) -> Processor:
    """The users table and the processor for the batches, audiences and erasures topics."""
    changelog = topics.by_role("table_changelog")
    table = app.Table(
        TABLE_NAME,
        key_type=bytes,
        value_type=bytes,
        partitions=changelog.partitions,
        options=table_options(config),
        store=store_url(config.store, TABLE_NAME),  # cioproc's stores (cioproc.store), found by Faust's entry points
        help="cioproc user state (msgpack UserState) by MPID",
    )
    stats = ProcessorStats(topics.by_role("batches_dlq").name)  # the dead-letter metrics' topic label
    processor = Processor(app, table, topics, config.mapping, stats)
    for role in ("batches", "audiences", "erasures"):
        topic = app.topic(topics.by_role(role).name, key_type=bytes, value_type=bytes, acks=True)
        app.route_batches(topic, processor)

    async def log_summary() -> None:
        line = stats.summary_if_changed()
        if line is not None:
            log.info("processed since start: %s", line)

    app.timer(SUMMARY_INTERVAL_S, on_leader=False)(log_summary)
    return processor


def attach_sender(app: BatchApp, config: Config, topics: TopicsFile) -> Any:
    """Let :mod:`cioproc.app.sender_agent` register the sender on ``app`` (see the module docstring)."""
    try:
        module = importlib.import_module(SENDER_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != SENDER_MODULE:
            raise
        raise StartupError(
            f"the sender role needs {SENDER_MODULE}, which this installation does not have; "
            f"run the processor alone with --role processor"
        ) from None
    return module.attach(app, config, topics)


class _MetricsService(Service):
    """Serves the Prometheus metrics and health endpoints for the worker's lifetime."""

    def __init__(self, app: BatchApp, port: int, host: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.app = app
        self.server = MetricsServer(host=host, port=port)
        self.server.add_readiness_check("kafka", self._ready)

    def _ready(self) -> bool:
        return bool(self.app.consumer.assignment()) and not self.app.rebalancing

    async def on_start(self) -> None:
        port = await self.server.start()
        log.info("metrics and health endpoints on %s port %d", self.server.host, port)

    async def on_stop(self) -> None:
        await self.server.stop()
