"""Broker restart: the only Kafka broker stops while workers are mid-run and starts again;
the workers, never restarted by the test, must resume by themselves and the final workspace
must equal the clean run's.

The test runs its own broker (same Kafka version and settings as the suite's, on a port of
its own) so that stopping it cannot disturb anything else using the suite's broker. Starting
it costs about 8 s, the restart about as much again.
"""

from __future__ import annotations

import random
import shutil
import socket
import time
from collections import Counter

import pytest
from pipeline_harness import Pipeline, batches, expected_workspace

from cioproc.kafka.broker import LocalBroker

pytestmark = pytest.mark.kafka

OUTAGE_S = 6.0
SETTLE_S = 180


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def broker_ports() -> int:
    """A port whose successor (the controller's) is free too, below Linux's ephemeral range."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(21000, 28900, 2)
        if _bindable(port) and _bindable(port + 1):
            return port
    raise RuntimeError("no free port pair for a private broker")


@pytest.fixture
def private_broker(kafka_bootstrap):
    """A broker of our own, sharing the suite broker's jar cache; stopped and deleted afterwards."""
    shared = LocalBroker.from_env()
    broker = LocalBroker(home=shared.home, port=broker_ports(), heap="512m")
    try:
        broker.start(progress=lambda _m: None)
        yield broker
    finally:
        broker.stop(progress=lambda _m: None)
        shutil.rmtree(broker.root, ignore_errors=True)


@pytest.fixture
def pipeline(private_broker, unique, tmp_path):
    p = Pipeline(private_broker.bootstrap, unique, tmp_path)
    yield p
    p.close()


def test_workers_resume_by_themselves_after_the_broker_restarts(pipeline, private_broker):
    records = batches(users=2000, events=20_000, seed=51)
    people, events, _ = expected_workspace(records)
    first, second = records[: len(records) // 2], records[len(records) // 2 :]
    pipeline.start_sandbox()
    pipeline.set_faults(latency_ms=40)  # keeps deliveries in flight when the broker goes
    for name in ("a", "b"):
        pipeline.start_worker(name)
    pipeline.produce(first)
    pipeline.wait_for(lambda: len(pipeline.events()) > 0, 60, "the first deliveries")

    private_broker.stop(progress=lambda _m: None)
    events_at_stop = len(pipeline.events())
    assert events_at_stop < len(events)  # mid-run
    time.sleep(OUTAGE_S)
    private_broker.start(progress=lambda _m: None)
    pipeline.set_faults()
    pipeline.produce(second)

    pipeline.wait_for(lambda: pipeline.caught_up(pipeline.app_id, "batches", "commands"), SETTLE_S,
                      "the workers to resume after the broker restart")
    assert pipeline.alive("a") and pipeline.alive("b")  # recovered by themselves
    got = pipeline.events()
    assert not [i for i, n in Counter(e["event_id"] for e in got).items() if n > 1]
    assert got == events
    assert pipeline.people() == people
    assert pipeline.read("commands_dlq") == [] and pipeline.read("batches_dlq") == []
