"""Commands -> Track API v2 batch entries and v1 calls, checked against Customer.io's OpenAPI schemas."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import orjson
import pytest
from helpers_openapi import component, request_body, validator
from hypothesis import given, settings
from hypothesis import strategies as st

from cioproc.models.commands import Command, CommandKind
from cioproc.sender.payloads import (
    PayloadError,
    customer_path,
    encode_v1_request,
    encode_v2_entry,
    to_v1_request,
    to_v2_entry,
)

ULID = "01HZX3K9T6Q8WJ1V5N2M4R7B0C"


def cmd(kind: CommandKind, **overrides: Any) -> Command:
    values: dict[str, Any] = dict(
        kind=kind, mpid="-42", id_type="id", id_value="cust-1", timestamp=1_700_000_000, attributes={}
    )
    if kind in (CommandKind.TRACK, CommandKind.SCREEN):
        values.update(name="Purchase", event_id=ULID)
    if kind is CommandKind.MERGE:
        values.update(secondary=("email", "old@example.com"))
    values.update(overrides)
    return Command(**values)


V2_CASES = [
    (
        cmd(CommandKind.IDENTIFY, attributes={"first_name": "Ada", "plan": None, "tags": ["a", "b"]}),
        "identify_person",
        {
            "type": "person",
            "identifiers": {"id": "cust-1"},
            "action": "identify",
            "timestamp": 1_700_000_000,
            "attributes": {"first_name": "Ada", "plan": None, "tags": ["a", "b"]},
        },
    ),
    (
        cmd(CommandKind.IDENTIFY, id_type="email", id_value="Ada@Example.com", attributes={"email": "Ada@Example.com"}),
        "identify_person",
        {
            "type": "person",
            "identifiers": {"email": "Ada@Example.com"},
            "action": "identify",
            "timestamp": 1_700_000_000,
            "attributes": {"email": "Ada@Example.com"},
        },
    ),
    (
        cmd(CommandKind.TRACK, attributes={"price": 9.5, "nested": {"a": 1}}),
        "person_event",
        {
            "type": "person",
            "identifiers": {"id": "cust-1"},
            "action": "event",
            "name": "Purchase",
            "id": ULID,
            "timestamp": 1_700_000_000,
            "attributes": {"price": 9.5, "nested": {"a": 1}},
        },
    ),
    (
        cmd(CommandKind.TRACK, event_id=None),
        "person_event",
        {
            "type": "person",
            "identifiers": {"id": "cust-1"},
            "action": "event",
            "name": "Purchase",
            "timestamp": 1_700_000_000,
            "attributes": {},
        },
    ),
    (
        cmd(CommandKind.SCREEN, name="Home Screen"),
        "person_screen",
        {
            "type": "person",
            "identifiers": {"id": "cust-1"},
            "action": "screen",
            "name": "Home Screen",
            "id": ULID,
            "timestamp": 1_700_000_000,
            "attributes": {},
        },
    ),
    (
        cmd(CommandKind.UNSUBSCRIBE),
        "identify_person",
        {
            "type": "person",
            "identifiers": {"id": "cust-1"},
            "action": "identify",
            "timestamp": 1_700_000_000,
            "attributes": {"unsubscribed": True},
        },
    ),
    (
        cmd(CommandKind.MERGE),
        "person_merge",
        {
            "type": "person",
            "action": "merge",
            "primary": {"id": "cust-1"},
            "secondary": {"email": "old@example.com"},
        },
    ),
]


@pytest.mark.parametrize(
    ("command", "schema", "expected"), V2_CASES, ids=[c[1] + str(i) for i, c in enumerate(V2_CASES)]
)
def test_v2_entry_shape_and_schema(openapi, command, schema, expected):
    entry = to_v2_entry(command)
    assert entry == expected
    assert orjson.loads(encode_v2_entry(command)) == expected
    component(openapi, schema).validate(entry)
    request_body(openapi, "/api/v2/batch", "post").validate({"batch": [entry]})


def test_schema_check_is_not_vacuous(openapi):
    """The converted schemas do reject what Customer.io would reject."""
    entry = to_v2_entry(cmd(CommandKind.IDENTIFY))
    with pytest.raises(jsonschema.ValidationError):
        component(openapi, "identify_person").validate({**entry, "identifiers": {"id": "a", "email": "b@c.d"}})
    with pytest.raises(jsonschema.ValidationError):
        component(openapi, "person_event").validate(
            {k: v for k, v in to_v2_entry(cmd(CommandKind.TRACK)).items() if k != "name"}
        )
    with pytest.raises(jsonschema.ValidationError):
        component(openapi, "person_merge").validate({**to_v2_entry(cmd(CommandKind.MERGE)), "primary": {}})


V1_CASES = [
    (
        cmd(CommandKind.IDENTIFY, attributes={"first_name": "Ada", "plan": None, "tags": ["a"], "age": 3}),
        (
            "PUT",
            "/api/v1/customers/cust-1",
            {"first_name": "Ada", "plan": "", "tags": '["a"]', "age": 3, "_timestamp": 1_700_000_000},
        ),
    ),
    (
        cmd(CommandKind.IDENTIFY, id_type="email", id_value="a+b/c@example.com"),
        ("PUT", "/api/v1/customers/a%2Bb%2Fc%40example.com", {"_timestamp": 1_700_000_000}),
    ),
    (
        cmd(CommandKind.UNSUBSCRIBE),
        ("PUT", "/api/v1/customers/cust-1", {"unsubscribed": True, "_timestamp": 1_700_000_000}),
    ),
    (
        cmd(CommandKind.TRACK, attributes={"price": None}),
        (
            "POST",
            "/api/v1/customers/cust-1/events",
            {"name": "Purchase", "id": ULID, "timestamp": 1_700_000_000, "data": {"price": None}},
        ),
    ),
    (
        cmd(CommandKind.SCREEN, name="Home"),
        (
            "POST",
            "/api/v1/customers/cust-1/events",
            {"name": "Home", "type": "screen", "id": ULID, "timestamp": 1_700_000_000, "data": {}},
        ),
    ),
    (
        cmd(CommandKind.MERGE),
        ("POST", "/api/v1/merge_customers", {"primary": {"id": "cust-1"}, "secondary": {"email": "old@example.com"}}),
    ),
]


@pytest.mark.parametrize(("command", "expected"), V1_CASES)
def test_v1_request(command, expected):
    request = to_v1_request(command)
    assert (request.method, request.path, request.body) == expected
    method, path, body = encode_v1_request(command)
    assert (method, path, orjson.loads(body)) == expected


@pytest.mark.parametrize("index", [0, 2])
def test_v1_identify_body_matches_schema(openapi, index):
    body = to_v1_request(V1_CASES[index][0]).body
    request_body(openapi, "/api/v1/customers/{identifier}", "put").validate(body)


def test_v1_event_and_merge_bodies_match_schema(openapi):
    events = request_body(openapi, "/api/v1/customers/{identifier}/events", "post")
    events.validate(to_v1_request(cmd(CommandKind.TRACK, attributes={"price": 3})).body)
    # The v1 merge schema's identifier alternatives lack `required`, so any one-key object matches
    # all three and `oneOf` can never pass; add the `required` each alternative's title implies.
    merge = copy.deepcopy(openapi["paths"]["/api/v1/merge_customers"]["post"])
    schema = merge["requestBody"]["content"]["application/json"]["schema"]
    for side in ("primary", "secondary"):
        for alternative in schema["properties"][side]["oneOf"]:
            alternative.setdefault("required", list(alternative["properties"]))
    validator(openapi, schema).validate(to_v1_request(cmd(CommandKind.MERGE)).body)


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (cmd(CommandKind.TRACK, name=None), "missing_name"),
        (cmd(CommandKind.SCREEN, name=""), "missing_name"),
        (cmd(CommandKind.MERGE, secondary=None), "invalid_secondary"),
        (cmd(CommandKind.MERGE, secondary=("phone", "1")), "invalid_secondary"),
        (cmd(CommandKind.IDENTIFY, id_value=""), "invalid_identifier"),
        (cmd(CommandKind.IDENTIFY, id_type="cio_id"), "invalid_identifier"),
        (cmd(CommandKind.IDENTIFY, attributes={"blob": b"\x00"}), "unencodable"),
        (cmd(CommandKind.IDENTIFY, attributes={"n": 2**70}), "unencodable"),
    ],
)
def test_inexpressible_commands_raise_payload_error(command, reason):
    with pytest.raises(PayloadError) as raised:
        encode_v2_entry(command)
    assert raised.value.reason == reason


def test_customer_path_encodes_everything_but_unreserved():
    assert customer_path("a b/c?d#e@f%") == "/api/v1/customers/a%20b%2Fc%3Fd%23e%40f%25"


scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=20))
attributes = st.dictionaries(st.text(min_size=1, max_size=10), scalars, max_size=5)
commands = st.builds(
    cmd,
    st.sampled_from([k for k in CommandKind  # devices: own tests; erase: never a request
                     if k not in (CommandKind.ADD_DEVICE, CommandKind.DELETE_DEVICE, CommandKind.ERASE)]),
    id_type=st.sampled_from(["id", "email"]),
    id_value=st.text(min_size=1, max_size=30),
    attributes=attributes,
)


@settings(max_examples=60, deadline=None)
@given(commands)
def test_every_v2_entry_is_valid_batch_entry(openapi_schemas, command):
    entry = orjson.loads(encode_v2_entry(command))
    schema = {
        "identify": "identify_person",
        "event": "person_event",
        "screen": "person_screen",
        "merge": "person_merge",
        "delete": "person_delete",
        "suppress": "person_suppress",
    }
    openapi_schemas[schema[entry["action"]]].validate(entry)
    if command.kind is not CommandKind.MERGE:
        assert entry["identifiers"] == {command.id_type: command.id_value}


@pytest.fixture(scope="module")
def openapi_schemas(openapi) -> dict[str, jsonschema.Validator]:
    names = ("identify_person", "person_event", "person_screen", "person_merge", "person_delete", "person_suppress")
    return {name: component(openapi, name) for name in names}


def test_unknown_time_is_left_to_customer_io():
    """The mapping marks a command whose time is unknown with timestamp 0: the sender omits it."""
    from cioproc.models.commands import Command, CommandKind
    from cioproc.sender.payloads import to_v1_request, to_v2_entry

    track = Command(CommandKind.TRACK, "1", "id", "u1", 0, {"a": 1}, "Buy", "01ARZ3NDEKTSV4RRFFQ69G5FAV")
    identify = Command(CommandKind.IDENTIFY, "1", "id", "u1", 0, {"first_name": "Ann"})
    assert "timestamp" not in to_v2_entry(track) and "timestamp" not in to_v2_entry(identify)
    assert "timestamp" not in to_v1_request(track).body and "_timestamp" not in to_v1_request(identify).body
    dated = Command(CommandKind.IDENTIFY, "1", "id", "u1", 1700000000, {"first_name": "Ann"})
    assert to_v2_entry(dated)["timestamp"] == 1700000000
    assert to_v1_request(dated).body["_timestamp"] == 1700000000
