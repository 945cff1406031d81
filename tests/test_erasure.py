"""Data subject erasures, the pure parts: request parsing, the erase command and its steps,
result records, the processor's plan (tombstones, dropped commands, results, dead letters),
Track API bodies (checked against Customer.io's OpenAPI file), the sandbox's delete and
suppress rules, and the sender's handling of an erase in a chunk. No broker here:
tests/test_erasure_e2e.py runs the whole pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from helpers_openapi import component
from helpers_processor import PARTITIONS, Rec, partition_for

from cioproc.app.erasure_sender import erasure_positions, settle_erasures, superseded_positions
from cioproc.app.plan import plan_chunk
from cioproc.app.plan_records import PlanTopics
from cioproc.app.sender_agent import Sender
from cioproc.config import parse_config
from cioproc.mapping import map_batch, parse_batch
from cioproc.mapping.erasure import (
    INVALID_REQUEST,
    MISSING_MPID,
    SubjectRequest,
    erase_command,
    erase_result,
    erase_steps,
    erasure_identifiers,
    parse_subject_request,
    result_value,
)
from cioproc.mapping.results import Rejection
from cioproc.models.commands import (
    Command,
    CommandDecodeError,
    CommandKind,
    decode_command,
    decode_record,
    encode_command,
)
from cioproc.models.settings import MappingSettings
from cioproc.models.state import UserState, decode_state
from cioproc.sandbox.api import Counters, TrackApi
from cioproc.sandbox.faults import FaultInjector
from cioproc.sandbox.workspace import Workspace
from cioproc.sender import Outcome, SenderConfig
from cioproc.sender.payloads import PayloadError, encode_v1_request, to_v1_request, to_v2_entry

TOPICS = PlanTopics(
    batches="in.batches", audiences="in.audiences", commands="out.commands", dead_letters="out.dlq",
    erasures="in.dsr", erasure_results="out.dsr.results",
)
NOW_MS = 1_764_590_400_000  # 2025-12-01T12:00:00Z


def request(request_id: str = "r-1", kind: str = "erasure", identities: list | None = None, **extra: Any) -> bytes:
    doc: dict[str, Any] = {
        "subject_request_id": request_id,
        "subject_request_type": kind,
        "submitted_time": "2026-12-01T12:00:00Z",
        "subject_identities": identities if identities is not None else [
            {"identity_type": "email", "identity_value": "Ann@Example.com", "identity_format": "raw"},
            {"identity_type": "controller_customer_id", "identity_value": "c-42", "identity_format": "raw"},
        ],
    }
    doc.update(extra)
    return orjson.dumps(doc)


# ---- parsing ----------------------------------------------------------------------------------


def test_a_request_names_its_mpid_by_key_and_keeps_raw_email_and_customer_id_identities():
    identities = [
        {"identity_type": "email", "identity_value": "ann@example.com", "identity_format": "raw"},
        {"identity_type": "email", "identity_value": "0f3a...", "identity_format": "sha256"},  # hashed: unusable
        {"identity_type": "android_advertising_id", "identity_value": "aaid-1", "identity_format": "raw"},
        {"identity_type": "controller_customer_id", "identity_value": "c-42", "identity_format": "raw"},
    ]
    parsed = parse_subject_request(request(identities=identities), b"42")
    assert parsed == SubjectRequest("r-1", "erasure", "2026-12-01T12:00:00Z", "42",
                                    (("email", "ann@example.com"), ("id", "c-42")))
    assert parsed.is_erasure


@pytest.mark.parametrize(
    "value, key, reason",
    [
        (request(), None, MISSING_MPID),
        (request(), b"not-an-mpid", MISSING_MPID),
        (b"{not json", b"42", INVALID_REQUEST),
        (b"[1, 2]", b"42", INVALID_REQUEST),
        (request(request_id=""), b"42", INVALID_REQUEST),
        (request(request_id=7), b"42", INVALID_REQUEST),
        (request(kind=""), b"42", INVALID_REQUEST),
        (request(submitted_time="yesterday"), b"42", INVALID_REQUEST),
        (request(submitted_time=None), b"42", INVALID_REQUEST),
        (request(subject_identities={"email": "a@b.c"}), b"42", INVALID_REQUEST),
        (request(identities=["a@b.c"]), b"42", INVALID_REQUEST),
        (request(identities=[{"identity_type": "email", "identity_value": ""}]), b"42", INVALID_REQUEST),
    ],
)
def test_malformed_requests_are_rejected_with_a_reason(value, key, reason):
    parsed = parse_subject_request(value, key)
    assert type(parsed) is Rejection and parsed.reason == reason and parsed.detail


def test_other_request_types_parse_and_are_not_erasures():
    parsed = parse_subject_request(request(kind="Access"), b"42")
    assert isinstance(parsed, SubjectRequest) and parsed.request_type == "access" and not parsed.is_erasure


# ---- the erase command ------------------------------------------------------------------------


def test_identifiers_come_from_the_state_then_the_request_once_each_ids_first():
    state = UserState(customer_id="c-42", email="ann@example.com", id_type="id", id_value="c-42")
    parsed = parse_subject_request(request(identities=[
        {"identity_type": "email", "identity_value": "ANN@example.com", "identity_format": "raw"},  # same email
        {"identity_type": "email", "identity_value": "old@example.com", "identity_format": "raw"},
        {"identity_type": "controller_customer_id", "identity_value": "c-7", "identity_format": "raw"},
    ]), b"42")
    assert erasure_identifiers(parsed, state) == [
        ("id", "c-42"), ("id", "c-7"), ("email", "ann@example.com"), ("email", "old@example.com")
    ]
    assert erasure_identifiers(parsed, None) == [
        ("id", "c-7"), ("email", "ANN@example.com"), ("email", "old@example.com")
    ]


def test_the_erase_command_round_trips_and_expands_into_one_step_per_identifier():
    parsed = parse_subject_request(request(), b"42")
    state = UserState(customer_id="c-42", email="ann@example.com", id_type="id", id_value="c-42")
    command = erase_command(parsed, state, "suppress")
    assert decode_command(encode_command(command)) == command
    assert command.kind is CommandKind.ERASE and command.event_id == "r-1" and command.name == "suppress"
    assert erase_steps(command) == [
        Command(CommandKind.SUPPRESS, "42", "id", "c-42", 0),
        Command(CommandKind.SUPPRESS, "42", "email", "ann@example.com", 0),
    ]
    assert [s.kind for s in erase_steps(erase_command(parsed, state, "delete"))] == [CommandKind.DELETE] * 2
    with pytest.raises(ValueError):
        erase_command(parsed, state, "forget")


def test_an_erasure_with_no_identifier_has_no_steps():
    parsed = parse_subject_request(request(identities=[]), b"42")
    assert erase_steps(erase_command(parsed, None, "delete")) == []


@pytest.mark.parametrize(
    "command",
    [
        Command(CommandKind.TRACK, "42", "id", "c", 0, {}, "x"),
        Command(CommandKind.ERASE, "42", "id", "c", 0, {"identifiers": [["id", "c"]]}, "wipe", "r-1"),
        Command(CommandKind.ERASE, "42", "id", "c", 0, {"identifiers": [["id", "c"]]}, "delete", None),
        Command(CommandKind.ERASE, "42", "id", "c", 0, {}, "delete", "r-1"),
        Command(CommandKind.ERASE, "42", "id", "c", 0, {"identifiers": [["phone", "c"]]}, "delete", "r-1"),
        Command(CommandKind.ERASE, "42", "id", "c", 0, {"identifiers": [["id", ""]]}, "delete", "r-1"),
    ],
)
def test_malformed_erase_commands_have_no_steps(command):
    with pytest.raises(CommandDecodeError):
        erase_steps(command)


def test_results_carry_id_status_time_and_reason_but_no_identities():
    assert orjson.loads(result_value("r-1", "access", "not_supported", NOW_MS, "only erasure")) == {
        "subject_request_id": "r-1", "subject_request_type": "access", "status": "not_supported",
        "time": "2025-12-01T12:00:00.000Z", "reason": "only erasure",
    }
    command = erase_command(parse_subject_request(request(), b"42"), None, "delete")
    assert orjson.loads(erase_result(command, [], NOW_MS))["status"] == "completed"
    failed = orjson.loads(erase_result(command, ["rejected (HTTP 400)"], NOW_MS))
    assert failed["status"] == "failed" and failed["reason"] == "rejected (HTTP 400)"
    assert b"c-42" not in erase_result(command, [], NOW_MS) and b"xample" not in erase_result(command, [], NOW_MS)


# ---- the processor's plan ---------------------------------------------------------------------




def batch_value(mpid: int, message_id: str = "m1") -> bytes:
    return orjson.dumps({
        "mpid": mpid,
        "user_identities": {"customer_id": f"c-{mpid}", "email": f"u{mpid}@example.com"},
        "user_attributes": {"plan": "gold"},
        "events": [{"event_type": "custom_event",
                    "data": {"event_name": "Played", "timestamp_unixtime_ms": 1_700_000_001_000,
                             "source_message_id": message_id}}],
    })


def rec(topic: str, mpid: int, value: bytes | None, offset: int = 0, key: bytes | None | str = "mpid") -> Rec:
    k = str(mpid).encode()
    return Rec(topic, partition_for(topic, k), offset, k if key == "mpid" else key, value)


def run(records: list[Rec], store: dict | None = None, settings: MappingSettings | None = None):
    settings = settings if settings is not None else MappingSettings()
    store = {} if store is None else store
    plan = plan_chunk(records, TOPICS, settings, lambda p, k: store.get((p, k)), partition_for, now_ms=NOW_MS)
    for slot, value in plan.states.items():
        if value is None:
            store.pop(slot, None)
        else:
            store[slot] = value
    return plan


def test_an_erasure_tombstones_the_state_and_sends_one_erase_by_the_known_identifiers():
    store: dict = {}
    run([rec(TOPICS.batches, 42, batch_value(42))], store)
    slot = (partition_for("", b"42"), b"42")
    assert decode_state(store[slot]).customer_id == "c-42"
    plan = run([rec(TOPICS.erasures, 42, request(identities=[]))], store, MappingSettings(erasure_action="suppress"))
    assert plan.states == {slot: None} and slot not in store
    (command,) = [decode_command(out.value) for out in plan.commands]
    assert plan.commands[0].key == b"42" and plan.commands[0].topic == TOPICS.commands
    assert command.kind is CommandKind.ERASE and command.name == "suppress" and command.event_id == "r-1"
    assert command.attributes["identifiers"] == [["id", "c-42"], ["email", "u42@example.com"]]
    assert plan.counts.commands["erase"] == 1 and not plan.results and not plan.dead_letters


def test_an_erasure_drops_every_command_its_chunk_planned_for_the_user_and_a_later_chunk_starts_a_new_person():
    store: dict = {}
    records = [
        rec(TOPICS.batches, 42, batch_value(42, "m1"), 0),
        rec(TOPICS.batches, 7, batch_value(7, "m1"), 1),
        rec(TOPICS.erasures, 42, request(identities=[]), 0),
        rec(TOPICS.batches, 42, batch_value(42, "m2"), 2),  # same fetch: Kafka orders nothing across topics
    ]
    plan = run(records, store)
    mpid7 = map_batch(parse_batch(batch_value(7, "m1"), 1_700_000_000_000), None, MappingSettings())
    first = map_batch(parse_batch(batch_value(42, "m1"), 1_700_000_000_000), None, MappingSettings())
    second = map_batch(parse_batch(batch_value(42, "m2"), 1_700_000_000_000), first.state, MappingSettings())
    kinds = [(out.key, c.kind.value) for out in plan.commands for c in decode_record(out.value, out.headers)]
    assert kinds == [(b"7", c.kind.value) for c in mpid7.commands] + [(b"42", "erase")]
    assert plan.counts.drops["erased_before_sending"] == len(first.commands) + len(second.commands)
    erase = decode_command(plan.commands[-1].value)
    assert erase.attributes["identifiers"] == [["id", "c-42"], ["email", "u42@example.com"]]  # known in-chunk
    slot = (partition_for("", b"42"), b"42")
    assert plan.states[slot] is None and slot not in store
    later = run([rec(TOPICS.batches, 42, batch_value(42, "m3"), 3)], store)
    fresh = map_batch(parse_batch(batch_value(42, "m3"), 1_700_000_000_000), None, MappingSettings())
    assert [c for out in later.commands for c in decode_record(out.value, out.headers)] == fresh.commands  # new person
    assert decode_state(store[slot]) == fresh.state


def test_an_erasure_of_an_unknown_or_unreadable_user_still_writes_a_tombstone():
    slot = (partition_for("", b"42"), b"42")
    for store in ({}, {slot: b"\xc1 not a state"}):
        plan = run([rec(TOPICS.erasures, 42, request())], store)
        assert plan.states == {slot: None}
        (command,) = [decode_command(out.value) for out in plan.commands]
        assert command.attributes["identifiers"] == [["id", "c-42"], ["email", "Ann@Example.com"]]


def test_other_request_types_get_a_not_supported_result_and_change_nothing():
    store: dict = {}
    run([rec(TOPICS.batches, 42, batch_value(42))], store)
    before = dict(store)
    plan = run([rec(TOPICS.erasures, 42, request(request_id="r-9", kind="access"))], store)
    assert store == before and not plan.commands and not plan.states
    (result,) = plan.results
    assert result.topic == TOPICS.erasure_results and result.key == b"42"
    body = orjson.loads(result.value)
    assert body["status"] == "not_supported" and body["subject_request_id"] == "r-9" and "access" in body["reason"]
    assert plan.counts.drops["subject_request_not_supported"] == 1


def test_malformed_requests_go_to_the_batches_dlq_with_a_reason_and_requests_are_forwarded_to_their_partition():
    plan = run([
        rec(TOPICS.erasures, 42, b"{bad", 0),
        rec(TOPICS.erasures, 42, request(), 1, key=None),
        rec(TOPICS.erasures, 42, None, 2),
    ])
    assert [dict(d.headers)["cioproc.reason"] for d in plan.dead_letters] == [
        INVALID_REQUEST.encode(), MISSING_MPID.encode(), b"empty_record"
    ]
    assert all(d.topic == TOPICS.dead_letters for d in plan.dead_letters) and not plan.commands
    key = b"42"
    wrong = (partition_for("", key) + 1) % PARTITIONS
    plan = run([Rec(TOPICS.erasures, wrong, 0, b"0042", request())])  # an MPID key, spelt another way
    assert plan.forwards and plan.forwards[0].key == key and plan.forwards[0].partition == partition_for("", key)
    assert not plan.commands and not plan.states


def test_the_erasure_action_setting():
    assert parse_config({"CIO_ERASURE_ACTION": "Suppress"}).mapping.erasure_action == "suppress"
    assert parse_config({}).mapping.erasure_action == "delete"
    from cioproc.config import ConfigError

    with pytest.raises(ConfigError, match="CIO_ERASURE_ACTION='forget' must be delete or suppress"):
        parse_config({"CIO_ERASURE_ACTION": "forget"})


# ---- Track API bodies -------------------------------------------------------------------------


def test_delete_and_suppress_bodies_match_the_openapi_file(openapi):
    delete = Command(CommandKind.DELETE, "42", "email", "ann@example.com", 0)
    suppress = Command(CommandKind.SUPPRESS, "42", "id", "c/42", 0)
    assert to_v2_entry(delete) == {"type": "person", "identifiers": {"email": "ann@example.com"}, "action": "delete"}
    component(openapi, "person_delete").validate(to_v2_entry(delete))
    component(openapi, "person_suppress").validate(to_v2_entry(suppress))
    assert to_v2_entry(suppress)["action"] == "suppress"
    assert encode_v1_request(delete) == ("DELETE", "/api/v1/customers/ann%40example.com", b"")
    assert encode_v1_request(suppress) == ("POST", "/api/v1/customers/c%2F42/suppress", b"")
    assert "delete" in openapi["paths"]["/api/v1/customers/{identifier}"]
    assert "requestBody" not in openapi["paths"]["/api/v1/customers/{identifier}"]["delete"]
    assert "requestBody" not in openapi["paths"]["/api/v1/customers/{identifier}/suppress"]["post"]
    erase = erase_command(parse_subject_request(request(), b"42"), None, "delete")
    for encode in (to_v2_entry, to_v1_request):
        with pytest.raises(PayloadError, match="erase"):
            encode(erase)


# ---- the sandbox ------------------------------------------------------------------------------


def api() -> TrackApi:
    return TrackApi(Workspace(clock=lambda: 0), FaultInjector(), Counters())


def entry(action: str, identifiers: dict, **more: Any) -> dict:
    return {"type": "person", "identifiers": identifiers, "action": action, **more}


def batch_body(*entries: dict) -> bytes:
    return orjson.dumps({"batch": list(entries)})


def test_sandbox_delete_removes_the_person_and_their_events_and_the_id_can_come_back():
    sandbox = api()
    sandbox.v2_batch(batch_body(
        entry("identify", {"id": "c-42"}, attributes={"email": "ann@example.com", "plan": "gold"}),
        entry("event", {"id": "c-42"}, name="Played"),
        entry("identify", {"id": "c-7"}, attributes={"plan": "free"}),
    ))
    assert sandbox.v2_batch(batch_body(entry("delete", {"email": "ANN@example.com"}))).status == 200
    ws = sandbox.workspace
    assert [p["id"] for p in ws.people_view()] == ["c-7"] and ws.events_view() == []
    assert sandbox.v1_delete("nobody").status == 200  # an unknown person: no error, nothing happens
    sandbox.v1_identify("c-42", orjson.dumps({"plan": "new"}))
    assert {p["id"]: p["attributes"] for p in ws.people_view()}["c-42"] == {"plan": "new"}  # a new person
    assert sandbox.v1_delete("c-42").status == 200 and [p["id"] for p in ws.people_view()] == ["c-7"]


def test_sandbox_suppress_deletes_and_blocks_every_identifier_of_the_person():
    sandbox = api()
    sandbox.v1_identify("c-42", orjson.dumps({"email": "ann@example.com", "plan": "gold"}))
    sandbox.v1_identify("c-7", orjson.dumps({"plan": "free"}))
    assert sandbox.v1_suppress("c-42").status == 200
    ws = sandbox.workspace
    assert [p["id"] for p in ws.people_view()] == ["c-7"]
    assert ws.suppressions_view() == [{"email": "ann@example.com"}, {"id": "c-42"}]
    # Later calls naming a suppressed identifier are accepted and ignored.
    for reply in (
        sandbox.v1_identify("c-42", orjson.dumps({"plan": "again"})),
        sandbox.v1_identify("Ann@Example.com", orjson.dumps({})),
        sandbox.v1_identify("c-9", orjson.dumps({"email": "ann@example.com"})),
        sandbox.v1_event("c-42", orjson.dumps({"name": "Played"})),
        sandbox.v2_batch(batch_body(entry("identify", {"email": "ann@example.com"}))),
        sandbox.v1_merge(orjson.dumps({"primary": {"id": "c-7"}, "secondary": {"id": "c-42"}})),
    ):
        assert reply.status == 200
    assert [p["id"] for p in ws.people_view()] == ["c-7"] and ws.events_view() == []
    assert [a["type"] for a in ws.activity].count("suppressed") == 6
    # v2 suppress by an identifier of no one still blocks it.
    sandbox.v2_batch(batch_body(entry("suppress", {"email": "gone@example.com"})))
    sandbox.v1_identify("gone@example.com", orjson.dumps({}))
    assert [p["id"] for p in ws.people_view()] == ["c-7"]


def test_sandbox_refuses_malformed_deletes():
    sandbox = api()
    reply = sandbox.v2_batch(batch_body(entry("delete", {"id": ""}), entry("suppress", {"phone": "+1"})))
    assert reply.status == 207 and [e["batch_index"] for e in reply.body["errors"]] == [0, 1]
    assert sandbox.v1_delete("no@").status == 200  # an email-shaped path: a valid identifier


# ---- the sender -------------------------------------------------------------------------------


@dataclass
class Msg:
    key: bytes | None
    value: bytes | None
    topic: str = "out.commands"
    partition: int = 0
    offset: int = 0
    headers: list[tuple[str, bytes]] | None = None  # single-command records, as before the format header


def identify(mpid: str, n: int) -> Msg:
    command = Command(CommandKind.IDENTIFY, mpid, "id", f"c-{mpid}", n, {"n": n})
    return Msg(mpid.encode(), encode_command(command), offset=n)


def erase(mpid: str, request_id: str, identifiers: list, n: int) -> Msg:
    command = Command(CommandKind.ERASE, mpid, "id", "x", 0, {"identifiers": identifiers, "request_type": "erasure"},
                      "delete", request_id)
    return Msg(mpid.encode(), encode_command(command), offset=n)


def sender(transport: str) -> Sender:
    return Sender(None, SenderConfig(site_id="s", api_key="k", transport=transport), "dlq", "results")


def test_superseded_positions_are_earlier_records_of_an_erased_key_but_never_erases():
    keys = [b"1", b"2", b"1", b"1", b"2", b"1"]
    assert superseded_positions(keys, [3]) == {0, 2}
    assert superseded_positions(keys, [2, 5]) == {0, 3}
    assert superseded_positions([None, b"1"], [1]) == set()


@pytest.mark.parametrize("transport", ["v2", "v1"])
def test_the_sender_drops_earlier_commands_of_an_erased_mpid_and_sends_the_steps_in_place(transport):
    records = [
        identify("1", 0), identify("2", 1), identify("1", 2),
        erase("1", "r-1", [["id", "c-1"], ["email", "a@x.io"]], 3),
        identify("1", 4), identify("2", 5),
    ]
    assert list(erasure_positions(records)) == [3]
    chunk = sender(transport).prepare(records)
    assert chunk.kinds == ["identify", "delete", "delete", "identify", "identify"]
    assert [m.offset for m in chunk.sources] == [1, 3, 3, 4, 5]
    if transport == "v2":
        actions = [orjson.loads(e).get("action") for e in chunk.entries]
        assert actions == ["identify", "delete", "delete", "identify", "identify"]
        assert orjson.loads(chunk.entries[2])["identifiers"] == {"email": "a@x.io"}
    else:
        assert [c.kind.value for c in chunk.commands] == chunk.kinds
    assert len(chunk.erasures) == 1 and chunk.erasures[0].steps == [1, 2] and not chunk.dead
    assert chunk.records == records  # every record, the superseded ones too, is acked with the chunk


def test_a_chunk_without_erasures_is_prepared_as_before():
    records = [identify("1", 0), identify("2", 1)]
    assert erasure_positions(records) == {}
    assert sender("v2").prepare(records).kinds == ["identify", "identify"]


def test_erasure_results_are_completed_only_when_every_step_was_delivered():
    records = [erase("1", "r-1", [["id", "c-1"], ["email", "a@x.io"]], 0), erase("2", "r-2", [["id", "c-2"]], 1),
               erase("3", "r-3", [], 2)]
    chunk = sender("v2").prepare(records)
    outcomes = [Outcome("delivered", 200), Outcome("dead_letter", 400, "no", "rejected"), Outcome("delivered", 200)]
    dead: list = []
    results = settle_erasures(chunk, outcomes, dead)
    assert [(key, status) for key, _, status in results] == [(b"1", "failed"), (b"2", "completed"), (b"3", "completed")]
    assert [orjson.loads(value)["subject_request_id"] for _, value, _ in results] == ["r-1", "r-2", "r-3"]
    assert orjson.loads(results[0][1])["reason"] == "rejected (HTTP 400)"
    assert [(m.offset, reason) for m, reason, _, _ in dead] == [(0, "rejected")]  # the erase record, once


# ---- the generator ----------------------------------------------------------------------------


def test_the_generator_emits_erasures_of_identified_users_last_and_reproducibly():
    from cioproc.generate import Summary, generate

    summary = Summary()
    records = list(generate(users=60, events=600, seed=3, now_ms=NOW_MS, summary=summary, erasures=4))
    requests = [r for r in records if r.topic_role == "erasures"]
    assert len(requests) == 4 == summary.erasure_requests and records[-4:] == requests
    batch_mpids = {r.key for r in records if r.topic_role == "batches"}
    for record in requests:
        parsed = parse_subject_request(orjson.dumps(record.value), record.key.encode())
        assert isinstance(parsed, SubjectRequest) and parsed.is_erasure and parsed.identifiers
        assert record.key in batch_mpids
    assert len({r.value["subject_request_id"] for r in requests}) == 4
    again = [r for r in generate(users=60, events=600, seed=3, now_ms=NOW_MS, erasures=4) if r.topic_role == "erasures"]
    assert again == requests
    assert [r for r in generate(users=60, events=600, seed=3, now_ms=NOW_MS)] == records[:-4]


def test_a_dead_lettered_request_is_re_driven_to_the_erasures_topic():
    from pathlib import Path

    from cioproc.app.dead_letters import dead_letter_headers
    from cioproc.kafka.topics import load_topics
    from cioproc.replay import redrive_sources, redrive_target

    topics = load_topics(Path(__file__).resolve().parents[1] / "topics.yaml")
    allowed = redrive_sources(topics, "batches")
    headers = dead_letter_headers(INVALID_REQUEST, "bad", "mparticle.dsr", 0, 5)
    assert redrive_target(headers, allowed, allowed[0]) == "mparticle.dsr"
    assert redrive_sources(topics, "commands") == ("cio.commands",)


@pytest.mark.parametrize("transport", ["v2", "v1"])
@pytest.mark.parametrize("action", [CommandKind.DELETE, CommandKind.SUPPRESS])
async def test_the_deliverer_deletes_and_suppresses_through_the_sandbox_over_http(transport, action):
    from aiohttp import ClientSession
    from helpers_sandbox import Running, sender_config

    from cioproc.sandbox.config import SandboxConfig
    from cioproc.sandbox.server import serve
    from cioproc.sender import Deliverer

    runner, port = await serve(SandboxConfig(port=0))
    try:
        async with ClientSession() as session:
            sandbox = Running(runner, port, session)
            commands = [
                Command(CommandKind.IDENTIFY, "42", "id", "c/42", 0, {"email": "ann@example.com"}),
                Command(CommandKind.IDENTIFY, "7", "id", "c-7", 0, {"plan": "free"}),
                Command(action, "42", "id", "c/42", 0),
                Command(action, "42", "email", "ann@example.com", 0),  # already gone: still accepted
            ]
            async with Deliverer(sender_config(sandbox, transport=transport)) as deliverer:
                outcomes = await deliverer.deliver(commands)
            assert all(o.delivered for o in outcomes)
            people, _ = await sandbox.workspace()
            assert [p["id"] for p in people] == ["c-7"]
            stats = await sandbox.get("stats")
            endpoint = {"v1": {CommandKind.DELETE: "v1_delete", CommandKind.SUPPRESS: "v1_suppress"}[action],
                        "v2": "v2_batch"}[transport]
            assert endpoint in stats["by_endpoint"]
            suppressed = (await sandbox.get("suppressions"))["suppressions"]
            expected = [{"email": "ann@example.com"}, {"id": "c/42"}] if action is CommandKind.SUPPRESS else []
            assert suppressed == expected
    finally:
        await runner.cleanup()


def test_the_erasures_topic_is_declared_and_co_partitioned_with_the_batches():
    from pathlib import Path

    import yaml

    from cioproc.app.startup import topic_problems
    from cioproc.kafka.topics import ActualTopic, TopicsFileError, load_topics, parse_topics

    path = Path(__file__).resolve().parents[1] / "topics.yaml"
    topics = load_topics(path)
    names = (topics.by_role("erasures").name, topics.by_role("erasure_results").name)
    assert names == ("mparticle.dsr", "mparticle.dsr.results")
    assert topics.by_role("erasures").partitions == topics.by_role("batches").partitions
    changelog = topics.by_role("table_changelog").config
    assert {"segment.ms", "max.compaction.lag.ms", "delete.retention.ms"} <= set(changelog)
    doc = yaml.safe_load(path.read_text())
    for topic in doc["topics"]:
        if topic["role"] == "erasures":
            topic["partitions"] += 1
    with pytest.raises(TopicsFileError, match="'mparticle.dsr': field 'partitions' must equal the batches topic's"):
        parse_topics(doc)
    without = {"topics": [t for t in doc["topics"] if t["role"] != "erasure_results"]}
    with pytest.raises(TopicsFileError, match="no topic declares role 'erasure_results'"):
        parse_topics(without)
    actual = {t.name: ActualTopic(t.name, t.partitions, t.replication_factor, t.config) for t in topics.topics}
    actual["mparticle.dsr"] = ActualTopic("mparticle.dsr", 3, 1, topics.by_role("erasures").config)
    fatal, _ = topic_problems(topics, "processor", actual)
    assert fatal and "mparticle.dsr" in fatal[0]
    del actual["mparticle.dsr.results"]
    fatal, _ = topic_problems(topics, "sender", actual)
    assert fatal and "mparticle.dsr.results" in fatal[0]
