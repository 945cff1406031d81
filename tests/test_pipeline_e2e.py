"""End to end through the real broker: batches in, worker (processor + sender) out to the
sandbox. The sandbox's final workspace must equal the one the pure mapping predicts, also
under injected faults; a wrong API key must hold everything back until it is fixed."""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest
from pipeline_harness import (
    EXPECTED_DROPS,
    EXPECTED_KINDS,
    NOW_MS,
    Pipeline,
    batches,
    drained,
    expected_workspace,
    http,
)

from cioproc.models.commands import decode_record
from cioproc.models.settings import MappingSettings

pytestmark = pytest.mark.kafka


def _lag_partitions(p: Pipeline, topic: str) -> int:
    from cioproc.demo import scrape

    samples = scrape(f"http://127.0.0.1:{p.metrics_ports['worker']}/metrics")
    return sum(1 for (name, labels) in samples if name == "cioproc_consumer_lag" and ("topic", topic) in labels)


def test_batches_become_exactly_the_predicted_workspace(pipeline):
    records = batches()
    people, events, n_commands = expected_workspace(records)
    assert len(people) > 50 and len(events) > 500
    pipeline.start_sandbox()
    pipeline.start_worker()
    pipeline.produce(records)
    pipeline.wait_for(lambda: drained(pipeline, n_commands), 120, f"{n_commands} commands delivered")
    assert pipeline.people() == people
    assert pipeline.events() == events
    assert pipeline.read("commands_dlq") == []
    # The metrics endpoint counts exactly what was processed.
    assert pipeline.metric("cioproc_batches_in_total") == len(records)
    assert pipeline.metric("cioproc_events_in_total") == sum(len(orjson.loads(v)["events"]) for _, _, v in records)
    for kind, count in EXPECTED_KINDS.items():
        assert pipeline.metric("cioproc_commands_out_total", type=kind) == count, kind
        assert pipeline.metric("cioproc_commands_delivered_total", type=kind) == count, kind
    for reason, count in EXPECTED_DROPS.items():
        assert pipeline.metric("cioproc_drops_total", reason=reason) == count, reason
    assert pipeline.metric("cioproc_dlq_writes_total") == 0
    assert pipeline.metric("cioproc_http_responses_total", code="200") == pipeline.stats()["total_requests"]
    batches_topic = pipeline.topics.by_role("batches").name
    pipeline.wait_for(lambda: pipeline.metric("cioproc_consumer_lag", topic=batches_topic) == 0
                      and _lag_partitions(pipeline, batches_topic) == 4, 20, "consumer lag 0 on every partition")
    port = pipeline.metrics_ports["worker"]
    assert http(f"http://127.0.0.1:{port}/healthz") == {"status": "alive"}
    assert http(f"http://127.0.0.1:{port}/readyz")["ready"] is True
    # Every user's commands are keyed by MPID, in the order the mapping made them.
    commands = pipeline.read("commands")
    assert sum(len(decode_record(record.value, record.headers)) for record in commands) == n_commands
    assert all(record.key for record in commands)


def test_twenty_percent_faults_change_nothing(pipeline):
    """v1 transport here: one request per command gives the faults hundreds of chances."""
    records = batches(users=80, events=700, seed=12)
    people, events, n_commands = expected_workspace(records, "v1")
    pipeline.start_sandbox("--fault-rate", "0.2", "--drop-after-apply-rate", "0.05", "--retry-after", "1",
                           "--seed", "5")
    pipeline.start_worker(CIO_TRANSPORT="v1", CIO_MAX_CONCURRENCY="16")
    pipeline.produce(records)
    pipeline.wait_for(lambda: drained(pipeline, n_commands), 240, f"{n_commands} commands delivered under faults")
    stats = pipeline.stats()
    assert sum(stats["faults_injected"].values()) > 0  # faults really happened
    assert pipeline.metric("cioproc_http_retries_total") > 0
    assert pipeline.people() == people
    got = pipeline.events()
    assert got == events
    assert not [i for i, n in Counter(e["event_id"] for e in got).items() if n > 1]  # none recorded twice
    assert pipeline.read("commands_dlq") == []


def test_wrong_api_key_holds_everything_back_until_fixed(pipeline):
    records = batches(users=60, events=500, seed=13)
    people, events, n_commands = expected_workspace(records)
    pipeline.start_sandbox()
    pipeline.start_worker("bad-key", CIO_API_KEY="not-the-key-123456")
    pipeline.produce(records)
    pipeline.wait_for(lambda: pipeline.metric("cioproc_sender_auth_blocked", "bad-key") == 1, 90,
                      "the sender to report bad credentials")
    time.sleep(3)
    assert pipeline.people() == [] and pipeline.events() == []
    assert pipeline.read("commands_dlq") == []
    assert pipeline.metric("cioproc_commands_delivered_total", "bad-key") == 0
    log = pipeline.log("bad-key")
    assert "401" in log or "credential" in log.lower()
    assert "not-the-key-123456" not in log
    pipeline.kill("bad-key")
    assert pipeline.committed("commands", pipeline.app_id) == 0  # no command offset committed

    pipeline.start_worker("fixed")
    pipeline.wait_for(lambda: drained(pipeline, n_commands, "fixed"), 120, "delivery after the key is fixed")
    assert pipeline.people() == people
    assert pipeline.events() == events


