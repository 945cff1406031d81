"""The batch consumer's fetch loop hands one fetch's chunks to their handlers side by side
(role all: the sender's chunk must not wait for the processor's produce round trips).

The loop is driven directly with one fetch of two routed topics; only the attributes the
loop reads are provided (no broker: what is checked is the order of the awaits)."""

from __future__ import annotations

import asyncio
import types
from collections import defaultdict

from cioproc.app.batching import BatchConsumer


class _Stopped:
    def __init__(self) -> None:
        self.flag = False

    def is_set(self) -> bool:
        return self.flag


async def test_one_fetchs_chunks_are_handled_side_by_side():
    sender_started = asyncio.Event()
    handled: list[str] = []

    async def processor(chunk):  # like the processor: its produce round trips take a while
        await asyncio.wait_for(sender_started.wait(), 5)  # times out if the sender's chunk waits for this
        handled.append("processor")

    async def sender(chunk):
        sender_started.set()
        handled.append("sender")

    stopped = _Stopped()
    messages = [
        ("in", types.SimpleNamespace(topic="in", offset=0)),
        ("out", types.SimpleNamespace(topic="out", offset=0)),
    ]

    async def getmany(timeout):  # noqa: ASYNC109  (the signature of Faust's Consumer.getmany, faked)
        for tp, message in messages:
            yield tp, message
        stopped.flag = True  # one fetch, then the loop ends

    async def sleep(_seconds):
        return None

    consumer = types.SimpleNamespace(
        app=types.SimpleNamespace(batch_routes={"in": processor, "out": sender},
                                  topics=types.SimpleNamespace(acks_enabled_for=lambda topic: True)),
        callback=None, getmany=getmany, _stopped=stopped, _read_offset=defaultdict(lambda: None),
        diag=types.SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None),
        _commit_every=None, sleep=sleep, should_stop=False,
        consumer_stopped_errors=(), transport=None, log=None,
    )
    fetcher = types.SimpleNamespace(_stopped=_Stopped())
    await BatchConsumer._drain_messages(consumer, fetcher)
    assert handled == ["sender", "processor"]
