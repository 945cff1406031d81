"""The Deliverer against the project's Customer.io sandbox: the final workspace is the expected one,
with either transport, under injected faults, across a wrong API key, at the size limits."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest
from aiohttp import ClientSession
from helpers_sandbox import KEY, Running, sender_config

from cioproc.models.commands import Command, CommandKind
from cioproc.sandbox import FaultConfig, SandboxConfig, serve
from cioproc.sender import Deliverer, Outcome
from cioproc.sender.payloads import encode_v2_entry

T0 = 1_700_000_000
ID, T, S, U, M = CommandKind.IDENTIFY, CommandKind.TRACK, CommandKind.SCREEN, CommandKind.UNSUBSCRIBE, CommandKind.MERGE


def ulid(n: int) -> str:
    return f"01J0000000000000000000{n:04d}"


def c(kind: CommandKind, mpid: str, id_type: str, id_value: str, n: int, attributes: dict[str, Any] | None = None,
      name: str | None = None, secondary: tuple[str, str] | None = None) -> Command:
    event_id = ulid(n) if kind in (T, S) else None
    return Command(kind, mpid, id_type, id_value, T0 + n, attributes or {}, name, event_id, secondary)


SCENARIO = [
    c(ID, "mp-1", "id", "u1", 1, {"first_name": "Ada", "email": "ada@example.com", "plan": "pro"}),
    c(T, "mp-1", "id", "u1", 2, {"price": 10.5}, "Purchase"),
    c(S, "mp-1", "id", "u1", 3, {}, "Home"),
    c(ID, "mp-1", "id", "u1", 4, {"plan": None}),
    c(ID, "mp-2", "email", "bob@example.com", 5, {"first_name": "Bob"}),
    c(T, "mp-2", "email", "bob@example.com", 6, {}, "Signup"),
    # identity upgrade: addressed by the new id, the email in the body finds Bob
    c(ID, "mp-2", "id", "u2", 7, {"email": "Bob@Example.com", "last_name": "B"}),
    c(T, "mp-2", "id", "u2", 8, {}, "Login"),
    c(ID, "mp-3", "id", "u3", 9, {"first_name": "Cy"}),
    c(U, "mp-3", "id", "u3", 10),
    c(ID, "mp-4", "id", "u4", 11, {"a": 1}),
    c(ID, "mp-4", "id", "u5", 12, {"b": 2, "a": 9}),
    c(T, "mp-4", "id", "u5", 13, {}, "Old"),
    c(M, "mp-4", "id", "u4", 14, secondary=("id", "u5")),
]

EXPECTED_PEOPLE = [
    {"id": "u1", "email": "ada@example.com", "attributes": {"first_name": "Ada"}, "unsubscribed": False},
    {
        "id": "u2",
        "email": "bob@example.com",
        "attributes": {"first_name": "Bob", "last_name": "B"},
        "unsubscribed": False,
    },
    {"id": "u3", "email": None, "attributes": {"first_name": "Cy"}, "unsubscribed": True},
    {"id": "u4", "email": None, "attributes": {"a": 1, "b": 2}, "unsubscribed": False},
]


def _event(n: int, name: str, kind: str, data: dict[str, Any], who: tuple[str, str | None]) -> dict[str, Any]:
    return {"event_id": ulid(n), "name": name, "type": kind, "timestamp": T0 + n, "data": data,
            "person": {"id": who[0], "email": who[1]}}


EXPECTED_EVENTS = [
    _event(2, "Purchase", "event", {"price": 10.5}, ("u1", "ada@example.com")),
    _event(3, "Home", "screen", {}, ("u1", "ada@example.com")),
    _event(6, "Signup", "event", {}, ("u2", "bob@example.com")),
    _event(8, "Login", "event", {}, ("u2", "bob@example.com")),
    _event(13, "Old", "event", {}, ("u4", None)),
]


@pytest.fixture
async def sandbox():
    runner, port = await serve(SandboxConfig(port=0))
    async with ClientSession() as session:
        yield Running(runner, port, session)
    await runner.cleanup()


@pytest.mark.parametrize("transport", ["v2", "v1"])
async def test_scenario_reaches_the_expected_workspace(sandbox, transport):
    async with Deliverer(sender_config(sandbox, transport=transport)) as deliverer:
        outcomes = await deliverer.deliver(SCENARIO)
    assert outcomes == [Outcome("delivered", 200)] * len(SCENARIO)
    assert await sandbox.workspace() == (EXPECTED_PEOPLE, EXPECTED_EVENTS)
    stats = await sandbox.get("stats")
    endpoint = {"v2": {"v2_batch"}, "v1": {"v1_identify", "v1_event", "v1_merge"}}[transport]
    assert set(stats["by_endpoint"]) == endpoint
    # the merge travelled alone (v2) or on its own endpoint (v1); every other request carried > 1 entry in v2
    if transport == "v2":
        assert stats["total_requests"] == deliverer.stats.requests["200"] <= 4


def workload(users: int, commands: int, seed: int) -> list[Command]:
    """Identify/track/screen/unsubscribe traffic for ``users`` people, deterministic per seed."""
    rng = random.Random(seed)
    out = []
    for n in range(commands):
        user = rng.randrange(users)
        kind = rng.choice([ID, T, T, S, U] if n % 17 == 0 else [ID, T, T, S])
        attributes = {"n": n, "plan": rng.choice(["free", "pro", None])} if kind is ID else {"n": n}
        out.append(c(kind, f"mp-{user}", "id", f"user-{user}", n, attributes, "Screen" if kind is S else f"ev{n % 5}"))
    return out


async def test_twenty_percent_faults_give_the_same_workspace(sandbox):
    commands = workload(users=25, commands=400, seed=3)
    expected_events = sum(1 for command in commands if command.kind in (T, S))
    async with Deliverer(sender_config(sandbox, max_batch_entries=8)) as deliverer:
        assert all(o.delivered for o in await deliverer.deliver(commands))
    clean = await sandbox.workspace()
    assert len(clean[1]) == expected_events and len(clean[0]) == 25

    sandbox.state.reset()
    sandbox.state.faults.replace(
        FaultConfig(fault_rate=0.2, retry_after=0, drop_rate=0.05, drop_after_apply_rate=0.05, seed=11)
    )
    async with Deliverer(sender_config(sandbox, max_batch_entries=8)) as deliverer:
        outcomes = await deliverer.deliver(commands)
    assert all(o.delivered for o in outcomes) and deliverer.stats.dead_lettered == 0
    assert await sandbox.workspace() == clean  # same people, same events, none twice
    stats = await sandbox.get("stats")
    assert sum(stats["faults_injected"].values()) >= 0.2 * 50  # the faults did happen
    assert deliverer.stats.retries == sum(stats["faults_injected"].values())


async def test_sandbox_207_rejections_are_dead_lettered_with_its_error(sandbox):
    sandbox.state.faults.replace(FaultConfig(reject_event_names=("Forbidden",)))
    commands = [
        c(ID, "mp-1", "id", "u1", 1, {"x": 1}),
        c(T, "mp-1", "id", "u1", 2, {}, "Forbidden"),
        c(T, "mp-1", "id", "u1", 3, {}, "Fine"),
        c(T, "mp-2", "id", "u2", 4, {}, "Forbidden"),
        c(ID, "mp-2", "id", "u2", 5, {"bad name" * 30: 1}),  # attribute name over 150 bytes
    ]
    async with Deliverer(sender_config(sandbox)) as deliverer:
        outcomes = await deliverer.deliver(commands)
    assert [o.status for o in outcomes] == ["delivered", "dead_letter", "delivered", "dead_letter", "dead_letter"]
    assert all(o.http_status == 207 for o in outcomes)
    assert outcomes[1].reason == "rejected" and "Forbidden" in (outcomes[1].error or "")
    assert outcomes[4].reason == "too_long" and "150 bytes" in (outcomes[4].error or "")
    people, events = await sandbox.workspace()
    assert [e["name"] for e in events] == ["Fine"]


async def test_v1_rejections_are_dead_lettered_with_its_error(sandbox):
    commands = [c(T, "mp-1", "id", "u1", 1, {}, "x" * 101), c(T, "mp-1", "id", "u1", 2, {}, "ok")]
    async with Deliverer(sender_config(sandbox, transport="v1")) as deliverer:
        outcomes = await deliverer.deliver(commands)
    assert outcomes[0].status == "dead_letter" and outcomes[0].http_status == 400
    assert "100 bytes" in (outcomes[0].error or "")
    assert outcomes[1] == Outcome("delivered", 200)


async def test_wrong_key_blocks_without_dead_letters_until_fixed(sandbox, caplog):
    caplog.set_level(logging.INFO)
    sandbox.state.config.api_key = "rotated-key"
    async with Deliverer(sender_config(sandbox)) as deliverer:
        task = asyncio.create_task(deliverer.deliver(SCENARIO))
        await asyncio.sleep(0.5)
        assert not task.done() and deliverer.stats.auth_blocked and deliverer.stats.dead_lettered == 0
        assert await sandbox.workspace() == ([], [])
        assert any(
            "refused the credentials (HTTP 401)" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR
        )
        sandbox.state.config.api_key = KEY
        outcomes = await asyncio.wait_for(task, 5)
    assert outcomes == [Outcome("delivered", 200)] * len(SCENARIO)
    assert await sandbox.workspace() == (EXPECTED_PEOPLE, EXPECTED_EVENTS)
    assert KEY not in caplog.text and "rotated-key" not in caplog.text


def padded_track(n: int, size: int) -> Command:
    """A track command whose v2 entry is exactly ``size`` bytes."""
    base = c(T, f"mp-{n}", "id", f"big-{n}", n, {"pad": ""}, "Big")
    pad = size - len(encode_v2_entry(base))
    command = c(T, f"mp-{n}", "id", f"big-{n}", n, {"pad": "p" * pad}, "Big")
    assert len(encode_v2_entry(command)) == size
    return command


async def test_entries_at_the_limits_are_accepted_and_over_them_dead_lettered(sandbox):
    commands = [padded_track(n, 32_000) for n in range(40)] + [padded_track(99, 32_001)]
    async with Deliverer(sender_config(sandbox, max_concurrency=2)) as deliverer:
        outcomes = await deliverer.deliver(commands)
    assert all(o == Outcome("delivered", 200) for o in outcomes[:40])
    assert outcomes[40].status == "dead_letter" and outcomes[40].reason == "entry_too_large"
    stats = await sandbox.get("stats")
    assert stats["events_recorded"] == 40 and stats["operations_rejected"] == 0
    # 15 entries of 32,000 bytes make a 480,026-byte request; 40 entries need 3 requests at least
    assert 3 <= stats["total_requests"] <= 4 and stats["bytes_received"] < 4 * 500_000
