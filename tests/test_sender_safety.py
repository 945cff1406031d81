"""The sender's safety rules that need no broker: poison commands end dead-lettered (issue 11
item 2), a deployment error pauses instead of dead-lettering (item 4), blocked partitions are
measured (item 8), shutdown leaves nothing running (and no new HTTP session), and what a
response puts in dead-letter headers and metric labels is bounded."""

from __future__ import annotations

import asyncio
import logging

import msgpack
import orjson
import pytest
from aiohttp import web
from faust.types import Message
from helpers_sender import KEY, SITE, Seen, config, track_cmd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cioproc.app.dead_letters import utf8_prefix
from cioproc.app.sender_agent import Sender
from cioproc.app.sender_chunk import MAX_HEADER_BYTES, dead_letter_headers
from cioproc.app.sender_stats import BLOCKED_WARNING_S, StatsExporter
from cioproc.models.commands import Command, CommandKind, encode_command
from cioproc.names import ERROR, REASON
from cioproc.observability import metrics
from cioproc.sandbox.config import SandboxConfig
from cioproc.sandbox.server import serve
from cioproc.sender import Deliverer, Outcome, SenderConfig
from cioproc.sender.client import TrackClient
from cioproc.sender.delivery import DELIVERY_PARTITION
from cioproc.sender.responses import Action, interpret

ULID = "01HZX3K9T6Q8WJ1V5N2M4R0000"


def record(value: bytes, offset: int = 0, partition: int = 0, key: bytes = b"k") -> Message:
    return Message("cio.commands", partition, offset, 0.0, 0, [], key, value, None)


# ---- item 2: poison commands ------------------------------------------------------------------

msgpack_ints = st.integers(-(2**63), 2**64 - 1)
scalars = st.one_of(st.none(), st.booleans(), msgpack_ints, st.floats(), st.text(max_size=8), st.binary(max_size=8))
msgpack_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.one_of(st.text(max_size=5), st.binary(max_size=5), msgpack_ints, st.booleans()), inner, max_size=3
        )
    ),
    max_leaves=12,
)
field_values = st.one_of(
    msgpack_values,
    st.sampled_from(["identify", "track", "screen", "unsubscribe", "merge", "id", "email", "", ULID]),
    st.lists(st.sampled_from(["id", "email", "x", 7, None]), max_size=3),
)
# Ten-field arrays of version 1 reach the deepest checks; each field may have any type.
command_like = st.tuples(
    st.just(1),
    st.sampled_from(["identify", "track", "screen", "unsubscribe", "merge"]) | field_values,
    st.text(max_size=4) | field_values,
    st.sampled_from(["id", "email"]) | field_values,
    st.text(min_size=1, max_size=4) | field_values,
    st.integers(0, 2**40) | field_values,
    st.dictionaries(st.text(max_size=4), msgpack_values, max_size=3) | field_values,
    st.text(max_size=4) | field_values,
    st.just(ULID) | field_values,
    st.tuples(st.sampled_from(["id", "email"]), st.text(max_size=4)).map(list) | field_values,
).map(list)
payloads = st.one_of(
    st.binary(max_size=64),
    msgpack_values.map(lambda v: msgpack.packb(v, use_bin_type=True)),
    command_like.map(lambda v: msgpack.packb(v, use_bin_type=True)),
)


@pytest.fixture(scope="module")
def sandbox_loop():
    """One event loop and one sandbox for all the examples of a property test."""
    loop = asyncio.new_event_loop()
    runner, port = loop.run_until_complete(serve(SandboxConfig(port=0)))
    yield loop, f"http://127.0.0.1:{port}"
    loop.run_until_complete(runner.cleanup())
    loop.close()


def settle_all(loop: asyncio.AbstractEventLoop, url: str, transport: str, values: list[bytes]):
    """Prepare and deliver ``values`` as one chunk of records: (records, (dead letters, delivered))."""
    sandbox_defaults = SandboxConfig()
    sender_config = SenderConfig(
        site_id=sandbox_defaults.site_id, api_key=sandbox_defaults.api_key, track_url=url, transport=transport,
        max_requests_per_second=None, retry_base_delay=0.01, retry_max_delay=0.02,
    )
    sender = Sender(None, sender_config, "cio.commands.dlq")  # type: ignore[arg-type]  # no Kafka needed here

    async def run():
        try:
            records = [record(value, offset) for offset, value in enumerate(values)]
            chunk = sender.prepare(records)
            return records, await sender.settle(chunk)
        finally:
            await sender.close()

    return loop.run_until_complete(run())


@pytest.mark.parametrize("transport", ["v2", "v1"])
def test_any_bytes_on_the_commands_topic_are_delivered_or_dead_lettered(sandbox_loop, transport):
    loop, url = sandbox_loop

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(payloads, min_size=1, max_size=6))
    def check(values: list[bytes]) -> None:
        records, (dead, delivered) = settle_all(loop, url, transport, values)
        dead_offsets = [message.offset for message, *_ in dead]
        assert len(dead_offsets) == len(set(dead_offsets))
        assert len(dead) + sum(delivered.values()) == len(records)  # each one: delivered or dead-lettered
        for _message, reason, _status, _error in dead:
            assert reason and len(reason.encode()) <= MAX_HEADER_BYTES

    check()


