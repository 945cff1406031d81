"""Every use cioproc makes of faust-streaming's, mode's, aiokafka's and aiohttp's private members.

Why one module: these are not API; an upgrade may change them without notice, and with
them the at-least-once guarantee (acks and commits go through Faust's consumer). Keeping
them here makes an upgrade a review of one file:

1. the tested faust-streaming range (:data:`FAUST_TESTED`), checked at start-up
   (:func:`check_faust_version`) and pinned in pyproject.toml;
2. :data:`UPSTREAM`: each upstream function the project copies, overrides or relies on, with
   a digest of its source in the tested version; ``tests/test_faust_internals.py`` names the
   one that changed and where the project's side lives. A test also finds every upstream
   method a cioproc class overrides: each is in :data:`UPSTREAM` or, when it is a documented
   extension point (a constructor, a service callback), in :data:`PUBLIC_HOOKS`;
3. the copies and overrides themselves (:class:`BatchConsumer`, :class:`FencedApp`) and small
   accessors, each with why it is needed and what upstream offers instead.

To upgrade faust-streaming: widen :data:`FAUST_TESTED` and the bound in pyproject.toml, run
``make lock``, run ``tests/test_faust_internals.py``; for each function it names, diff the
upstream source against the old version, carry the change into the project's side, then
record the new digest (``python -m cioproc.app.internals`` prints them all).

ruff's private-member rule (SLF001) is off for this module only.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableSet
from typing import Any, NamedTuple, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from mode import Service

from cioproc.errors import StartupError

# 1. The tested range ---------------------------------------------------------------------

FAUST_TESTED = ((0, 15, 3), (0, 16, 0))  # >= first, < second; keep pyproject.toml in step
FAUST_TESTED_TEXT = ">=0.15.3,<0.16"


def check_faust_version(version: str | None = None) -> None:
    """Raise StartupError (one line) when faust-streaming ``version`` (default: installed) is untested."""
    version = faust.__version__ if version is None else version
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version.strip())
    release = tuple(int(part) for part in match.groups()) if match else None
    low, high = FAUST_TESTED
    if release is None or not low <= release < high:
        raise StartupError(
            f"faust-streaming {version} is outside the tested range {FAUST_TESTED_TEXT}: "
            f"install the locked versions (make install, or pip install -r requirements.lock)"
        )


# 2. Upstream functions the project copies, overrides or relies on --------------------------


class Watched(NamedTuple):
    digest: str  # sha256 of inspect.getsource in the tested version, first 16 hex digits
    ours: str  # where the project's side lives
    why: str


UPSTREAM: dict[str, Watched] = {
    "faust.transport.consumer:Consumer.getmany": Watched(
        "4b168d84882a70d6", "cioproc/app/internals.py BatchConsumer.getmany",
        "copied: high watermark read once per fetch"),
    "faust.transport.consumer:Consumer._drain_messages": Watched(
        "44a2500309e83c63", "cioproc/app/internals.py BatchConsumer._drain_messages",
        "copied: routed topics handed over per fetch"),
    "faust.transport.consumer:Consumer._new_offset": Watched(
        "1d2c7ea89a7ad4f1", "cioproc/app/processor.py (module docstring)",
        "relied on: commits follow the run of acked records"),
    "faust.transport.consumer:Consumer.wait_empty": Watched(
        "e4662fe24f094819", "cioproc/app/factory.py CioprocApp.wait_for_acks",
        "relied on: returns once unacked is empty"),
    "faust.transport.drivers.aiokafka:Consumer._new_consumer_thread": Watched(
        "0870ec53dea75083", "cioproc/app/internals.py BatchConsumer._new_consumer_thread",
        "overridden: our consumer thread"),
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._create_worker_consumer": Watched(
        "c2701bfc3e6f6cad", "cioproc/app/internals.py BatchConsumerThread._create_worker_consumer",
        "overridden: shorter fetch wait"),
    "faust.app.base:App._new_transport": Watched(
        "42db531312dd776f", "cioproc/app/internals.py FencedApp._new_transport", "overridden: our consumer class"),
    "faust.app.base:App._consumer_wait_empty": Watched(
        "6bc313c48c064b16", "cioproc/app/internals.py FencedApp._consumer_wait_empty",
        "overridden: bounded drain on stop"),
    "faust.transport.drivers.aiokafka:Producer._ensure_producer": Watched(
        "5592a4bbdf251325", "cioproc/app/internals.py aiokafka_producer (cioproc/app/processor.py)",
        "relied on: the started aiokafka producer"),
    "faust.stores.memory:Store": Watched(
        "83ceb1145af05eae",
        "cioproc/store/memory.py MemoryStore (incl. on_recovery_completed, apply_changelog_batch)",
        "subclassed; its data and key->partition dicts written directly"),
    "faust.stores.rocksdb:Store._db_for_partition": Watched(
        "cb7e67d5f9efc4bc", "cioproc/app/internals.py rocksdb_partition_db", "relied on: one RocksDB per partition"),
    "faust.stores.rocksdb:Store.set_persisted_offset": Watched(
        "b4c811926678346e", "cioproc/store/rocksdb.py RocksDBStore._advance",
        "relied on: where Faust's recovery starts"),
    "faust.stores.rocksdb:Store.on_rebalance": Watched(
        "38357aed5b7fc777", "cioproc/store/rocksdb.py RocksDBStore.on_rebalance",
        "overridden: the bulk restore runs once Faust has opened the partitions' databases"),
    "faust.stores.base:Store.on_rebalance": Watched(
        "a32fbe3c18de4288", "cioproc/store/memory.py MemoryStore.on_rebalance",
        "overridden: the bulk restore after the base's bookkeeping"),
    "faust.stores.base:Store.set_persisted_offset": Watched(
        "1dac35f34b4d7130", "cioproc/store/memory.py MemoryStore.set_persisted_offset",
        "overridden: the memory store keeps persisted offsets (upstream's keeps none)"),
    "faust.tables.manager:TableManager.on_rebalance": Watched(
        "2d2c23a07bf54328", "cioproc/store/changelog.py ChangelogRestore.restore_from_changelog",
        "relied on: the stores' on_rebalance (the bulk restore) runs before the recovery's"),
}


# Upstream methods the project overrides that are documented extension points (constructors
# extended through super(), service callbacks, listener interfaces): not watched by digest.
PUBLIC_HOOKS: dict[str, str] = {
    "faust.app.base:App.__init__": "extended through super(): the batch routes (cioproc/app/batching.py)",
    "faust.app.base:App.on_first_start": "mode's service callback, extended through super() (batching.py, factory.py)",
    "faust.worker:Worker.__init__": "extended through super(): logging options (cioproc/app/worker.py)",
    "faust.transport.drivers.aiokafka:Transport.Consumer": "the transport's consumer class attribute "
    "(BatchTransport; the watched App._new_transport picks the transport)",
    "mode.services:Service.__init__": "extended through super(): the metrics service (cioproc/app/factory.py)",
    "mode.services:ServiceCallbacks.on_start": "mode's service callback (the metrics service)",
    "mode.services:ServiceCallbacks.on_stop": "mode's service callback (the metrics service)",
    "aiokafka.abc:ConsumerRebalanceListener.on_partitions_assigned": "aiokafka's rebalance listener "
    "interface (cioproc/replay/redrive.py)",
    "aiokafka.abc:ConsumerRebalanceListener.on_partitions_revoked": "aiokafka's rebalance listener "
    "interface (cioproc/replay/redrive.py)",
}

def upstream_source(name: str) -> str:
    """The installed source of ``module:Qualified.name``."""
    module_name, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return inspect.getsource(obj)


def source_digest(name: str) -> str:
    return hashlib.sha256(upstream_source(name).encode()).hexdigest()[:16]


def upstream_changes() -> list[str]:
    """One line per watched upstream function whose source differs from the tested version."""
    changes = []
    for name, watched in UPSTREAM.items():
        try:
            digest = source_digest(name)
        except (ImportError, AttributeError, OSError, TypeError) as exc:
            digest = f"missing ({type(exc).__name__})"
        if digest != watched.digest:
            changes.append(
                f"faust-streaming changed {name} (digest {digest}, tested {watched.digest}; {watched.why}): "
                f"review the project's side in {watched.ours}, then record the new digest in cioproc/app/internals.py"
            )
    return changes


# 3. Accessors ----------------------------------------------------------------------------


def stopped_flag(service: Any) -> Callable[[], bool]:
    """mode's ``Service._stopped.is_set``: what Faust's own fetch loop polls per fetch.
    Upstream offers ``Service.should_stop`` (a property; the same flag, slower in a hot loop)."""
    return cast(Service, service)._stopped.is_set


def read_offsets(consumer: Any) -> Mapping[TP, int | None]:
    """Faust's ``Consumer._read_offset``: the last offset read per partition (for the lag gauge).
    Upstream offers only committed offsets (``Consumer.committed``), which trail by a commit."""
    return cast(Mapping[TP, "int | None"], consumer._read_offset)


def memory_store_partitions(store: Any) -> dict[bytes, int]:
    """Faust's memory ``Store._key_partition`` (key -> partition), kept by cioproc's MemoryStore's writes.
    Upstream offers only per-event writes, which take the partition from the current event."""
    return cast(dict[bytes, int], store._key_partition)


def rocksdb_partition_db(store: Any, partition: int) -> Any:
    """Faust's RocksDB ``Store._db_for_partition``: the rocksdict DB of one partition.
    Upstream offers only per-event reads and writes (partition from the current event)."""
    return store._db_for_partition(partition)


def aiokafka_producer(app: Any) -> Any:
    """Faust's ``Producer._ensure_producer()``: the aiokafka producer under Faust's, for
    ``create_batch``/``send_batch`` (one batch per partition, no future per record).
    Upstream offers ``app.producer.send`` per record, or a second producer of one's own."""
    return app.producer._ensure_producer()


