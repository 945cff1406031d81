"""Erasures end to end through the real broker and the sandbox: a data subject request
removes the person from Customer.io, leaves no value for the MPID in the users changelog,
and a command produced before the erasure is never delivered after it."""

from __future__ import annotations

import signal
import time
from typing import Any

import orjson
import pytest
from pipeline_harness import Pipeline, http

from cioproc.models.commands import Command, CommandKind, decode_record, encode_command

pytestmark = pytest.mark.kafka

NOW_MS = int(time.time() * 1000)


def batch(mpid: int, events: list[str], **attributes: Any) -> tuple[str, str, bytes]:
    doc = {
        "mpid": mpid,
        "user_identities": {"customer_id": f"c-{mpid}", "email": f"u{mpid}@example.com"},
        "user_attributes": attributes,
        "events": [
            {"event_type": "custom_event",
             "data": {"event_name": name, "timestamp_unixtime_ms": NOW_MS + i, "source_message_id": f"{mpid}-{name}"}}
            for i, name in enumerate(events)
        ],
    }
    return ("batches", str(mpid), orjson.dumps(doc))


def dsr(mpid: int, request_id: str, kind: str = "erasure") -> tuple[str, str, bytes]:
    return ("erasures", str(mpid), orjson.dumps({
        "subject_request_id": request_id,
        "subject_request_type": kind,
        "submitted_time": "2026-12-01T12:00:00Z",
        "subject_identities": [
            {"identity_type": "email", "identity_value": f"u{mpid}@example.com", "identity_format": "raw"}
        ],
    }))


def results(pipeline: Pipeline) -> dict[str, dict]:
    """Results by request id, each with the MPID it is keyed by."""
    return {
        orjson.loads(r.value)["subject_request_id"]: {**orjson.loads(r.value), "key": r.key}
        for r in pipeline.read("erasure_results")
    }


def changelog(pipeline: Pipeline) -> dict[bytes, bytes]:
    """The users changelog as a reader that honours tombstones sees it: last value per key, deleted keys gone."""
    table: dict[bytes, bytes] = {}
    for record in pipeline.read("table_changelog"):
        if record.value is None:
            table.pop(record.key, None)
        else:
            table[record.key] = record.value
    return table


def person(pipeline: Pipeline, customer_id: str) -> dict | None:
    return next((p for p in pipeline.people() if p["id"] == customer_id), None)


def commands_of(pipeline: Pipeline, mpid: str) -> list[Command]:
    return [c for r in pipeline.read("commands") if r.key == mpid.encode() for c in decode_record(r.value, r.headers)]


def test_an_erasure_deletes_the_person_tombstones_the_state_and_drops_earlier_commands(pipeline):
    pipeline.start_sandbox()
    pipeline.start_worker("processor", role="processor")
    pipeline.start_worker("sender", role="sender")
    pipeline.produce([batch(42, ["SignedUp"], plan="gold"), batch(7, ["SignedUp"], plan="free")])
    pipeline.wait_for(lambda: person(pipeline, "c-42") and person(pipeline, "c-7"), 90, "both people in the sandbox")
    assert b"42" in changelog(pipeline)

    # With the sender stopped, commands for MPID 42 are produced before its erasure: the
    # processor's for a new batch, and one written to the commands topic directly.
    assert pipeline.kill("sender", signal.SIGTERM) == 0
    pipeline.produce([batch(42, ["BeforeErasure"], plan="platinum")])
    pipeline.wait_for(lambda: any(c.name == "BeforeErasure" for c in commands_of(pipeline, "42")), 60, "its commands")
    late = Command(CommandKind.IDENTIFY, "42", "id", "c-42", 0, {"late": True})
    pipeline.produce([("commands", "42", encode_command(late))])
    pipeline.produce([dsr(42, "r-erase"), dsr(7, "r-access", kind="access"), ("erasures", "7", b"{not json")])
    pipeline.wait_for(lambda: any(c.kind is CommandKind.ERASE for c in commands_of(pipeline, "42")), 60, "the erase")
    pipeline.wait_for(lambda: "r-access" in results(pipeline), 60, "the access request's result")
    assert results(pipeline)["r-access"]["status"] == "not_supported" and results(pipeline)["r-access"]["key"] == b"7"
    assert "r-erase" not in results(pipeline)  # completed means done in Customer.io: not yet
    pipeline.start_worker("sender", role="sender")
    pipeline.wait_for(lambda: "r-erase" in results(pipeline), 90, "the erasure's result")

    done = results(pipeline)["r-erase"]
    assert done["status"] == "completed" and done["time"].endswith("Z") and done["key"] == b"42"
    assert person(pipeline, "c-42") is None  # deleted, and nothing produced before re-created it
    assert not any(p["email"] == "u42@example.com" for p in pipeline.people())
    assert [e["name"] for e in pipeline.events()] == ["SignedUp"]  # 7's only
    assert person(pipeline, "c-7")["attributes"] == {"plan": "free"}
    table = changelog(pipeline)
    assert b"42" not in table and b"7" in table
    assert any(r.key == b"42" and r.value is None for r in pipeline.read("table_changelog"))  # the tombstone
    (dead,) = pipeline.read("batches_dlq")
    assert dict(dead.headers)["cioproc.reason"] == b"invalid_erasure_request" and dead.value == b"{not json"
    assert pipeline.read("commands_dlq") == []
    superseded = pipeline.metric("cioproc_drops_total", worker="sender", reason="erased_before_delivery")
    assert superseded >= 2  # the batch's commands and the direct one, never delivered
    assert pipeline.metric("cioproc_erasure_results_total", worker="sender", status="completed") == 1

    # A later batch for the MPID starts a new person, without anything of the old one.
    pipeline.produce([batch(42, ["CameBack"], tier="new")])
    pipeline.wait_for(lambda: person(pipeline, "c-42") is not None, 60, "the new person")
    assert person(pipeline, "c-42")["attributes"] == {"tier": "new"}


def test_a_suppressing_erasure_over_v1_blocks_the_person_from_coming_back(pipeline):
    pipeline.start_sandbox()
    pipeline.start_worker(CIO_ERASURE_ACTION="suppress", CIO_TRANSPORT="v1")
    pipeline.produce([batch(42, ["SignedUp"], plan="gold")])
    pipeline.wait_for(lambda: person(pipeline, "c-42") is not None, 90, "the person in the sandbox")
    pipeline.produce([dsr(42, "r-1")])
    pipeline.wait_for(lambda: "r-1" in results(pipeline), 60, "the result")
    assert results(pipeline)["r-1"]["status"] == "completed"
    assert person(pipeline, "c-42") is None
    suppressed = http(f"{pipeline.sandbox_url}/_sandbox/suppressions")["suppressions"]
    assert {"id": "c-42"} in suppressed and {"email": "u42@example.com"} in suppressed
    stats = pipeline.stats()["by_endpoint"]
    assert stats.get("v1_suppress", 0) >= 1 and "v1_delete" not in stats
    # Later batches for the MPID are ignored by Customer.io: the identifiers are suppressed.
    pipeline.produce([batch(42, ["CameBack"], tier="new"), batch(7, ["SignedUp"])])
    pipeline.wait_for(lambda: person(pipeline, "c-7") is not None, 60, "the next user")
    pipeline.wait_for(lambda: pipeline.caught_up(pipeline.app_id, "commands"), 30, "the commands delivered")
    assert person(pipeline, "c-42") is None and not any(e["name"] == "CameBack" for e in pipeline.events())
