"""Decoding and validating inputs: what is rejected whole, what is normalised, what is dropped."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from mapping_builders import (
    SAMPLE_AUDIENCE,
    SAMPLE_BATCH,
    T0,
    audience_message,
    batch,
    custom,
    kinds,
    parsed,
    profile,
    reasons,
    run,
)

from cioproc.mapping import (
    DROP_REASONS,
    REJECTION_REASONS,
    Batch,
    Rejection,
    map_audience,
    map_batch,
    parse_audience_change,
    parse_batch,
)
from cioproc.mapping.results import MapResult
from cioproc.models.settings import MappingSettings
from cioproc.models.state import UserState

# The malformed-input list: anything yields commands or a typed rejection.
REJECTED = [
    pytest.param(b"\xff\xfe{}", "not_utf8", id="not-utf8"),
    pytest.param(b'{"mpid": 1, "events": [], "x": "\xc3"}', "not_utf8", id="cut-utf8"),
    pytest.param(b"{", "not_json", id="truncated-json"),
    pytest.param(b"", "not_json", id="empty"),
    pytest.param(b"NaN", "not_json", id="nan"),
    pytest.param(b"[" * 2000 + b"]" * 2000, "not_json", id="nested-too-deep"),
    pytest.param(b"[]", "not_an_object", id="array"),
    pytest.param(b'"batch"', "not_an_object", id="string"),
    pytest.param(b"null", "not_an_object", id="null"),
    pytest.param(b'{"events": []}', "missing_mpid", id="no-mpid"),
    pytest.param(b'{"mpid": null, "events": []}', "missing_mpid", id="null-mpid"),
    pytest.param(b'{"mpid": "abc", "events": []}', "invalid_mpid", id="text-mpid"),
    pytest.param(b'{"mpid": 1.5, "events": []}', "invalid_mpid", id="float-mpid"),
    pytest.param(b'{"mpid": true, "events": []}', "invalid_mpid", id="bool-mpid"),
    pytest.param(b'{"mpid": 18446744073709551616, "events": []}', "invalid_mpid",
                 id="mpid-over-64-bits"),
    pytest.param(b'{"mpid": "99999999999999999999", "events": []}', "invalid_mpid",
                 id="string-mpid-over-64-bits"),
    pytest.param(b'{"mpid": 1, "events": {}}', "events_not_a_list", id="object-events"),
    pytest.param(b'{"mpid": 1, "events": "e"}', "events_not_a_list", id="string-events"),
]


@pytest.mark.parametrize(("raw", "reason"), REJECTED)
def test_malformed_batches_are_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    result = parse_batch(raw)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert reason in REJECTION_REASONS and result.detail


@pytest.mark.parametrize(
    ("mpid", "expected"),
    [
        (42, "42"),
        ("42", "42"),
        (" 0042 ", "42"),
        (-7636538281262557000, "-7636538281262557000"),
        ("-7636538281262557000", "-7636538281262557000"),
        (18446744073709551615, "18446744073709551615"),
        (0, "0"),
    ],
)
def test_mpid_is_normalised_to_a_decimal_string(mpid: Any, expected: str) -> None:
    assert parsed(batch([], mpid=mpid)).mpid == expected


def test_the_reference_sample_batch_parses_and_maps() -> None:
    raw = SAMPLE_BATCH.read_bytes()
    parsed_batch = parse_batch(raw)
    assert isinstance(parsed_batch, Batch)
    assert parsed_batch.mpid == "-7636538281262557000"
    assert parsed_batch.customer_id == "123456" and parsed_batch.device_type == "ios"
    result = map_batch(parsed_batch, None, MappingSettings())
    assert kinds(result) == ["identify", "track", "screen"]
    assert [c.name for c in result.commands[1:]] == ["Example_custom_event",
                                                     "Example_screen_event"]
    assert result.drops == []
    assert parse_batch(raw.decode()) == parsed_batch  # str input as well as bytes


def test_both_identity_shapes_give_the_same_batch() -> None:
    inbound = parsed(batch([custom("e")], customer_id="c1", email="a@x.io"))
    outbound = parsed(batch([custom("e")], customer_id="c1", email="a@x.io", outbound=True))
    assert (inbound.customer_id, inbound.email) == (outbound.customer_id, outbound.email)
    assert (inbound.customer_id, inbound.email) == ("c1", "a@x.io")


@pytest.mark.parametrize(
    ("identities", "reason"),
    [
        ({"customer_id": ["c1"]}, "invalid_identity"),
        ({"email": "a b@x.io"}, "invalid_identity"),
        ({"email": "@x.io"}, "invalid_identity"),
        ({"customer_id": "c" * 151}, "identifier_too_long"),
        ("c1", "invalid_identity"),
        ([1, {"identity_type": "customer_id", "identity": "c1"}], "invalid_identity"),
    ],
)
def test_unusable_identities_are_dropped_with_a_reason(identities: Any, reason: str) -> None:
    obj = batch([custom("e")], customer_id=None)
    obj["user_identities"] = identities
    result = run(obj)
    assert reason in reasons(result)


def test_valid_identities_produce_no_identity_drop() -> None:
    result = run(batch([custom("e")], customer_id="c" * 150, email=" a@x.io "))
    assert result.drops == []
    assert result.state.email == "a@x.io"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("user_attributes", ["a"], "invalid_user_attributes"),
        ("deleted_user_attributes", "a", "invalid_deleted_attributes"),
        ("deleted_user_attributes", ["a", 1], "invalid_deleted_attributes"),
    ],
)
def test_malformed_batch_parts_are_dropped_not_rejected(field: str, value: Any, reason: str):
    result = run(batch([custom("e")], **{field: value}))
    assert reason in reasons(result)
    assert "track" in kinds(result)


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ([1], "invalid_event"),
        ([{"event_type": "custom_event"}], "invalid_event"),
        ([{"data": {}}], "invalid_event"),
        ([{"event_type": 5, "data": {}}], "invalid_event"),
        ([custom("e", attrs=["not", "an", "object"])], "invalid_event_attributes"),
    ],
)
def test_malformed_events_are_dropped_and_the_rest_goes_on(events: list, reason: str) -> None:
    result = run(batch(events + [custom("ok")]))
    assert reason in reasons(result)
    assert [c.name for c in result.commands if c.name] in (["ok"], ["e", "ok"])


def test_event_data_over_one_customerio_entry_is_trimmed() -> None:
    deep: list = [1]
    for _ in range(300):
        deep = [deep]
    attrs = {"small": "s", "huge": "h" * 40_000, "deep": deep}
    raw = json.dumps(batch([custom("e", attrs=attrs)])).encode()  # orjson won't write this deep
    parsed_batch = parse_batch(raw)
    assert isinstance(parsed_batch, Batch)
    result = map_batch(parsed_batch, None, MappingSettings())
    (track,) = [c for c in result.commands if c.name == "e"]
    assert track.attributes == {"small": "s"}
    assert {"event_data_too_large", "unsupported_attribute_value"} <= set(reasons(result))
    fits = run(batch([custom("e", attrs={"a": "x" * 1000, "n": [1, {"b": 2}]})]))
    assert fits.drops == []


def test_event_data_is_sized_per_event_even_when_checked_per_batch() -> None:
    """Data that fits per event is sent whole even when a batch's data together does not."""
    half = {"a": "x" * 20_000}  # two of these exceed one entry; each alone fits
    result = run(batch([custom("one", attrs=half), custom("two", attrs=half)]))
    assert [c.attributes for c in result.commands if c.name] == [half, half]
    assert result.drops == []
    # Drops keep the order of the events: a blank name before, too-large data after.
    events = [custom(" ", attrs=half), custom("big", attrs={"h": "h" * 40_000, "s": 1}),
              custom("e" * 120, attrs=half)]
    result = run(batch(events))
    assert reasons(result) == ["empty_event_name", "event_data_too_large", "event_name_truncated"]
    assert [c.attributes for c in result.commands if c.name] == [{"s": 1}, half]


