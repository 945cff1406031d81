"""Crash safety against the real broker and the sandbox: workers SIGKILLed at random (seeded)
moments while input keeps arriving, then restarted; the final workspace must equal the clean
run's (computed from the pure mapping, as in test_pipeline_e2e), with no event recorded
twice and none missing.

Size: 50,000 events (the issue's figure: about 7,500 batches, 33,000 commands for 5,000
users). A clean run of this size takes about 6 s on the 2-core test machine, so the full
size fits the suite's budget; what costs time here is the restarts (a SIGKILLed member stays
in the group until its 10 s session timeout, and the survivors wait for it in the next
rebalance).

Roles: every worker runs role ``all``. Until role ``sender`` gets a consumer group of its
own, a processor worker and a sender worker cannot share the app id's group (the group's
assignor would hand commands partitions to a processor), so "kill the processor, the
sender or both" is done with two ``all`` workers: killing one moves its partitions (table
restored from the changelog, or promoted from its standby) to the survivor, and killing both
stops processing and delivery together.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline_harness import Pipeline
from test_pipeline_e2e import batches, expected_workspace

pytestmark = pytest.mark.kafka

EVENTS, USERS, SEED = 50_000, 5_000, 41
PRODUCE_S = 20.0  # input arrives over this long, while the kills happen
KILLS = 5
SETTLE_S = 240


@pytest.fixture
def pipeline(kafka_bootstrap, unique, tmp_path):
    p = Pipeline(kafka_bootstrap, unique, tmp_path)
    yield p
    p.close()


def pending(p: Pipeline) -> int:
    """Input and commands not yet committed by the workers' group."""
    return p.lag("batches", p.app_id) + p.lag("commands", p.app_id)


def test_sigkilled_workers_lose_nothing_and_duplicate_nothing(pipeline):
    records = batches(users=USERS, events=EVENTS, seed=SEED)
    people, events, n_commands = expected_workspace(records)
    assert len(events) > 25_000
    rng = random.Random(SEED)
    pipeline.start_sandbox()
    workers = ("a", "b")
    for name in workers:
        pipeline.start_worker(name)

    kills: list[tuple[tuple[str, ...], int]] = []  # (victims, records pending at the kill)
    with ThreadPoolExecutor(1) as pool:
        feeding = pool.submit(pipeline.produce_paced, records, PRODUCE_S)
        for _ in range(KILLS):
            time.sleep(rng.uniform(1.0, 5.0))
            victims = rng.choice([("a",), ("b",), ("a", "b")])
            kills.append((victims, pending(pipeline)))
            for name in victims:
                pipeline.kill(name, signal.SIGKILL)
            time.sleep(rng.uniform(0.0, 2.0))
            for name in victims:
                pipeline.start_worker(name)
        feeding.result()

    pipeline.wait_for(lambda: pipeline.caught_up(pipeline.app_id, "batches", "commands"), SETTLE_S,
                      "the restarted workers to catch up")
    assert all(pipeline.alive(name) for name in workers)
    got = pipeline.events()
    assert not [i for i, n in Counter(e["event_id"] for e in got).items() if n > 1]  # none recorded twice
    assert len(got) == len(events)  # none missing
    assert got == events
    assert pipeline.people() == people
    assert pipeline.read("commands_dlq") == [] and pipeline.read("batches_dlq") == []
    # The kills really hit a pipeline with work in flight, and it was redone (deduplicated by event id).
    assert sum(1 for _, waiting in kills if waiting > 0) >= KILLS - 1, kills
    stats = pipeline.stats()
    print(f"kills (victims, records pending): {kills}; commands {n_commands}, topic {len(pipeline.read('commands'))}; "
          f"sandbox events recorded {stats['events_recorded']}, deduplicated {stats['events_deduplicated']}")
