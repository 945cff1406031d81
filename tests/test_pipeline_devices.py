"""Issue 17, items 1-3 end to end through the real broker and the sandbox: with
CIO_FORWARD_DEVICES=true, push tokens become devices (added, replaced, deleted), the
sandbox ends as the pure mapping predicts, and a replay of the stream adds nothing twice."""

from __future__ import annotations

import orjson
import pytest
from pipeline_harness import EXPECTED_KINDS, NOW_MS, drained, expected_workspace

from cioproc.generate.synthetic import generate
from cioproc.models.settings import MappingSettings

pytestmark = pytest.mark.kafka

DEVICES = MappingSettings(forward_devices=True)
IDFV = "8d5c2f4e-1b2a-4c3d-9e8f-0a1b2c3d4e5f"


def _batch(
    mpid: int, customer_id: str, n: int, t: int, events: list[dict], **device_info: str
) -> tuple[str, str, bytes]:
    opened = {"event_type": "custom_event", "data": {
        "event_name": "Open", "custom_event_type": "other", "timestamp_unixtime_ms": t,
        "source_message_id": f"dev-{mpid}-{n}"}}
    return ("batches", str(mpid), orjson.dumps({
        "mpid": mpid, "user_identities": {"customer_id": customer_id}, "events": [opened, *events],
        "device_info": device_info}))


def _registration(token: str, register: bool, t: int) -> dict:
    return {"event_type": "push_registration",
            "data": {"register": register, "registration_token": token, "timestamp_unixtime_ms": t}}


def device_stories(t0: int) -> list[tuple[str, str, bytes]]:
    """d-ios: registers apns-1, then its token changes to apns-2 (replaced);
    d-android: registers fcm-1, then unregisters it (deleted);
    d-gone: registers apns-9 (device_info.push_token), then the app is uninstalled (deleted);
    d-shared: registers fcm-shared, later registered by d-other on the same phone (a token
    belongs to one person: it moves)."""
    return [
        _batch(7001, "d-ios", 0, t0, [_registration("apns-1", True, t0 + 1)], platform="iOS", ios_idfv=IDFV),
        _batch(7002, "d-android", 0, t0, [_registration("fcm-1", True, t0 + 1)], platform="Android"),
        _batch(7003, "d-gone", 0, t0, [], platform="iOS", push_token="apns-9"),
        _batch(7004, "d-shared", 0, t0, [], platform="Android", push_token="fcm-shared"),
        _batch(7001, "d-ios", 1, t0 + 60_000, [], platform="iOS", ios_idfv=IDFV, push_token="apns-2"),
        _batch(7002, "d-android", 1, t0 + 60_000, [_registration("fcm-1", False, t0 + 60_001)], platform="Android"),
        _batch(
            7003,
            "d-gone",
            1,
            t0 + 60_000,
            [{"event_type": "uninstall", "data": {"timestamp_unixtime_ms": t0 + 60_001}}],
            platform="iOS",
            push_token="apns-9",
        ),
        _batch(7005, "d-other", 0, t0 + 120_000, [], platform="Android", push_token="fcm-shared"),
    ]


def _produce_taking_the_shared_token_last(pipeline, records: list, n_commands: int) -> None:
    """Produce all but the last record (d-other taking d-shared's token), let it be
    delivered, then that one: commands of different users are delivered in no set order
    (other partitions, concurrent requests), so the move is made to happen after the first
    registration, as it does on a phone that changes hands."""
    _, _, before = expected_workspace(records[:-1], settings=DEVICES)
    pipeline.produce(records[:-1])
    pipeline.wait_for(lambda: drained(pipeline, before), 120, f"{before} commands delivered")
    pipeline.produce(records[-1:])
    pipeline.wait_for(lambda: drained(pipeline, n_commands), 120, f"{n_commands} commands delivered")


def _devices(people: list[dict]) -> dict[str, list[str]]:
    return {p["id"]: [d["token"] for d in p.get("devices", [])] for p in people if p["id"] and p["id"].startswith("d-")}


def test_devices_added_replaced_deleted_and_a_replay_adds_nothing_twice(pipeline):  # noqa: F811
    generated = [
        (r.topic_role, r.key, orjson.dumps(r.value))
        for r in generate(users=80, events=800, seed=21, now_ms=NOW_MS, push_share=0.7)
        if r.topic_role == "batches"
    ]
    records = generated + device_stories(NOW_MS - 3_600_000)
    people, events, n_commands = expected_workspace(records, settings=DEVICES)

    adds, deletes = EXPECTED_KINDS["add_device"], EXPECTED_KINDS["delete_device"]
    assert adds > 20 and deletes >= 3  # the generated users register devices too
    _, _, n_replayed = expected_workspace(records + records, settings=DEVICES)
    assert EXPECTED_KINDS["add_device"] == adds and EXPECTED_KINDS["delete_device"] == deletes  # by prediction

    pipeline.start_sandbox()
    pipeline.start_worker(CIO_FORWARD_DEVICES="true")
    _produce_taking_the_shared_token_last(pipeline, records, n_commands)
    got = pipeline.people()
    assert got == people
    assert pipeline.events() == events
    assert _devices(got) == {
        "d-ios": ["apns-2"],  # apns-1 replaced by the device's new token
        "d-android": [],  # unregistered
        "d-gone": [],  # uninstalled
        "d-shared": [],  # its token moved to the person who registered it last
        "d-other": ["fcm-shared"],
    }
    assert sum(len(p.get("devices", [])) for p in got) > 10
    assert pipeline.metric("cioproc_commands_delivered_total", type="add_device") == adds
    assert pipeline.metric("cioproc_commands_delivered_total", type="delete_device") == deletes

    pipeline.produce(records)  # the replay
    pipeline.wait_for(lambda: pipeline.metric("cioproc_batches_in_total") == 2 * len(records)
                      and drained(pipeline, n_replayed), 120, "the replay processed and delivered")
    assert pipeline.people() == got
    assert pipeline.metric("cioproc_commands_out_total", type="add_device") == adds  # nothing added twice
    assert pipeline.metric("cioproc_commands_out_total", type="delete_device") == deletes
    assert pipeline.read("commands_dlq") == []


def test_devices_over_v1(pipeline):  # noqa: F811
    records = device_stories(NOW_MS - 3_600_000)
    people, _, n_commands = expected_workspace(records, settings=DEVICES)  # (v2: one request, in order)
    pipeline.start_sandbox()
    pipeline.start_worker(CIO_FORWARD_DEVICES="true", CIO_TRANSPORT="v1")
    _produce_taking_the_shared_token_last(pipeline, records, n_commands)
    got = pipeline.people()
    assert got == people
    assert _devices(got) == {
        "d-ios": ["apns-2"],
        "d-android": [],
        "d-gone": [],
        "d-shared": [],
        "d-other": ["fcm-shared"],
    }
    stats = pipeline.stats()["by_endpoint"]
    assert stats["v1_add_device"] >= 5 and stats["v1_delete_device"] == 3
