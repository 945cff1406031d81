"""Issue 12, items 1-3 and 7, 9-12: inputs as real sources write them, event ids, times, names,
emails. Inputs are built with mParticle's official Python SDK (``mparticle`` on PyPI) where it
can express them: ``mparticle.Batch`` + ``mparticle.UserIdentities`` + its event classes,
serialised with ``ApiClient.sanitize_for_serialization`` as the SDK does before sending.
"""

from __future__ import annotations

from typing import Any

import mparticle
import orjson
import pytest
from mapping_builders import (
    SAMPLE_BATCH,
    T0,
    batch,
    custom,
    identify_attributes,
    kinds,
    of_kind,
    reasons,
)
from mparticle import ApiClient
from mparticle.models.user_attribute_change_event import UserAttributeChangeEvent

from cioproc.app.plan import plan_chunk
from cioproc.app.plan_records import PlanTopics
from cioproc.mapping import Batch, map_batch, parse_batch
from cioproc.mapping.results import MapResult
from cioproc.models.commands import decode_record
from cioproc.models.settings import MappingSettings
from cioproc.models.state import UserState

DEFAULT = MappingSettings()
CREATED_AT = MappingSettings(send_created_at=True)
RECEIVED = T0 + 60_000  # the Kafka record's time: a minute after the events
DAY = 86_400_000


def sdk_batch(
    events: list[Any] | None,
    *,
    customerid: str | None = "c1",
    email: str | None = None,
    attributes: dict[str, Any] | None = None,
    platform: str | None = "iOS",
) -> dict[str, Any]:
    """A batch as mParticle's Python SDK serialises it (``events=None``: no events key)."""
    identities = mparticle.UserIdentities()
    identities.customerid = customerid
    identities.email = email
    built = mparticle.Batch(environment="production", mpid=42, user_identities=identities)
    if events is not None:
        built.events = events
    if attributes is not None:
        built.user_attributes = attributes
    if platform is not None:
        built.device_info = mparticle.DeviceInformation(platform=platform)
    return ApiClient.sanitize_for_serialization(built)


def app_event(name: str, ts: Any = T0, **kw: Any) -> mparticle.AppEvent:
    return mparticle.AppEvent(event_name=name, custom_event_type="navigation",
                              timestamp_unixtime_ms=ts, **kw)


def screen_view(name: str, ts: Any = T0, **kw: Any) -> mparticle.ScreenViewEvent:
    return mparticle.ScreenViewEvent(screen_name=name, timestamp_unixtime_ms=ts, **kw)


def mapped(obj: Any, state: UserState | None = None, settings: MappingSettings = DEFAULT,
           received: int | None = RECEIVED) -> MapResult:
    """Parse (with the Kafka record time ``received``) and map one batch object."""
    parsed = parse_batch(orjson.dumps(obj), received)
    assert isinstance(parsed, Batch), parsed
    result = map_batch(parsed, state, settings)
    assert "internal_error" not in reasons(result), result.drops
    return result


def event_ids(result: MapResult) -> list[str]:
    return [c.event_id for c in result.commands if c.event_id]


