"""Crash safety against the real broker and the sandbox: workers SIGKILLed at random (seeded)
moments while input keeps arriving, then restarted; the final workspace must equal the clean
run's (computed from the pure mapping, as in test_pipeline_e2e), with no event recorded
twice and none missing.

Size: 50,000 events (the issue's figure: about 7,500 batches, 33,000 commands for 5,000
users). A clean run of this size takes about 6 s on the 2-core test machine, so the full
size fits the suite's budget (the test takes 45-100 s); what costs time is the restarts: a
SIGKILLed member stays in its group until its 10 s session timeout, and its restarted
successor waits for that in the next rebalance.

Roles: a processor worker and a sender worker (each in its own consumer group: the app id
and ``<app id>-sender``), as deployments that scale them separately run them; each kill hits
the processor, the sender or both. A killed processor's table is restored from the
changelog by its successor (the restarted process); a killed sender's unacknowledged
commands are delivered again.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from pipeline_harness import Pipeline, batches, expected_workspace

pytestmark = pytest.mark.kafka

EVENTS, USERS, SEED = 50_000, 5_000, 41
PRODUCE_S = 20.0  # input arrives over this long, while the kills happen
KILLS = 5
SETTLE_S = 240


def sender_group(p: Pipeline) -> str:
    return f"{p.app_id}-sender"


def pending(p: Pipeline) -> int:
    """Input not yet committed by the processor plus commands not yet committed by the sender."""
    return p.lag("batches", p.app_id) + p.lag("commands", sender_group(p))


def settled(p: Pipeline) -> bool:
    return p.caught_up(p.app_id, "batches") and p.caught_up(sender_group(p), "commands")


def test_sigkilled_workers_lose_nothing_and_duplicate_nothing(pipeline):
    records = batches(users=USERS, events=EVENTS, seed=SEED)
    people, events, n_commands = expected_workspace(records)
    assert len(events) > 25_000
    rng = random.Random(SEED)
    pipeline.start_sandbox()
    roles = {"p": "processor", "s": "sender"}
    for name, role in roles.items():
        pipeline.start_worker(name, role)

    kills: list[tuple[tuple[str, ...], int]] = []  # (victims, records pending at the kill)
    with ThreadPoolExecutor(1) as pool:
        feeding = pool.submit(pipeline.produce_paced, records, PRODUCE_S)
        for _ in range(KILLS):
            time.sleep(rng.uniform(1.0, 5.0))
            victims = rng.choice([("p",), ("s",), ("p", "s")])
            kills.append((victims, pending(pipeline)))
            for name in victims:
                pipeline.kill(name, signal.SIGKILL)
            time.sleep(rng.uniform(0.0, 2.0))
            for name in victims:
                pipeline.start_worker(name, roles[name])
        feeding.result()

    pipeline.wait_for(lambda: settled(pipeline), SETTLE_S, "the restarted workers to catch up")
    assert all(pipeline.alive(name) for name in roles)
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
