"""The sender's delivery counters as Prometheus metrics.

:class:`StatsExporter` copies what the :class:`~cioproc.sender.Deliverer` counts (responses,
transport errors, retries, request latencies, blocked credentials) into the metrics as
deltas, and how long each commands partition has been blocked, warning once a block passes
``BLOCKED_WARNING_S``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from cioproc.observability import metrics
from cioproc.sender import Deliverer

log = logging.getLogger("cioproc.sender")

BLOCKED_WARNING_S = 600.0  # a partition retrying this long is logged (cio.commands retention bounds it)


class StatsExporter:
    """Copies the deliverer's running counters into Prometheus as deltas, and how long each
    partition has been blocked (logged once a block passes ``BLOCKED_WARNING_S``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._requests: Counter[str] = Counter()
        self._retries = 0
        self._clock = clock
        self._blocked_shown: set[tuple[str, int]] = set()
        self._warned: set[tuple[tuple[str, int], float]] = set()

    def export(self, deliverer: Deliverer) -> None:
        stats = deliverer.stats
        for status, count in list(stats.requests.items()):
            delta = count - self._requests[status]
            if delta:
                if status in ("timeout", "transport"):
                    metrics.HTTP_TRANSPORT_ERRORS.labels(reason=status).inc(delta)
                else:
                    metrics.HTTP_RESPONSES.labels(code=str(status)).inc(delta)
                self._requests[status] = count
        for latency in stats.drain_latencies():
            metrics.TRACK_REQUEST_LATENCY.observe(latency)
        if stats.retries > self._retries:
            metrics.HTTP_RETRIES.inc(stats.retries - self._retries)
            self._retries = stats.retries
        metrics.AUTH_BLOCKED.set(1 if stats.auth_blocked else 0)
        self._export_blocked(dict(stats.blocked_since))

    def _export_blocked(self, blocked_since: dict[tuple[str, int], float]) -> None:
        gauge = metrics.PARTITION_BLOCKED_SECONDS
        for topic, partition in self._blocked_shown - blocked_since.keys():
            gauge.labels(topic=topic, partition=str(partition)).set(0)
        now = self._clock()
        for (topic, partition), since in blocked_since.items():
            seconds = now - since
            gauge.labels(topic=topic, partition=str(partition)).set(seconds)
            if seconds >= BLOCKED_WARNING_S and ((topic, partition), since) not in self._warned:
                self._warned.add(((topic, partition), since))
                log.warning(
                    "commands partition %s/%d has been blocked for %.0f s, retrying a request Customer.io "
                    "keeps failing; its commands are safe only while the topic's retention keeps them",
                    topic, partition, seconds,
                )
        self._blocked_shown = set(blocked_since)
        self._warned = {warned for warned in self._warned if warned[0] in blocked_since}
