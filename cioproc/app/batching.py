"""A Faust app whose consumer hands whole fetches of chosen topics to a batch handler.

Why: Faust delivers each record through the conductor, a channel queue and a stream
iterator before an agent sees it, and its fetch loop wraps every record in
``wait_first(callback(message), suspend_flow.wait())`` (two tasks and an ``asyncio.wait``
per record). Measured here (faust-streaming 0.15.3, two cores shared with the broker), an
agent using ``stream.noack_take()`` that only decodes and re-encodes reached 3,600
records/s against 15,000 for a plain aiokafka loop: about 200 µs of framework per record
before any work is done. ``take()`` does not help: it buffers after that per-record path,
and it acks the buffer in a ``finally`` even when the agent body raised.

:class:`BatchConsumer` keeps everything else Faust does (the consumer group and its
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

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from mode import Service

BatchHandler = Callable[[list[Message]], Awaitable[None]]

# Faust asks the broker to hold a fetch up to 1.5 s when it has no data. aiokafka keeps one
# fetch in flight per broker, so while an idle partition (an empty audiences topic, say) is
# being long-polled, the partitions with data wait too: ~0.75 s lost per fetch on average.
FETCH_MAX_WAIT_MS = 50


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by the fetcher aiokafka creates at start()
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with a batch path for the app's routed topics."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        # faust.transport.consumer.Consumer.getmany (faust-streaming 0.15), except that a
        # partition's high watermark is read once per fetch instead of once per record (five
        # calls into aiokafka each time: as much as decoding a command, measured in the sender).
        records, active_partitions = await self._wait_next_records(timeout)
        app = self.app
        generation_id = app.consumer_generation_id
        if records is None or self.should_stop:
            return
        records_it = self.scheduler.iterate(records)
        to_message = self._to_message
        if self.flow_active:
            buffered_partitions = self._buffered_partitions
            seen: set[TP] = set()
            for tp, record in records_it:
                if not self.flow_active:
                    break
                if app.consumer_generation_id != generation_id:
                    break
                if active_partitions is None or tp in active_partitions or tp in buffered_partitions:
                    if tp not in seen:
                        seen.add(tp)
                        app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    yield tp, to_message(tp, record)
        else:
            self.log.dev("getmany called while flow not active. Seek back to committed offsets.")
            try:
                await self.perform_seek()
            except Exception as ex:
                self.log.warning(f"exception performing seek when flow not active {ex}")

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by worker tests
        # Follows faust.transport.consumer.Consumer._drain_messages (faust-streaming 0.15):
        # the same read-offset, gap and commit bookkeeping; routed topics are batched.
        routes: dict[str, BatchHandler] = cast(BatchApp, self.app).batch_routes
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                chunks: dict[BatchHandler, list[Message]] = {}
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in getmany(timeout=1.0):
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is not None and offset < r_offset:
                            continue  # read before a seek back: it comes again in order
                        if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                            # offsets without records (transaction markers, compaction)
                            await self._add_gap(tp, r_offset + 1, offset)
                        handler = routes.get(message.topic)
                        if handler is not None:
                            chunk = chunks.get(handler)
                            if chunk is None:
                                chunk = chunks[handler] = []
                            chunk.append(message)
                        else:
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
                if len(chunks) == 1:
                    for handler, chunk in chunks.items():
                        await handler(chunk)
                elif chunks:
                    # Side by side (role all): the sender's handler only schedules its deliveries,
                    # so the commands of this fetch need not wait for the processor's produce
                    # round trips. The next fetch still waits for both, as before.
                    await asyncio.gather(*(handler(chunk) for handler, chunk in chunks.items()))
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer


class BatchApp(faust.App):
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
        consumer = self.consumer
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

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)
