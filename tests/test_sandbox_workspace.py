"""The sandbox workspace model against Customer.io's documented identify/event/merge rules."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cioproc.sandbox import validation
from cioproc.sandbox.validation import path_identifier
from cioproc.sandbox.workspace import CIO_ID, EMAIL, ID, Identifier, MergeOp, Workspace, is_unsubscribed

ULIDS = [f"01J{n:023d}" for n in range(400)]


def put(ws: Workspace, path: str, body: dict[str, Any]) -> str:
    """A v1 identify, validated as the endpoint would."""
    return ws.apply(validation.v1_identify(path, body))


def v2(ws: Workspace, entry: dict[str, Any]) -> str:
    return ws.apply(validation.v2_entry(entry))


def event(ws: Workspace, path: str, name: str = "purchase", event_id: str | None = None, **body: Any) -> str:
    payload = {"name": name, **body}
    if event_id is not None:
        payload["id"] = event_id
    return ws.apply(validation.v1_event(path, payload))


def merge(ws: Workspace, primary: dict[str, str], secondary: dict[str, str]) -> str:
    return ws.apply(validation.v1_merge({"primary": primary, "secondary": secondary}))


def people(ws: Workspace) -> list[dict[str, Any]]:
    return ws.people_view(with_cio_id=False)


def person(ws: Workspace, kind: str, value: str) -> dict[str, Any]:
    found = ws.find(Identifier(kind, value))
    assert found is not None, f"no person with {kind} {value}"
    return next(p for p in ws.people_view() if p["cio_id"] == found.cio_id)


@pytest.mark.parametrize(
    ("raw", "kind", "value"),
    [
        ("42", ID, "42"),
        ("user-7", ID, "user-7"),
        ("+14155552671", ID, "+14155552671"),  # phone numbers in the path are ids
        ("a@example.com", EMAIL, "a@example.com"),
        ("not-an-email@", EMAIL, "not-an-email@"),
        ("cio_03000001", CIO_ID, "03000001"),
        ("cio", ID, "cio"),
        ("ciox_1", ID, "ciox_1"),
    ],
)
def test_path_identifier_is_inferred_from_its_shape(raw: str, kind: str, value: str) -> None:
    assert path_identifier(raw) == Identifier(kind, value)


def test_identify_without_match_creates_person() -> None:
    ws = Workspace()
    assert put(ws, "u1", {"first_name": "Ann", "plan": "pro"}) == "applied"
    assert put(ws, "ann@example.com", {"first_name": "Ann"}) == "applied"
    assert people(ws) == [
        {"id": None, "email": "ann@example.com", "attributes": {"first_name": "Ann"}, "unsubscribed": False},
        {"id": "u1", "email": None, "attributes": {"first_name": "Ann", "plan": "pro"}, "unsubscribed": False},
    ]


def test_identify_by_existing_path_identifier_updates_that_person() -> None:
    ws = Workspace()
    put(ws, "u1", {"a": 1, "b": "x"})
    put(ws, "u1", {"b": "y", "c": True})
    assert people(ws) == [
        {"id": "u1", "email": None, "attributes": {"a": 1, "b": "y", "c": True}, "unsubscribed": False}
    ]


def test_email_is_matched_case_insensitively_and_keeps_first_spelling() -> None:
    ws = Workspace()
    put(ws, "Ann@Example.com", {"a": 1})
    put(ws, "ann@EXAMPLE.COM", {"b": 2})
    v2(
        ws,
        {"type": "person", "identifiers": {"email": "ANN@example.com"}, "action": "identify", "attributes": {"c": 3}},
    )
    event(ws, "ann@example.com", event_id=ULIDS[0])
    assert people(ws) == [
        {"id": None, "email": "Ann@Example.com", "attributes": {"a": 1, "b": 2, "c": 3}, "unsubscribed": False}
    ]
    assert ws.events_view()[0]["person"] == {"id": None, "email": "Ann@Example.com"}


def test_id_is_case_sensitive() -> None:
    ws = Workspace()
    put(ws, "Abc", {"n": 1})
    put(ws, "abc", {"n": 2})
    assert [(p["id"], p["attributes"]["n"]) for p in people(ws)] == [("Abc", 1), ("abc", 2)]


@pytest.mark.parametrize("transport", ["v1", "v2"])
def test_identify_by_new_id_with_known_email_attaches_id_to_that_person(transport: str) -> None:
    """The identity-upgrade rule: path/identifiers unknown, body email matches a person."""
    ws = Workspace()
    put(ws, "ann@example.com", {"first_name": "Ann"})
    event(ws, "ann@example.com", event_id=ULIDS[0])
    body = {"email": "ANN@example.com", "last_name": "Lee"}
    if transport == "v1":
        assert put(ws, "cust-1", body) == "applied"
    else:
        assert (
            v2(ws, {"type": "person", "identifiers": {"id": "cust-1"}, "action": "identify", "attributes": body})
            == "applied"
        )
    assert people(ws) == [
        {
            "id": "cust-1",
            "email": "ann@example.com",
            "attributes": {"first_name": "Ann", "last_name": "Lee"},
            "unsubscribed": False,
        }
    ]
    event(ws, "cust-1", event_id=ULIDS[1])
    assert {e["person"]["id"] for e in ws.events_view()} == {"cust-1"}
    assert len(ws.people) == 1


def test_identify_by_new_email_with_known_id_attaches_email() -> None:
    ws = Workspace()
    put(ws, "cust-1", {"a": 1})
    assert put(ws, "ann@example.com", {"id": "cust-1", "b": 2}) == "applied"
    assert people(ws) == [
        {"id": "cust-1", "email": "ann@example.com", "attributes": {"a": 1, "b": 2}, "unsubscribed": False}
    ]


def test_identify_sets_missing_identifier_of_known_person() -> None:
    ws = Workspace()
    put(ws, "cust-1", {"a": 1})
    assert put(ws, "cust-1", {"email": "ann@example.com"}) == "applied"
    assert person(ws, EMAIL, "ANN@example.com")["id"] == "cust-1"


def test_conflicting_path_and_body_identifiers_change_nothing_and_log_failure() -> None:
    ws = Workspace()
    put(ws, "cust-1", {"a": 1})
    put(ws, "ann@example.com", {"b": 2})
    before = people(ws)
    assert put(ws, "cust-1", {"email": "ann@example.com", "a": 99}) == "failed"
    assert v2(ws, {"type": "person", "identifiers": {"email": "ann@example.com"}, "action": "identify",
                   "attributes": {"id": "cust-1", "b": 99}}) == "failed"
    assert people(ws) == before
    assert [(a["type"], a["identifier"]) for a in ws.activity] == [
        ("attribute_update_failure", {"id": "cust-1"}),
        ("attribute_update_failure", {"email": "ann@example.com"}),
    ]
    assert "different people" in ws.activity[0]["reason"]


def test_body_identifiers_of_two_different_people_change_nothing() -> None:
    ws = Workspace()
    put(ws, "cust-1", {})
    put(ws, "ann@example.com", {})
    assert put(ws, "new-id", {"id": "cust-1", "email": "ann@example.com"}) == "failed"
    assert len(ws.people) == 2 and ws.find(Identifier(ID, "new-id")) is None


def test_changing_a_set_identifier_needs_cio_id() -> None:
    ws = Workspace()
    put(ws, "cust-1", {"email": "old@example.com"})
    assert put(ws, "cust-1", {"email": "new@example.com"}) == "failed"
    assert put(ws, "old@example.com", {"id": "cust-2"}) == "failed"
    assert person(ws, ID, "cust-1")["email"] == "old@example.com"
    cio = ws.find(Identifier(ID, "cust-1")).cio_id
    assert put(ws, f"cio_{cio}", {"email": "new@example.com", "id": "cust-2"}) == "applied"
    assert person(ws, CIO_ID, cio) | {"cio_id": cio} == {
        "cio_id": cio, "id": "cust-2", "email": "new@example.com", "attributes": {}, "unsubscribed": False
    }
    assert ws.find(Identifier(EMAIL, "old@example.com")) is None
    assert ws.find(Identifier(ID, "cust-1")) is None


def test_cio_id_update_cannot_take_another_persons_identifier() -> None:
    ws = Workspace()
    put(ws, "cust-1", {})
    put(ws, "cust-2", {})
    cio = ws.find(Identifier(ID, "cust-1")).cio_id
    assert put(ws, f"cio_{cio}", {"id": "cust-2"}) == "failed"
    assert {p["id"] for p in people(ws)} == {"cust-1", "cust-2"}


def test_email_update_by_id_follows_workspace_setting() -> None:
    ws = Workspace(allow_email_update_by_id=True)
    put(ws, "cust-1", {"email": "old@example.com"})
    assert put(ws, "cust-1", {"email": "new@example.com"}) == "applied"
    assert person(ws, ID, "cust-1")["email"] == "new@example.com"
    assert put(ws, "new@example.com", {"id": "cust-9"}) == "failed"  # ids still need cio_id


def test_unknown_cio_id_drops_identify() -> None:
    ws = Workspace()
    assert put(ws, "cio_ffff0000", {"a": 1}) == "failed"
    assert ws.people == {} and ws.activity[0]["type"] == "attribute_update_failure"


def test_path_and_body_disagreeing_on_same_kind_is_a_failure() -> None:
    ws = Workspace()
    assert put(ws, "ann@example.com", {"email": "bob@example.com"}) == "failed"
    assert put(ws, "ann@example.com", {"email": "ANN@example.com"}) == "applied"
    assert len(ws.people) == 1


@pytest.mark.parametrize("transport", ["v1", "v2"])
def test_update_only_never_creates(transport: str) -> None:
    ws = Workspace()

    def identify(path_kind: str, value: str, attributes: dict[str, Any]) -> str:
        attributes = {"_update": True, **attributes}
        if transport == "v1":
            return put(ws, value, attributes)
        return v2(
            ws, {"type": "person", "identifiers": {path_kind: value}, "action": "identify", "attributes": attributes}
        )

    assert identify(ID, "ghost", {"a": 1}) == "failed"
    assert ws.people == {}
    assert ws.activity[-1]["type"] == "attribute_update_failure"
    put(ws, "ann@example.com", {"a": 1})
    assert identify(EMAIL, "ann@example.com", {"a": 2}) == "applied"
    assert identify(ID, "cust-1", {"email": "ann@example.com", "b": 3}) == "applied"  # found via body email
    assert people(ws) == [
        {"id": "cust-1", "email": "ann@example.com", "attributes": {"a": 2, "b": 3}, "unsubscribed": False}
    ]


@pytest.mark.parametrize(
    ("value", "unsubscribed"),
    [
        (True, True), ("true", True), ("TRUE", True), ("tRuE", True), (1, True), ("1", True),
        (False, False), ("false", False), (0, False), ("0", False), ("yes", False), (2, False), ("01", False),
    ],
)
def test_unsubscribed_forms(value: Any, unsubscribed: bool) -> None:
    assert is_unsubscribed(value) is unsubscribed
    ws = Workspace()
    put(ws, "u1", {"unsubscribed": value, "plan": "pro"})
    assert people(ws) == [{"id": "u1", "email": None, "attributes": {"plan": "pro"}, "unsubscribed": unsubscribed}]


def test_unsubscribe_keeps_profile_and_can_be_reverted() -> None:
    ws = Workspace()
    put(ws, "u1", {"plan": "pro"})
    v2(ws, {"type": "person", "identifiers": {"id": "u1"}, "action": "identify", "attributes": {"unsubscribed": True}})
    assert people(ws)[0]["unsubscribed"] is True and people(ws)[0]["attributes"] == {"plan": "pro"}
    put(ws, "u1", {"unsubscribed": False})
    assert people(ws)[0]["unsubscribed"] is False


def test_v1_empty_string_removes_attribute() -> None:
    ws = Workspace()
    put(ws, "u1", {"a": 1, "b": "x", "unsubscribed": True})
    put(ws, "u1", {"a": "", "unsubscribed": "", "missing": ""})
    assert people(ws)[0]["attributes"] == {"b": "x"}
    assert people(ws)[0]["unsubscribed"] is False


@pytest.mark.parametrize("removal", [None, ""])
def test_v2_null_or_empty_removes_attribute(removal: Any) -> None:
    ws = Workspace()
    base = {"type": "person", "identifiers": {"id": "u1"}, "action": "identify"}
    v2(ws, base | {"attributes": {"a": 1, "tags": ["x", "y"], "address": {"city": "Oslo"}}})
    v2(ws, base | {"attributes": {"a": removal}})
    assert people(ws)[0]["attributes"] == {"tags": ["x", "y"], "address": {"city": "Oslo"}}


def test_event_is_recorded_once_per_event_id() -> None:
    ws = Workspace()
    assert event(ws, "u1", "purchase", ULIDS[0], timestamp=100, data={"price": 3}) == "applied"
    assert event(ws, "u1", "purchase", ULIDS[0], timestamp=100, data={"price": 3}) == "deduplicated"
    assert event(ws, "u2", "other", ULIDS[0], timestamp=200) == "deduplicated"  # ids are workspace-wide
    assert ws.events_deduplicated == 2
    assert ws.events_view() == [
        {"event_id": ULIDS[0], "name": "purchase", "type": "event", "timestamp": 100, "data": {"price": 3},
         "person": {"id": "u1", "email": None}}
    ]
    assert ws.find(Identifier(ID, "u2")) is None  # a duplicate creates nobody


def test_event_types_names_and_defaults() -> None:
    ws = Workspace(clock=lambda: 1_700_000_000.7)
    event(ws, "u1", "  Home Screen ", ULIDS[1], type="screen", timestamp=5)
    event(ws, "u1", "/pricing", ULIDS[2], type="page", timestamp=6)
    event(ws, "u1", "signup", ULIDS[3], type="whatever", timestamp=7)
    v2(ws, {"type": "person", "identifiers": {"id": "u1"}, "action": "screen", "name": "Cart", "id": ULIDS[4],
            "timestamp": 8, "attributes": {"step": 2}})
    event(ws, "u1", "no-id-no-time")
    rows = ws.events_view()
    assert [(e["name"], e["type"], e["timestamp"]) for e in rows] == [
        ("Home Screen", "screen", 5), ("/pricing", "page", 6), ("signup", "event", 7), ("Cart", "screen", 8),
        ("no-id-no-time", "event", 1_700_000_000),
    ]
    assert rows[3]["data"] == {"step": 2}
    assert rows[4]["event_id"].startswith("sandbox-")


def test_event_for_unknown_identifier_creates_person_but_unknown_cio_id_is_dropped() -> None:
    ws = Workspace()
    assert event(ws, "new@example.com", event_id=ULIDS[0]) == "applied"
    assert people(ws) == [{"id": None, "email": "new@example.com", "attributes": {}, "unsubscribed": False}]
    assert event(ws, "cio_abcdef12", event_id=ULIDS[1]) == "failed"
    assert ws.activity[-1]["type"] == "event_dropped" and len(ws.events) == 1
    cio = ws.find(Identifier(EMAIL, "new@example.com")).cio_id
    assert event(ws, f"cio_{cio}", event_id=ULIDS[2]) == "applied"
    assert len(ws.events) == 2


def test_merge_folds_secondary_into_primary_and_deletes_it() -> None:
    ws = Workspace()
    put(ws, "cust-1", {"plan": "pro", "city": "", "shared": "primary"})
    put(
        ws,
        "anon@example.com",
        {"plan": "free", "city": "Oslo", "shared": "secondary", "extra": 1, "unsubscribed": True},
    )
    event(ws, "cust-1", event_id=ULIDS[0], timestamp=1)
    event(ws, "anon@example.com", event_id=ULIDS[1], timestamp=2)
    assert merge(ws, {"id": "cust-1"}, {"email": "ANON@example.com"}) == "applied"
    assert people(ws) == [
        {"id": "cust-1", "email": "anon@example.com",
         "attributes": {"plan": "pro", "city": "Oslo", "shared": "primary", "extra": 1}, "unsubscribed": True}
    ]
    assert [e["person"] for e in ws.events_view()] == [{"id": "cust-1", "email": "anon@example.com"}] * 2
    assert ws.activity[-1]["type"] == "merge"
    # the secondary's identifiers now lead to the primary
    put(ws, "anon@example.com", {"later": True})
    assert len(ws.people) == 1 and people(ws)[0]["attributes"]["later"] is True
    # replaying the merge is harmless
    assert merge(ws, {"id": "cust-1"}, {"email": "anon@example.com"}) == "failed"
    assert len(ws.people) == 1


def test_merge_keeps_primary_identifiers() -> None:
    ws = Workspace()
    put(ws, "cust-1", {"email": "p@example.com"})
    put(ws, "cust-2", {"email": "s@example.com"})
    merge(ws, {"id": "cust-1"}, {"id": "cust-2"})
    assert [(p["id"], p["email"]) for p in people(ws)] == [("cust-1", "p@example.com")]
    assert ws.find(Identifier(ID, "cust-2")) is None and ws.find(Identifier(EMAIL, "s@example.com")) is None


def test_merge_by_cio_id() -> None:
    ws = Workspace()
    put(ws, "cust-1", {})
    put(ws, "cust-2", {"x": 1})
    primary, secondary = (ws.find(Identifier(ID, i)).cio_id for i in ("cust-1", "cust-2"))
    assert ws.apply(MergeOp(Identifier(CIO_ID, primary), Identifier(CIO_ID, secondary))) == "applied"
    assert people(ws) == [{"id": "cust-1", "email": None, "attributes": {"x": 1}, "unsubscribed": False}]


@pytest.mark.parametrize(
    ("primary", "secondary", "why"),
    [
        ({"id": "missing"}, {"id": "cust-2"}, "primary does not exist"),
        ({"id": "cust-1"}, {"id": "missing"}, "secondary does not exist"),
        ({"id": "cust-1"}, {"email": "one@example.com"}, "same person"),
    ],
)
def test_merge_that_cannot_happen_changes_nothing(primary: dict, secondary: dict, why: str) -> None:
    ws = Workspace()
    put(ws, "cust-1", {"email": "one@example.com", "a": 1})
    put(ws, "cust-2", {"b": 2})
    before = people(ws)
    assert merge(ws, primary, secondary) == "failed"
    assert people(ws) == before
    assert ws.activity[-1]["type"] == "merge_failure" and why in ws.activity[-1]["reason"]


def test_person_attribute_limit_is_enforced_across_calls() -> None:
    ws = Workspace()
    put(ws, "u1", {f"a{i}": i for i in range(300)})
    assert put(ws, "u1", {"a0": "still fine"}) == "applied"
    assert put(ws, "u1", {"one_more": 1}) == "failed"
    assert len(people(ws)[0]["attributes"]) == 300
    assert "300" in ws.activity[-1]["reason"]


def test_views_are_sorted() -> None:
    ws = Workspace()
    put(ws, "b", {})
    put(ws, "z@example.com", {})
    put(ws, "a", {})
    put(ws, "A@example.com", {})
    event(ws, "a", event_id=ULIDS[3], timestamp=10)
    event(ws, "b", event_id=ULIDS[1], timestamp=10)
    event(ws, "b", event_id=ULIDS[2], timestamp=5)
    assert [(p["id"], p["email"]) for p in people(ws)] == [
        (None, "A@example.com"), (None, "z@example.com"), ("a", None), ("b", None)
    ]
    assert [e["event_id"] for e in ws.events_view()] == [ULIDS[2], ULIDS[1], ULIDS[3]]
    assert all("cio_id" in p for p in ws.people_view())
    assert "cio_id" in ws.events_view(with_cio_id=True)[0]["person"]


def test_clear_empties_everything() -> None:
    ws = Workspace()
    put(ws, "u1", {})
    event(ws, "u1", event_id=ULIDS[0])
    event(ws, "u1", event_id=ULIDS[0])
    merge(ws, {"id": "nobody"}, {"id": "u1"})
    ws.clear()
    assert (ws.people, ws.events, ws.activity, ws.events_deduplicated) == ({}, {}, [], 0)


# -- properties ------------------------------------------------------------------------------

def _user_script(user: int, steps: list[int], ids: iter) -> list[tuple[str, tuple]]:
    """A plausible command stream for one mParticle user (email first, later a customer id)."""
    email = f"User{user}@Example.com"
    cid = f"cust-{user}"
    have_id = False
    script: list[tuple[str, tuple]] = []
    for step in steps:
        who = cid if have_id else email
        if step == 0:
            script.append(("put", (who, {"step": len(script), f"u{user}": step})))
        elif step == 1 and not have_id:
            script.append(("put", (cid, {"email": email.lower(), "upgraded": True})))
            have_id = True
        elif step == 2:
            script.append(("event", (who, next(ids), len(script))))
        elif step == 3:
            script.append(("put", (who, {"unsubscribed": "TRUE"})))
        else:
            script.append(("put", (who, {f"u{user}": ""})))
    return script


def _run(script: list[tuple[str, tuple]], repeat_each: bool = False) -> Workspace:
    ws = Workspace(clock=lambda: 0)
    for kind, args in script:
        for _ in range(2 if repeat_each else 1):
            if kind == "put":
                put(ws, *args)
            else:
                path, event_id, ts = args
                event(ws, path, "step", event_id, timestamp=ts)
    return ws


def _interleave(scripts: list[list], rng: random.Random) -> list:
    queues = [list(s) for s in scripts if s]
    out = []
    while queues:
        q = rng.choice(queues)
        out.append(q.pop(0))
        if not q:
            queues.remove(q)
    return out


scripts_strategy = st.lists(st.lists(st.integers(0, 4), max_size=12), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(scripts_strategy, st.integers(0, 2**32), st.integers(0, 2**32))
def test_per_person_order_determines_the_workspace(steps: list[list[int]], seed_a: int, seed_b: int) -> None:
    """Any interleaving of people's command streams gives the same people and events."""
    ids = iter(ULIDS)
    scripts = [_user_script(u, s, ids) for u, s in enumerate(steps)]
    a = _run(_interleave(scripts, random.Random(seed_a)))
    b = _run(_interleave(scripts, random.Random(seed_b)))
    assert a.people_view(with_cio_id=False) == b.people_view(with_cio_id=False)
    assert a.events_view() == b.events_view()


@settings(max_examples=60, deadline=None)
@given(scripts_strategy, st.integers(0, 2**32))
def test_immediate_redelivery_changes_nothing(steps: list[list[int]], seed: int) -> None:
    """At-least-once delivery (each command possibly repeated, in order) leaves the same workspace."""
    ids = iter(ULIDS)
    script = _interleave([_user_script(u, s, ids) for u, s in enumerate(steps)], random.Random(seed))
    once, twice = _run(script), _run(script, repeat_each=True)
    assert once.people_view(with_cio_id=False) == twice.people_view(with_cio_id=False)
    assert once.events_view() == twice.events_view()
    assert twice.events_deduplicated == len(once.events)
    assert len(once.people) == len(steps) - sum(1 for s in steps if not s)
