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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from cioproc.models.commands import Command, CommandKind
from cioproc.sender.exchange import DELIVERY_PARTITION, Exchange, SenderStats
from cioproc.sender.packing import batch_body, pack
from cioproc.sender.payloads import PayloadError, encode_v1_request, encode_v2_entry
from cioproc.sender.responses import Action, Verdict
from cioproc.sender.settings import SenderConfig, SenderConfigError

log = logging.getLogger("cioproc.sender")

__all__ = ["DELIVERY_PARTITION", "BATCH_PATH", "Deliverer", "Outcome", "SenderConfig", "SenderConfigError",
           "SenderStats"]

BATCH_PATH = "/api/v2/batch"


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


def _lane_of(mpid: str, lanes: int) -> int:
    """The lane of a user within one deliver() call (str hashes are stable within a process)."""
    return hash(mpid) % lanes if lanes > 1 else 0


@functools.lru_cache(maxsize=64)
def _delivered(http_status: int | None) -> Outcome:
    """Shared (immutable) Outcome for delivered commands."""
    return Outcome("delivered", http_status)


class Deliverer(Exchange):
    """Delivers commands per :class:`SenderConfig`: lanes per user, v2 batches or v1 requests, one
    :class:`Outcome` per command (requests go through :class:`Exchange`). Use ``async with`` or
    call :meth:`close`."""

    def __repr__(self) -> str:
        return f"Deliverer({self.config!r})"

    async def __aenter__(self) -> Deliverer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


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