@pytest.mark.parametrize(
    "fields",
    [
        [1, "merge", "mp", "id", "u1", 5, {}, None, None, 7],  # secondary an int
        [1, "merge", "mp", "id", "u1", 5, {}, None, None, 2.5],  # a float
        [1, "merge", "mp", "id", "u1", 5, {}, None, None, True],  # a bool
        [1, "track", "mp", "id", "u1", 5, {}, 7, ULID, None],  # name a number
        [1, "track", "mp", "id", "u1", 5, {}, "Played", 12345, None],  # event id a number
        [1, "track", "mp", "id", "u1", True, {}, "Played", ULID, None],  # timestamp a bool
    ],
)
@pytest.mark.parametrize("transport", ["v2", "v1"])
def test_wrong_field_types_are_dead_lettered_as_undecodable(sandbox_loop, transport, fields):
    loop, url = sandbox_loop
    good = encode_command(Command(CommandKind.TRACK, "mp", "id", "u2", 5, {}, "Played", ULID))
    _records, (dead, delivered) = settle_all(loop, url, transport, [msgpack.packb(fields, use_bin_type=True), good])
    assert [(message.offset, reason) for message, reason, *_ in dead] == [(0, "undecodable_command")]
    assert sum(delivered.values()) == 1


# ---- item 4: statuses that say the deployment is wrong ----------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 404, 405, 409, 410, 422, 418, 499, 100, 600, 999])
def test_statuses_that_say_the_deployment_is_wrong_pause_delivery(status):
    verdict = interpret(status, b"<html>nope</html>", entries=3)
    assert verdict.action is Action.MISCONFIGURED
    assert verdict.http_status == status


async def test_a_404_pauses_and_retries_without_dead_letters_then_resumes(track, caplog):
    fixed = asyncio.Event()

    async def script(seen: Seen, n: int):
        return None if fixed.is_set() else web.Response(status=404, text="Not Found")

    track.script = script
    caplog.set_level(logging.INFO)
    async with Deliverer(config(track, max_batch_entries=4, max_concurrency=4)) as deliverer:
        task = asyncio.create_task(deliverer.deliver([track_cmd(i, i) for i in range(20)]))
        await asyncio.sleep(0.6)
        assert not task.done()
        assert deliverer.stats.auth_blocked and deliverer.stats.dead_lettered == 0
        assert len(track.seen) <= 4 + 0.6 / 0.1 + 1  # the lanes' first requests, then one probe per interval
        blocked_lines = [r for r in caplog.records if r.levelno == logging.ERROR and "HTTP 404" in r.getMessage()]
        assert blocked_lines and "CIO_TRACK_URL" in blocked_lines[0].getMessage()
        fixed.set()
        outcomes = await asyncio.wait_for(task, 5)
    assert outcomes == [Outcome("delivered", 200)] * 20
    assert not deliverer.stats.auth_blocked and deliverer.stats.dead_lettered == 0


# ---- item 8: how long a partition has been blocked --------------------------------------------


async def test_a_partition_retrying_is_reported_blocked_and_logged_after_ten_minutes(track, caplog):
    release = asyncio.Event()

    async def script(seen: Seen, n: int):
        stuck = any(entry.get("identifiers") == {"id": "user-1"} for entry in seen.entries)
        return web.Response(status=503) if stuck and not release.is_set() else None

    track.script = script
    now = [1000.0]
    exporter = StatsExporter(clock=lambda: now[0])
    caplog.set_level(logging.WARNING)
    async with Deliverer(config(track, retry_base_delay=0.01, retry_max_delay=0.02)) as deliverer:
        deliverer._clock = lambda: now[0]

        async def deliver_on(partition: tuple[str, int], user: int):
            DELIVERY_PARTITION.set(partition)
            return await deliverer.deliver([track_cmd(user, user)])

        stuck = asyncio.create_task(deliver_on(("cio.commands", 3), 1))
        assert (await asyncio.wait_for(deliver_on(("cio.commands", 0), 2), 5)) == [Outcome("delivered", 200)]
        await asyncio.sleep(0.2)
        assert not stuck.done()
        now[0] += 300
        exporter.export(deliverer)
        blocked = metrics.PARTITION_BLOCKED_SECONDS
        assert blocked.labels(topic="cio.commands", partition="3")._value.get() == 300
        assert blocked.labels(topic="cio.commands", partition="0")._value.get() == 0
        assert not [r for r in caplog.records if "blocked for" in r.getMessage()]
        now[0] += BLOCKED_WARNING_S
        exporter.export(deliverer)
        exporter.export(deliverer)  # one line per block, not one per export
        lines = [r.getMessage() for r in caplog.records if "blocked for" in r.getMessage()]
        assert len(lines) == 1 and "cio.commands/3" in lines[0] and "retention" in lines[0]
        release.set()
        assert (await asyncio.wait_for(stuck, 5)) == [Outcome("delivered", 200)]
        exporter.export(deliverer)
        assert blocked.labels(topic="cio.commands", partition="3")._value.get() == 0


