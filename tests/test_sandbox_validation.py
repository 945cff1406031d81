"""Request shapes and documented limits, at and just past each boundary."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cioproc.sandbox import validation as v
from cioproc.sandbox.api import Counters, TrackApi
from cioproc.sandbox.faults import FaultInjector
from cioproc.sandbox.validation import InvalidRequest
from cioproc.sandbox.workspace import EventOp, IdentifyOp, MergeOp, Workspace

ULID = "01HZY3KJ5Q8W9X0ABCDEFGHJKM"
E = "é"  # two bytes in UTF-8: limits are bytes, not characters


def fails(call: Any, *args: Any) -> list[v.EntryError]:
    with pytest.raises(InvalidRequest) as info:
        call(*args)
    return info.value.errors


def person(action: str, **fields: Any) -> dict[str, Any]:
    return {"type": "person", "identifiers": {"id": "u1"}, "action": action, **fields}


# -- limits ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("ok", "too_big"),
    [
        (lambda n: v.v1_identify("x" * n, {}), lambda n: v.v1_identify("x" * n, {})),
        (lambda n: v.v1_identify(E * (n // 2), {}), lambda n: v.v1_identify(E * (n // 2) + "x", {})),
        (lambda n: v.v1_identify("u", {"id": "x" * n}), lambda n: v.v1_identify("u", {"id": "x" * n})),
        (lambda n: v.v1_event("x" * n, {"name": "e"}), lambda n: v.v1_event("x" * n, {"name": "e"})),
        (lambda n: v.v2_entry(person("identify") | {"identifiers": {"id": "x" * n}}),
         lambda n: v.v2_entry(person("identify") | {"identifiers": {"id": "x" * n}})),
        (lambda n: v.v1_merge({"primary": {"id": "x" * n}, "secondary": {"id": "y"}}),
         lambda n: v.v1_merge({"primary": {"id": "x" * n}, "secondary": {"id": "y"}})),
    ],
    ids=["v1-path", "v1-path-bytes", "v1-body-id", "v1-event-path", "v2-identifiers", "merge"],
)
def test_person_id_at_most_150_bytes(ok: Any, too_big: Any) -> None:
    ok(150)
    errors = fails(too_big, 151)
    assert errors[0].reason == "too_long" and "150 bytes" in errors[0].message


@pytest.mark.parametrize("transport", ["v1", "v2"])
def test_attribute_name_and_value_limits(transport: str) -> None:
    def identify(attributes: dict[str, Any]) -> Any:
        if transport == "v1":
            return v.v1_identify("u1", attributes)
        return v.v2_entry(person("identify", attributes=attributes))

    identify({"n" * 150: "x" * 1000, E * 75: E * 500})
    assert fails(identify, {"n" * 151: 1})[0].message.startswith("attribute name is longer than 150")
    assert fails(identify, {E * 75 + "x": 1})[0].reason == "too_long"
    assert "1000 bytes" in fails(identify, {"a": "x" * 1001})[0].message
    assert "1000 bytes" in fails(identify, {"a": E * 500 + "x"})[0].message
    identify({f"a{i}": i for i in range(300)})
    assert "300" in fails(identify, {f"a{i}": i for i in range(301)})[0].message


def test_v2_structured_attribute_values_are_measured_as_json() -> None:
    fits = ["x" * 996]  # ["x...x"] is 1000 bytes
    v.v2_entry(person("identify", attributes={"list": fits}))
    assert fails(v.v2_entry, person("identify", attributes={"list": ["x" * 997]}))[0].reason == "too_long"


@pytest.mark.parametrize(
    ("value", "valid"),
    [("s", True), (1, True), (1.5, True), (True, True), (None, False), ([1], False), ({"a": 1}, False)],
)
def test_v1_attribute_values_are_string_number_or_boolean(value: Any, valid: bool) -> None:
    if valid:
        assert v.v1_identify("u1", {"a": value}).set == {"a": value}
    else:
        assert "string, number or boolean" in fails(v.v1_identify, "u1", {"a": value})[0].message
    v.v2_entry(person("identify", attributes={"a": value}))  # v2 accepts every JSON value


def test_v1_reserved_keys() -> None:
    op = v.v1_identify("u1", {"_update": True, "_timestamp": 5, "created_at": 7, "cio_relationships": {"action": "x"},
                             "cio_subscription_preferences": {"topics": {"topic_1": True}}, "email": "a@x.io"})
    assert op.update_only and op.identifiers == {"email": "a@x.io"}
    assert op.set == {"created_at": 7, "cio_subscription_preferences": {"topics": {"topic_1": True}}}
    assert fails(v.v1_identify, "u1", {"_update": "yes"})[0].field == "_update"
    assert fails(v.v1_identify, "u1", {"created_at": "2024-01-01"})[0].field == "created_at"
    assert fails(v.v1_identify, "u1", {"created_at": None})[0].field == "created_at"
    assert v.v1_identify("u1", {"created_at": ""}).remove == {"created_at"}
    assert v.v2_entry(person("identify", attributes={"created_at": None})).remove == {"created_at"}
    assert fails(v.v1_identify, "u1", {"email": "not-an-email"})[0].field == "email"
    assert fails(v.v1_identify, "u1", {"id": ["x"]})[0].field == "id"
    assert v.v1_identify("u1", {"id": 42}).identifiers == {"id": "42"}
    assert v.v1_identify("u1", {"email": ""}).identifiers == {"email": None}


def test_event_name_at_most_100_bytes_after_trimming() -> None:
    assert v.v1_event("u1", {"name": "  " + "n" * 100 + " "}).name == "n" * 100
    assert "100 bytes" in fails(v.v1_event, "u1", {"name": "n" * 101})[0].message
    assert fails(v.v1_event, "u1", {"name": E * 50 + "x"})[0].reason == "too_long"
    assert fails(v.v2_entry, person("event", name="n" * 101))[0].field == "name"
    for bad in ({}, {"name": ""}, {"name": "   "}, {"name": 5}):
        assert fails(v.v1_event, "u1", bad)[0].reason == "required"


def test_event_data_at_most_100000_bytes() -> None:
    def data(size: int) -> dict[str, str]:
        return {"k": "x" * (size - len(b'{"k":""}'))}

    assert v.json_size(data(100_000)) == 100_000
    v.v1_event("u1", {"name": "e", "data": data(100_000)})
    v.v2_entry(person("event", name="e", attributes=data(30_000)))
    assert "100000 bytes" in fails(v.v1_event, "u1", {"name": "e", "data": data(100_001)})[0].message
    assert fails(v.v1_event, "u1", {"name": "e", "data": [1]})[0].field == "data"


def test_event_id_must_be_ulid_and_timestamp_integer() -> None:
    assert v.v1_event("u1", {"name": "e", "id": ULID.lower(), "timestamp": 5}).event_id == ULID.lower()
    for bad in ("x", ULID[:-1], ULID + "0", "8" + ULID[1:], ULID[:-1] + "U", 12):
        assert fails(v.v1_event, "u1", {"name": "e", "id": bad})[0].field == "id"
    for bad in (1.5, "5", True):
        assert fails(v.v1_event, "u1", {"name": "e", "timestamp": bad})[0].field == "timestamp"
        assert fails(v.v2_entry, person("identify", timestamp=bad))[0].field == "timestamp"


def test_v2_entry_at_most_32000_bytes_and_batch_under_500000() -> None:
    entry = person("event", name="e", attributes={"p": ""})
    entry["attributes"]["p"] = "x" * (32_000 - v.json_size(entry))
    assert v.json_size(entry) == 32_000
    big = entry | {"attributes": {"p": entry["attributes"]["p"] + "x"}}
    body = orjson.dumps({"batch": [entry, big]})
    ok, refused = v.v2_batch(body)
    assert isinstance(ok, EventOp)
    assert isinstance(refused, InvalidRequest) and refused.errors[0].reason == "too_large"
    assert isinstance(v.v2_entity(orjson.dumps(entry)), EventOp)
    assert fails(v.v2_entity, orjson.dumps(big))[0].reason == "too_large"

    filled = orjson.dumps({"batch": [entry] * 15})
    under = filled + b" " * (499_999 - len(filled))
    assert len(v.v2_batch(under)) == 15
    assert fails(v.v2_batch, under + b" ")[0].reason == "too_large"


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"batch": {}}', b'{"entries": []}', b'{"batch": "x"}', b"", b'{"batch": [1]'],
)
def test_malformed_batch_request(body: bytes) -> None:
    assert fails(v.v2_batch, body)


def test_batch_entries_are_validated_one_by_one() -> None:
    results = v.v2_batch(orjson.dumps({"batch": [
        person("identify", attributes={"a": 1}),
        person("event"),  # no name
        {"type": "person", "action": "merge", "primary": {"id": "a"}, "secondary": {"email": "b@x.io"}},
        "not an object",
        person("screen", name="Home"),
    ]}))
    assert [type(r).__name__ for r in results] == [
        "IdentifyOp",
        "InvalidRequest",
        "MergeOp",
        "InvalidRequest",
        "EventOp",
    ]


@pytest.mark.parametrize(
    ("entry", "field", "reason"),
    [
        ({"identifiers": {"id": "u1"}, "action": "identify"}, "type", "invalid"),
        (person("identify") | {"type": "object"}, "type", "unsupported"),
        (person("add_device"), "device", "required"),
        (person("unsuppress"), "action", "unsupported"),
        (person("fly"), "action", "invalid"),
        (person("identify") | {"identifiers": {"id": "u1", "email": "a@x.io"}}, "identifiers", "invalid"),
        (person("identify") | {"identifiers": {}}, "identifiers", "invalid"),
        (person("identify") | {"identifiers": {"phone": "+14155552671"}}, "identifiers.phone", "invalid"),
        (person("identify") | {"identifiers": {"user_id": "u1"}}, "identifiers.user_id", "invalid"),
        (person("identify") | {"identifiers": {"id": 5}}, "identifiers.id", "invalid"),
        (person("identify") | {"identifiers": {"id": ""}}, "identifiers.id", "required"),
        (person("identify") | {"identifiers": {"email": "nobody"}}, "identifiers.email", "invalid"),
        (person("identify") | {"identifiers": {"cio_id": "a-b"}}, "identifiers.cio_id", "invalid"),
        (person("identify", attributes=[1]), "attributes", "invalid"),
        (person("event", name="e", attributes="x"), "attributes", "invalid"),
    ],
)
def test_v2_entry_shape_errors(entry: dict, field: str, reason: str) -> None:
    error = fails(v.v2_entry, entry)[0]
    assert (error.field, error.reason) == (field, reason)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "primary"),
        ({"primary": {"id": "a"}}, "secondary"),
        ({"primary": {"id": "a", "email": "a@x.io"}, "secondary": {"id": "b"}}, "primary"),
        ({"primary": {}, "secondary": {"id": "b"}}, "primary"),
        ({"primary": {"id": "a"}, "secondary": {"phone": "+1555"}}, "secondary.phone"),
        ({"primary": {"user": "a"}, "secondary": {"id": "b"}}, "primary.user"),
        ({"primary": "a", "secondary": {"id": "b"}}, "primary"),
        ([], "body"),
    ],
)
def test_merge_needs_exactly_one_identifier_each_side(body: Any, field: str) -> None:
    assert fails(v.v1_merge, body)[0].field == field


def test_merge_shapes_accepted() -> None:
    for kind, value in (("id", "a"), ("email", "a@x.io"), ("cio_id", "03000001")):
        op = v.v1_merge({"primary": {kind: value}, "secondary": {"id": "b"}})
        assert isinstance(op, MergeOp) and op.primary.as_dict() == {kind: value}


def test_v2_identify_attributes_split_into_sets_removals_and_identifiers() -> None:
    op = v.v2_entry(person("identify", attributes={"a": 1, "b": None, "c": "", "email": "x@y.io", "_update": True}))
    assert isinstance(op, IdentifyOp)
    assert (op.set, op.remove, op.identifiers, op.update_only) == (
        {"a": 1},
        frozenset({"b", "c"}),
        {"email": "x@y.io"},
        True,
    )


def test_v1_body_must_be_object() -> None:
    assert fails(v.v1_identify, "u1", [1])[0].field == "body"
    assert fails(v.v1_event, "u1", "x")[0].field == "body"
    assert fails(v.parse_json, b"{")[0].reason == "invalid_json"


# -- robustness: any JSON gets a documented answer, never an exception ---------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["", "a@x.io", "A@X.IO", "u1", "cio_03000001", ULID, "TRUE", "1"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
identifiers = st.dictionaries(st.sampled_from(["id", "email", "cio_id", "phone", "x"]), scalars, max_size=2)
entries = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["person", "object", "x"]),
            "action": st.sampled_from(["identify", "event", "screen", "page", "merge", "delete", "suppress", "x"]),
        },
        optional={
            "identifiers": identifiers,
            "attributes": st.dictionaries(
                st.sampled_from(["a", "email", "id", "unsubscribed", "_update"]), json_values, max_size=4
            ),
            "name": scalars,
            "id": scalars,
            "timestamp": scalars,
            "primary": identifiers,
            "secondary": identifiers,
        },
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(entries, max_size=6), json_values, st.sampled_from(["u1", "a@x.io", "cio_03000001", "cio_"]))
def test_any_request_gets_a_documented_answer(batch: list[Any], body: Any, path: str) -> None:
    api = TrackApi(Workspace(clock=lambda: 0), FaultInjector(), Counters())
    reply = api.v2_batch(orjson.dumps({"batch": batch}))
    assert reply.status in (200, 207)
    if reply.status == 207:
        assert reply.body["errors"] and all(0 <= e["batch_index"] < len(batch) for e in reply.body["errors"])
        assert all(set(e) == {"batch_index", "reason", "field", "message"} for e in reply.body["errors"])
    for result in (api.v1_identify(path, orjson.dumps(body)), api.v1_event(path, orjson.dumps(body))):
        assert result.status == 200 or (
            result.status == 400 and all(isinstance(e, str) for e in result.body["meta"]["errors"])
        )
    merge = api.v1_merge(orjson.dumps(body))
    assert merge.status == 200 or set(merge.body["meta"]) == {"error"}
    entity = api.v2_entity(orjson.dumps(batch[0] if batch else body))
    assert entity.status == 200 or all(set(e) == {"reason", "field", "message"} for e in entity.body["errors"])
    people = api.workspace.people_view()
    assert all(p["id"] is not None or p["email"] is not None for p in people)
    assert len({p["cio_id"] for p in people}) == len(people)
    api.workspace.events_view()
