"""Prometheus metrics and the health endpoints of a worker.

The metrics are module-level objects in one registry, updated by the Kafka and HTTP shells
(never by the pure core). ``MetricsServer`` serves ``/metrics``, ``/healthz`` (the process
runs) and ``/readyz`` (every registered readiness check passes) with aiohttp.
"""

from __future__ import annotations

import platform
from collections.abc import Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from cioproc import __version__

REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, GC_COLLECTOR, PLATFORM_COLLECTOR):  # process_*, python_gc_*, python_info
    REGISTRY.register(_collector)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

BUILD_INFO = Gauge(
    "cioproc_build_info", "always 1; labels say which cioproc runs", ["version", "python"], registry=REGISTRY
)
BUILD_INFO.labels(version=__version__, python=platform.python_version()).set(1)

BATCHES_IN = Counter("cioproc_batches_in", "mParticle batches read from the input topic", registry=REGISTRY)
EVENTS_IN = Counter("cioproc_events_in", "mParticle events read (inside batches)", registry=REGISTRY)
AUDIENCE_CHANGES_IN = Counter(
    "cioproc_audience_changes_in", "audience membership profiles read", registry=REGISTRY
)
COMMANDS_OUT = Counter("cioproc_commands_out", "commands written to cio.commands", ["type"], registry=REGISTRY)
DROPS = Counter("cioproc_drops", "input counted and not forwarded, by reason", ["reason"], registry=REGISTRY)
DLQ_WRITES = Counter(
    "cioproc_dlq_writes", "records written to a dead-letter topic (its name), by reason", ["topic", "reason"],
    registry=REGISTRY,
)
HTTP_RESPONSES = Counter(
    "cioproc_http_responses", "Track API responses by HTTP status code", ["code"], registry=REGISTRY
)
HTTP_TRANSPORT_ERRORS = Counter(
    "cioproc_http_transport_errors", "Track API requests without a response (timeout, transport)", ["reason"],
    registry=REGISTRY,
)
TRACK_REQUEST_LATENCY = Histogram(
    "cioproc_track_request_seconds", "time from sending a Track API request to reading its response",
    buckets=LATENCY_BUCKETS, registry=REGISTRY,
)
END_TO_END_LATENCY = Histogram(
    "cioproc_end_to_end_latency_seconds",
    "per delivered command: from its input record's Kafka timestamp to Customer.io's acceptance",
    buckets=(0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
HTTP_RETRIES = Counter("cioproc_http_retries", "Track API requests retried", registry=REGISTRY)
ERASURE_RESULTS = Counter(
    "cioproc_erasure_results", "data subject request results written by the sender", ["status"], registry=REGISTRY
)
DELIVERED = Counter("cioproc_commands_delivered", "commands Customer.io accepted", ["type"], registry=REGISTRY)
DELIVERY_LATENCY = Histogram(
    "cioproc_delivery_latency_seconds",
    "time from a command's arrival at the sender to its delivery or dead letter",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "cioproc_consumer_lag", "messages behind the end of the topic, per assigned partition", ["topic", "partition"],
    registry=REGISTRY,
)
AUTH_BLOCKED = Gauge(
    "cioproc_sender_auth_blocked",
    "1 while delivery is stopped: Customer.io rejects the credentials, or answers as if the URL were wrong",
    registry=REGISTRY,
)
PARTITION_BLOCKED_SECONDS = Gauge(
    "cioproc_sender_partition_blocked_seconds",
    "seconds a commands partition has been retrying a failing request (0: delivering)", ["topic", "partition"],
    registry=REGISTRY,
)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile from cumulative (upper bound, count) buckets, interpolated linearly
    inside a bucket as Prometheus' ``histogram_quantile`` does; None without observations."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def render() -> bytes:
    """The registry in Prometheus text format."""
    return generate_latest(REGISTRY)


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on one port (0 picks a free one), on
    loopback unless another ``host`` is given (``CIOPROC_METRICS_HOST``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 9108):
        self.host = host
        self.port = port
        self._checks: dict[str, Callable[[], bool]] = {}
        self._runner: web.AppRunner | None = None

    def add_readiness_check(self, name: str, check: Callable[[], bool]) -> None:
        self._checks[name] = check

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/readyz", self._ready)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses  # (host, port, ...) of each listening socket
        if addresses:
            self.port = addresses[0][1]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _ready(self, _request: web.Request) -> web.Response:
        results = {}
        for name, check in self._checks.items():
            try:
                results[name] = bool(check())
            except Exception:
                results[name] = False
        ready = all(results.values())
        return web.json_response({"ready": ready, "checks": results}, status=200 if ready else 503)
