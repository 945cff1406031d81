"""One request to the Track API until it gets a final verdict: the retry policy (back-off,
retries per partition one at a time, give up after ``max_retries``), the pause of all delivery
while credentials are refused or the deployment is wrong, the rate ceiling and the cap on
requests in flight. :class:`cioproc.sender.delivery.Deliverer` builds on it."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from cioproc.sender.client import TrackClient, TransportError
from cioproc.sender.ratelimit import RateLimiter
from cioproc.sender.responses import Action, Verdict, backoff_delay, interpret
from cioproc.sender.settings import SenderConfig, SenderConfigError

log = logging.getLogger("cioproc.sender")

LATENCY_SAMPLES = 4096
BLOCKING_ACTIONS = (Action.AUTH, Action.MISCONFIGURED)  # pause all delivery, probe slowly

# The (topic, partition) a deliver() call works for; its lanes inherit it (contextvars).
DELIVERY_PARTITION: ContextVar[tuple[str, int] | None] = ContextVar("cioproc_delivery_partition", default=None)


@dataclass
class SenderStats:
    """Counters for the metrics layer; no secrets. ``requests`` is keyed by HTTP status or
    ``"timeout"`` / ``"transport"``; ``latencies`` holds recent request durations (seconds)."""

    requests: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    splits: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    bytes_sent: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    auth_blocked: bool = False  # credentials refused or the deployment is wrong: all delivery paused
    # (topic, partition) -> monotonic time since which it has had a request in retry
    blocked_since: dict[tuple[str, int], float] = field(default_factory=dict)

    def drain_latencies(self) -> list[float]:
        """Return and forget the latency samples gathered so far."""
        samples = list(self.latencies)
        self.latencies.clear()
        return samples


def _path_template(path: str) -> str:
    """A path fit for logs: v1 paths lose the (personal) identifier."""
    if path.startswith("/api/v1/customers/"):
        return "/api/v1/customers/{identifier}" + ("/events" if path.endswith("/events") else "")
    return path


class Exchange:
    """Sends requests for a :class:`SenderConfig` through one HTTP client; see the module docstring."""

    def __init__(
        self,
        config: SenderConfig,
        *,
        client: TrackClient | None = None,
        rate_limiter: RateLimiter | None = None,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Any] = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(config, SenderConfig):
            raise SenderConfigError(f"{type(self).__name__} needs a SenderConfig")
        self.config = config
        self.client = client or TrackClient(
            config.base_url,
            config.site_id,
            config.api_key,
            max_connections=config.max_concurrency,
            total_timeout=config.total_timeout,
            connect_timeout=config.connect_timeout,
        )
        self.rate_limiter = rate_limiter or RateLimiter(config.max_requests_per_second, config.rate_burst)
        self.stats = SenderStats()
        self._rng = rng
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._slots: asyncio.Semaphore | None = None
        self._auth_ok = True
        self._auth_probe: asyncio.Lock | None = None
        self._clock: Callable[[], float] = time.monotonic
        self._retrying: Counter[tuple[str, int]] = Counter()  # requests in retry per partition
        self._retry_gates: dict[tuple[str, int], asyncio.Lock] = {}  # one retry in flight per partition


    async def close(self) -> None:
        """Close the HTTP session."""
        await self.client.close()


    async def _exchange(self, method: str, path: str, body: bytes, entries: int) -> Verdict:
        """Send one request until it gets a final verdict: retry transient failures, wait out auth."""
        partition = DELIVERY_PARTITION.get()
        retrying = [False]  # set once this request is in retry: its partition counts as blocked
        try:
            return await self._exchange_until_final(method, path, body, entries, partition, retrying)
        finally:
            if retrying[0] and partition is not None:
                self._retrying[partition] -= 1
                if not self._retrying[partition]:
                    del self._retrying[partition]
                    self._retry_gates.pop(partition, None)
                    self.stats.blocked_since.pop(partition, None)

    def _retry_started(self, partition: tuple[str, int] | None) -> None:
        if partition is not None:
            if not self._retrying[partition]:
                self.stats.blocked_since.setdefault(partition, self._clock())
            self._retrying[partition] += 1

    async def _send_retry(
        self, method: str, path: str, body: bytes, entries: int, partition: tuple[str, int]
    ) -> Verdict:
        """A retry: one at a time per partition, so a blocked partition holds at most one of the
        shared request slots (timeouts hold one for ``total_timeout``) and the others keep theirs."""
        gate = self._retry_gates.get(partition)
        if gate is None:
            gate = self._retry_gates[partition] = asyncio.Lock()
        async with gate:
            return await self._send_once(method, path, body, entries)

    async def _exchange_until_final(
        self, method: str, path: str, body: bytes, entries: int, partition: tuple[str, int] | None,
        retrying: list[bool],
    ) -> Verdict:
        attempt = 0
        while True:
            probing = False
            assert self._auth_probe is not None
            if not self._auth_ok:
                await self._auth_probe.acquire()
                if self._auth_ok:
                    self._auth_probe.release()
                else:
                    probing = True
            try:
                if probing:
                    await self._sleep(self.config.auth_retry_interval)
                if attempt and partition is not None:
                    verdict = await self._send_retry(method, path, body, entries, partition)
                else:
                    verdict = await self._send_once(method, path, body, entries)
                if verdict.action in BLOCKING_ACTIONS:
                    if self._auth_ok or probing:
                        self._auth_refused(verdict)
                    continue
                if not self._auth_ok:
                    self._auth_ok = True
                    self.stats.auth_blocked = False
                    log.warning(
                        "Customer.io accepts the requests again (HTTP %s); delivery resumed", verdict.http_status
                    )
            finally:
                if probing:
                    self._auth_probe.release()
            if verdict.action is not Action.RETRY:
                return verdict
            if self.config.max_retries is not None and attempt >= self.config.max_retries:
                return Verdict(
                    Action.REJECTED,
                    verdict.http_status,
                    reason="retries_exhausted",
                    error=f"gave up after {attempt + 1} attempts: {verdict.error}",
                )
            delay = backoff_delay(
                attempt,
                base=self.config.retry_base_delay,
                cap=self.config.retry_max_delay,
                jitter=self._rng(),
                retry_after=verdict.retry_after,
                retry_after_cap=self.config.retry_after_cap,
            )
            if not retrying[0]:
                retrying[0] = True
                self._retry_started(partition)
            attempt += 1
            self.stats.retries += 1
            log.warning(
                "%s %s failed (%s: %s); retry %d in %.2fs",
                method,
                _path_template(path),
                verdict.reason,
                self.client.redact(verdict.error or ""),
                attempt,
                delay,
            )
            await self._sleep(delay)

    async def _send_once(self, method: str, path: str, body: bytes, entries: int) -> Verdict:
        await self.rate_limiter.acquire()
        assert self._slots is not None
        async with self._slots:
            self.stats.bytes_sent += len(body)
            try:
                result = await self.client.request(method, path, body)
            except TransportError as exc:
                self.stats.requests[exc.reason] += 1
                self.stats.latencies.append(exc.latency)
                return Verdict(Action.RETRY, None, reason=exc.reason, error=self.client.redact(str(exc)))
        self.stats.requests[str(result.status)] += 1
        self.stats.latencies.append(result.latency)
        return interpret(
            result.status, result.body, entries=entries, retry_after=result.retry_after, now=self._wall_clock()
        )

    def _auth_refused(self, verdict: Verdict) -> None:
        self._auth_ok = False
        self.stats.auth_blocked = True
        if verdict.action is Action.MISCONFIGURED:
            log.error(
                "Customer.io's Track API answered HTTP %s at %s (%s): the deployment is wrong, not the data "
                "(check CIO_TRACK_URL and CIO_REGION); delivery is paused, nothing is committed or "
                "dead-lettered; retrying every %.0fs.",
                verdict.http_status,
                self.client.base_url,
                self.client.redact(verdict.error or "")[:200],
                self.config.auth_retry_interval,
            )
            return
        log.error(
            "Customer.io refused the credentials (HTTP %s) for site id %r at %s: delivery is paused, "
            "nothing is committed or dead-lettered; retrying every %.0fs. Check CIO_SITE_ID and CIO_API_KEY.",
            verdict.http_status,
            self.config.site_id,
            self.client.base_url,
            self.config.auth_retry_interval,
        )
