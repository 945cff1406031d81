"""Issue 17, items 1-2: push registrations become Customer.io devices (CIO_FORWARD_DEVICES).

Pure mapping tests, one per rule of ``cioproc.mapping.push``. Inputs are built with
mParticle's Python SDK (``PushRegistrationEvent``, ``DeviceInformation``) where it can
express them; it has no uninstall event class, so those are written as the schema spells
them (``{"event_type": "uninstall", "data": {...}}``).
"""

from __future__ import annotations

from typing import Any

import mparticle
import msgpack
import orjson
import pytest
from mapping_builders import T0, batch, custom, event, reasons, run, run_all
from mparticle import ApiClient

from cioproc.mapping.push import MAX_PUSH_TOKENS, REFRESH_MS
from cioproc.models.commands import Command, CommandKind, decode_command, encode_command
from cioproc.models.settings import MappingSettings, UserIdType
from cioproc.models.state import UserState, decode_state, encode_state

DEVICES = MappingSettings(forward_devices=True)
IDFV = "8d5c2f4e-1b2a-4c3d-9e8f-0a1b2c3d4e5f"
IDFV_2 = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
ADD, DELETE = CommandKind.ADD_DEVICE, CommandKind.DELETE_DEVICE


def sdk_batch(events: list[Any], *, platform: str = "iOS", push_token: str | None = None,
              idfv: str | None = IDFV, customerid: str | None = "c1", email: str | None = None) -> dict[str, Any]:
    """A batch as mParticle's Python SDK serialises it."""
    identities = mparticle.UserIdentities()
    identities.customerid = customerid
    identities.email = email
    built = mparticle.Batch(environment="production", mpid=42, user_identities=identities)
    built.events = [e for e in events if not isinstance(e, dict)]
    uuid_field = "ios_idfv" if platform == "iOS" else "android_uuid"
    built.device_info = mparticle.DeviceInformation(platform=platform, push_token=push_token,
                                                    **({uuid_field: idfv} if idfv else {}))
    obj = ApiClient.sanitize_for_serialization(built)
    # the SDK has no uninstall event class: those are written as the schema spells them
    sdk_events = iter(obj.get("events") or [])
    obj["events"] = [e if isinstance(e, dict) else next(sdk_events) for e in events]
    return obj


def registration(token: str, register: bool = True, ts: int = T0) -> mparticle.PushRegistrationEvent:
    return mparticle.PushRegistrationEvent(register=register, registration_token=token, timestamp_unixtime_ms=ts)


def uninstall(ts: int = T0) -> dict[str, Any]:
    return event("uninstall", ts)


def devices(result) -> list[tuple[str, str | None, Any, int]]:
    """(kind, token, platform, last_used) of the device commands, in order."""
    return [
        (c.kind.value, c.name, c.attributes.get("platform"), c.timestamp)
        for c in result.commands if c.kind in (ADD, DELETE)
    ]


