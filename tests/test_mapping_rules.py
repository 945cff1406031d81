"""One table-driven test per rule of the mapping (issue 3), the seed's sentences beside them.

The seed is ../shared/seed/customerio-integration.txt; every sentence of it is a requirement.
"""

from __future__ import annotations

from typing import Any

import pytest
from mapping_builders import (
    T0,
    audience_message,
    batch,
    custom,
    event,
    identify_attributes,
    kinds,
    of_kind,
    opt_out,
    profile,
    reasons,
    run,
    run_all,
    run_audience,
    screen,
)

from cioproc.mapping.values import utf8_len
from cioproc.models.commands import (
    CommandDecodeError,
    CommandKind,
    decode_command,
    encode_command,
)
from cioproc.models.settings import MappingSettings, UserIdType
from cioproc.models.state import StateDecodeError, decode_state, encode_state
from cioproc.models.ulid import ulid_timestamp_ms

ALL_ATTRIBUTES = MappingSettings(include_user_attributes=True)
NAMES_ONLY = MappingSettings(include_user_attributes=False)
CREATED_AT = MappingSettings(send_created_at=True)
PER_SEGMENT = MappingSettings(audience_attribute_per_segment=True)
DEFAULT_ALL = MappingSettings(send_created_at=True)


# --- Rule 1: events --------------------------------------------------------------------
# Seed: "mParticle will forward all events logged with the mParticle SDK logEvent or
# logScreen methods along with their attributes. When forwarding events, mParticle will
# include the timestamp of the events in JSON data format."
RULE1 = [
    pytest.param(
        [custom("Purchase", T0 + 999, {"sku": "A1", "qty": 2})],
        [("track", "Purchase", (T0 + 999) // 1000, {"sku": "A1", "qty": 2})],
        id="logEvent-is-a-track-with-attributes-and-seconds",
    ),
    pytest.param(
        [screen("Home", T0 + 1500, {"from": "push"})],
        [("screen", "Home", (T0 + 1500) // 1000, {"from": "push"})],
        id="logScreen-is-a-screen",
    ),
    pytest.param(
        [custom("A", T0), screen("B", T0 + 1000), custom("C", T0 + 2000)],
        [("track", "A", T0 // 1000, {}), ("screen", "B", T0 // 1000 + 1, {}),
         ("track", "C", T0 // 1000 + 2, {})],
        id="batch-order-kept",
    ),
    pytest.param(
        [event("session_start"), event("session_end"), event("crash_report"),
         event("commerce_event", event_name="Buy", custom_event_type="purchase"),
         event("user_attribute_change", user_attribute_name="x"), event("breadcrumb"),
         event("push_registration"), event("application_state_transition")],
        [],
        id="other-event-types-not-forwarded",
    ),
    pytest.param(
        [event("session_start"), custom("Only", T0)],
        [("track", "Only", T0 // 1000, {})],
        id="mixed-only-custom-forwarded",
    ),
]


@pytest.mark.parametrize(("events", "expected"), RULE1)
def test_rule1_logevent_and_logscreen_are_forwarded_with_attributes_and_time(
    events: list[dict], expected: list[tuple]
) -> None:
    result = run(batch(events))
    got = [
        (c.kind.value, c.name, c.timestamp, c.attributes)
        for c in result.commands
        if c.kind in (CommandKind.TRACK, CommandKind.SCREEN)
    ]
    assert got == expected


def test_rule1_event_without_timestamp_takes_the_batch_time() -> None:
    result = run(batch([custom("NoTime", ts=None)], timestamp_unixtime_ms=T0 + 4000))
    (track,) = of_kind(result, "track")
    assert track.timestamp == T0 // 1000 + 4


# --- Rule 2: event names ---------------------------------------------------------------
# Seed: "When forwarding event names, mParticle trims the leading/trailing spaces and
# replace spaces with “_”."  Plus Customer.io's limit: event name at most 100 bytes.
RULE2 = [
    pytest.param("  Add To Cart  ", "Add_To_Cart", None, id="trim-and-underscore"),
    pytest.param("Add To Cart", "Add_To_Cart", None, id="inner-spaces"),
    pytest.param("a  b", "a__b", None, id="each-space-replaced"),
    pytest.param("\tTabbed\n", "Tabbed", None, id="whitespace-trimmed"),
    pytest.param("NoSpaces", "NoSpaces", None, id="negative-already-clean"),
    pytest.param("x" * 150, "x" * 100, "event_name_truncated", id="cut-to-100-bytes"),
    pytest.param("é" * 60, "é" * 50, "event_name_truncated", id="two-byte-chars-cut-whole"),
    pytest.param("ab" + "€" * 40, "ab" + "€" * 32, "event_name_truncated",
                 id="three-byte-char-not-split"),
    pytest.param("x" * 100, "x" * 100, None, id="negative-exactly-100-bytes"),
    pytest.param("   ", None, "empty_event_name", id="blank-dropped"),
    pytest.param("", None, "empty_event_name", id="empty-dropped"),
    pytest.param(None, None, "missing_event_name", id="null-dropped"),
    pytest.param(123, None, "missing_event_name", id="number-dropped"),
]


@pytest.mark.parametrize(("raw", "expected", "reason"), RULE2)
@pytest.mark.parametrize("make", [custom, screen], ids=["custom", "screen"])
def test_rule2_event_names_trimmed_underscored_and_fitted(
    make: Any, raw: Any, expected: str | None, reason: str | None
) -> None:
    result = run(batch([make(raw)]))
    events = [c for c in result.commands if c.kind in (CommandKind.TRACK, CommandKind.SCREEN)]
    if expected is None:
        assert events == []
    else:
        (only,) = events
        assert only.name == expected
        assert utf8_len(only.name) <= 100
    assert (reason in reasons(result)) if reason else reasons(result) == []


# --- Rule 3: identity --------------------------------------------------------------------
# Seed: "mParticle will only forward event and user data to Customer.io for users that have
# a valid customer id (MPUserIdentityCustomerId) or an email (MPUserIdentityEmail) defined.
# When forwarding user data, mParticle primarly uses MPUserIdentityCustomerId as the
# Customer.io user_id. If CustomerId is not defined, mParticle uses the email address
# instead."  And (User ID Type): "This determines how the Customer.io user ID is set. Users
# missing the select ID cannot be forwarded."
P, C, E = UserIdType.PREFER_CUSTOMER_ID, UserIdType.CUSTOMER_ID, UserIdType.EMAIL
RULE3 = [
    pytest.param(P, "c1", "a@x.io", False, ("id", "c1"), id="prefer-uses-customer-id"),
    pytest.param(P, None, "a@x.io", False, ("email", "a@x.io"), id="prefer-falls-back-to-email"),
    pytest.param(P, None, None, False, None, id="prefer-neither-dropped"),
    pytest.param(C, "c1", "a@x.io", False, ("id", "c1"), id="customer-id-mode"),
    pytest.param(C, None, "a@x.io", False, None, id="customer-id-mode-missing-dropped"),
    pytest.param(E, "c1", "a@x.io", False, ("email", "a@x.io"), id="email-mode"),
    pytest.param(E, "c1", None, False, None, id="email-mode-missing-dropped"),
    pytest.param(P, "c1", "a@x.io", True, ("id", "c1"), id="outbound-array-form"),
    pytest.param(P, None, "a@x.io", True, ("email", "a@x.io"), id="outbound-email"),
    pytest.param(P, None, "not-an-email", False, None, id="invalid-email-dropped"),
    pytest.param(P, "", None, False, None, id="empty-customer-id-dropped"),
]


@pytest.mark.parametrize(("mode", "customer_id", "email", "outbound", "expected"), RULE3)
def test_rule3_identifier_follows_the_user_id_type(
    mode: UserIdType, customer_id: str | None, email: str | None, outbound: bool,
    expected: tuple[str, str] | None,
) -> None:
    obj = batch([custom("E")], customer_id=customer_id, email=email, outbound=outbound)
    result = run(obj, settings=MappingSettings(user_id_type=mode))
    if expected is None:
        assert result.commands == []
        assert "no_identity" in reasons(result)
    else:
        assert result.commands
        assert {(c.id_type, c.id_value) for c in result.commands} == {expected}
        assert "no_identity" not in reasons(result)


def test_rule3_numeric_customer_id_becomes_a_string() -> None:
    result = run(batch([custom("E")], customer_id=12345))
    assert {c.id_value for c in result.commands} == {"12345"}


# --- Rule 4: person attributes ---------------------------------------------------------
# Seed: "mParticle always forwards users’ $FirstName, and $LastName, and will optionally
# forward all user attributes if the configuration parameter “Include ALL user
# attributes?” is enabled."  And (Include user attributes): "If enabled, mParticle will
# forward all user attributes to Customer.io. If disabled, mParticle will just send the
# users’ first and last names (so that they can be properly addressed in email campaigns)."
USER = {"$FirstName": "Ada", "$LastName": "Lovelace", "$City": "London", "plan": "gold"}
LONG = "ü" * 600  # 1200 bytes
RULE4 = [
    pytest.param(NAMES_ONLY, USER, None, None,
                 {"first_name": "Ada", "last_name": "Lovelace"}, {"city", "plan", "$City"},
                 [], id="disabled-names-only"),
    pytest.param(ALL_ATTRIBUTES, USER, None, None,
                 {"first_name": "Ada", "last_name": "Lovelace", "city": "London",
                  "plan": "gold"}, {"$City", "$FirstName"}, [], id="enabled-all-mapped"),
    pytest.param(NAMES_ONLY, {"$firstname": "ada", "$LASTNAME": "L"}, None, None,
                 {"first_name": "ada", "last_name": "L"}, set(), [], id="reserved-any-case"),
    pytest.param(ALL_ATTRIBUTES, {"$AGE": "36", "$gender": "f", "$Mobile": "1", "$Zip": "1",
                                  "$Address": "a", "$State": "s", "$Country": "UK"}, None, None,
                 {"age": "36", "gender": "f", "mobile": "1", "zip": "1", "address": "a",
                  "state": "s", "country": "UK"}, set(), [], id="all-reserved-keys"),
    pytest.param(NAMES_ONLY, {"plan": "gold"}, "a@x.io", None, {"email": "a@x.io"}, {"plan"},
                 [], id="email-when-known"),
    pytest.param(ALL_ATTRIBUTES, {"genres": ["jazz", "rock"]}, None, None,
                 {"genres": ["jazz", "rock"]}, set(), [], id="list-kept-as-list"),
    pytest.param(ALL_ATTRIBUTES, {"bio": LONG}, None, None, {"bio": "ü" * 500}, set(),
                 ["attribute_value_truncated"], id="value-cut-to-1000-bytes"),
    pytest.param(ALL_ATTRIBUTES, {"n" * 151: "v", "m" * 150: "ok"}, None, None,
                 {"m" * 150: "ok"}, {"n" * 151}, ["attribute_name_too_long"],
                 id="name-over-150-bytes-dropped"),
    pytest.param(ALL_ATTRIBUTES, {"big": ["x" * 600, "y" * 600]}, None, None, {}, {"big"},
                 ["attribute_value_too_long"], id="list-over-1000-bytes-dropped"),
    pytest.param(ALL_ATTRIBUTES, {"id": "9", "email": "b@x.io", "unsubscribed": "false",
                                  "created_at": 1}, None, None, {},
                 {"id", "email", "unsubscribed", "created_at"},
                 ["reserved_attribute_name"] * 4, id="customerio-reserved-names-dropped"),
    pytest.param(ALL_ATTRIBUTES, {"tag": None, "obj": {"a": 1}, "": "x"}, None, None, {},
                 {"tag", "obj", ""}, ["null_attribute_value", "unsupported_attribute_value",
                                      "empty_attribute_name"], id="unusable-values-dropped"),
    pytest.param(ALL_ATTRIBUTES, {"n": 3, "f": 1.5, "b": True}, None, None,
                 {"n": 3, "f": 1.5, "b": True}, set(), [], id="numbers-and-booleans-kept"),
    pytest.param(ALL_ATTRIBUTES, {"plan": "gold"}, None, ["old", "$City"],
                 {"plan": "gold", "old": None, "city": None}, set(), [],
                 id="deleted-attributes-removed"),
    pytest.param(NAMES_ONLY, {}, None, ["old", "$FirstName"], {"first_name": None}, {"old"},
                 [], id="deleted-only-when-forwarded"),
]


@pytest.mark.parametrize(
    ("settings", "attributes", "email", "deleted", "expected", "absent", "drops"), RULE4
)
def test_rule4_person_attributes(
    settings: MappingSettings, attributes: dict, email: str | None, deleted: list | None,
    expected: dict, absent: set, drops: list[str],
) -> None:
    result = run(batch([], attributes=attributes, email=email, deleted=deleted), None, settings)
    sent = identify_attributes(result)
    assert {k: v for k, v in sent.items() if k in expected} == expected
    assert not absent & sent.keys()
    assert sorted(reasons(result)) == sorted(drops)
    for name, value in sent.items():
        assert utf8_len(name) <= 150
        if isinstance(value, str):
            assert utf8_len(value) <= 1000


def test_rule4_at_most_300_attributes_per_person() -> None:
    many = {f"attr{i:03d}": i for i in range(310)}
    result = run(batch([], attributes=many), None, ALL_ATTRIBUTES)
    assert len(identify_attributes(result)) == 300
    assert reasons(result).count("too_many_attributes") == 10
    fewer = run(batch([], attributes=dict(list(many.items())[:300])), None, ALL_ATTRIBUTES)
    assert "too_many_attributes" not in reasons(fewer)


def test_rule4_large_identify_is_split_to_fit_customerio_entries() -> None:
    wide = {f"attr{i:02d}": "v" * 1000 for i in range(60)}  # ~61 KB of attributes
    result = run(batch([], attributes=wide), None, ALL_ATTRIBUTES)
    identifies = of_kind(result, "identify")
    assert len(identifies) >= 2
    assert identify_attributes(result) == wide
    for command in identifies:
        assert len(encode_command(command)) < 32_000
    small = run(batch([], attributes={"a": "b"}), None, ALL_ATTRIBUTES)
    assert len(of_kind(small, "identify")) == 1


# --- Rule 5: opt-out ---------------------------------------------------------------------
# Seed: "Please note that users who opt out of event tracking via mParticle’s optOut (in
# iOS) or setOptOut SDK methods will be unsubscribed from email communications in
# Customer.io, but their user profiles will remain in Customer.io."
RULE5 = [
    pytest.param([[opt_out(True)]], [["identify", "unsubscribe"]], id="opt-out-unsubscribes"),
    pytest.param([[opt_out(False)]], [["identify"]], id="negative-opt-in-nothing"),
    pytest.param([[opt_out("yes")]], [["identify"]], id="negative-not-a-boolean"),
    pytest.param([[opt_out(True, T0)], [opt_out(True, T0)]], [["identify", "unsubscribe"], []],
                 id="replay-unsubscribes-once"),
    pytest.param([[opt_out(True, T0)], [opt_out(False, T0 + 1)]],
                 [["identify", "unsubscribe"], []], id="opt-in-never-resubscribes"),
    pytest.param([[opt_out(True, T0)], [opt_out(False, T0 + 1)], [opt_out(True, T0 + 2)]],
                 [["identify", "unsubscribe"], [], ["unsubscribe"]],
                 id="opt-out-again-unsubscribes-again"),
    pytest.param([[opt_out(True, T0)], [opt_out(False, T0 + 5)], [opt_out(True, T0)]],
                 [["identify", "unsubscribe"], [], []], id="stale-replay-ignored"),
    pytest.param([[opt_out(True, T0), opt_out(False, T0)], [opt_out(True, T0), opt_out(False, T0)]],
                 [["identify", "unsubscribe"], []], id="replay-of-same-time-opt-out-and-in"),
]


@pytest.mark.parametrize(("batches", "expected"), RULE5)
def test_rule5_opt_out_unsubscribes_and_keeps_the_profile(
    batches: list[list[dict]], expected: list[list[str]]
) -> None:
    results, _ = run_all([batch(events) for events in batches])
    assert [kinds(result) for result in results] == expected
    for result in results:
        for command in result.commands:
            assert command.kind is not CommandKind.MERGE  # nothing deletes the profile
            if command.kind is CommandKind.UNSUBSCRIBE:
                assert command.attributes == {"unsubscribed": True}
                assert command.timestamp == T0 // 1000
            assert command.attributes.get("unsubscribed") is not False


# --- Rule 6: created_at ------------------------------------------------------------------
# Seed (Send User’s Created At): "If enabled, mParticle will forward a value for user’s
# created_at field (the UNIX timestamp from when the user was created in the system). This
# value is first configured when a user opens up the application that contains mParticle’s
# SDK and it doesn’t change over time. It is device-specific, which means that the value
# will be constant among the same device type (eg. multiple Android devices) for the same
# user. Each device will have the same email and customer id, but the field will differ
# across different device types (Android, iOS, MobileWeb, AlexaOS, etc…). The created_at
# field will overwrite based on whatever device was last seen. Meaning that a user with
# multiple devices will take the created_at value of whatever the most recent device is."
S = T0 // 1000
H = 3_600_000  # an hour in ms
RULE6 = [
    pytest.param(CREATED_AT, [batch([custom("a", T0), custom("b", T0 + 5000)], os="IOS")],
                 [S], id="earliest-event-of-the-device"),
    pytest.param(MappingSettings(), [batch([custom("a", T0)], os="IOS")], [None],
                 id="negative-disabled"),
    pytest.param(CREATED_AT, [batch([event("session_start", T0), event("first_run", T0 + 7000)],
                                    os="Android")], [S + 7], id="first-run-wins"),
    pytest.param(CREATED_AT, [batch([event("application_state_transition", T0 + 3000,
                                           is_first_run=True), custom("x", T0)], os="IOS")],
                 [S + 3], id="first-run-transition"),
    pytest.param(CREATED_AT, [batch([custom("a", T0)], os="IOS"),
                              batch([custom("b", T0 + H)], os="IOS")], [S, None],
                 id="same-device-does-not-change"),
    pytest.param(CREATED_AT, [batch([custom("a", T0)], os="IOS"),
                              batch([custom("b", T0 + H)], os="Android"),
                              batch([custom("c", T0 + 2 * H)], os="IOS"),
                              batch([custom("d", T0 + 3 * H)], platform="iOS")],
                 [S, S + 3600, S, None], id="most-recent-device-type-wins"),
    pytest.param(CREATED_AT, [batch([custom("b", T0 + H)], os="IOS"),
                              batch([custom("a", T0)], os="IOS")], [S + 3600, S],
                 id="late-older-batch-lowers-it"),
    pytest.param(CREATED_AT, [batch([custom("a", T0 + H)], os="Android"),
                              batch([custom("b", T0)], os="IOS")], [S + 3600, None],
                 id="older-batch-of-other-device-is-not-most-recent"),
    pytest.param(CREATED_AT, [batch([custom("a", T0)])], [None], id="negative-no-device-type"),
    pytest.param(CREATED_AT, [batch([custom("a", T0)], os="Unknown", platform="web")], [S],
                 id="platform-when-os-unknown"),
]


@pytest.mark.parametrize(("settings", "batches", "expected"), RULE6)
def test_rule6_created_at_per_device_type(
    settings: MappingSettings, batches: list[dict], expected: list[int | None]
) -> None:
    results, _ = run_all(batches, None, settings)
    assert [identify_attributes(r).get("created_at") for r in results] == expected


# --- Rule 7: stateful dedup --------------------------------------------------------------
RULE7 = [
    pytest.param({"$FirstName": "Ada"}, {"$FirstName": "Ada"}, None, id="same-batch-no-identify"),
    pytest.param({"$FirstName": "Ada", "plan": "a"}, {"$FirstName": "Ada", "plan": "b"},
                 {"plan": "b"}, id="only-the-change-is-sent"),
    pytest.param({"$FirstName": "Ada"}, {}, None, id="absent-attribute-is-not-a-change"),
    pytest.param({"plan": "a"}, {"plan": ["a"]}, {"plan": ["a"]}, id="type-change-is-a-change"),
]


@pytest.mark.parametrize(("first", "second", "expected"), RULE7)
def test_rule7_identify_only_when_something_changes(
    first: dict, second: dict, expected: dict | None
) -> None:
    results, _ = run_all([batch([custom("e")], attributes=first),
                          batch([custom("e")], attributes=second)])
    assert of_kind(results[0], "identify")
    identifies = of_kind(results[1], "identify")
    if expected is None:
        assert identifies == []
    else:
        assert identify_attributes(results[1]) == expected
    assert len(of_kind(results[1], "track")) == 1  # events are not deduplicated here (ids are)



def test_rule7_a_stale_input_digest_costs_a_comparison_not_an_identify() -> None:
    """States written with another digest (an older release's) re-compare the attributes
    against the per-value checksums: nothing is re-sent, and the digest is renewed."""
    obj = batch([custom("e")], attributes={"$FirstName": "Ada", "plan": "a"})
    results, state = run_all([obj])
    assert of_kind(results[0], "identify")
    renewed = state.desired
    state.desired = bytes(8)  # not this release's digest of these inputs
    again = run(obj, state)
    assert of_kind(again, "identify") == []
    assert again.state.desired == renewed


# --- Rule 8: identity upgrade ------------------------------------------------------------
# Seed (User ID Type): "Note: ‘Prefer Customer ID to Email’ should only be used if users
# will not have customer IDs assigned after email. If that is selected and a user has a
# customer ID assigned after an email, duplicate Customer.io profiles might be created."
# We fix that weakness: the person found by email gets the customer id. Each batch here is
# newer than the one before (identities never go backwards); merges are on (merging is
# opt-in, CIO_MERGE_PEOPLE; tests/test_mapping_identities.py has it off).
def _flow(settings: MappingSettings, *identities: tuple[str | None, str | None]) -> list:
    objs = [batch([custom("e", T0 + 1000 * i)], customer_id=c, email=e)
            for i, (c, e) in enumerate(identities)]
    results, state = run_all(objs, None, settings)
    return [[(c.kind.value, c.id_type, c.id_value, c.attributes.get("email"), c.secondary)
             for c in r.commands if c.kind.value in ("identify", "merge")] for r in results]


RULE8 = [
    pytest.param(P, [(None, "a@x.io"), ("c1", "a@x.io")],
                 [[("identify", "email", "a@x.io", "a@x.io", None)],
                  [("identify", "id", "c1", "a@x.io", None)]],
                 id="email-then-customer-id-attaches"),
    pytest.param(P, [(None, "a@x.io"), ("c1", None), (None, None)],
                 [[("identify", "email", "a@x.io", "a@x.io", None)],
                  [("identify", "id", "c1", "a@x.io", None)], []],
                 id="known-email-carried-from-state"),
    pytest.param(P, [(None, "a@x.io"), ("c1", "b@x.io")],
                 [[("identify", "email", "a@x.io", "a@x.io", None)],
                  [("identify", "id", "c1", "b@x.io", None),
                   ("merge", "id", "c1", None, ("email", "a@x.io"))]],
                 id="email-changed-too-merges"),
    pytest.param(P, [("c1", "a@x.io"), ("c2", "a@x.io"), ("c2", "a@x.io")],
                 [[("identify", "id", "c1", "a@x.io", None)],
                  [("identify", "id", "c2", None, None),
                   ("merge", "id", "c2", None, ("id", "c1"))],
                  [("identify", "id", "c2", "a@x.io", None)]],
                 id="new-customer-id-merges-then-email"),
    pytest.param(E, [(None, "a@x.io"), (None, "b@x.io")],
                 [[("identify", "email", "a@x.io", "a@x.io", None)],
                  [("identify", "email", "b@x.io", "b@x.io", None),
                   ("merge", "email", "b@x.io", None, ("email", "a@x.io"))]],
                 id="email-mode-new-email-merges"),
    pytest.param(P, [("c1", "a@x.io"), ("c1", "a@x.io")],
                 [[("identify", "id", "c1", "a@x.io", None)], []],
                 id="negative-same-identifier"),
    pytest.param(E, [(None, "a@x.io"), (None, "A@X.io")],
                 [[("identify", "email", "a@x.io", "a@x.io", None)],
                  [("identify", "email", "A@X.io", "A@X.io", None)]],
                 id="negative-email-case-is-the-same-person-no-merge"),
]


@pytest.mark.parametrize(("mode", "identities", "expected"), RULE8)
def test_rule8_a_customer_id_after_an_email_never_makes_two_profiles(
    mode: UserIdType, identities: list, expected: list
) -> None:
    assert _flow(MappingSettings(user_id_type=mode, merge_people=True), *identities) == expected


def test_rule8_events_follow_the_new_identifier_and_state_records_it() -> None:
    results, state = run_all([batch([custom("e")], customer_id=None, email="a@x.io"),
                              batch([custom("e")], customer_id="c1", email="a@x.io")])
    assert [(c.id_type, c.id_value) for c in of_kind(results[1], "track")] == [("id", "c1")]
    assert (state.id_type, state.id_value) == ("id", "c1")
    assert kinds(results[1]) == ["identify", "track"]  # identify before the events


# --- Rule 9: audiences -------------------------------------------------------------------
# Seed (Supported Features): "Audience Forwarding".  mParticle's Customer.io audience docs
# (../shared/reference/mparticle.md): SegmentMembership holds the audience ids as a
# comma-separated list of single-quoted ids; "Create One User Attribute per Segment" also
# sets `In <audience name>` to true/false.
RULE9 = [
    pytest.param(MappingSettings(), [[(11036, "Buyers", "add")], [(11034, "Fans", "add")]],
                 [{"SegmentMembership": "'11036'"}, {"SegmentMembership": "'11034','11036'"}],
                 id="ids-quoted-sorted"),
    pytest.param(MappingSettings(), [[(1, "A", "add"), (2, "B", "add")], [(1, "A", "delete")],
                                     [(2, "B", "delete")]],
                 [{"SegmentMembership": "'1','2'"}, {"SegmentMembership": "'2'"},
                  {"SegmentMembership": ""}], id="leaving-removes-the-id"),
    pytest.param(PER_SEGMENT, [[(1, "Buyers", "add")], [(1, "Buyers", "delete")]],
                 [{"SegmentMembership": "'1'", "In Buyers": True},
                  {"SegmentMembership": "", "In Buyers": False}], id="per-segment-flags"),
    pytest.param(MappingSettings(), [[(1, "Buyers", "add")], [(1, "Buyers", "add")]],
                 [{"SegmentMembership": "'1'"}, None], id="negative-replay-no-identify"),
    pytest.param(MappingSettings(), [[(1, "Buyers", "attribute_update")]],
                 [{"SegmentMembership": "'1'"}], id="attribute-update-keeps-membership"),
]


@pytest.mark.parametrize(("settings", "messages", "expected"), RULE9)
def test_rule9_audiences_as_person_attributes(
    settings: MappingSettings, messages: list, expected: list
) -> None:
    state = None
    for audiences, want in zip(messages, expected, strict=True):
        result = run_audience(audience_message(profile(audiences=audiences)), state, settings)
        state = result.state
        got = {k: v for k, v in identify_attributes(result).items() if k != "email"}
        assert (got or None) == want
        if want is None:
            assert result.commands == []
    if "In Buyers" not in str(expected):
        assert not any(name.startswith("In ") for name in state.sent)


def test_rule9_hashed_identities_cannot_address_a_person() -> None:
    message = audience_message(profile(audiences=[(1, "A", "add")], encoding="sha256"))
    result = run_audience(message)
    assert result.commands == [] and reasons(result) == ["no_identity"]
    assert result.state.audiences == {"1": "A"}  # kept for when the user is addressable
    known = run(batch([custom("e")])).state
    later = run_audience(message, known)
    assert identify_attributes(later) == {"SegmentMembership": "'1'"}


def test_rule9_a_batch_after_an_audience_change_sends_nothing_more() -> None:
    first = run_audience(audience_message(profile(audiences=[(7, "A", "add")])))
    after = run(batch([custom("e")]), first.state)
    assert kinds(after) == ["track"]


# --- Rule 10: deterministic event ids ----------------------------------------------------
# customerio.md: an event `id` is a ULID; "an event whose id was already received is
# ignored: this is how replays stay duplicate-free".
def _ids(*events: dict, **batch_fields: Any) -> list[str]:
    result = run(batch(list(events), **batch_fields))
    return [c.event_id for c in result.commands if c.event_id]


RULE10 = [
    pytest.param(_ids(custom("a", source_message_id="m1")),
                 _ids(custom("a", source_message_id="m1")), True, id="same-input-same-id"),
    pytest.param(_ids(custom("a", source_message_id="m1", event_id=1)),
                 _ids(custom("a", source_message_id="m1", event_id=2)), True,
                 id="source-message-id-first"),
    pytest.param(_ids(custom("a", source_message_id="m1")),
                 _ids(custom("a", source_message_id="m2")), False, id="negative-other-message"),
    pytest.param(_ids(custom("a", event_id=5)), _ids(custom("a", event_id=5)), True,
                 id="event-id-second"),
    pytest.param(_ids(custom("a", event_id=5)), _ids(custom("a", event_id=6)), False,
                 id="negative-other-event-id"),
    pytest.param(_ids(custom("a"), batch_id=9), _ids(custom("a"), batch_id=9), True,
                 id="batch-and-position-last"),
    pytest.param(_ids(custom("a"), batch_id=9), _ids(custom("a"), batch_id=10), False,
                 id="negative-other-batch"),
    pytest.param(_ids(custom("a"), custom("a"), batch_id=9)[1:],
                 _ids(custom("a"), batch_id=9), False, id="negative-other-position"),
]


@pytest.mark.parametrize(("first", "second", "same"), RULE10)
def test_rule10_event_ids_are_deterministic_ulids(
    first: list[str], second: list[str], same: bool
) -> None:
    assert len(first) == len(second) == 1
    assert (first == second) is same
    assert ulid_timestamp_ms(first[0]) == T0


# Event ids are Customer.io's dedup keys, persisted there: the same input must keep its id
# across versions of this code. These were computed by the first release of the mapping.
PINNED_IDS_BATCH = {
    "mpid": 42, "batch_id": 77, "user_identities": {"customer_id": "c1"},
    "events": [
        {"event_type": "custom_event", "data": {
            "event_name": "Buy", "timestamp_unixtime_ms": 1_700_000_000_123,
            "source_message_id": "m-1"}},
        {"event_type": "screen_view", "data": {
            "screen_name": "Home", "timestamp_unixtime_ms": 1_700_000_001_623,
            "event_id": 123456789}},
        {"event_type": "custom_event", "data": {
            "event_name": "Zoom", "timestamp_unixtime_ms": 1 << 20}},
        {"event_type": "custom_event", "data": {
            "event_name": "\u00dcn\u00ef", "timestamp_unixtime_ms": (1 << 48) - 1,
            "source_message_id": "\u00e9\u00ff"}},
    ],
}
PINNED_IDS = [
    "01HF7YAT3VADM6PN5FMSRGWH72",  # source_message_id
    "01HF7YAVJQ34GGMVF5VKKPCN0M",  # event_id
    "0000010000W27HHKXAVAH066P8",  # batch and position
    "7ZZZZZZZZZ14Q61KFTPR9NQW18",  # non-ASCII source_message_id, largest time
]


def test_rule10_event_ids_stay_what_they_were() -> None:
    result = run(PINNED_IDS_BATCH)
    assert [c.event_id for c in result.commands if c.event_id] == PINNED_IDS
    again = run(PINNED_IDS_BATCH, result.state)
    assert [c.event_id for c in again.commands if c.event_id] == PINNED_IDS


# --- Rule 11: typed commands and compact, versioned encodings ----------------------------
def _commands_of(*objs: dict, settings: MappingSettings = DEFAULT_ALL) -> list:
    results, _ = run_all(list(objs), None, settings)
    return [c for r in results for c in r.commands]


RULE11 = [
    pytest.param(_commands_of(batch([], attributes={"$FirstName": "Ada", "tags": ["a"]},
                                    os="IOS")), "identify", id="identify"),
    pytest.param(_commands_of(batch([custom("Buy", attrs={"n": 1, "deep": {"a": [1]}})])),
                 "track", id="track"),
    pytest.param(_commands_of(batch([screen("Home")])), "screen", id="screen"),
    pytest.param(_commands_of(batch([opt_out(True)])), "unsubscribe", id="unsubscribe"),
    pytest.param(_commands_of(batch([], customer_id="c1"),
                              batch([custom("e", T0 + 1)], customer_id="c2"),
                              settings=MappingSettings(merge_people=True)),
                 "merge", id="merge"),
]


@pytest.mark.parametrize(("commands", "kind"), RULE11)
def test_rule11_typed_commands_round_trip_through_their_encoding(commands: list, kind: str):
    (command,) = [c for c in commands if c.kind.value == kind]
    assert decode_command(encode_command(command)) == command
    assert command.mpid == "42" and command.id_type in ("id", "email") and command.id_value
    assert isinstance(command.timestamp, int)
    assert (command.event_id is not None) == (kind in ("track", "screen"))
    assert (command.secondary is not None) == (kind == "merge")


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda data: data[:-1], id="truncated"),
        pytest.param(lambda data: b"\x92" + data[1:], id="wrong-length"),
        pytest.param(lambda data: b"\x9a\x02" + data[2:], id="unknown-version"),
    ],
)
def test_rule11_negative_damaged_bytes_are_refused_not_misread(corrupt: Any) -> None:
    results, state = run_all([batch([custom("e")], email="a@x.io", os="IOS")])
    command = results[0].commands[-1]
    with pytest.raises(CommandDecodeError):
        decode_command(corrupt(encode_command(command)))
    with pytest.raises(StateDecodeError):
        decode_state(corrupt(encode_state(state)))


def test_rule11_the_state_is_compact_and_round_trips() -> None:
    settings = MappingSettings(send_created_at=True, audience_attribute_per_segment=True)
    objs = [batch([custom("e")], email="a@x.io", os="IOS",
                  attributes={f"attribute{i}": f"value{i}" for i in range(12)}),
            batch([custom("e")], email="a@x.io", os="Android")]
    _, state = run_all(objs, None, settings)
    state = run_audience(audience_message(profile(audiences=[(11036, "Buyers", "add")])),
                         state, settings).state
    encoded = encode_state(state)
    assert decode_state(encoded) == state
    assert len(state.sent) == 16  # email, 12 attributes, created_at, 2 audience attributes...
    assert len(encoded) < 500  # ... about 25 bytes each, all the rest under 100
