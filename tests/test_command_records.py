"""Issue 13: one record per input batch on the commands topic, holding that user's commands in
order (``cioproc.format: commands/1``), read by the sender, ``cioproc inspect`` and the re-drive;
records without the header (every record written before) still read as one command."""

from __future__ import annotations

import asyncio
import types

import msgpack
import orjson
import pytest
from faust.types import Message

from cioproc.app.dead_letters import record_size
from cioproc.app.plan import plan_chunk
from cioproc.app.plan_records import RECORD_TOO_LARGE, PlanTopics
from cioproc.app.processor import key_partition
from cioproc.app.sender_agent import Sender
from cioproc.app.sender_chunk import dead_letter_headers
from cioproc.models.commands import (
    COMMAND_LIST_FORMAT,
    RECORD_FORMAT_HEADER,
    Command,
    CommandDecodeError,
    CommandKind,
    decode_command,
    decode_record,
    encode_command,
    encode_commands,
    join_commands,
    split_record,
)
from cioproc.models.settings import MappingSettings
from cioproc.names import REASON, SOURCE_INDEX
from cioproc.ops.inspect import describe_commands, describe_dead_letter
from cioproc.sandbox.config import SandboxConfig
from cioproc.sandbox.server import serve
from cioproc.sender import SenderConfig

ULID = "01HZX3K9T6Q8WJ1V5N2M4R0000"
TOPICS = PlanTopics(batches="in.batches", audiences="in.audiences", commands="out.commands", dead_letters="out.dlq")
LIST = [(RECORD_FORMAT_HEADER, COMMAND_LIST_FORMAT)]


def cmd(i: int, name: str = "Played", mpid: str = "mp") -> Command:
    return Command(CommandKind.TRACK, mpid, "id", "u1", 1_700_000_000 + i, {"i": i}, name, f"{ULID[:-4]}{i:04d}")


# ---- the format ---------------------------------------------------------------------------


def test_a_command_list_splits_into_single_commands_in_order():
    merge = Command(CommandKind.MERGE, "mp", "id", "u1", 5, secondary=("email", "a@b"))
    commands = [cmd(i) for i in range(20)] + [merge]
    value = encode_commands(commands)
    assert value == join_commands([encode_command(c) for c in commands])  # 20 > 15: a 3-byte array header
    assert split_record(value, COMMAND_LIST_FORMAT) == [encode_command(c) for c in commands]
    assert decode_record(value, LIST) == commands


def test_a_record_without_the_format_header_is_one_command_as_before():
    value = encode_command(cmd(1))
    assert decode_record(value, None) == [cmd(1)]
    assert decode_record(value, [("cioproc.input.ts", b"5")]) == [cmd(1)]
    with pytest.raises(CommandDecodeError):  # a list record without its header is not misread as commands
        decode_record(encode_commands([cmd(1), cmd(2)]), None)


@pytest.mark.parametrize("value", [b"", b"\xc1", b"\x91\x01", b"\x92\x91\x01", encode_commands([cmd(1)]) + b"\x00",
                                   encode_commands([cmd(1)])[:-1], msgpack.packb({"a": 1})])
def test_an_unreadable_command_list_raises(value):
    with pytest.raises(CommandDecodeError):
        split_record(value, COMMAND_LIST_FORMAT)


def test_an_unknown_record_format_raises():
    with pytest.raises(CommandDecodeError, match="unknown command record format"):
        split_record(encode_commands([cmd(1)]), b"commands/2")


# ---- the processor writes one record per input batch -----------------------------------------


class Rec:
    def __init__(self, offset: int, value: bytes, key: bytes, timestamp: float = 1_700_000_000.0):
        self.topic, self.partition, self.offset = TOPICS.batches, key_partition(key, 4), offset
        self.key, self.value, self.timestamp, self.headers = key, value, timestamp, None


def batch(mpid: int, events: int, blob: int = 10) -> bytes:
    return orjson.dumps({
        "mpid": mpid, "user_identities": {"customer_id": f"c-{mpid}"}, "user_attributes": {"plan": "gold"},
        "events": [{"event_type": "custom_event", "data": {
            "event_name": f"E{i}", "timestamp_unixtime_ms": 1_700_000_000_000 + i, "source_message_id": f"m{mpid}-{i}",
            "custom_attributes": {"blob": "b" * blob}}} for i in range(events)],
    })


def plan(records, limit: int | None = None):
    limits = {TOPICS.commands: limit} if limit else None
    return plan_chunk(records, TOPICS, MappingSettings(), lambda p, k: None, lambda t, k: key_partition(k, 4),
                      max_record_bytes=limits)


