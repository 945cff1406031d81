"""The sandbox over HTTP: endpoints, Customer.io's response shapes, auth, faults, inspection."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import test_utils
from helpers_sandbox import ADMIN, ADMIN_TOKEN, AUTH, call, entry, inspect, sandbox

from cioproc.sandbox import SANDBOX, FaultConfig, SandboxConfig, create_app, serve
from cioproc.sandbox.cli import build_parser, config_from_args, main
from cioproc.sandbox.faults import FaultInjector

ULIDS = [f"01J{n:023d}" for n in range(100)]


# -- auth ----------------------------------------------------------------------------------------

ADMIN_ROUTES = [
    ("GET", "/_sandbox/people"),
    ("GET", "/_sandbox/events"),
    ("GET", "/_sandbox/stats"),
    ("GET", "/_sandbox/activity"),
    ("GET", "/_sandbox/faults"),
    ("POST", "/_sandbox/faults"),
    ("POST", "/_sandbox/reset"),
]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, AUTH, {"Authorization": ADMIN_TOKEN}, {"Authorization": "Bearer "}],
    ids=["missing", "wrong", "track-api-basic-auth", "no-scheme", "empty"],
)
async def test_admin_routes_need_the_admin_token(headers: dict[str, str]) -> None:
    """People, events, activity, stats, reset and faults hold personal data or controls."""
    async with sandbox(faults=FaultConfig(fault_rate=0.0)) as client:
        assert await call(client, "PUT", "/api/v1/customers/u1", {"email": "u1@example.com"}) == (200, {})
        for method, path in ADMIN_ROUTES:
            status, body = await call(client, method, path, {} if method == "POST" else None, headers=headers)
            assert status == 401 and "admin token" in body["error"], (method, path)
        assert len((await inspect(client, "people"))["people"]) == 1  # nothing was reset
        for method, path in ADMIN_ROUTES:
            assert (await call(client, method, path, {} if method == "POST" else None, headers=ADMIN))[0] == 200
        assert (await call(client, "GET", "/_sandbox/health", headers={}))[0] == 200  # liveness stays open
        assert (await call(client, "PUT", "/api/v1/customers/u1", {}, headers=ADMIN))[0] == 401  # not a Track key


def test_admin_token_is_generated_unless_given() -> None:
    parser = build_parser()
    first, second = (config_from_args(parser.parse_args([]), {}) for _ in range(2))
    assert first.admin_token != second.admin_token and len(first.admin_token) >= 24
    assert config_from_args(parser.parse_args(["--admin-token", "given"]), {}).admin_token == "given"
    assert "admin_token" not in repr(first) and first.admin_token not in repr(first)


def _basic(text: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(text.encode()).decode()}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        _basic("sandbox-site:wrong-key"),
        _basic("other-site:sandbox-key"),
        _basic("sandbox-site:sandbox-key:extra"),
        {"Authorization": "Bearer sandbox-key"},
        {"Authorization": "Basic !!!not-base64"},
    ],
    ids=["missing", "wrong-key", "wrong-site", "extra", "bearer", "garbage"],
)
async def test_every_track_endpoint_needs_basic_auth(headers: dict[str, str]) -> None:
    async with sandbox() as client:
        requests = [
            ("PUT", "/api/v1/customers/u1", {"a": 1}),
            ("POST", "/api/v1/customers/u1/events", {"name": "e"}),
            ("POST", "/api/v1/merge_customers", {"primary": {"id": "a"}, "secondary": {"id": "b"}}),
            ("POST", "/api/v2/entity", entry("identify", {"id": "u1"})),
            ("POST", "/api/v2/batch", {"batch": [entry("identify", {"id": "u1"})]}),
            ("GET", "/api/v1/accounts/region", None),
        ]
        for method, path, body in requests:
            assert await call(client, method, path, body, headers=headers) == (
                401,
                {"meta": {"error": "Unauthorized request"}},
            )
        assert (await inspect(client, "people"))["people"] == []
        stats = await inspect(client, "stats")
        assert stats["by_status"] == {"401": 6} and stats["total_requests"] == 6


async def test_credentials_come_from_config() -> None:
    async with sandbox(site_id="site-9", api_key="k3y") as client:
        assert (await call(client, "PUT", "/api/v1/customers/u1", {}))[0] == 401
        assert await call(client, "PUT", "/api/v1/customers/u1", {}, headers=_basic("site-9:k3y")) == (200, {})


async def test_region_endpoint() -> None:
    async with sandbox() as client:
        status, body = await call(client, "GET", "/api/v1/accounts/region")
        assert status == 200
        assert body == {"url": str(client.make_url("")).rstrip("/"), "region": "us", "environment_id": 1}


# -- v1 ------------------------------------------------------------------------------------------

async def test_v1_identify_event_merge_round_trip() -> None:
    async with sandbox() as client:
        assert await call(client, "PUT", "/api/v1/customers/ann%2Btag%40example.com", {"first_name": "Ann"}) == (
            200,
            {},
        )
        assert await call(client, "PUT", "/api/v1/customers/cust%2F1", {"email": "ANN+tag@example.com"}) == (200, {})
        ev = {"name": "purchase", "id": ULIDS[0], "timestamp": 1_700_000_000, "data": {"price": 9}}
        assert await call(client, "POST", "/api/v1/customers/cust%2F1/events", ev) == (200, {})
        scr = {"name": "Home", "type": "screen", "id": ULIDS[1], "timestamp": 1_700_000_001}
        assert await call(client, "POST", "/api/v1/customers/ann+tag@example.com/events", scr) == (200, {})
        await call(client, "PUT", "/api/v1/customers/anon%40example.com", {"plan": "free"})
        merge = {"primary": {"id": "cust/1"}, "secondary": {"email": "anon@example.com"}}
        assert await call(client, "POST", "/api/v1/merge_customers", merge) == (200, {})

        people = await inspect(client, "people")
        assert [set(p) for p in people["people"]] == [{"cio_id", "id", "email", "attributes", "unsubscribed"}]
        assert await inspect(client, "people", "?without_cio_id=1") == {"people": [
            {"id": "cust/1", "email": "ann+tag@example.com", "attributes": {"first_name": "Ann", "plan": "free"},
             "unsubscribed": False}
        ]}
        assert await inspect(client, "events") == {
            "events": [
                {
                    "event_id": ULIDS[0],
                    "name": "purchase",
                    "type": "event",
                    "timestamp": 1_700_000_000,
                    "data": {"price": 9},
                    "person": {"id": "cust/1", "email": "ann+tag@example.com"},
                },
                {
                    "event_id": ULIDS[1],
                    "name": "Home",
                    "type": "screen",
                    "timestamp": 1_700_000_001,
                    "data": {},
                    "person": {"id": "cust/1", "email": "ann+tag@example.com"},
                },
            ]
        }
        activity = (await inspect(client, "activity"))["activity"]
        assert [a["type"] for a in activity] == ["merge"]


async def test_v1_errors_use_meta_errors_and_merge_uses_meta_error() -> None:
    async with sandbox() as client:
        status, body = await call(client, "PUT", "/api/v1/customers/u1", {"a": None, "b": [1]})
        assert (
            status == 400
            and len(body["meta"]["errors"]) == 2
            and all(isinstance(e, str) for e in body["meta"]["errors"])
        )
        status, body = await call(client, "PUT", "/api/v1/customers/u1", b"{not json")
        assert status == 400 and body["meta"]["errors"][0].startswith("request body is not valid JSON")
        status, body = await call(client, "POST", "/api/v1/customers/u1/events", {"name": "n" * 101})
        assert status == 400 and "100 bytes" in body["meta"]["errors"][0]
        status, body = await call(client, "POST", "/api/v1/merge_customers",
                                  {"primary": {"id": "a", "email": "a@x.io"}, "secondary": {"id": "b"}})
        assert status == 400 and set(body["meta"]) == {"error"} and "exactly one" in body["meta"]["error"]
        assert (await inspect(client, "people"))["people"] == []
        assert (await inspect(client, "stats"))["operations_rejected"] == 4


async def test_conflicting_identify_answers_200_and_logs_failure() -> None:
    async with sandbox() as client:
        await call(client, "PUT", "/api/v1/customers/cust-1", {"a": 1})
        await call(client, "PUT", "/api/v1/customers/ann@example.com", {"b": 2})
        before = await inspect(client, "people")
        assert await call(client, "PUT", "/api/v1/customers/cust-1", {"email": "ann@example.com", "a": 5}) == (200, {})
        assert await inspect(client, "people") == before
        (failure,) = (await inspect(client, "activity"))["activity"]
        assert failure["type"] == "attribute_update_failure" and failure["identifier"] == {"id": "cust-1"}
        assert (await inspect(client, "stats"))["operations_failed"] == 1


async def test_merge_with_missing_primary_answers_200_and_does_nothing() -> None:
    async with sandbox() as client:
        await call(client, "PUT", "/api/v1/customers/cust-2", {"a": 1})
        merge = {"primary": {"id": "cust-1"}, "secondary": {"id": "cust-2"}}
        assert await call(client, "POST", "/api/v1/merge_customers", merge) == (200, {})
        assert [p["id"] for p in (await inspect(client, "people"))["people"]] == ["cust-2"]
        assert (await inspect(client, "activity"))["activity"][0]["type"] == "merge_failure"


# -- v2 ------------------------------------------------------------------------------------------

async def test_v2_batch_207_names_failing_entries_and_applies_the_rest() -> None:
    async with sandbox() as client:
        batch = [
            entry("identify", {"id": "u1"}, attributes={"plan": "pro"}),
            entry("event", {"id": "u1"}, id=ULIDS[0]),  # no name
            entry("event", {"id": "u1"}, name="purchase", id=ULIDS[1], timestamp=10, attributes={"price": 3}),
            entry("identify", {"id": "u2", "email": "b@x.io"}),  # two identifiers
            entry("identify", {"id": "u1"}, attributes={"big": "x" * 1001, "n" * 151: 1}),  # two errors
            {"type": "person", "action": "merge", "primary": {"id": "u1"}, "secondary": {"id": "u3"}},
            entry("screen", {"email": "c@x.io"}, name="Home", id=ULIDS[2], timestamp=11),
        ]
        status, body = await call(client, "POST", "/api/v2/batch", {"batch": batch})
        assert status == 207
        assert [(e["batch_index"], e["field"]) for e in body["errors"]] == [
            (1, "name"), (3, "identifiers"), (4, "attributes.big"), (4, "attributes." + "n" * 151)
        ]
        assert all(set(e) == {"batch_index", "reason", "field", "message"} for e in body["errors"])
        people = (await inspect(client, "people", "?without_cio_id=1"))["people"]
        assert [(p["id"], p["email"], p["attributes"]) for p in people] == [
            (None, "c@x.io", {}),
            ("u1", None, {"plan": "pro"}),
        ]
        assert [e["event_id"] for e in (await inspect(client, "events"))["events"]] == [ULIDS[1], ULIDS[2]]
        stats = await inspect(client, "stats")
        assert (stats["operations_applied"], stats["operations_rejected"], stats["operations_failed"]) == (3, 3, 1)


async def test_v2_batch_all_valid_is_200() -> None:
    async with sandbox() as client:
        batch = [entry("identify", {"id": f"u{i}"}, attributes={"i": i}) for i in range(50)]
        assert await call(client, "POST", "/api/v2/batch", {"batch": batch}) == (200, {})
        assert len((await inspect(client, "people"))["people"]) == 50


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"batch": {}}',
        b"[]",
        orjson.dumps({"batch": [entry("identify", {"id": "u1"})] * 2}) + b" " * 500_000,
    ],
    ids=["not-json", "batch-not-list", "not-object", "too-large"],
)
async def test_v2_batch_malformed_request_is_400_and_applies_nothing(body: bytes) -> None:
    async with sandbox() as client:
        status, reply = await call(client, "POST", "/api/v2/batch", body)
        assert status == 400
        assert all(set(e) == {"reason", "field", "message"} for e in reply["errors"])
        assert (await inspect(client, "people"))["people"] == []


async def test_v2_entity() -> None:
    async with sandbox() as client:
        assert await call(
            client, "POST", "/api/v2/entity", entry("identify", {"email": "a@x.io"}, attributes={"k": None})
        ) == (200, {})
        status, body = await call(client, "POST", "/api/v2/entity", entry("identify", {"phone": "+14155552671"}))
        assert (
            status == 400
            and body["errors"][0]["field"] == "identifiers.phone"
            and "batch_index" not in body["errors"][0]
        )
        too_big = entry("event", {"id": "u1"}, name="e", attributes={"p": "x" * 32_000})
        assert (await call(client, "POST", "/api/v2/entity", too_big))[1]["errors"][0]["reason"] == "too_large"
        assert len((await inspect(client, "people"))["people"]) == 1


async def test_event_redelivery_is_deduplicated_over_http() -> None:
    async with sandbox() as client:
        ev = entry("event", {"id": "u1"}, name="purchase", id=ULIDS[5], timestamp=1)
        for _ in range(3):
            assert await call(client, "POST", "/api/v2/batch", {"batch": [ev]}) == (200, {})
        assert await call(client, "POST", "/api/v1/customers/u1/events", {"name": "purchase", "id": ULIDS[5]}) == (
            200,
            {},
        )
        assert len((await inspect(client, "events"))["events"]) == 1
        assert (await inspect(client, "stats"))["events_deduplicated"] == 3


# -- faults ---------------------------------------------------------------------------------------

async def _statuses(client: test_utils.TestClient, n: int) -> list[tuple[int, str | None]]:
    out = []
    for i in range(n):
        async with client.put(f"/api/v1/customers/u{i}", data=b"{}", headers=AUTH) as resp:
            await resp.read()
            out.append((resp.status, resp.headers.get("Retry-After")))
    return out


async def test_seeded_faults_are_reproducible() -> None:
    faults = FaultConfig(fault_rate=0.5, retry_after=7, seed=42)
    async with sandbox(faults=faults) as a, sandbox(faults=faults) as b:
        first, second = await _statuses(a, 40), await _statuses(b, 40)
    assert first == second
    assert {s for s, _ in first} == {200, 429, 500, 503}
    assert all(retry == "7" for s, retry in first if s == 429)
    assert all(retry is None for s, retry in first if s != 429)
    injector = FaultInjector(faults)
    assert [s for s, _ in first] == [injector.decide().status or 200 for _ in range(40)]


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_each_fault_status_answers_without_applying(status: int) -> None:
    async with sandbox(faults=FaultConfig(fault_rate=1.0, fault_statuses=(status,), retry_after=3)) as client:
        async with client.put("/api/v1/customers/u1", data=b"{}", headers=AUTH) as resp:
            assert resp.status == status
            assert resp.headers.get("Retry-After") == ("3" if status == 429 else None)
            assert "meta" in await resp.json()
        assert (await inspect(client, "people"))["people"] == []
        stats = await inspect(client, "stats")
        assert stats["faults_injected"] == {str(status): 1} and stats["by_status"] == {str(status): 1}


async def test_fault_rate_is_roughly_honoured() -> None:
    injector = FaultInjector(FaultConfig(fault_rate=0.2, drop_rate=0.1, seed=1))
    decisions = [injector.decide() for _ in range(5000)]
    faulted = sum(d.status is not None for d in decisions) / 5000
    dropped = sum(d.drop for d in decisions) / 5000
    assert 0.18 < faulted < 0.22 and 0.06 < dropped < 0.1  # drops are drawn among unfaulted requests


async def test_latency_is_added_to_track_requests_only() -> None:
    async with sandbox(faults=FaultConfig(latency_ms=150)) as client:
        start = time.perf_counter()
        await call(client, "PUT", "/api/v1/customers/u1", {})
        slow = time.perf_counter() - start
        start = time.perf_counter()
        await inspect(client, "people")
        fast = time.perf_counter() - start
    assert slow >= 0.15 and fast < 0.1


async def test_dropped_connection_before_apply() -> None:
    async with sandbox(faults=FaultConfig(drop_rate=1.0)) as client:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await call(client, "POST", "/api/v2/batch", {"batch": [entry("identify", {"id": "u1"})]})
        assert (await inspect(client, "people"))["people"] == []
        stats = await inspect(client, "stats")
        assert stats["faults_injected"] == {"dropped": 1} and stats["by_status"] == {"dropped": 1}


async def test_dropped_connection_after_apply_then_retry_is_deduplicated() -> None:
    async with sandbox(faults=FaultConfig(drop_after_apply_rate=1.0)) as client:
        batch = {"batch": [entry("event", {"id": "u1"}, name="purchase", id=ULIDS[9], timestamp=1)]}
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await call(client, "POST", "/api/v2/batch", batch)
        assert len((await inspect(client, "events"))["events"]) == 1
        await call(client, "POST", "/_sandbox/faults", {}, headers=ADMIN)
        assert await call(client, "POST", "/api/v2/batch", batch) == (200, {})
        assert len((await inspect(client, "events"))["events"]) == 1
        assert (await inspect(client, "stats"))["events_deduplicated"] == 1


async def test_rules_reject_chosen_entries_for_good() -> None:
    rules = FaultConfig(
        reject_event_names=("poison",), reject_ids=("bad-user", "Bad@Example.com"), reject_event_ids=(ULIDS[3],)
    )
    async with sandbox(faults=rules) as client:
        batch = [
            entry("event", {"id": "u1"}, name="poison", id=ULIDS[0]),
            entry("event", {"id": "u1"}, name="fine", id=ULIDS[1], timestamp=1),
            entry("identify", {"id": "bad-user"}),
            entry("identify", {"id": "BAD-USER"}),  # ids are case-sensitive
            entry("identify", {"id": "u2"}, attributes={"email": "bad@example.COM"}),
            entry("event", {"id": "u1"}, name="fine", id=ULIDS[3]),
            {"type": "person", "action": "merge", "primary": {"id": "u1"}, "secondary": {"id": "bad-user"}},
        ]
        status, body = await call(client, "POST", "/api/v2/batch", {"batch": batch})
        assert status == 207
        assert [(e["batch_index"], e["reason"], e["field"]) for e in body["errors"]] == [
            (0, "rejected", "name"), (2, "rejected", "identifiers"), (4, "rejected", "attributes.email"),
            (5, "rejected", "id"), (6, "rejected", "secondary"),
        ]
        status, body = await call(client, "POST", "/api/v1/customers/u1/events", {"name": "poison"})
        assert status == 400 and "reject_event_names" in body["meta"]["errors"][0]
        assert (await call(client, "PUT", "/api/v1/customers/bad-user", {}))[0] == 400
        assert (await call(client, "POST", "/api/v2/entity", entry("identify", {"email": "BAD@example.com"})))[0] == 400
        assert [p["id"] for p in (await inspect(client, "people"))["people"]] == ["BAD-USER", "u1"]
        assert (await inspect(client, "stats"))["faults_injected"] == {"rejected": 8}


async def test_faults_can_be_replaced_at_run_time() -> None:
    async with sandbox() as client:
        assert (await inspect(client, "faults"))["fault_rate"] == 0.0
        new = {"fault_rate": 1.0, "fault_statuses": [503], "seed": 3, "reject_event_names": ["x"]}
        status, body = await call(client, "POST", "/_sandbox/faults", new, headers=ADMIN)
        assert status == 200 and body == await inspect(client, "faults")
        assert body["fault_statuses"] == [503] and body["latency_ms"] == 0 and body["reject_event_names"] == ["x"]
        assert (await call(client, "PUT", "/api/v1/customers/u1", {}))[0] == 503
        for bad in (
            {"fault_rate": 2},
            {"fault_statuses": [404]},
            {"nope": 1},
            {"latency_ms": -1},
            {"reject_ids": "x"},
            [1],
        ):
            status, body = await call(client, "POST", "/_sandbox/faults", bad, headers=ADMIN)
            assert status == 400 and body["error"]
        assert (await call(client, "POST", "/_sandbox/faults", b"{", headers=ADMIN))[0] == 400
        assert (await inspect(client, "faults"))["fault_statuses"] == [503]  # unchanged by bad requests
        await call(client, "POST", "/_sandbox/faults", {}, headers=ADMIN)
        assert (await call(client, "PUT", "/api/v1/customers/u1", {}))[0] == 200


# -- inspection -------------------------------------------------------------------------------

async def test_stats_count_requests_and_reset_clears_everything() -> None:
    async with sandbox(faults=FaultConfig(fault_rate=0.5, seed=11)) as client:
        body = orjson.dumps({"batch": [entry("event", {"id": "u1"}, name="e", id=ULIDS[0], timestamp=1)]})
        first = [await call(client, "POST", "/api/v2/batch", body) for _ in range(6)]
        await call(client, "PUT", "/api/v1/customers/u1", {})
        stats = await inspect(client, "stats")
        assert stats["total_requests"] == 7
        assert stats["by_endpoint"] == {"v1_identify": 1, "v2_batch": 6}
        assert stats["bytes_received"] == 6 * len(body) + 2
        assert sum(stats["by_status"].values()) == 7
        assert sum(stats["faults_injected"].values()) == 7 - stats["by_status"].get("200", 0)
        await call(client, "POST", "/_sandbox/reset", headers=ADMIN)
        assert await inspect(client, "people") == {"people": []}
        assert await inspect(client, "events") == {"events": []}
        assert await inspect(client, "activity") == {"activity": []}
        stats = await inspect(client, "stats")
        assert stats["total_requests"] == 0 and stats["by_status"] == {} and stats["events_deduplicated"] == 0
        assert (await inspect(client, "faults"))["fault_rate"] == 0.5  # faults survive a reset
        again = [await call(client, "POST", "/api/v2/batch", body) for _ in range(6)]
        assert [s for s, _ in again] == [s for s, _ in first]  # and the RNG restarts from its seed


async def test_same_commands_in_same_per_person_order_give_identical_output() -> None:
    def commands(user: int) -> list[tuple[str, str, Any]]:
        email, cid = f"U{user}@example.com", f"cust-{user}"
        return [
            ("PUT", f"/api/v1/customers/{email}", {"first_name": f"N{user}"}),
            ("POST", f"/api/v1/customers/{email}/events", {"name": "open", "id": ULIDS[user * 4], "timestamp": 5}),
            ("PUT", f"/api/v1/customers/{cid}", {"email": email.lower(), "plan": "pro"}),
            (
                "POST",
                "/api/v2/batch",
                {
                    "batch": [
                        entry("event", {"id": cid}, name="buy", id=ULIDS[user * 4 + 1], timestamp=6),
                        entry("identify", {"id": cid}, attributes={"unsubscribed": "1"}),
                    ]
                },
            ),
        ]

    async def run(order: list[int]) -> tuple[Any, Any]:
        async with sandbox() as client:
            streams = {u: commands(u) for u in range(5)}
            for user in order:
                method, path, body = streams[user].pop(0)
                assert (await call(client, method, path, body))[0] == 200
            return await inspect(client, "people", "?without_cio_id=1"), await inspect(client, "events")

    round_robin = [u for _ in range(4) for u in range(5)]
    one_by_one = [u for u in reversed(range(5)) for _ in range(4)]
    first, second = await run(round_robin), await run(one_by_one)
    assert first == second
    assert len(first[0]["people"]) == 5 and len(first[1]["events"]) == 10
    assert all(p["unsubscribed"] and p["id"] and p["email"] for p in first[0]["people"])


async def test_concurrent_requests_are_all_applied() -> None:
    async with sandbox() as client:
        batches = [
            {"batch": [entry("event", {"id": f"u{i % 7}"}, name="e", id=ULIDS[i], timestamp=i)]} for i in range(60)
        ]
        results = await asyncio.gather(*(call(client, "POST", "/api/v2/batch", b) for b in batches))
        assert results == [(200, {})] * 60
        assert [e["event_id"] for e in (await inspect(client, "events"))["events"]] == ULIDS[:60]


async def test_app_state_is_reachable_for_in_process_tests() -> None:
    app = create_app(SandboxConfig())
    assert app[SANDBOX].workspace.people == {}
    assert "sandbox-key" not in repr(app[SANDBOX].config)


# -- serve / CLI ----------------------------------------------------------------------------------

async def test_serve_on_ephemeral_port() -> None:
    runner, port = await serve(SandboxConfig(port=0))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/_sandbox/health") as resp:
                assert resp.status == 200 and await resp.json() == {"ok": True}
    finally:
        await runner.cleanup()


def test_cli_config_reads_env_defaults_and_flags() -> None:
    parser = build_parser()
    env = {"CIO_SITE_ID": "env-site", "CIO_API_KEY": "env-key"}
    config = config_from_args(parser.parse_args([]), env)
    assert (config.host, config.port, config.site_id, config.api_key) == ("127.0.0.1", 8765, "env-site", "env-key")
    config = config_from_args(parser.parse_args([
        "--host", "0.0.0.0", "--port", "0", "--site-id", "s", "--api-key", "k", "--fault-rate", "0.2",
        "--fault-statuses", "503,429", "--retry-after", "4", "--latency-ms", "25", "--drop-rate", "0.1", "--seed", "9",
    ]), env)
    assert (config.site_id, config.api_key, config.port) == ("s", "k", 0)
    assert config.faults == FaultConfig(fault_rate=0.2, fault_statuses=(503, 429), retry_after=4, latency_ms=25,
                                        drop_rate=0.1, seed=9)
    assert config_from_args(parser.parse_args([]), {}).api_key == "sandbox-key"


@pytest.mark.parametrize("argv", [["--fault-statuses", "404"], ["--fault-rate", "1.5"], ["--fault-statuses", "x"]])
def test_cli_rejects_bad_fault_settings(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and "error" in capsys.readouterr().err


def test_cli_prints_url_never_the_key_and_stops_on_sigterm() -> None:
    env = {**os.environ, "CIO_SITE_ID": "cli-site", "CIO_API_KEY": "super-secret-key-123"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from cioproc.sandbox.cli import main; sys.exit(main(sys.argv[1:]))",
         "--port", "0", "--seed", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line
        url = line.split("listening on ")[1].split()[0]

        async def probe() -> tuple[int, int]:
            async with aiohttp.ClientSession() as session:
                async with session.get(
                    f"{url}/api/v1/accounts/region", headers=_basic("cli-site:super-secret-key-123")
                ) as ok:
                    async with session.get(f"{url}/api/v1/accounts/region", headers=AUTH) as denied:
                        return ok.status, denied.status

        assert asyncio.run(probe()) == (200, 401)
        token_line = proc.stdout.readline()
        assert token_line.startswith("sandbox admin token (Authorization: Bearer ...): ")
        token = token_line.rsplit(" ", 1)[1].strip()

        async def inspect_people(headers: dict[str, str]) -> int:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{url}/_sandbox/people", headers=headers) as response:
                    return response.status

        assert asyncio.run(inspect_people({"Authorization": f"Bearer {token}"})) == 200
        assert asyncio.run(inspect_people({})) == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert "super-secret-key-123" not in line + out + err
