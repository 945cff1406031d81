"""Issue 17, item 3: the sandbox keeps devices per person with Customer.io's rules (a token
belongs to one person: adding it to another moves it), over v2 batch entries and the v1
device endpoints, and shows them in /_sandbox/people (admin token required)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers_sandbox import ADMIN, AUTH, call, entry, inspect, sandbox

from cioproc.sandbox import validation
from cioproc.sandbox.validation import InvalidRequest
from cioproc.sandbox.workspace import Workspace


def v2(ws: Workspace, body: dict[str, Any]) -> str:
    return ws.apply(validation.v2_entry(body))


def add(token: str, ident: dict[str, str], platform: str = "ios", last_used: int | None = 1_700_000_000) -> dict:
    device: dict[str, Any] = {"token": token, "platform": platform}
    if last_used is not None:
        device["last_used"] = last_used
    return entry("add_device", ident, device=device)


def devices(ws: Workspace) -> dict[str | None, list[dict]]:
    return {p["id"] or p["email"]: p.get("devices", []) for p in ws.people_view(with_cio_id=False)}


def test_add_stores_the_device_on_the_person_and_shows_it():
    ws = Workspace(clock=lambda: 1_800_000_000)
    v2(ws, entry("identify", {"id": "u1"}, attributes={"a": 1}))
    assert v2(ws, add("tok-1", {"id": "u1"})) == "applied"
    assert v2(ws, add("tok-2", {"id": "u1"}, "android", None)) == "applied"
    assert devices(ws) == {"u1": [
        {"token": "tok-1", "platform": "ios", "last_used": 1_700_000_000},
        {"token": "tok-2", "platform": "android", "last_used": 1_800_000_000},  # the request's time
    ]}


def test_adding_again_updates_the_device_and_keeps_one():
    ws = Workspace()
    v2(ws, add("tok-1", {"id": "u1"}))
    v2(ws, add("tok-1", {"id": "u1"}, "ios", 1_700_000_500))
    assert devices(ws) == {"u1": [{"token": "tok-1", "platform": "ios", "last_used": 1_700_000_500}]}


def test_a_token_belongs_to_one_person_adding_it_to_another_moves_it():
    ws = Workspace()
    v2(ws, add("tok-1", {"id": "u1"}))
    v2(ws, add("tok-1", {"email": "b@example.com"}, "ios", 1_700_000_100))
    assert devices(ws) == {"b@example.com": [{"token": "tok-1", "platform": "ios", "last_used": 1_700_000_100}],
                           "u1": []}
    # the person it moved away from can no longer delete it
    v2(ws, entry("delete_device", {"id": "u1"}, device={"token": "tok-1"}))
    assert devices(ws)["b@example.com"] != []
    assert any(a["type"] == "device_moved" for a in ws.activity)


def test_delete_removes_only_that_persons_token():
    ws = Workspace()
    v2(ws, add("tok-1", {"id": "u1"}))
    v2(ws, add("tok-2", {"id": "u1"}))
    assert v2(ws, entry("delete_device", {"id": "u1"}, device={"token": "tok-1"})) == "applied"
    assert [d["token"] for d in devices(ws)["u1"]] == ["tok-2"]
    assert v2(ws, entry("delete_device", {"id": "nobody"}, device={"token": "tok-2"})) == "applied"  # no-op
    assert [d["token"] for d in devices(ws)["u1"]] == ["tok-2"] and len(ws.people) == 1


def test_merge_moves_the_secondarys_devices_to_the_primary():
    ws = Workspace()
    v2(ws, add("tok-1", {"id": "u1"}))
    v2(ws, add("tok-2", {"email": "old@example.com"}))
    assert (
        ws.apply(validation.v1_merge({"primary": {"id": "u1"}, "secondary": {"email": "old@example.com"}})) == "applied"
    )
    assert sorted(d["token"] for d in devices(ws)["u1"]) == ["tok-1", "tok-2"]
    v2(ws, add("tok-2", {"id": "u2"}))  # the moved token is owned by the primary now, and moves on
    assert [d["token"] for d in devices(ws)["u1"]] == ["tok-1"]


def test_an_unknown_cio_id_drops_the_device():
    ws = Workspace()
    assert v2(ws, add("tok-1", {"cio_id": "abc123"})) == "failed"
    assert ws.people == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (entry("add_device", {"id": "u1"}), "device"),
        (entry("add_device", {"id": "u1"}, device={"platform": "ios"}), "device.token"),
        (entry("add_device", {"id": "u1"}, device={"token": "t", "platform": "web"}), "device.platform"),
        (
            entry("add_device", {"id": "u1"}, device={"token": "t", "platform": "ios", "last_used": "now"}),
            "device.last_used",
        ),
        (entry("delete_device", {"id": "u1"}, device={}), "device.token"),
        (entry("delete_device", {"id": "u1", "email": "a@x.io"}, device={"token": "t"}), "identifiers"),
    ],
)
def test_malformed_device_entries_are_refused(body, field):
    with pytest.raises(InvalidRequest) as raised:
        validation.v2_entry(body)
    assert raised.value.errors[0].field == field


async def test_v1_device_endpoints_and_people_view():
    async with sandbox() as client:
        status, _ = await call(client, "PUT", "/api/v1/customers/u1/devices",
                               {"device": {"id": "fcm:tok/1", "platform": "android", "last_used": 1_700_000_000}})
        assert status == 200
        status, _ = await call(
            client, "PUT", "/api/v1/customers/u1/devices", {"device": {"id": "t2", "platform": "ios"}}
        )
        assert status == 200
        people = (await inspect(client, "people", "?without_cio_id=1"))["people"]
        assert [d["token"] for d in people[0]["devices"]] == ["fcm:tok/1", "t2"]
        status, _ = await call(client, "DELETE", "/api/v1/customers/u1/devices/fcm%3Atok%2F1")
        assert status == 200
        people = (await inspect(client, "people", "?without_cio_id=1"))["people"]
        assert [d["token"] for d in people[0]["devices"]] == ["t2"]
        status, body = await call(
            client, "PUT", "/api/v1/customers/u1/devices", {"device": {"id": "t3", "platform": "web"}}
        )
        assert status == 400 and "platform" in body["meta"]["errors"][0]
        status, _ = await call(client, "DELETE", "/api/v1/customers/u1/devices/t2", headers={})
        assert status == 401
        status, _ = await call(client, "GET", "/_sandbox/people", headers={})
        assert status == 401  # the people view with its devices needs the admin token
        status, _ = await call(client, "GET", "/_sandbox/people", headers=ADMIN)
        assert status == 200


async def test_v2_batch_devices_over_http():
    async with sandbox() as client:
        status, body = await call(client, "POST", "/api/v2/batch", {"batch": [
            entry("identify", {"id": "u1"}, attributes={"first_name": "Ada"}),
            add("tok-1", {"id": "u1"}),
            add("tok-1", {"id": "u2"}),  # moves
            entry("add_device", {"id": "u1"}, device={"token": "x", "platform": "web"}),
        ]}, headers=AUTH)
        assert status == 207 and [e["batch_index"] for e in body["errors"]] == [3]
        people = (await inspect(client, "people", "?without_cio_id=1"))["people"]
        assert {p["id"]: [d["token"] for d in p.get("devices", [])] for p in people} == {"u1": [], "u2": ["tok-1"]}
        assert "devices" not in people[0]  # rows of people without devices keep their shape


def test_a_token_whose_holder_is_gone_can_be_added_to_someone_else():
    """A person removed from the workspace (a merge's secondary, a deletion) leaves no stale owner."""
    ws = Workspace()
    v2(ws, add("tok-1", {"id": "u1"}))
    owner = next(iter(ws.people))
    del ws.people[owner]  # as a deletion of the person would
    assert v2(ws, add("tok-1", {"id": "u2"})) == "applied"
    assert devices(ws) == {"u2": [{"token": "tok-1", "platform": "ios", "last_used": 1_700_000_000}]}


def test_deleting_a_person_forgets_which_tokens_it_held():
    """An erasure's delete (issue 17 item 5) removes the person's devices with it: no token
    stays owned by a person who no longer exists."""
    ws = Workspace()
    v2(ws, add("tok-1", {"id": "u1"}))
    assert v2(ws, entry("delete", {"id": "u1"})) == "applied"
    assert ws._device_owner == {} and devices(ws) == {}
    assert v2(ws, add("tok-1", {"id": "u2"})) == "applied"
    assert not any(a["type"] == "device_moved" for a in ws.activity)