# --- Item 1: batches built by the SDK, the reference sample, the outbound form -----------------
@pytest.mark.parametrize("spelling", ["customerid", "customer_id"])
def test_item1_sdk_batches_of_every_event_type_the_mapping_reads(spelling: str) -> None:
    events = [
        mparticle.FirstRunEvent(timestamp_unixtime_ms=T0 - 5000),
        mparticle.ApplicationStateTransitionEvent(
            timestamp_unixtime_ms=T0 - 4000, is_first_run=True,
            application_transition_type="application_initialized"),
        mparticle.SessionStartEvent(timestamp_unixtime_ms=T0 - 3000),
        UserAttributeChangeEvent(timestamp_unixtime_ms=T0 - 2000, user_attribute_name="plan",
                                 new="gold", deleted=False),
        app_event("Add To Cart", T0, custom_attributes={"sku": "A1"}),
        screen_view("Product Detail", T0 + 1000, custom_attributes={"from": "push"}),
        mparticle.OptOutEvent(timestamp_unixtime_ms=T0 + 2000, is_opted_out=True),
    ]
    obj = sdk_batch(events, email="ada@example.com",
                    attributes={"$FirstName": "Ada", "plan": "gold"})
    if spelling == "customer_id":  # the Events API's own spelling; the SDK writes customerid
        identities = obj["user_identities"]
        identities["customer_id"] = identities.pop("customerid")
    assert spelling in obj["user_identities"]
    result = mapped(obj, settings=CREATED_AT)
    assert kinds(result) == ["identify", "track", "screen", "unsubscribe"]
    assert {(c.id_type, c.id_value) for c in result.commands} == {("id", "c1")}
    person = identify_attributes(result)
    assert person == {"email": "ada@example.com", "first_name": "Ada", "plan": "gold",
                      "created_at": (T0 - 5000) // 1000}
    track, screen = result.commands[1:3]
    assert (track.name, track.attributes) == ("Add_To_Cart", {"sku": "A1"})
    assert (screen.name, screen.attributes) == ("Product_Detail", {"from": "push"})
    assert result.drops == []


def test_item1_the_events_api_master_sample_maps_with_its_customer_id() -> None:
    sample = orjson.loads(SAMPLE_BATCH.read_bytes())
    result = mapped(sample, received=sample["timestamp_unixtime_ms"] + 5000)
    assert kinds(result) == ["identify", "track", "screen"]
    assert {(c.id_type, c.id_value) for c in result.commands} == {("id", "123456")}
    assert result.drops == []


def _outbound(obj: dict[str, Any], batch_id: str, message_ids: list[str]) -> dict[str, Any]:
    """The form mParticle's Kafka/firehose outputs write: identities as a list, a batch_id, a
    message_id per event, a top-level time."""
    kinds_by_key = {"customerid": "customer_id", "email": "email"}
    out = dict(obj)
    out["user_identities"] = [
        {"identity_type": kinds_by_key[key], "identity": value, "timestamp_unixtime_ms": T0}
        for key, value in obj["user_identities"].items()
    ]
    out["batch_id"] = batch_id
    out["timestamp_unixtime_ms"] = T0 + 500
    out["deleted_user_attributes"] = None
    out["events"] = [dict(e, message_id=m) for e, m in zip(obj["events"], message_ids, strict=True)]
    return out


def test_item1_the_outbound_form_of_mparticles_kafka_output() -> None:
    sdk = sdk_batch([app_event("Buy", None), app_event("Buy", None)], email="a@x.io")
    first = mapped(_outbound(sdk, "b-1", ["m-1", "m-2"]))
    assert kinds(first) == ["identify", "track", "track"]
    assert {(c.id_type, c.id_value) for c in first.commands} == {("id", "c1")}
    assert identify_attributes(first) == {"email": "a@x.io"}
    # Events without a time of their own take the batch's top-level time.
    assert {c.timestamp for c in first.commands} == {(T0 + 500) // 1000}
    ids = event_ids(first)
    assert len(set(ids)) == 2
    # The same events redelivered in another outbound batch keep their ids (message_id).
    again = mapped(_outbound(sdk, "b-2", ["m-1", "m-2"]), first.state)
    assert event_ids(again) == ids


# --- Item 2: events null or missing ------------------------------------------------------------
@pytest.mark.parametrize("events", ["missing", "null"])
def test_item2_a_batch_without_events_still_applies_identities_and_attributes(events: str):
    obj = sdk_batch(None, email="a@x.io", attributes={"$FirstName": "Ada"})
    assert "events" not in obj  # the SDK leaves the key out
    if events == "null":
        obj["events"] = None
    result = mapped(obj)
    assert kinds(result) == ["identify"]
    assert identify_attributes(result) == {"email": "a@x.io", "first_name": "Ada"}
    assert result.state.customer_id == "c1" and result.state.email == "a@x.io"


# --- Item 3: user_attribute_change with deleted: true ------------------------------------------
def test_item3_a_deleted_user_attribute_change_removes_the_attribute() -> None:
    before = mapped(sdk_batch([app_event("e")], attributes={"plan": "gold", "tier": "1"}))
    assert identify_attributes(before) == {"plan": "gold", "tier": "1"}
    deletion = UserAttributeChangeEvent(timestamp_unixtime_ms=T0 + 1000,
                                        user_attribute_name="plan", old="gold", deleted=True)
    obj = sdk_batch([deletion, app_event("e", T0 + 2000)], attributes={"tier": "1"})
    obj["deleted_user_attributes"] = None  # as outbound batches carry deletions
    after = mapped(obj, before.state)
    assert identify_attributes(after) == {"plan": None}
    # Done once: the same batch again removes nothing more.
    assert of_kind(mapped(obj, after.state), "identify") == []
    # A change that is not a deletion removes nothing.
    kept = UserAttributeChangeEvent(timestamp_unixtime_ms=T0 + 1000, user_attribute_name="tier",
                                    new="2", deleted=False)
    assert of_kind(mapped(sdk_batch([kept], attributes={"tier": "1", "plan": "gold"}),
                          before.state), "identify") == []


# --- Item 7: the fallback event id includes a digest of the event ------------------------------
# Pinned: the id of an event with neither source ids nor a batch id (digest fallback).
PINNED_FALLBACK = {"mpid": 42, "user_identities": {"customer_id": "c1"}, "events": [
    {"event_type": "custom_event", "data": {"event_name": "Buy", "timestamp_unixtime_ms": T0,
                                            "custom_attributes": {"sku": "A1"}}}]}
PINNED_FALLBACK_ID = "01HF7YAT00S8HSKQRS6B7D6N9S"  # computed by the release that added the digest


def test_item7_events_without_any_id_differ_by_their_content() -> None:
    def sdk_ids(attrs: dict[str, Any]) -> list[str]:
        return event_ids(mapped(sdk_batch([app_event("Buy", T0, custom_attributes=attrs)])))

    first, second = sdk_ids({"sku": "A1"}), sdk_ids({"sku": "B2"})
    assert len(first) == len(second) == 1
    assert first != second  # same name, millisecond, position: Customer.io would drop one
    assert sdk_ids({"sku": "A1"}) == first  # the same event again keeps its id
    assert event_ids(mapped(PINNED_FALLBACK, received=None)) == [PINNED_FALLBACK_ID]


# --- Item 9: untrusted times -------------------------------------------------------------------
TIMES = [
    pytest.param(T0 // 1000, T0 // 1000, True, id="seconds-read-as-seconds"),
    pytest.param(T0 + 1500, (T0 + 1500) // 1000, False, id="milliseconds-kept"),
    pytest.param(RECEIVED + DAY - 1, (RECEIVED + DAY - 1) // 1000, False,
                 id="within-a-day-after-the-record-kept"),
    pytest.param(RECEIVED + DAY + 1, RECEIVED // 1000, True, id="future-is-the-record-time"),
    pytest.param(978_307_199_999, RECEIVED // 1000, True, id="before-2001-is-the-record-time"),
    pytest.param(0, RECEIVED // 1000, True, id="zero-is-the-record-time"),
    pytest.param(-5, RECEIVED // 1000, True, id="negative-is-the-record-time"),
    pytest.param("1700000000000", RECEIVED // 1000, True, id="text-is-the-record-time"),
]


@pytest.mark.parametrize(("ts", "seconds", "dropped"), TIMES)
def test_item9_untrusted_event_times(ts: Any, seconds: int, dropped: bool) -> None:
    result = mapped(sdk_batch([app_event("e", ts)]))
    (track,) = of_kind(result, "track")
    assert track.timestamp == seconds
    assert ("invalid_timestamp" in reasons(result)) is dropped


CREATED = [
    pytest.param("iOS", [app_event("e", 0), app_event("f", T0)], T0 // 1000,
                 id="zero-time-ignored"),
    pytest.param("iOS", [mparticle.FirstRunEvent(timestamp_unixtime_ms=RECEIVED + 2 * DAY),
                         app_event("f", T0)], T0 // 1000, id="future-first-run-ignored"),
    pytest.param("iOS", [mparticle.FirstRunEvent(timestamp_unixtime_ms=5), app_event("f", T0)],
                 T0 // 1000, id="1970-first-run-ignored"),
    pytest.param("OutOfBand", [app_event("f", T0)], None, id="out-of-band-is-no-device"),
    pytest.param("server-to-server", [app_event("f", T0)], None, id="server-to-server"),
    pytest.param("iOS", [app_event("f", T0)], T0 // 1000, id="a-device-counts"),
]


@pytest.mark.parametrize(("platform", "events", "created_at"), CREATED)
def test_item9_created_at_ignores_untrusted_times_and_non_devices(
    platform: str, events: list, created_at: int | None
) -> None:
    result = mapped(sdk_batch(events, platform=platform), settings=CREATED_AT)
    assert identify_attributes(result).get("created_at") == created_at


def test_item9_the_kafka_record_time_reaches_the_mapping_from_the_processor() -> None:
    topics = PlanTopics("in.batches", "in.audiences", "out.commands", "out.dlq")

    class Record:
        topic, partition, offset, key, headers = "in.batches", 0, 0, b"42", None
        value = orjson.dumps(sdk_batch([app_event("e", RECEIVED + 3 * DAY)]))
        timestamp = RECEIVED / 1000  # seconds, as Kafka clients give it

    plan = plan_chunk([Record()], topics, DEFAULT, lambda p, k: None, lambda t, k: 0)
    tracks = [c for o in plan.commands for c in decode_record(o.value, o.headers) if c.name]
    assert [c.timestamp for c in tracks] == [RECEIVED // 1000]
    assert plan.counts.drops["invalid_timestamp"] == 1


# --- Item 10: emails and customer ids ----------------------------------------------------------
EMAILS = [
    pytest.param("ada@example.com", "ada@example.com", id="plain"),
    pytest.param(" mailto:Ada@Example.com ", "Ada@Example.com", id="mailto-removed"),
    pytest.param("MAILTO:ada@example.com", "ada@example.com", id="mailto-any-case"),
    pytest.param("a@b@example.com", None, id="two-ats"),
    pytest.param("@example.com", None, id="empty-local-part"),
    pytest.param("ada@", None, id="empty-domain"),
    pytest.param("ada@localhost", None, id="undotted-domain"),
    pytest.param("ada@example.", None, id="domain-ends-with-a-dot"),
    pytest.param("ada@.example.com", None, id="domain-starts-with-a-dot"),
    pytest.param("ada lovelace@example.com", None, id="space"),
    pytest.param("ada\u00a0@example.com", None, id="nbsp"),
    pytest.param("ada@exa\tmple.com", None, id="tab"),
    pytest.param("ada@example.com,bob@example.com", None, id="comma"),
    pytest.param("Ada <ada@example.com>", None, id="angle-brackets"),
]


@pytest.mark.parametrize(("raw", "expected"), EMAILS)
def test_item10_emails(raw: str, expected: str | None) -> None:
    result = mapped(sdk_batch([app_event("e")], customerid=None, email=raw))
    assert result.state.email == expected
    if expected is None:
        assert reasons(result) == ["invalid_identity", "no_identity"]
        assert result.commands == []
    else:
        assert {(c.id_type, c.id_value) for c in result.commands} == {("email", expected)}


CUSTOMER_IDS = [
    pytest.param(" c1 ", "c1", id="trimmed"),
    pytest.param(123456, "123456", id="integer"),
    pytest.param(123456.0, "123456", id="integer-valued-float"),
    pytest.param(12.5, None, id="fraction-is-invalid"),
    pytest.param(True, None, id="boolean-is-invalid"),
]


@pytest.mark.parametrize(("raw", "expected"), CUSTOMER_IDS)
def test_item10_customer_ids(raw: Any, expected: str | None) -> None:
    obj = batch([custom("e")], customer_id=None)
    obj["user_identities"] = {"customer_id": raw}
    result = mapped(obj)
    assert result.state.customer_id == expected
    if expected is not None:
        assert {(c.id_type, c.id_value) for c in result.commands} == {("id", expected)}
    else:
        assert "invalid_identity" in reasons(result)


# --- Item 11: every Unicode whitespace in an event name ----------------------------------------
NAMES = [
    pytest.param("Add\tto\u00a0Cart", "Add_to_Cart", id="tab-and-nbsp"),
    pytest.param("\u3000Add\u3000to  Cart\u2003", "Add_to__Cart", id="ideographic-and-em-space"),
    pytest.param("a\nb\u2028c", "a_b_c", id="line-separators"),
    pytest.param("x" * 99 + " y", "x" * 99, id="cut-leaves-no-trailing-underscore"),
    pytest.param("x" * 98 + "\u00a0\u00a0y", "x" * 98, id="cut-after-nbsp"),
]


@pytest.mark.parametrize(("raw", "expected"), NAMES)
def test_item11_event_names_treat_every_whitespace_as_a_space(raw: str, expected: str) -> None:
    result = mapped(sdk_batch([app_event(raw), screen_view(raw, T0 + 1)]))
    assert [c.name for c in result.commands if c.name] == [expected, expected]


# --- Item 12: event data in v1 mode up to 100,000 bytes ----------------------------------------
def test_item12_v1_event_data_may_use_the_v1_limit() -> None:
    data = {"a": "x" * 40_000, "b": "y" * 40_000, "c": "small"}
    obj = sdk_batch([app_event("big", custom_attributes=data)])
    v1 = mapped(obj, settings=MappingSettings(transport="v1"))
    (track,) = of_kind(v1, "track")
    assert track.attributes == data and v1.drops == []
    v2 = mapped(obj, settings=DEFAULT)
    (track,) = of_kind(v2, "track")
    assert track.attributes == {"c": "small"}
    assert reasons(v2) == ["event_data_too_large", "event_data_too_large"]
    over = sdk_batch([app_event("big", custom_attributes={**data, "d": "z" * 30_000})])
    (track,) = of_kind(mapped(over, settings=MappingSettings(transport="v1")), "track")
    assert len(orjson.dumps(track.attributes)) <= 100_000 and "c" in track.attributes