def unacked_messages(consumer: Any) -> MutableSet[Message]:
    """Faust's ``Consumer._unacked_messages``: the records it waits on before a rebalance or stop.
    The sender stops waiting for records it will never ack (a latched partition). Upstream
    offers ``Consumer.unacked``: the same set, typed read-only; only acking removes a record,
    and an ack would let the offset be committed."""
    return cast(MutableSet[Message], consumer._unacked_messages)


async def topic_partitions(consumer: Any, topic: str) -> set[int]:
    """The partitions of ``topic``, after loading its metadata into an aiokafka consumer
    (``AIOKafkaClient._wait_on_metadata``). Upstream's ``partitions_for_topic`` reads only what
    is loaded already, and ``topics()`` fetches into a copy; the producer's ``partitions_for``
    is the public equivalent, on another client."""
    await consumer._client._wait_on_metadata(topic)
    return set(consumer.partitions_for_topic(topic) or ())


# The batch consumer: copies and overrides of Faust's consumer (see cioproc/app/batching.py)

# Faust asks the broker to hold a fetch up to 1.5 s when it has no data. aiokafka keeps one
# fetch in flight per broker, so while an idle partition (an empty audiences topic, say) is
# being long-polled, the partitions with data wait too: ~0.75 s lost per fetch on average.
FETCH_MAX_WAIT_MS = 50
YIELD_EVERY = 100  # records per fetch between yields to the event loop (as upstream)

