"""SIGTERM: a worker stops within a bounded time with exit code 0, and what it committed is
exactly what it finished: every input record below the committed offset has its commands
in the commands topic and none above it has; every command below the committed offset was
delivered to the sandbox and none above it was (in-flight work is drained and committed,
not abandoned half-done). A worker that cannot finish (Customer.io refusing the key) still
stops within the bound, committing nothing it did not deliver.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from pipeline_harness import Pipeline, batches

from cioproc.mapping import map_batch, parse_batch
from cioproc.models.commands import decode_record
from cioproc.models.settings import MappingSettings

pytestmark = pytest.mark.kafka

STOP_BOUND_S = 30.0


def event_ids_by_input(records: list[tuple[str, str, bytes]]) -> dict[bytes, set[str]]:
    """For each input value: the ids of the events its mapping produces (users mapped in input order)."""
    states: dict[str, object] = {}
    ids: dict[bytes, set[str]] = {}
    for _role, _key, value in records:
        batch = parse_batch(value)
        result = map_batch(batch, states.get(batch.mpid), MappingSettings())
        states[batch.mpid] = result.state
        ids[value] = {c.event_id for c in result.commands if c.event_id}
    return ids


def in_flight(p: Pipeline) -> int:
    """Requests the sandbox has received and not answered yet (it counts them on arrival)."""
    stats = p.stats()
    return stats["total_requests"] - sum(stats["by_status"].values())


def sigterm(p: Pipeline, name: str) -> tuple[int | None, float]:
    started = time.monotonic()
    code = p.kill(name, signal.SIGTERM, timeout=STOP_BOUND_S + 30)
    return code, time.monotonic() - started


def test_sigterm_drains_commits_what_it_finished_and_exits_in_bounded_time(pipeline):
    records = batches(users=1000, events=10_000, seed=61)
    expected_ids = event_ids_by_input(records)
    pipeline.start_sandbox()
    pipeline.set_faults(latency_ms=1000)  # every delivery request is in flight for a second
    pipeline.start_worker("w")
    with ThreadPoolExecutor(1) as pool:  # input keeps arriving: the worker is mid-run when it is stopped
        feeding = pool.submit(pipeline.produce_paced, records, 12.0)
        pipeline.wait_for(lambda: len(pipeline.events()) > 200 and in_flight(pipeline) > 0, 60,
                          "a delivery request in flight")
        code, took = sigterm(pipeline, "w")  # well within that request's second
        feeding.result()
    print(f"SIGTERM: exit {code} after {took:.2f}s")
    assert code == 0, pipeline.log("w")[-3000:]
    assert took < STOP_BOUND_S
    assert sum(pipeline.offsets("batches", pipeline.app_id).values()) < len(records)  # stopped mid-run
    # Below: what the in-flight request delivered was committed (a worker that abandoned it
    # would leave delivered commands uncommitted), and nothing committed was left undelivered.

    # Processor: the committed input offsets are exactly the records whose commands were written.
    commands = [
        (r.partition, r.offset, c) for r in pipeline.read("commands") for c in decode_record(r.value, r.headers)
    ]
    written = {c.event_id for _, _, c in commands if c.event_id}
    committed = pipeline.offsets("batches", pipeline.app_id)
    inputs = pipeline.read("batches")
    assert 0 < sum(committed.values())
    for record in inputs:
        ids = expected_ids[record.value]
        if record.offset < committed[record.partition]:
            assert ids <= written, f"input {record.partition}:{record.offset} committed but not processed"
        else:
            assert not ids & written, f"input {record.partition}:{record.offset} processed but not committed"

    # Sender: the committed command offsets are exactly the commands delivered.
    delivered = {e["event_id"] for e in pipeline.events()}
    first_at: dict[str, tuple[int, int]] = {}
    for partition, offset, command in commands:
        if command.event_id:
            first_at.setdefault(command.event_id, (partition, offset))
    done = pipeline.offsets("commands", pipeline.app_id)
    for event_id, (partition, offset) in first_at.items():
        if offset < done[partition]:
            assert event_id in delivered, f"command {partition}:{offset} committed but not delivered"
        else:
            assert event_id not in delivered, f"command {partition}:{offset} delivered but not committed"

    # The rest is delivered after a restart, as if nothing had happened.
    pipeline.set_faults()
    pipeline.start_worker("again")
    pipeline.wait_for(lambda: pipeline.caught_up(pipeline.app_id, "batches", "commands"), 120, "the rest")
    assert {e["event_id"] for e in pipeline.events()} == set().union(*expected_ids.values())


def test_sigterm_stops_a_worker_that_cannot_deliver_within_the_bound(pipeline):
    records = batches(users=50, events=400, seed=62)
    pipeline.start_sandbox()
    pipeline.start_worker("blocked", CIO_API_KEY="not-the-key-123456")
    pipeline.produce(records)
    pipeline.wait_for(lambda: pipeline.metric("cioproc_sender_auth_blocked", "blocked") == 1, 90,
                      "the sender to report bad credentials")
    code, took = sigterm(pipeline, "blocked")
    assert code == 0, pipeline.log("blocked")[-3000:]
    assert took < STOP_BOUND_S
    assert pipeline.offsets("commands", pipeline.app_id) == {
        p: 0 for p in range(4)
    }  # nothing delivered, nothing committed
    assert pipeline.events() == []
    assert sum(pipeline.offsets("batches", pipeline.app_id).values()) == len(records)  # the processor's part finished
