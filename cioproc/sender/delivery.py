"""Deliver commands to the Track API: every command ends delivered or dead-lettered, in order per user.

:meth:`Deliverer.deliver` takes a sequence of commands (e.g. what a Kafka partition yielded) and
returns one :class:`Outcome` per command, in input order, only once every command is settled, so
the caller may then commit the offsets. Inside a call, commands are split into *lanes* by a hash
of the mParticle id: a lane sends its requests one after another (a user's commands never travel
out of order or concurrently), lanes run concurrently. Concurrent ``deliver`` calls (one per
partition) share the HTTP session, the request-rate ceiling and a cap on requests in flight.

Credentials refused (401/403), or a status that says the deployment is wrong (404, 3xx,
422, ...: see :mod:`cioproc.sender.responses`), pause *all* delivery: one request probes
every ``auth_retry_interval`` seconds, each failure logged as an error, until it works.
Nothing is dead-lettered for it: the data is not at fault.

A request that keeps failing transiently (5xx, 429, timeouts) is retried forever (unless
``max_retries``) and blocks only its caller. Callers that deliver for a Kafka partition set
:data:`DELIVERY_PARTITION`; ``stats.blocked_since`` then says since when each partition has
had a request in retry.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from typing import Any, Literal, cast

from cioproc.config import Config
from cioproc.errors import ConfigurationError
from cioproc.models.commands import Command, CommandKind
from cioproc.sender.client import ClientConfigError, TrackClient, TransportError, resolve_base_url
from cioproc.sender.packing import batch_body, pack
from cioproc.sender.payloads import PayloadError, encode_v1_request, encode_v2_entry
from cioproc.sender.ratelimit import RateLimiter
from cioproc.sender.responses import Action, Verdict, backoff_delay, interpret

log = logging.getLogger("cioproc.sender")

BATCH_PATH = "/api/v2/batch"
BATCH_LIMIT_BYTES = 500_000  # "Your batch request must be smaller than 500kb."
ENTRY_LIMIT_BYTES = 32_768  # "Each of the requests within the batch must also be 32kb or smaller."
LATENCY_SAMPLES = 4096
BLOCKING_ACTIONS = (Action.AUTH, Action.MISCONFIGURED)  # pause all delivery, probe slowly

# The (topic, partition) a deliver() call works for; its lanes inherit it (contextvars).
DELIVERY_PARTITION: ContextVar[tuple[str, int] | None] = ContextVar("cioproc_delivery_partition", default=None)


class SenderConfigError(ConfigurationError, ValueError):
    """Sender configuration that cannot work (missing credentials, bad URL, bad limits)."""


@dataclass(frozen=True)
class SenderConfig:
    """Where and how the sender delivers. ``repr`` masks the API key."""

    site_id: str
    api_key: str = field(repr=False)
    region: str = "us"
    track_url: str | None = None
    transport: Literal["v2", "v1"] = "v2"
    max_requests_per_second: float | None = 100.0  # None: no ceiling
    rate_burst: float | None = None  # default: one second's worth
    max_batch_bytes: int = 495_000
    max_entry_bytes: int = 32_000
    max_batch_entries: int | None = None
    max_concurrency: int = 8  # requests in flight, across concurrent deliver() calls
    total_timeout: float = 30.0
    connect_timeout: float = 10.0
    retry_base_delay: float = 0.5
    retry_max_delay: float = 60.0
    retry_after_cap: float = 300.0
    max_retries: int | None = None  # None: retry transient failures until they succeed
    auth_retry_interval: float = 30.0
    isolate_merges: bool = True  # a merge gets a request of its own (its primary must exist)

    def __post_init__(self) -> None:
        missing = [name for name, value in (("site id", self.site_id), ("API key", self.api_key)) if not value]
        if missing:
            raise SenderConfigError(
                "Customer.io credentials missing: set CIO_SITE_ID and CIO_API_KEY "
                f"({' and '.join(missing)} not set)"
            )
        try:
            resolve_base_url(self.region, self.track_url)
        except ClientConfigError as exc:
            raise SenderConfigError(str(exc)) from None
        if self.transport not in ("v2", "v1"):
            raise SenderConfigError(f"transport must be 'v2' or 'v1', got {self.transport!r}")
        if not 0 < self.max_batch_bytes < BATCH_LIMIT_BYTES:
            raise SenderConfigError(f"max_batch_bytes must be below {BATCH_LIMIT_BYTES}")
        if not 0 < self.max_entry_bytes <= ENTRY_LIMIT_BYTES:
            raise SenderConfigError(f"max_entry_bytes must be at most {ENTRY_LIMIT_BYTES}")
        if self.max_requests_per_second is not None and self.max_requests_per_second <= 0:
            raise SenderConfigError("max_requests_per_second must be positive (or None for no ceiling)")
        if self.max_concurrency < 1 or (self.max_batch_entries is not None and self.max_batch_entries < 1):
            raise SenderConfigError("max_concurrency and max_batch_entries must be at least 1")
        positive = ("total_timeout", "connect_timeout", "retry_base_delay", "retry_max_delay", "auth_retry_interval")
        if any(getattr(self, name) <= 0 for name in positive):
            raise SenderConfigError(f"{', '.join(positive)} must be positive")

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={'***' if f.name == 'api_key' else repr(getattr(self, f.name))}" for f in fields(self)
        )
        return f"SenderConfig({shown})"

    __str__ = __repr__

    @property
    def base_url(self) -> str:
        """The Track API base URL these settings select."""
        return resolve_base_url(self.region, self.track_url)

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> SenderConfig:
        """Sender settings from the process configuration (cioproc.config, the one place that
        reads environment variables); keyword arguments win."""
        values: dict[str, Any] = {
            "site_id": config.site_id or "",
            "api_key": config.api_key.reveal() if config.api_key else "",
            "region": config.region,
            "track_url": config.track_url,
            "transport": config.transport,
            "max_requests_per_second": config.max_requests_per_second,
            "max_concurrency": config.max_concurrency,
        }
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one command ended: delivered, or dead-lettered with Customer.io's status and error."""

    status: Literal["delivered", "dead_letter"]
    http_status: int | None = None
    error: str | None = None
    reason: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"


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


