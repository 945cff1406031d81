"""The sender's partitions as lanes: each in order, independent of the others.

Each partition's part of a fetch is delivered by a task that starts only when the previous
part of the same partition has finished, so a partition's commands (and so each user's, as
commands are keyed by MPID) go out in order, while different partitions, and further
fetches, overlap. A part is prepared (decoded) without waiting for the previous one: only
its delivery waits.

A partition with ``MAX_CHUNKS_PER_PARTITION`` parts under way is paused (Faust's
``pause_partitions``: its fetched records wait in aiokafka's buffer) until one finishes,
so a partition stuck on 5xx or timeouts holds only its own parts and the others go on. Only
when every partition of the worker is paused does the fetch loop wait.

A part that fails latches its partition: no later part of it is delivered or acked (their
records are untracked, never acked, so Faust's ``_new_offset`` cannot commit past the failed
one), and the worker stops; after a restart the partition is read again from its last commit.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from faust.types import TP, Message

from cioproc.app.batching import BatchApp
from cioproc.app.internals import unacked_messages
from cioproc.sender.delivery import DELIVERY_PARTITION

log = logging.getLogger("cioproc.sender")

MAX_CHUNKS_PER_PARTITION = 2  # one being delivered, the next decoded; more pauses the partition

Chunk = TypeVar("Chunk")


class PartitionLanes(Generic[Chunk]):
    """Runs ``prepare`` then ``deliver`` for each partition's parts, in order per partition
    (see the module docstring)."""

    def __init__(
        self,
        app: BatchApp,
        prepare: Callable[[list[Message]], Chunk],
        deliver: Callable[[Chunk], Awaitable[None]],
    ) -> None:
        self.app = app
        self._prepare = prepare
        self._deliver = deliver
        self._tails: dict[TP, asyncio.Future[None]] = {}  # last delivery task per partition
        self._under_way: Counter[TP] = Counter()  # delivery tasks per partition
        self._tasks: set[asyncio.Future[None]] = set()  # every delivery task not finished
        self._failed: dict[TP, BaseException] = {}  # latched partitions: nothing later is acked
        self._paused: set[TP] = set()
        self._resumed = asyncio.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def live(self, messages: list[Message]) -> list[Message]:
        """``messages`` without those of latched partitions (neither tracked nor acked: read
        again after the restart)."""
        if self._failed:
            return [message for message in messages if message.tp not in self._failed]
        return messages

    async def run(self, records: list[Message]) -> None:
        """Dispatch a fetch's records by partition; wait while every partition is paused."""
        by_partition: dict[TP, list[Message]] = {}
        for message in records:
            part = by_partition.get(message.tp)
            if part is None:  # keyed by Faust's TP: resume_partitions() stores what it is given
                part = by_partition[TP(message.topic, message.partition)] = []
            part.append(message)
        consumer = self.app.consumer
        for tp, part in by_partition.items():
            # Deliveries of different partitions overlap; those of one partition follow each other.
            self.dispatch(tp, part)
            if self._under_way[tp] >= MAX_CHUNKS_PER_PARTITION:
                consumer.pause_partitions([tp])  # its next records wait in aiokafka's buffer (idempotent)
                self._paused.add(tp)
        # Back-pressure: with every partition paused the fetch loop would only sleep; wait here.
        while self._paused and not self._closed and not (set(consumer.assignment()) - self._paused):
            self._resumed.clear()
            await self._resumed.wait()

    def dispatch(self, tp: TP, records: list[Message]) -> asyncio.Future[None]:
        """Start delivering one partition's chunk after that partition's previous one."""
        if self._closed:
            raise RuntimeError("the sender is closed")
        task = asyncio.ensure_future(self._deliver_after(tp, self._tails.get(tp), records))
        self._tails[tp] = task
        self._under_way[tp] += 1
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._finished, tp))
        return task

    def _finished(self, tp: TP, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        self._under_way[tp] -= 1
        if self._under_way[tp] <= 0:
            del self._under_way[tp]
        if self._tails.get(tp) is task:
            del self._tails[tp]
        if tp in self._paused and self._under_way[tp] < MAX_CHUNKS_PER_PARTITION:
            self._paused.discard(tp)
            if not self._closed and tp in self.app.consumer.assignment():
                self.app.consumer.resume_partitions([tp])
            self._resumed.set()
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            log.error(
                "delivering commands of %s/%d failed (%s: %s); stopping the worker, nothing of that "
                "partition after the failed records is acked", tp[0], tp[1], type(exc).__name__, exc,
            )
            asyncio.ensure_future(self.app.crash(exc))

    async def _deliver_after(self, tp: TP, previous: asyncio.Future[None] | None, records: list[Message]) -> None:
        DELIVERY_PARTITION.set((tp[0], tp[1]))  # this task's context: the deliverer's blocked-partition bookkeeping
        try:
            # Decoding and encoding need not wait for the partition's previous chunk: only sending does.
            chunk = self._prepare(records)
            if previous is not None:
                await asyncio.wait([previous])  # its failure is reported by its own callback
            if tp in self._failed:
                self._untrack(records)
                return
            await self._deliver(chunk)
        except Exception as exc:
            self._failed.setdefault(tp, exc)
            self._untrack(records)
            raise

    def _untrack(self, records: list[Message]) -> None:
        """Records of a latched partition will never be acked: stop waiting for them (on stop
        and rebalance). Untracking does not commit them; commits follow acks only."""
        unacked = unacked_messages(self.app.consumer)  # Faust's set of tracked records
        for message in records:
            unacked.discard(message)

    async def close(self) -> None:
        """Cancel every delivery under way (unacked: read again after a restart); nothing is
        dispatched after this."""
        self._closed = True
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
