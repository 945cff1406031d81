"""End to end through the real broker: batches in, worker (processor + sender) out to the
sandbox. The sandbox's final workspace must equal the one the pure mapping predicts, also
under injected faults; a wrong API key must hold everything back until it is fixed."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import orjson
import pytest

from cioproc.generate.synthetic import generate
from cioproc.mapping import map_batch, parse_batch
from cioproc.models.settings import MappingSettings
from cioproc.sandbox.config import SandboxConfig
from cioproc.sandbox.server import serve
from cioproc.sender import Deliverer, SenderConfig
from pipeline_harness import KEY, SITE, Pipeline, http

pytestmark = pytest.mark.kafka

NOW_MS = int(time.time() * 1000)
EXPECTED_KINDS: Counter = Counter()  # command kinds of the last expected_workspace() call
EXPECTED_DROPS: Counter = Counter()  # drop reasons of the last expected_workspace() call


def batches(users: int = 150, events: int = 1500, seed: int = 11) -> list[tuple[str, str, bytes]]:
    return [
        (r.topic_role, r.key, orjson.dumps(r.value))
        for r in generate(users=users, events=events, seed=seed, now_ms=NOW_MS)
        if r.topic_role == "batches"
    ]


def expected_workspace(records: list[tuple[str, str, bytes]], transport: str = "v2") -> tuple[list[dict], list[dict], int]:
    """What the sandbox should hold: the pure mapping over the input, delivered in order."""
    states: dict[str, object] = {}
    commands = []
    EXPECTED_DROPS.clear()
    for _role, _key, value in records:
        batch = parse_batch(value)
        result = map_batch(batch, states.get(batch.mpid), MappingSettings())
        states[batch.mpid] = result.state
        commands.extend(result.commands)
        EXPECTED_DROPS.update(d.reason for d in result.drops)
    EXPECTED_KINDS.clear()
    EXPECTED_KINDS.update(c.kind.value for c in commands)

    async def deliver() -> tuple[list[dict], list[dict]]:
        runner, port = await serve(SandboxConfig(port=0, site_id=SITE, api_key=KEY))
        try:
            config = SenderConfig(site_id=SITE, api_key=KEY, track_url=f"http://127.0.0.1:{port}",
                                  max_requests_per_second=None, transport=transport)
            async with Deliverer(config) as deliverer:
                outcomes = await deliverer.deliver(commands)
            assert all(o.delivered for o in outcomes)
            people = await asyncio.to_thread(http, f"http://127.0.0.1:{port}/_sandbox/people?without_cio_id=1")
            events = await asyncio.to_thread(http, f"http://127.0.0.1:{port}/_sandbox/events")
            return people["people"], events["events"]
        finally:
            await runner.cleanup()

    people, events = asyncio.run(deliver())
    return people, events, len(commands)


@pytest.fixture
def pipeline(kafka_bootstrap, unique, tmp_path):
    p = Pipeline(kafka_bootstrap, unique, tmp_path)
    yield p
    p.close()


def drained(p: Pipeline, commands: int, worker: str = "worker") -> bool:
    try:
        settled = p.metric("cioproc_commands_delivered_total", worker) + p.metric(
            "cioproc_dlq_writes_total", worker, topic=p.topics.by_role("commands_dlq").name
        )
    except Exception:
        return False
    return settled >= commands


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
    assert len(commands) == n_commands
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
