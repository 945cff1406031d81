"""A Faust app whose consumer hands whole fetches of chosen topics to a batch handler.

Why: Faust delivers each record through the conductor, a channel queue and a stream
iterator before an agent sees it, and its fetch loop wraps every record in
``wait_first(callback(message), suspend_flow.wait())`` (two tasks and an ``asyncio.wait``
per record). Measured here (faust-streaming 0.15.3, two cores shared with the broker), an
agent using ``stream.noack_take()`` that only decodes and re-encodes reached 3,600
records/s against 15,000 for a plain aiokafka loop: about 200 µs of framework per record
before any work is done. ``take()`` does not help: it buffers after that per-record path,
and it acks the buffer in a ``finally`` even when the agent body raised.

:class:`BatchConsumer` (in :mod:`cioproc.app.internals`, with Faust's other internals)
keeps everything else Faust does (the consumer group and its
co-partitioning assignor, table changelogs and their recovery, standbys, flow control
during rebalances, acks and offset commits) and changes one thing: in the fetch loop,
records of a topic listed in :attr:`BatchApp.batch_routes` are collected and handed to
their handler as one list per fetch, instead of one by one to the conductor. Records of
other topics (table changelogs during recovery and for standbys, any agent's topic) take
Faust's usual path. (Its ``getmany`` is also Faust's, but reads each partition's high
watermark, for the lag monitor, once per fetch rather than once per record.)

The handler owns the records' acks. It must :meth:`~faust.transport.consumer.Consumer.track_message`
each record before its first ``await`` (so a rebalance, which waits in ``wait_empty`` for
tracked records, waits for it), and :meth:`~faust.transport.consumer.Consumer.ack` a
record only when everything it produced is acknowledged by the broker: Faust commits an
offset once the records before it in its partition are acked. It should skip (neither
track nor ack) records of an older consumer generation or delivered while the flow is
stopped for a rebalance: Faust seeks every partition back to its committed offset when
the rebalance ends, so they come again.
"""

from __future__ import annotations

from typing import Any, cast

import faust
from faust.types import Message

from cioproc.app.internals import BatchConsumer, BatchHandler, FencedApp

__all__ = ["BatchApp", "BatchConsumer", "BatchHandler"]


class BatchApp(FencedApp):
    """A Faust app with :attr:`batch_routes`: topic name -> batch handler."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_routes: dict[str, BatchHandler] = {}
        self._batch_topics: list[faust.types.TopicT] = []

    def track_current(self, messages: list[Message]) -> list[Message]:
        """The records of ``messages`` a handler may work on, tracked with the consumer.

        None while a rebalance is under way (flow stopped) and none of an older consumer
        generation: those partitions may be someone else's now, and their records are read
        again after the rebalance. Tracking makes the rebalance wait for their acks.
        """
        consumer = cast(BatchConsumer, self.consumer)
        if not consumer.flow_active:
            return []
        generation = self.consumer_generation_id
        records = [m for m in messages if m.generation_id == generation]
        for message in records:
            consumer.track_message(message)
        return records

    def route_batches(self, topic: faust.types.TopicT, handler: BatchHandler) -> None:
        """Subscribe to ``topic`` (with acks) and deliver its records to ``handler`` in lists."""
        self._batch_topics.append(topic)
        for name in topic.topics:
            self.batch_routes[name] = handler

    async def on_first_start(self) -> None:
        await super().on_first_start()
        for topic in self._batch_topics:  # registered here, where the event loop runs
            self.topics.add(topic)