async def test_a_blocked_partition_retries_one_request_at_a_time_and_the_others_go_on(track):
    """The lanes of partition 3 fail (slow 503s); their retries take one shared slot at a time,
    so partition 0 still gets its requests through with a cap of four."""
    release = asyncio.Event()
    bodies: set[bytes] = set()
    retries_in_flight = [0]
    most_retries_in_flight = [0]

    async def script(seen: Seen, n: int):
        if release.is_set() or seen.entries[0]["identifiers"]["id"] == "user-9":
            return None
        body = orjson.dumps(seen.body)
        retry = body in bodies
        bodies.add(body)
        retries_in_flight[0] += retry
        most_retries_in_flight[0] = max(most_retries_in_flight[0], retries_in_flight[0])
        try:
            await asyncio.sleep(0.1)
            return web.Response(status=503)
        finally:
            retries_in_flight[0] -= retry

    track.script = script
    async with Deliverer(config(track, max_concurrency=4, max_batch_entries=1, retry_base_delay=0.01,
                                retry_max_delay=0.02)) as deliverer:

        async def deliver_on(partition: tuple[str, int], commands: list[Command]):
            DELIVERY_PARTITION.set(partition)
            return await deliverer.deliver(commands)

        stuck = asyncio.create_task(deliver_on(("cio.commands", 3), [track_cmd(user, user) for user in range(1, 9)]))
        await asyncio.sleep(0.5)
        for n in range(5):  # partition 0 keeps delivering
            outcomes = await asyncio.wait_for(deliver_on(("cio.commands", 0), [track_cmd(9, 100 + n)]), 2)
            assert outcomes == [Outcome("delivered", 200)]
        assert not stuck.done() and len(bodies) >= 2  # several lanes are retrying
        release.set()
        assert (await asyncio.wait_for(stuck, 5)) == [Outcome("delivered", 200)] * 8
    assert most_retries_in_flight[0] == 1
    assert not deliverer.stats.blocked_since


# ---- shutdown and bounded headers ----------------------------------------------------------------


async def test_close_cancels_every_delivery_and_never_reopens_the_session(track):
    never = asyncio.Event()

    async def script(seen: Seen, n: int):
        await never.wait()  # Customer.io does not answer (until the test ends)

    track.script = script
    sender = Sender(None, config(track, total_timeout=60.0), "dlq")  # type: ignore[arg-type]
    tasks = [sender.lanes.dispatch(("cio.commands", partition), [record(encode_command(track_cmd(i, i)), i, partition)])
             for partition in (0, 0, 0, 1) for i in range(1)]
    await asyncio.sleep(0.3)
    assert len(track.seen) == 2  # partition 0's first chunk and partition 1's: the rest wait their turn
    await sender.close()
    await asyncio.sleep(0.5)
    assert all(task.done() for task in tasks)
    assert len(track.seen) == 2  # nothing sent after close: no new session, no retry
    assert sender.deliverer is None
    with pytest.raises(RuntimeError):
        sender.lanes.dispatch(("cio.commands", 0), [record(b"x", 9)])
    never.set()


async def test_a_closed_client_does_not_open_a_new_session(track):
    client = TrackClient(track.url, SITE, KEY)
    await client.request("POST", "/api/v2/batch", b"{}")
    await client.close()
    with pytest.raises(Exception) as raised:
        await client.request("POST", "/api/v2/batch", b"{}")
    assert "closed" in str(raised.value)
    assert len(track.seen) == 1


def test_utf8_prefix_cuts_on_a_character_boundary():
    text = "é" * 300  # two bytes each
    cut = utf8_prefix(text, 256)
    assert cut == "é" * 128 and len(cut.encode()) == 256
    assert utf8_prefix("a" + "€" * 100, 5) == "a€"  # 1 + 3 bytes; the next would need 7
    assert utf8_prefix("short", 256) == "short"


def test_dead_letter_headers_from_a_response_are_bounded():
    reason = "r" + "😀" * 200
    error = "e" + "日本" * 500
    headers = dict(dead_letter_headers(record(b"v"), reason, 400, error))
    for name, original in ((REASON, reason), (ERROR, error)):
        value = headers[name]
        assert len(value) <= MAX_HEADER_BYTES
        assert original.startswith(value.decode("utf-8"))  # valid UTF-8, a prefix of the original


async def test_a_long_reason_from_a_response_is_bounded_in_dead_letters(track):
    async def script(seen: Seen, n: int):
        return web.json_response(
            {"errors": [{"batch_index": 0, "reason": "ü" * 1000, "message": "x" * 5000}]}, status=207
        )

    track.script = script
    sender = Sender(None, config(track), "dlq")  # type: ignore[arg-type]
    try:
        dead, _delivered = await sender.settle(sender.prepare([record(encode_command(track_cmd(1, 1)))]))
    finally:
        await sender.close()
    [(_message, reason, status, error)] = dead
    assert status == 207 and reason == "ü" * 128 and len(error.encode()) <= MAX_HEADER_BYTES