def test_a_batch_becomes_one_record_with_its_user_commands_in_order():
    result = plan([Rec(0, batch(7, 8), b"7"), Rec(1, batch(8, 3), b"8"), Rec(2, batch(7, 2), b"7")])
    assert [out.key for out in result.commands] == [b"7", b"8", b"7"]  # one record per input batch
    for out in result.commands:
        headers = dict(out.headers)
        assert headers[RECORD_FORMAT_HEADER] == COMMAND_LIST_FORMAT and headers["cioproc.input.ts"] == b"1700000000000"
    first = decode_record(result.commands[0].value, result.commands[0].headers)
    assert [c.kind for c in first] == [CommandKind.IDENTIFY] + [CommandKind.TRACK] * 8
    assert [c.name for c in first[1:]] == [f"E{i}" for i in range(8)]
    assert sum(result.counts.commands.values()) == 9 + 4 + 2  # commands are still counted one by one


def test_commands_over_the_record_limit_are_split_into_records_in_order_that_fit():
    limit = 2_500
    result = plan([Rec(0, batch(7, 12, blob=600), b"7")], limit)
    assert not result.dead_letters and len(result.commands) > 1
    assert all(record_size(out.key, out.value, out.headers) <= limit for out in result.commands)
    commands = [c for out in result.commands for c in decode_record(out.value, out.headers)]
    assert [c.name for c in commands if c.kind is CommandKind.TRACK] == [f"E{i}" for i in range(12)]


def test_a_batch_with_one_command_over_the_limit_is_still_dead_lettered_whole():
    result = plan([Rec(0, batch(7, 3, blob=3_000), b"7")], 2_500)
    assert not result.commands and [dict(d.headers)["cioproc.reason"] for d in result.dead_letters] == [
        RECORD_TOO_LARGE.encode()]


# ---- the sender reads them command by command ---------------------------------------------------


def message(value: bytes, headers, offset: int = 0) -> Message:
    return Message("cio.commands", 0, offset, 0.0, 0, headers, b"mp", value, None)


@pytest.fixture(scope="module")
def sandbox_url():
    loop = asyncio.new_event_loop()
    runner, port = loop.run_until_complete(serve(SandboxConfig(port=0)))
    yield loop, f"http://127.0.0.1:{port}"
    loop.run_until_complete(runner.cleanup())
    loop.close()


def settle(loop, url: str, transport: str, records: list[Message]):
    defaults = SandboxConfig()
    sender = Sender(None, SenderConfig(site_id=defaults.site_id, api_key=defaults.api_key, track_url=url,
                                       transport=transport, max_requests_per_second=None), "cio.commands.dlq")

    async def run():
        try:
            return await sender.settle(sender.prepare(records))
        finally:
            await sender.close()

    return loop.run_until_complete(run())


@pytest.mark.parametrize("transport", ["v2", "v1"])
def test_the_sender_delivers_each_command_of_a_record_and_dead_letters_single_commands(sandbox_url, transport):
    loop, url = sandbox_url
    bad = msgpack.packb([1, "track", "mp", "id", "u1", 5, {}, 7, ULID, None])  # a name that is a number
    parts = [encode_command(cmd(1)), bad, encode_command(cmd(2))]
    multi = message(join_commands(parts), [*LIST, ("cioproc.input.ts", b"1700000000000")], offset=3)
    single = message(encode_command(cmd(3)), [], offset=4)  # as written before the format header
    dead, delivered = settle(loop, url, transport, [multi, single])
    assert delivered == {"track": 3}
    [(source, reason, _status, _error)] = dead
    assert reason == "undecodable_command"
    assert source.value == bad and source.offset == 3  # the single command, not the whole record
    headers = dict(dead_letter_headers(source, reason, None, None))
    assert headers[SOURCE_INDEX] == b"1" and RECORD_FORMAT_HEADER not in headers


@pytest.mark.parametrize("transport", ["v2", "v1"])
def test_an_unreadable_command_list_is_dead_lettered_whole_with_its_format(sandbox_url, transport):
    loop, url = sandbox_url
    broken = encode_commands([cmd(1), cmd(2)])[:-3]
    dead, delivered = settle(loop, url, transport, [message(broken, LIST), message(encode_command(cmd(3)), None, 1)])
    assert delivered == {"track": 1}
    [(source, reason, _status, _error)] = dead
    assert reason == "undecodable_command" and source.value == broken
    headers = dict(dead_letter_headers(source, reason, None, None))
    assert headers[RECORD_FORMAT_HEADER] == COMMAND_LIST_FORMAT and SOURCE_INDEX not in headers
    assert headers[REASON] == b"undecodable_command"