def _identity_changes(t0: int) -> list[tuple[str, str, bytes]]:
    """One user forwarded by email, then given customer id c1, then c2 with a new email (a
    genuine change: merged with CIO_MERGE_PEOPLE), each batch newer than the one before."""
    def one(n: int, customer_id: str | None, email: str) -> tuple[str, str, bytes]:
        identities = {"email": email} | ({"customer_id": customer_id} if customer_id else {})
        event = {"event_type": "custom_event", "data": {
            "event_name": "Step", "custom_event_type": "other", "timestamp_unixtime_ms": t0 + n * 1000,
            "source_message_id": f"idchange-{n}", "custom_attributes": {"n": n}}}
        return ("batches", "9001", orjson.dumps({"mpid": 9001, "user_identities": identities, "events": [event]}))

    return [one(0, None, "first@example.com"), one(1, "c1", "first@example.com"), one(2, "c2", "second@example.com")]


def _lagging_audience(t0: int) -> tuple[str, str, bytes]:
    """An audience snapshot older than the batches, naming the user by its old identities."""
    return ("audiences", "9001", orjson.dumps({
        "type": "audience_membership_change_request", "id": "lag-1", "timestamp_ms": t0 + 500,
        "user_profiles": [{"mpid": "9001", "user_identities": [
            {"type": "customer", "encoding": "raw", "value": "c1"},
            {"type": "email", "encoding": "raw", "value": "first@example.com"}],
            "audiences": [{"audience_id": 77, "audience_name": "Fans", "action": "add"}]}]}))


def test_a_replayed_stream_and_a_lagging_audience_change_no_identifier_and_merge_nothing(pipeline):
    """Merging on (the dangerous setting): the stream produced twice, as a replay does, with
    a lagging audience message between, leaves the workspace of the first pass (plus the
    audience) and merges only the one genuine change of the first pass."""
    merging = MappingSettings(merge_people=True)
    first = batches(users=60, events=500, seed=14) + _identity_changes(NOW_MS - 3_600_000)
    audience = [_lagging_audience(NOW_MS - 3_600_000)]
    _, _, n_first = expected_workspace(first, settings=merging)
    assert EXPECTED_KINDS["merge"] >= 1  # the first pass has a genuine change to merge
    merges_first = EXPECTED_KINDS["merge"]
    _, _, n_with_audience = expected_workspace(first + audience, settings=merging)
    people, events, n_all = expected_workspace(first + audience + first, settings=merging)
    assert EXPECTED_KINDS["merge"] == merges_first  # the replay merges nothing, by prediction

    pipeline.start_sandbox()
    pipeline.start_worker(CIO_MERGE_PEOPLE="true")
    pipeline.produce(first)
    pipeline.wait_for(lambda: drained(pipeline, n_first), 120, f"{n_first} commands of the first pass")
    after_first = pipeline.people()
    who = sorted((p["id"] or "", p["email"] or "") for p in after_first)
    assert ("c2", "second@example.com") in who and not [i for i, _ in who if i == "c1"]
    assert pipeline.metric("cioproc_commands_delivered_total", type="merge") == merges_first

    pipeline.produce(audience)
    pipeline.wait_for(lambda: drained(pipeline, n_with_audience), 60, "the lagging audience message")
    after_audience = pipeline.people()
    assert sorted((p["id"] or "", p["email"] or "") for p in after_audience) == who  # no identifier changed
    (person,) = [p for p in after_audience if p["id"] == "c2"]
    assert person["attributes"]["SegmentMembership"] == "'77'" and person["email"] == "second@example.com"

    pipeline.produce(first)  # the replay
    pipeline.wait_for(lambda: drained(pipeline, n_all), 120, f"{n_all - n_with_audience} commands of the replay")
    assert pipeline.people() == after_audience == people
    assert pipeline.events() == events
    assert pipeline.metric("cioproc_commands_out_total", type="merge") == merges_first
    assert pipeline.metric("cioproc_commands_delivered_total", type="merge") == merges_first
    activity = http(f"{pipeline.sandbox_url}/_sandbox/activity")["activity"]
    assert not [a for a in activity if a["type"] == "merge_failure"]  # nothing merged twice
    assert pipeline.read("commands_dlq") == []