def test_registration_adds_the_token_with_platform_and_event_time():
    result = run(sdk_batch([registration("apns-1", ts=T0 + 5_000)]), settings=DEVICES)
    assert devices(result) == [("add_device", "apns-1", "ios", (T0 + 5_000) // 1000)]
    add = result.commands[-1]
    assert (add.id_type, add.id_value, add.mpid) == ("id", "c1", "42")
    assert result.commands[0].kind is CommandKind.IDENTIFY  # the person exists before its device


def test_android_platform_from_device_info():
    result = run(sdk_batch([registration("fcm-1")], platform="Android"), settings=DEVICES)
    assert devices(result) == [("add_device", "fcm-1", "android", T0 // 1000)]


def test_off_by_default_nothing_about_devices_is_sent_or_kept():
    obj = sdk_batch([registration("apns-1")], push_token="apns-1")
    result = run(obj)
    assert devices(result) == [] and result.state.push_tokens == []
    assert run(obj, settings=DEVICES).state.push_tokens != []


def test_unregistration_deletes_the_device():
    results, state = run_all(
        [sdk_batch([registration("apns-1")]), sdk_batch([registration("apns-1", False, T0 + 1_000)])],
        settings=DEVICES,
    )
    assert devices(results[1]) == [("delete_device", "apns-1", None, (T0 + 1_000) // 1000)]
    assert [e[4] for e in state.push_tokens] == [False]


def test_uninstall_deletes_the_batch_push_token():
    results, _ = run_all(
        [sdk_batch([registration("apns-1")]), sdk_batch([uninstall(T0 + 1_000)], push_token="apns-1")],
        settings=DEVICES,
    )
    assert devices(results[1]) == [("delete_device", "apns-1", None, (T0 + 1_000) // 1000)]


def test_uninstall_without_push_token_deletes_the_tokens_of_that_device_only():
    results, _ = run_all(
        [
            sdk_batch([registration("apns-1")]),
            sdk_batch([registration("apns-other", ts=T0 + 10)], idfv=IDFV_2),
            sdk_batch([uninstall(T0 + 1_000)]),
        ],
        settings=DEVICES,
    )
    assert devices(results[2]) == [("delete_device", "apns-1", None, (T0 + 1_000) // 1000)]


def test_uninstall_with_no_token_to_name_is_a_counted_drop():
    result = run(sdk_batch([uninstall()], idfv=None), settings=DEVICES)
    assert devices(result) == [] and "unknown_push_token" in reasons(result)


def test_device_info_push_token_counts_as_a_registration():
    result = run(sdk_batch([custom("Open", T0 + 2_000)], push_token="apns-1"), settings=DEVICES)
    assert devices(result) == [("add_device", "apns-1", "ios", (T0 + 2_000) // 1000)]


def test_device_info_push_token_does_not_override_an_event_that_says_otherwise():
    unregistered = run(sdk_batch([registration("apns-1", False)], push_token="apns-1"), settings=DEVICES)
    assert devices(unregistered) == []  # never added, and not added by device_info either
    uninstalled = run(sdk_batch([uninstall()], push_token="apns-1"), settings=DEVICES)
    assert devices(uninstalled) == []


def test_a_token_is_sent_once():
    first = sdk_batch([registration("apns-1"), custom("Open", T0 + 1)], push_token="apns-1")
    later = sdk_batch([custom("Open", T0 + 60_000)], push_token="apns-1")
    results, _ = run_all([first, later, later], settings=DEVICES)
    assert [len(devices(r)) for r in results] == [1, 0, 0]


def test_a_live_token_is_re_added_once_a_day_of_newer_input_to_keep_last_used():
    later = T0 + REFRESH_MS
    results, _ = run_all(
        [sdk_batch([custom("Open", T0)], push_token="apns-1"),
         sdk_batch([custom("Open", later - 1)], push_token="apns-1"),
         sdk_batch([custom("Open", later)], push_token="apns-1")],
        settings=DEVICES,
    )
    assert [devices(r) for r in results[1:]] == [[], [("add_device", "apns-1", "ios", later // 1000)]]


def test_a_changed_token_of_the_same_device_replaces_the_old_one():
    results, state = run_all(
        [sdk_batch([custom("Open", T0)], push_token="apns-1"),
         sdk_batch([custom("Open", T0 + 1_000)], push_token="apns-2")],
        settings=DEVICES,
    )
    assert devices(results[1]) == [
        ("add_device", "apns-2", "ios", (T0 + 1_000) // 1000),
        ("delete_device", "apns-1", None, (T0 + 1_000) // 1000),
    ]
    assert sorted((e[0], e[4]) for e in state.push_tokens) == [("apns-1", False), ("apns-2", True)]


def test_tokens_of_two_devices_are_both_kept():
    results, _ = run_all(
        [sdk_batch([custom("Open", T0)], push_token="apns-1"),
         sdk_batch([custom("Open", T0 + 1_000)], push_token="apns-2", idfv=IDFV_2)],
        settings=DEVICES,
    )
    assert devices(results[1]) == [("add_device", "apns-2", "ios", (T0 + 1_000) // 1000)]


def test_a_replay_adds_nothing_twice_and_brings_back_no_replaced_token():
    stream = [
        sdk_batch([registration("apns-1", ts=T0)]),
        sdk_batch([custom("Open", T0 + 1_000)], push_token="apns-2"),  # replaces apns-1
        sdk_batch([registration("apns-3", ts=T0 + 2_000)], idfv=IDFV_2),
        sdk_batch([registration("apns-3", False, T0 + 3_000)], idfv=IDFV_2),
    ]
    first, state = run_all(stream, settings=DEVICES)
    assert sum(len(devices(r)) for r in first) == 5
    replayed, replayed_state = run_all(stream, state, settings=DEVICES)
    assert [devices(r) for r in replayed] == [[], [], [], []]
    assert replayed_state.push_tokens == state.push_tokens
    assert "stale_push_registration" in reasons(replayed[0])  # counted, not silent


def test_an_unregistration_arriving_before_an_older_registration_wins():
    results, state = run_all(
        [sdk_batch([registration("apns-1", False, T0 + 5_000)]), sdk_batch([registration("apns-1", ts=T0)])],
        settings=DEVICES,
    )
    assert [devices(r) for r in results] == [[], []]
    assert "stale_push_registration" in reasons(results[1])


def test_an_older_unregistration_does_not_delete_a_newer_registration():
    results, _ = run_all(
        [sdk_batch([registration("apns-1", ts=T0 + 5_000)]), sdk_batch([registration("apns-1", False, T0)])],
        settings=DEVICES,
    )
    assert devices(results[1]) == [] and "stale_push_registration" in reasons(results[1])


def test_the_state_is_bounded_and_forgetting_a_live_token_is_a_counted_drop():
    stream = [sdk_batch([registration(f"tok-{n}", ts=T0 + n)], idfv=None) for n in range(MAX_PUSH_TOKENS + 1)]
    results, state = run_all(stream, settings=DEVICES)
    assert len(state.push_tokens) == MAX_PUSH_TOKENS
    assert [e[0] for e in state.push_tokens] == [f"tok-{n}" for n in range(1, MAX_PUSH_TOKENS + 1)]
    assert "push_token_forgotten" in reasons(results[-1])
    assert all("push_token_forgotten" not in reasons(r) for r in results[:-1])


def test_deleted_tokens_are_forgotten_before_live_ones_and_silently():
    stream = [sdk_batch([registration("gone", ts=T0), registration("gone", False, T0 + 1)], idfv=None)]
    stream += [sdk_batch([registration(f"tok-{n}", ts=T0 + 10 + n)], idfv=None) for n in range(MAX_PUSH_TOKENS)]
    results, state = run_all(stream, settings=DEVICES)
    assert "gone" not in [e[0] for e in state.push_tokens] and len(state.push_tokens) == MAX_PUSH_TOKENS
    assert all("push_token_forgotten" not in reasons(r) for r in results)


def test_malformed_registrations_and_web_tokens_are_drops():
    bad = run(batch([event("push_registration", T0, register="yes", registration_token="t"),
                     event("push_registration", T0, register=True, registration_token="  ")],
                    customer_id="c1", platform="iOS"), settings=DEVICES)
    assert devices(bad) == [] and reasons(bad).count("invalid_event") == 2
    web = run(batch([event("push_registration", T0, register=True, registration_token="w1")],
                    customer_id="c1", platform="web"), settings=DEVICES)
    assert devices(web) == [] and "unsupported_push_platform" in reasons(web)


def test_users_that_cannot_be_addressed_keep_no_tokens_and_count_the_registration():
    result = run(sdk_batch([registration("apns-1")], customerid=None), settings=DEVICES)
    assert devices(result) == [] and result.state.push_tokens == []
    (drop,) = [d for d in result.drops if d.reason == "no_identity"]
    assert "1 events" in drop.detail


def test_identifier_change_moves_the_live_tokens_to_the_new_identifier():
    by_email = MappingSettings(user_id_type=UserIdType.EMAIL, forward_devices=True)
    results, _ = run_all(
        [sdk_batch([registration("apns-1")], customerid=None, email="a@example.com"),
         sdk_batch([custom("Open", T0 + 1_000)], customerid=None, email="b@example.com")],
        settings=by_email,
    )
    (add,) = [c for c in results[1].commands if c.kind is ADD]
    assert (add.id_type, add.id_value, add.name) == ("email", "b@example.com", "apns-1")


def test_device_commands_follow_the_events_of_their_batch():
    result = run(sdk_batch([custom("Open", T0), registration("apns-1", ts=T0 + 1)]), settings=DEVICES)
    assert [c.kind.value for c in result.commands] == ["identify", "track", "add_device"]


def test_device_commands_round_trip_and_older_command_records_still_decode():
    add = Command(ADD, "42", "id", "c1", 1_700_000_000, {"platform": "ios"}, "apns-1")
    delete = Command(DELETE, "42", "email", "a@example.com", 1_700_000_000, {}, "apns-1")
    assert decode_command(encode_command(add)) == add and decode_command(encode_command(delete)) == delete
    # a track record exactly as the release before device kinds wrote it
    old = msgpack.packb(
        [1, "track", "42", "id", "c1", 1_700_000_000, {"a": 1}, "Buy", "01ARZ3NDEKTSV4RRFFQ69G5FAV", None]
    )
    assert decode_command(old) == Command(CommandKind.TRACK, "42", "id", "c1", 1_700_000_000, {"a": 1}, "Buy",
                                          "01ARZ3NDEKTSV4RRFFQ69G5FAV")


def test_states_with_tokens_round_trip_and_states_of_the_current_release_decode():
    result = run(sdk_batch([registration("apns-1")]), settings=DEVICES)
    assert decode_state(encode_state(result.state)) == result.state
    # the current release's 18-field state (identity times set) and 13-field one
    eighteen = msgpack.packb([1, "c1", None, "id", "c1", {}, None, 0, {}, {}, False, 0, b"", T0, 0, {}, False, []],
                             use_bin_type=True)
    assert decode_state(eighteen).push_tokens == [] and decode_state(eighteen).customer_id_ms == T0
    thirteen = msgpack.packb([1, "c1", None, "id", "c1", {}, None, 0, {}, {}, False, 0, b""], use_bin_type=True)
    assert decode_state(thirteen) == UserState(customer_id="c1", id_type="id", id_value="c1")
    # a state without tokens is written as before (18 or 13 fields)
    assert encode_state(decode_state(eighteen)) == eighteen and encode_state(decode_state(thirteen)) == thirteen


@pytest.mark.parametrize("entry", [["t", "ios", 0, T0], ["t", "ios", 0, T0, 1], [1, "ios", 0, T0, True]])
def test_malformed_token_entries_are_refused(entry):
    from cioproc.models.state import StateDecodeError

    fields = [1, "c1", None, "id", "c1", {}, None, 0, {}, {}, False, 0, b"", 0, 0, {}, False, [], [entry]]
    with pytest.raises(StateDecodeError):
        decode_state(msgpack.packb(fields, use_bin_type=True))


def test_sample_batch_shape_with_outbound_identities_forwards_its_push_token():
    obj = batch([custom("Open", T0)], customer_id="c9", outbound=True,
                device_info={"platform": "Android", "push_token": "fcm-9", "android_uuid": "u-9"})
    result = run(orjson.loads(orjson.dumps(obj)), settings=DEVICES)
    assert devices(result) == [("add_device", "fcm-9", "android", T0 // 1000)]