# ---- inspect ------------------------------------------------------------------------------------


def test_inspect_prints_one_line_per_command_of_a_record():
    lines = describe_commands(2, 9, 1_700_000_000_000, b"mp", encode_commands([cmd(1), cmd(2)]),
                              [*LIST, ("cioproc.input.ts", b"1700000000000")])
    assert [(line["offset"], line["index"], line["name"], line["event_id"]) for line in lines] == [
        (9, 0, "Played", cmd(1).event_id), (9, 1, "Played", cmd(2).event_id)]
    assert all(line["input_time"] == "2023-11-14T22:13:20.000Z" for line in lines)
    [old] = describe_commands(2, 10, 0, b"mp", encode_command(cmd(3)), [])
    assert (old["index"], old["event_id"]) == (0, cmd(3).event_id)


def test_inspect_shows_a_dead_letter_of_one_command_and_of_a_whole_record():
    part = describe_dead_letter(0, 1, 0, b"mp", encode_command(cmd(1)),
                                [("cioproc.reason", b"rejected"), (SOURCE_INDEX, b"4")], commands=True)
    assert part["source_index"] == 4 and part["value"]["event_id"] == cmd(1).event_id
    whole = describe_dead_letter(0, 2, 0, b"mp", encode_commands([cmd(1), cmd(2)]),
                                 [("cioproc.reason", b"x"), *LIST], commands=True)
    assert [c["event_id"] for c in whole["value"]] == [cmd(1).event_id, cmd(2).event_id]
    assert decode_command(encode_command(cmd(1))) == cmd(1)


# ---- a stop (SIGTERM) while a chunk is being written ----------------------------------------------


def test_a_chunk_being_written_when_the_fetcher_is_cancelled_is_finished_and_acked():
    """Faust cancels the fetch loop first on SIGTERM. Records already handed to the producer are
    written anyway, so their inputs must be acked (and committed by the drain), not read again."""
    from pathlib import Path

    from cioproc.app.processor import Processor
    from cioproc.app.stats import ProcessorStats
    from cioproc.kafka.topics import load_topics

    topics = load_topics(Path(__file__).resolve().parents[1] / "topics.yaml")
    batches_topic = topics.by_role("batches").name

    class Producer:
        def __init__(self) -> None:
            self.gate = asyncio.Event()
            self.sent: list[str] = []

        async def partitions_for(self, topic: str) -> list[int]:
            return [0, 1, 2, 3]

        def create_batch(self):
            class Batch:
                records = 0

                def append(self, **_: object) -> bool:
                    self.records += 1
                    return True

            return Batch()

        async def send_batch(self, batch, topic: str, partition: int):
            self.sent.append(topic)

            async def acknowledged():
                await self.gate.wait()

                class Metadata:
                    offset = 0

                return Metadata()

            return asyncio.ensure_future(acknowledged())

    class Store:  # a UserStore (cioproc.store.interface) holding nothing
        def read_state(self, partition: int, key: bytes):
            return None

        def write_states(self, states, changelog_offsets) -> None:
            self.states = states

        def apply_changelog(self, partition, records) -> None:
            raise AssertionError("the processor applies no changelog records")

    producer, acked = Producer(), []

    class App:
        def track_current(self, messages):
            return messages

        class consumer:  # noqa: N801 - stands in for Faust's consumer
            ack = staticmethod(acked.append)

        class sensors:  # noqa: N801
            @staticmethod
            def on_message_out(*_: object) -> None:
                pass

        class producer:  # noqa: N801
            @staticmethod
            def _ensure_producer():
                return producer

        async def crash(self, exc: BaseException) -> None:
            raise AssertionError(f"crashed: {exc}")

    table = types.SimpleNamespace(data=Store())  # a Faust table's store is its ``data``
    processor = Processor(App(), table, topics, MappingSettings(), ProcessorStats("dlq"))
    records = [Message(batches_topic, key_partition(str(m).encode(), 4), m, 1_700_000_000.0, 0, [],
                       str(m).encode(), batch(m, 2), None) for m in (7, 8)]

    async def run() -> None:
        chunk = asyncio.ensure_future(processor(records))
        while not producer.sent:  # noqa: ASYNC110 (a fake producer: polling its list is the simplest probe)
            await asyncio.sleep(0)
        chunk.cancel()  # the fetcher stops
        await asyncio.sleep(0.01)
        producer.gate.set()  # the broker acknowledges what was sent
        with pytest.raises(asyncio.CancelledError):
            await chunk

    asyncio.new_event_loop().run_until_complete(run())
    assert acked == records and not processor.failed