def _lane_of(mpid: str, lanes: int) -> int:
    """The lane of a user within one deliver() call (str hashes are stable within a process)."""
    return hash(mpid) % lanes if lanes > 1 else 0


@functools.lru_cache(maxsize=64)
def _delivered(http_status: int | None) -> Outcome:
    """Shared (immutable) Outcome for delivered commands."""
    return Outcome("delivered", http_status)


def _path_template(path: str) -> str:
    """A path fit for logs: v1 paths lose the (personal) identifier."""
    if path.startswith("/api/v1/customers/"):
        return "/api/v1/customers/{identifier}" + ("/events" if path.endswith("/events") else "")
    return path


class Deliverer:
    """Delivers commands per :class:`SenderConfig`. Use ``async with`` or call :meth:`close`."""

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
            raise SenderConfigError("Deliverer needs a SenderConfig")
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

    def __repr__(self) -> str:
        return f"Deliverer({self.config!r})"

    async def __aenter__(self) -> Deliverer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.client.close()

    # -- the public operation ---------------------------------------------------------------

    async def deliver(self, commands: Sequence[Command]) -> list[Outcome]:
        """Deliver ``commands``; return one Outcome per command, in input order, once all are settled."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.max_concurrency)
            self._auth_probe = asyncio.Lock()
        outcomes: list[Outcome | None] = [None] * len(commands)
        if self.config.transport == "v1":
            await self._deliver_v1(commands, outcomes)
        else:
            await self._deliver_v2(commands, outcomes)
        assert all(outcome is not None for outcome in outcomes)
        return outcomes  # type: ignore[return-value]

    # -- settling ---------------------------------------------------------------------------

    def _settle(self, outcomes: list[Outcome | None], index: int, outcome: Outcome) -> None:
        outcomes[index] = outcome
        if outcome.delivered:
            self.stats.delivered += 1
        else:
            self.stats.dead_lettered += 1

    def _dead_letter(
        self, outcomes: list[Outcome | None], indices: Sequence[int], status: int | None, reason: str, error: str
    ) -> None:
        error = self.client.redact(error)
        log.warning(
            "dead-lettering %d command(s): %s (HTTP %s): %s", len(indices), reason, status or "-", error
        )
        for index in indices:
            self._settle(outcomes, index, Outcome("dead_letter", status, error, reason))

    # -- v2 ---------------------------------------------------------------------------------

    async def deliver_entries(
        self, mpids: Sequence[str], entries: Sequence[bytes], merges: Sequence[bool]
    ) -> list[Outcome]:
        """:meth:`deliver` for commands already encoded as v2 entries (v2 transport only): one
        Outcome per entry, in input order. ``mpids`` and ``merges`` (is the command a merge)
        are what lanes and packing need of each command."""
        if self.config.transport != "v2":
            raise SenderConfigError("deliver_entries needs the v2 transport")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.max_concurrency)
            self._auth_probe = asyncio.Lock()
        outcomes: list[Outcome | None] = [None] * len(entries)
        await self._deliver_v2_entries(mpids, merges, list(entries), list(range(len(entries))), outcomes)
        assert all(outcome is not None for outcome in outcomes)
        return outcomes  # type: ignore[return-value]

    async def _deliver_v2(self, commands: Sequence[Command], outcomes: list[Outcome | None]) -> None:
        entries: list[bytes | None] = [None] * len(commands)
        sendable: list[int] = []
        for index, command in enumerate(commands):
            try:
                entry = encode_v2_entry(command)
            except PayloadError as exc:
                self._dead_letter(outcomes, [index], None, exc.reason, str(exc))
                continue
            entries[index] = entry
            sendable.append(index)
        mpids = [command.mpid for command in commands]
        merges = [command.kind is CommandKind.MERGE for command in commands]
        await self._deliver_v2_entries(mpids, merges, entries, sendable, outcomes)

    async def _deliver_v2_entries(
        self,
        mpids: Sequence[str],
        merges: Sequence[bool],
        entries: list[bytes | None],
        sendable: list[int],
        outcomes: list[Outcome | None],
    ) -> None:
        """Send ``entries[i]`` for every ``i`` in ``sendable`` (in order per user)."""
        if not sendable:
            return
        total = sum(len(cast(bytes, entries[i])) for i in sendable)  # sendable: entries that are not None
        # as many lanes as full requests: concurrency without shrinking the batches
        wanted = max(1, math.ceil(total / self.config.max_batch_bytes))
        if self.config.max_batch_entries is not None:
            wanted = max(wanted, math.ceil(len(sendable) / self.config.max_batch_entries))
        lane_count = min(self.config.max_concurrency, wanted)
        if lane_count > 1:
            lane_count = min(lane_count, len({mpids[i] for i in sendable}))
        lanes: list[list[int]] = [[] for _ in range(lane_count)]
        for index in sendable:
            lanes[_lane_of(mpids[index], lane_count)].append(index)
        await self._run_lanes(self._v2_lane(lane, merges, entries, outcomes) for lane in lanes if lane)

    async def _v2_lane(
        self,
        lane: list[int],
        merges: Sequence[bool],
        entries: list[bytes | None],
        outcomes: list[Outcome | None],
    ) -> None:
        lane_entries = [entries[i] for i in lane]
        packing = pack(
            [len(entry) for entry in lane_entries],  # type: ignore[arg-type]
            max_batch_bytes=self.config.max_batch_bytes,
            max_entry_bytes=self.config.max_entry_bytes,
            max_batch_entries=self.config.max_batch_entries,
            alone=[merges[i] for i in lane] if self.config.isolate_merges else None,
        )
        for position in packing.too_large:
            index = lane[position]
            size = len(entries[index])  # type: ignore[arg-type]
            self._dead_letter(
                outcomes,
                [index],
                None,
                "entry_too_large",
                f"entry is {size} bytes; the limit is {self.config.max_entry_bytes} per entry",
            )
        for batch in packing.batches:
            await self._send_v2_batch([lane[p] for p in batch], entries, outcomes)

    async def _send_v2_batch(
        self, indices: list[int], entries: list[bytes | None], outcomes: list[Outcome | None]
    ) -> None:
        body = batch_body([entries[i] for i in indices])  # type: ignore[misc]
        verdict = await self._exchange("POST", BATCH_PATH, body, len(indices))
        if verdict.action is Action.SPLIT:
            self.stats.splits += 1
            log.info(
                "HTTP %s for a batch of %d entries (%s); splitting to find the bad ones",
                verdict.http_status,
                len(indices),
                self.client.redact(verdict.error or ""),
            )
            middle = len(indices) // 2
            await self._send_v2_batch(indices[:middle], entries, outcomes)
            await self._send_v2_batch(indices[middle:], entries, outcomes)
            return
        self._apply(verdict, indices, outcomes)

    def _apply(self, verdict: Verdict, indices: Sequence[int], outcomes: list[Outcome | None]) -> None:
        if verdict.action is Action.DELIVERED:
            outcome = _delivered(verdict.http_status)
            for index in indices:
                outcomes[index] = outcome
            self.stats.delivered += len(indices)
        elif verdict.action is Action.PARTIAL:
            for position, index in enumerate(indices):
                failure = verdict.failures.get(position)
                if failure is None:
                    self._settle(outcomes, index, _delivered(verdict.http_status))
                else:
                    self._dead_letter(outcomes, [index], verdict.http_status, failure.reason, failure.error)
        else:  # REJECTED (SPLIT of a single entry cannot happen; treated as rejected)
            self._dead_letter(
                outcomes,
                list(indices),
                verdict.http_status,
                verdict.reason or "rejected",
                verdict.error or f"HTTP {verdict.http_status}",
            )

    # -- v1 ---------------------------------------------------------------------------------

    async def _deliver_v1(self, commands: Sequence[Command], outcomes: list[Outcome | None]) -> None:
        requests: dict[int, tuple[str, str, bytes]] = {}
        for index, command in enumerate(commands):
            try:
                requests[index] = encode_v1_request(command)
            except PayloadError as exc:
                self._dead_letter(outcomes, [index], None, exc.reason, str(exc))
        lane_count = min(self.config.max_concurrency, len({commands[i].mpid for i in requests}) or 1)
        lanes: list[list[int]] = [[] for _ in range(lane_count)]
        for index in requests:
            lanes[_lane_of(commands[index].mpid, lane_count)].append(index)

        async def lane_task(lane: list[int]) -> None:
            for index in lane:
                method, path, body = requests[index]
                verdict = await self._exchange(method, path, body, 1)
                self._apply(verdict, [index], outcomes)

        await self._run_lanes(lane_task(lane) for lane in lanes if lane)

    # -- shared machinery -------------------------------------------------------------------

    @staticmethod
    async def _run_lanes(lanes: Any) -> None:
        async with asyncio.TaskGroup() as group:
            for lane in lanes:
                group.create_task(lane)

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
