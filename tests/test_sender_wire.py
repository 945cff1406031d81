"""The sender's short way from record bytes to v2 entries (``v2_entry_from_wire``) and the
Deliverer's entry-level call (``deliver_entries``): the same bytes, outcomes and order as the
long way through Command objects."""

from __future__ import annotations

import msgpack
import orjson
import pytest
from helpers_sender import FakeTrack, config, identify_cmd, track_cmd
from hypothesis import given, settings
from hypothesis import strategies as st

from cioproc.models.commands import Command, CommandDecodeError, CommandKind, encode_command
from cioproc.sender import Deliverer, SenderConfigError
from cioproc.sender.payloads import PayloadError, encode_v2_entry, v2_entry_from_wire

ULID = "01HZX3K9T6Q8WJ1V5N2M4R0000"


def long_way(data: bytes) -> tuple[str, str, bytes]:
    from cioproc.models.commands import decode_command

    command = decode_command(data)
    return command.mpid, command.kind.value, encode_v2_entry(command)


def outcome_of(function, data: bytes):
    """What ``function(data)`` returns, or the error type and reason it raises."""
    try:
        return function(data)
    except PayloadError as exc:
        return ("PayloadError", exc.reason, str(exc))
    except CommandDecodeError as exc:
        return ("CommandDecodeError", str(exc))


def wire(*fields) -> bytes:
    return msgpack.packb(list(fields), use_bin_type=True)


@pytest.mark.parametrize(
    "data",
    [
        # the short way
        encode_command(Command(CommandKind.TRACK, "mp-1", "id", "u1", 1_700_000_000, {"a": 1}, "Played", ULID)),
        encode_command(Command(CommandKind.SCREEN, "mp-1", "email", "a@b.c", 0, {}, "Home", None)),
        encode_command(
            Command(CommandKind.IDENTIFY, "mp-1", "id", "u1", 1_700_000_000, {"plan": None, "n": [1, {"x": 2}]})
        ),
        encode_command(Command(CommandKind.IDENTIFY, "mp-1", "id", "u1", 0, {}, "ignored-name", ULID)),
        # the long way: other kinds, odd types, bad commands
        encode_command(Command(CommandKind.UNSUBSCRIBE, "mp-1", "id", "u1", 5, {"a": 1})),
        encode_command(Command(CommandKind.MERGE, "mp-1", "id", "u1", 5, secondary=("email", "x@y.z"))),
        encode_command(Command(CommandKind.MERGE, "mp-1", "id", "u1", 5, secondary=None)),
        encode_command(Command(CommandKind.TRACK, "mp-1", "id", "u1", 5, {}, None, ULID)),
        encode_command(Command(CommandKind.TRACK, "mp-1", "id", "u1", 5, {}, "", ULID)),
        encode_command(Command(CommandKind.IDENTIFY, "mp-1", "id", "", 5, {})),
        encode_command(Command(CommandKind.IDENTIFY, "mp-1", "id", "u1", 5, {"blob": b"\x00"})),
        wire(1, "track", "mp-1", "id", "u1", True, {}, "Played", ULID, None),  # a bool timestamp
        wire(1, "track", "mp-1", "id", "u1", 5, {}, 7, ULID, None),  # a number as name
        wire(1, "track", "mp-1", "id", "u1", 5, {}, "Played", 12345, None),  # a number as event id
        wire(1, "identify", "mp-1", "cio_id", "u1", 5, {}, None, None, None),
        wire(1, "identify", 7, "id", "u1", 5, {}, None, None, None),
        wire(1, "identify", "mp-1", "id", "u1", 5, [], None, None, None),
        wire(1, "identify", "mp-1", "id", "u1", 5, {1: "non-str key"}, None, None, None),
        wire(1, "delete", "mp-1", "id", "u1", 5, {}, None, None, None),
        wire(2, "identify", "mp-1", "id", "u1", 5, {}, None, None, None),
        wire(1, "identify", "mp-1", "id", "u1", 5, {}),
        b"\xc1",
        b"",
        msgpack.packb({"not": "a list"}),
    ],
)
def test_the_short_way_equals_the_long_way(data):
    assert outcome_of(v2_entry_from_wire, data) == outcome_of(long_way, data)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False), st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
commands = st.builds(
    Command,
    kind=st.sampled_from(list(CommandKind)),
    mpid=st.text(max_size=8),
    id_type=st.sampled_from(["id", "email", "cio_id"]),
    id_value=st.text(max_size=10),
    timestamp=st.integers(0, 2**40),
    attributes=st.dictionaries(st.text(max_size=8), values, max_size=5),
    name=st.one_of(st.none(), st.text(max_size=10)),
    event_id=st.one_of(st.none(), st.just(ULID)),
    secondary=st.one_of(st.none(), st.tuples(st.sampled_from(["id", "email"]), st.text(max_size=6))),
)


@settings(max_examples=300, deadline=None)
@given(commands)
def test_the_short_way_equals_the_long_way_for_any_command(command):
    data = encode_command(command)
    assert outcome_of(v2_entry_from_wire, data) == outcome_of(long_way, data)


@pytest.fixture
async def track():
    server = await FakeTrack().start()
    yield server
    await server.stop()


async def test_deliver_entries_sends_what_deliver_sends(track):
    commands = [track_cmd(i % 5, i) for i in range(40)] + [identify_cmd(2, 40, plan=None)]
    commands.insert(20, Command(CommandKind.MERGE, "mp-1", "id", "user-1", 1, secondary=("id", "user-x")))
    async with Deliverer(config(track, max_concurrency=3, max_batch_bytes=1_500)) as deliverer:
        by_commands = await deliverer.deliver(commands)
        first = [(seen.path, seen.body) for seen in track.seen]
        track.seen.clear()
        by_entries = await deliverer.deliver_entries(
            [c.mpid for c in commands],
            [encode_v2_entry(c) for c in commands],
            [c.kind is CommandKind.MERGE for c in commands],
        )
    assert by_entries == by_commands and all(o.delivered for o in by_entries)
    second = [(seen.path, seen.body) for seen in track.seen]
    # lanes run concurrently, so compare each user's entries in the order they arrived
    def per_user(requests):
        users: dict[str, list] = {}
        for _, body in requests:
            for entry in body["batch"]:
                key = orjson.dumps(entry.get("identifiers") or entry.get("primary")).decode()
                users.setdefault(key, []).append(entry)
        return users

    assert per_user(second) == per_user(first)
    merges = [body for _, body in second if any(e["action"] == "merge" for e in body["batch"])]
    assert len(merges) == 1 and len(merges[0]["batch"]) == 1  # merges still go alone


async def test_deliver_entries_dead_letters_entries_over_the_limit(track):
    entries = [encode_v2_entry(track_cmd(1, 1)), encode_v2_entry(track_cmd(1, 2, blob="x" * 40_000))]
    async with Deliverer(config(track)) as deliverer:
        outcomes = await deliverer.deliver_entries(["mp-1", "mp-1"], entries, [False, False])
        assert await deliverer.deliver_entries([], [], []) == []
    assert [o.status for o in outcomes] == ["delivered", "dead_letter"] and outcomes[1].reason == "entry_too_large"
    assert len(track.seen) == 1 and len(track.seen[0].entries) == 1


async def test_deliver_entries_is_v2_only(track):
    async with Deliverer(config(track, transport="v1")) as deliverer:
        with pytest.raises(SenderConfigError):
            await deliverer.deliver_entries(["mp-1"], [b"{}"], [False])