def test_huge_strings_are_cut_to_customerio_limits() -> None:
    huge = "ä" * 1_000_000  # 2 MB
    result = run(batch([custom(huge, attrs={"note": huge})], customer_id="c1",
                       attributes={"$FirstName": huge, "bio": huge}))
    (track,) = [c for c in result.commands if c.name]
    assert track.name == "ä" * 50 and track.attributes == {}
    assert {len(v.encode()) for v in result.commands[0].attributes.values()} == {1000}
    assert {"event_name_truncated", "event_data_too_large",
            "attribute_value_truncated"} <= set(reasons(result))


def test_bad_timestamps_fall_back_to_the_batch_time() -> None:
    events = [custom("neg", ts=-5), custom("text", ts=None, timestamp_unixtime_ms="1"),
              custom("float", ts=T0 + 2500.0)]
    result = run(batch(events, timestamp_unixtime_ms=T0 + 1000))
    assert [c.timestamp for c in result.commands if c.name] == [
        T0 // 1000 + 1, T0 // 1000 + 1, T0 // 1000 + 2
    ]


def test_a_batch_without_any_time_uses_the_callers_default_or_zero() -> None:
    raw = orjson.dumps(batch([custom("e", ts=None)]))
    with_default = map_batch(parse_batch(raw, default_timestamp_ms=T0), None, MappingSettings())
    assert {c.timestamp for c in with_default.commands} == {T0 // 1000}
    without = map_batch(parse_batch(raw), None, MappingSettings())
    assert {c.timestamp for c in without.commands} == {0}


def test_empty_events_list_is_valid_and_may_still_identify() -> None:
    result = run(batch([], attributes={"$FirstName": "Ada"}))
    assert kinds(result) == ["identify"]
    assert run(batch([], customer_id=None)).commands == []


def test_the_input_state_is_never_changed() -> None:
    state = run(batch([custom("e")], email="a@x.io", os="IOS")).state
    before = state.copy()
    run(batch([custom("e"), {"event_type": "opt_out", "data": {"is_opted_out": True}}],
              customer_id="c2", email="b@x.io", os="Android",
              attributes={"$FirstName": "Z"}), state)
    assert state == before


# --- audience messages ---------------------------------------------------------------------
AUDIENCE_REJECTED = [
    pytest.param(b"\xff", "not_utf8", id="not-utf8"),
    pytest.param(b"{", "not_json", id="not-json"),
    pytest.param(b"[]", "not_an_object", id="array"),
    pytest.param(b'{"type": "other", "user_profiles": []}', "not_audience_change", id="type"),
    pytest.param(b'{"type": "audience_membership_change_request"}', "no_user_profiles",
                 id="no-profiles"),
    pytest.param(b'{"user_profiles": [1]}', "invalid_user_profile", id="profile-not-object"),
    pytest.param(b'{"user_profiles": [{"audiences": []}]}', "invalid_user_profile",
                 id="profile-without-mpid"),
]


@pytest.mark.parametrize(("raw", "reason"), AUDIENCE_REJECTED)
def test_malformed_audience_messages_are_rejected(raw: bytes, reason: str) -> None:
    result = parse_audience_change(raw)
    assert isinstance(result, Rejection) and result.reason == reason
    assert reason in REJECTION_REASONS


def test_the_reference_audience_message_parses_and_maps() -> None:
    profiles = parse_audience_change(SAMPLE_AUDIENCE.read_bytes())
    assert not isinstance(profiles, Rejection)
    (only,) = profiles
    assert (only.mpid, only.customer_id, only.email) == ("12345", "cust-42", "jane@example.com")
    result = map_audience(only, None, MappingSettings(audience_attribute_per_segment=True))
    (identify,) = result.commands
    assert (identify.id_type, identify.id_value) == ("id", "cust-42")
    assert identify.attributes == {
        "email": "jane@example.com",
        "SegmentMembership": "'456'",
        "In Example Audience Name 4": False,
        "In Example Audience Name": True,
    }
    assert identify.timestamp == 1685499524


def test_one_audience_message_carries_several_users() -> None:
    message = audience_message(profile(1, [(5, "A", "add")], "c1"),
                               profile("2", [(5, "A", "add")], None, "b@x.io"))
    profiles = parse_audience_change(orjson.dumps(message))
    assert [p.mpid for p in profiles] == ["1", "2"]
    results = [map_audience(p, None, MappingSettings()) for p in profiles]
    assert [(r.commands[0].mpid, r.commands[0].id_value) for r in results] == [
        ("1", "c1"), ("2", "b@x.io")
    ]


@pytest.mark.parametrize(
    ("audiences", "reason"),
    [
        ("x", "invalid_audience"),
        ([1], "invalid_audience"),
        ([{"audience_name": "A", "action": "add"}], "invalid_audience"),
        ([{"audience_id": 1, "audience_name": "A", "action": "join"}], "unknown_audience_action"),
    ],
)
def test_malformed_audience_entries_are_dropped(audiences: Any, reason: str) -> None:
    message = audience_message(profile(1))
    message["user_profiles"][0]["audiences"] = audiences
    (only,) = parse_audience_change(orjson.dumps(message))
    result = map_audience(only, None, MappingSettings())
    assert reason in reasons(result)


def test_audience_without_a_name_has_no_per_segment_flag() -> None:
    message = audience_message(profile(1, [(5, None, "add")]))
    (only,) = parse_audience_change(orjson.dumps(message))
    result = map_audience(only, None, MappingSettings(audience_attribute_per_segment=True))
    assert reasons(result) == ["missing_audience_name"]
    assert result.commands[0].attributes == {"SegmentMembership": "'5'"}


def test_segment_membership_fits_1000_bytes() -> None:
    many = [(100000 + i, f"A{i}", "add") for i in range(200)]  # 200 * 9 bytes
    message = audience_message(profile(1, many))
    (only,) = parse_audience_change(orjson.dumps(message))
    result = map_audience(only, None, MappingSettings())
    value = result.commands[0].attributes["SegmentMembership"]
    assert len(value.encode()) <= 1000 and value.startswith("'100000','100001'")
    assert value.endswith("'") and "attribute_value_too_long" in reasons(result)


def test_every_reason_named_in_code_is_documented() -> None:
    import cioproc.mapping as package

    for reason in REJECTION_REASONS | DROP_REASONS:
        assert f"``{reason}``" in package.__doc__, reason


def test_a_bug_in_the_mapping_raises_for_the_caller_to_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a silent ``internal_error`` drop: the processor dead-letters the input (issue 11, item 5)."""
    import cioproc.mapping as package

    def broken(*args: Any) -> MapResult:
        raise RuntimeError("bug")

    monkeypatch.setattr(package, "map_batch_unchecked", broken)
    with pytest.raises(RuntimeError, match="bug"):
        package.map_batch(parsed(batch([custom("e")])), UserState(), MappingSettings())
    assert "internal_error" not in DROP_REASONS