BatchHandler = Callable[[list[Message]], Awaitable[None]]


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes fetch_max_wait_ms=1500 and has no setting for it; aiokafka's fetcher
        # reads this attribute at start() (its public way is the constructor argument).
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with a batch path for the app's routed topics (``app.batch_routes``)."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        # Faust has no setting for the consumer thread class.
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:  # noqa: ASYNC109 - upstream's signature
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

    async def _drain_messages(self, fetcher: Any) -> None:
        # faust.transport.consumer.Consumer._drain_messages (faust-streaming 0.15.3): the same
        # read-offset, gap, commit and stop bookkeeping, the same yield to the event loop every
        # YIELD_EVERY records and log of records dropped after a seek back. Intended differences:
        # - records of routed topics are collected and handed to their handler as one list per
        #   fetch (after the fetch), not one by one to the conductor;
        # - the commit-every check runs once per fetch for routed records (the handler acks);
        # - a dropped record is logged at debug level (upstream: only with DEVLOG set) by
        #   partition and offset, never its key or value (upstream logs both: user data).
        routes: dict[str, BatchHandler] = self.app.batch_routes  # type: ignore[attr-defined]
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = stopped_flag(self)
        fetcher_should_stop = stopped_flag(fetcher)
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                chunks: dict[BatchHandler, list[Message]] = {}
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in getmany(timeout=1.0):
                        num_since_yield += 1
                        if num_since_yield > YIELD_EVERY:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is not None and offset < r_offset:
                            # read before a seek back: it comes again in order (so debug, not a loss)
                            self.log.debug("dropped record %s-%d offset %d: read offset is %d (seek back)",
                                           tp.topic, tp.partition, offset, r_offset)
                            continue
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


class FencedApp(faust.App):
    """faust.App with the two private hooks cioproc needs, exposed as public methods."""

    def _new_transport(self) -> Any:
        # Faust picks the transport class by the broker URL's scheme; no setting names a Consumer class.
        return BatchTransport(self.conf.broker_consumer, self)

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        # Faust calls this on rebalance and stop to wait for in-flight acks; upstream offers no hook.
        await self.wait_for_acks(consumer, logger, super()._consumer_wait_empty(consumer, logger))

    async def wait_for_acks(self, consumer: Any, logger: Any, faust_wait: Awaitable[None]) -> None:
        """Wait for tracked records to be acked (Faust's ``wait_empty``); override to bound it."""
        await faust_wait


if __name__ == "__main__":  # print the digests of the installed faust-streaming
    for _name in UPSTREAM:
        print(f"{source_digest(_name)}  {_name}")
