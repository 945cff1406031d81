"""Issue 17, item 1: add_device / delete_device commands as Track API requests, validated
against Customer.io's OpenAPI file with the schema mechanism of test_sender_payloads."""

from __future__ import annotations

import jsonschema
import orjson
import pytest
from helpers_openapi import component, request_body
from hypothesis import given, settings
from hypothesis import strategies as st

from cioproc.models.commands import Command, CommandKind, encode_command
from cioproc.sender.payloads import (
    PayloadError,
    encode_v1_request,
    encode_v2_entry,
    to_v1_request,
    to_v2_entry,
    v2_entry_from_wire,
)

ADD = Command(CommandKind.ADD_DEVICE, "-42", "id", "cust-1", 1_700_000_000, {"platform": "ios"}, "apns-token-1")
DELETE = Command(CommandKind.DELETE_DEVICE, "-42", "email", "a@example.com", 1_700_000_000, {}, "fcm:tok/1")


def test_v2_add_device_entry(openapi):
    entry = to_v2_entry(ADD)
    assert entry == {
        "type": "person",
        "identifiers": {"id": "cust-1"},
        "action": "add_device",
        "device": {"token": "apns-token-1", "platform": "ios", "last_used": 1_700_000_000},
    }
    component(openapi, "person_add_device").validate(entry)
    request_body(openapi, "/api/v2/batch", "post").validate({"batch": [entry]})
    assert orjson.loads(encode_v2_entry(ADD)) == entry
    assert v2_entry_from_wire(encode_command(ADD)) == ("-42", "add_device", encode_v2_entry(ADD))


def test_v2_delete_device_entry(openapi):
    entry = to_v2_entry(DELETE)
    assert entry == {
        "type": "person",
        "identifiers": {"email": "a@example.com"},
        "action": "delete_device",
        "device": {"token": "fcm:tok/1"},
    }
    component(openapi, "person_delete_device").validate(entry)
    request_body(openapi, "/api/v2/batch", "post").validate({"batch": [entry]})


def test_unknown_last_used_is_left_to_customer_io(openapi):
    entry = to_v2_entry(ADD._replace(timestamp=0))
    assert "last_used" not in entry["device"]
    component(openapi, "person_add_device").validate(entry)


def test_v1_add_device_request(openapi):
    request = to_v1_request(ADD._replace(attributes={"platform": "android"}))
    assert (request.method, request.path, request.body) == (
        "PUT", "/api/v1/customers/cust-1/devices",
        {"device": {"id": "apns-token-1", "platform": "android", "last_used": 1_700_000_000}},
    )
    request_body(openapi, "/api/v1/customers/{identifier}/devices", "put").validate(request.body)


def test_v1_delete_device_request_encodes_identifier_and_token(openapi):
    method, path, body = encode_v1_request(DELETE)
    assert (method, path, orjson.loads(body)) == (
        "DELETE", "/api/v1/customers/a%40example.com/devices/fcm%3Atok%2F1", {},
    )
    assert "delete" in openapi["paths"]["/api/v1/customers/{identifier}/devices/{device_id}"]
    assert "requestBody" not in openapi["paths"]["/api/v1/customers/{identifier}/devices/{device_id}"]["delete"]


def test_device_schemas_are_not_vacuous(openapi):
    with pytest.raises(jsonschema.ValidationError):
        component(openapi, "person_add_device").validate(
            {**to_v2_entry(ADD), "device": {"token": "t", "platform": "web"}}
        )
    with pytest.raises(jsonschema.ValidationError):
        component(openapi, "person_add_device").validate({**to_v2_entry(ADD), "device": {"platform": "ios"}})
    with pytest.raises(jsonschema.ValidationError):
        request_body(openapi, "/api/v1/customers/{identifier}/devices", "put").validate({"device": {"token": "t"}})


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (ADD._replace(name=None), "missing_token"),
        (DELETE._replace(name=""), "missing_token"),
        (ADD._replace(attributes={"platform": "web"}), "invalid_platform"),
        (ADD._replace(attributes={}), "invalid_platform"),
    ],
)
def test_inexpressible_device_commands_raise_payload_error(command, reason):
    for encode in (encode_v2_entry, encode_v1_request):
        with pytest.raises(PayloadError) as raised:
            encode(command)
        assert raised.value.reason == reason


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from([CommandKind.ADD_DEVICE, CommandKind.DELETE_DEVICE]),
    id_type=st.sampled_from(["id", "email"]),
    id_value=st.text(min_size=1, max_size=30),
    token=st.text(min_size=1, max_size=200),
    platform=st.sampled_from(["ios", "android"]),
    timestamp=st.integers(0, 2**32),
)
def test_every_device_entry_is_a_valid_batch_entry(
    openapi_devices, kind, id_type, id_value, token, platform, timestamp
):
    command = Command(kind, "1", id_type, id_value, timestamp, {"platform": platform}, token)
    entry = orjson.loads(encode_v2_entry(command))
    openapi_devices[entry["action"]].validate(entry)
    assert entry["identifiers"] == {id_type: id_value} and entry["device"]["token"] == token


@pytest.fixture(scope="module")
def openapi_devices(openapi):  # noqa: F811
    return {name: component(openapi, f"person_{name}") for name in ("add_device", "delete_device")}
