"""Benchmark: end-to-end latency, input produced -> accepted by Customer.io (the sandbox).

Run: ``python bench/latency.py [--rate 1000] [--seconds 60] [--events-per-batch 4] [--backlog N]``
(``make bench-latency``; the broker must be running: ``cioproc kafka start``, or pass
``--bootstrap``).

A fresh set of topics, the sandbox (in a child process, with a middleware that notes when
each accepted request arrived) and one ``cioproc worker --role all``. Once the worker is
ready, mParticle batches (``--events-per-batch`` custom events each, random users) are
produced at a steady ``--rate`` events/s for ``--seconds``; each event carries its produce
time (Unix ms) in a custom attribute, which the mapping forwards to the track command and the
sender to Customer.io. The sandbox subtracts it from the arrival time of the request that
delivered the event with a 200 (207 entries without error count too). Printed: p50, p95,
p99 and max over all events, and the same after the first 5 s (warm-up).

``--backlog N`` measures throughput instead: N events are produced before the worker starts,
and the events/s from the worker's readiness to the last acceptance are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SITE, KEY = "bench-site", "bench-key-latency"
ATTRIBUTE = "bench_sent_ms"


# ---- the sandbox child: the project's sandbox plus arrival notes ---------------------------


def serve_sandbox(port: int) -> None:
    import orjson
    from aiohttp import web

    from cioproc.sandbox import SandboxConfig
    from cioproc.sandbox.server import create_app

    latencies: list[tuple[float, float]] = []  # (sent, latency) seconds

    @web.middleware
    async def note_arrivals(request: web.Request, handler: Any) -> web.StreamResponse:
        arrived = time.time()
        response = await handler(request)
        if request.path == "/api/v2/batch" and response.status in (200, 207):
            body = orjson.loads(await request.read())
            refused = set()
            if response.status == 207:
                refused = {e.get("batch_index") for e in orjson.loads(response.body).get("errors", [])}
            for index, entry in enumerate(body.get("batch", [])):
                sent = (entry.get("attributes") or {}).get(ATTRIBUTE)
                if sent is not None and index not in refused:
                    latencies.append((int(sent) / 1000, arrived - int(sent) / 1000))
        return response

    async def dump(_request: web.Request) -> web.Response:
        return web.json_response({"latencies": latencies})

    async def main() -> None:
        app = create_app(SandboxConfig(port=port, site_id=SITE, api_key=KEY))
        app.middlewares.append(note_arrivals)
        app.router.add_get("/_bench/latencies", dump)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


# ---- the driver -------------------------------------------------------------------------------


def http_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def batch(mpid: int, events: int, sent_ms: int) -> bytes:
    import orjson

    return orjson.dumps({
        "mpid": mpid,
        "user_identities": {"customer_id": f"bench-{mpid}"},
        "events": [
            {"event_type": "custom_event",
             "data": {"event_name": "Bench", "timestamp_unixtime_ms": sent_ms, "source_message_id": uuid.uuid4().hex,
                      "custom_attributes": {ATTRIBUTE: str(sent_ms)}}}
            for _ in range(events)
        ],
    })


async def produce_steady(bootstrap: str, topic: str, rate: float, seconds: float, per_batch: int, users: int) -> int:
    """Batches at ``rate`` events/s for ``seconds``, each stamped with its send time; events sent."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks="all")
    await producer.start()
    sent, pending = 0, []
    try:
        start = time.monotonic()
        tick = 0.01
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate / per_batch) - sent // per_batch
            now_ms = int(time.time() * 1000)
            for _ in range(due):
                mpid = random.randrange(users)
                pending.append(await producer.send(topic, batch(mpid, per_batch, now_ms), key=str(mpid).encode(),
                                                   timestamp_ms=now_ms))
                sent += per_batch
            await asyncio.sleep(tick)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


def percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": q[49], "p95": q[94], "p99": q[98], "max": values[-1], "n": len(values)}


def show(title: str, stats: dict[str, float]) -> None:
    if not stats:
        print(f"{title}: no samples")
        return
    print(f"{title}: p50 {stats['p50'] * 1000:.0f} ms, p95 {stats['p95'] * 1000:.0f} ms, "
          f"p99 {stats['p99'] * 1000:.0f} ms, max {stats['max'] * 1000:.0f} ms ({stats['n']} events)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to produce (default %(default)s)")
    parser.add_argument("--events-per-batch", type=int, default=4)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--backlog", type=int, default=0, help="measure backlog throughput over N events instead")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--serve-sandbox", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--keep-logs", action="store_true", help="print where the worker's log is and keep it")
    args = parser.parse_args(argv)
    if args.serve_sandbox:
        serve_sandbox(args.serve_sandbox)
        return 0

    import yaml

    from cioproc.kafka.admin import reconcile
    from cioproc.kafka.topics import load_topics

    run = uuid.uuid4().hex[:8]
    app_id = f"bench-latency-{run}"
    directory = Path(tempfile.mkdtemp(prefix="cioproc-latency-"))
    doc = yaml.safe_load((ROOT / "topics.yaml").read_text())
    for topic in doc["topics"]:
        topic["name"] = f"{app_id}-users-changelog" if topic["role"] == "table_changelog" else f"{topic['name']}.{run}"
    topics_path = directory / "topics.yaml"
    topics_path.write_text(yaml.safe_dump(doc))
    topics = load_topics(topics_path)
    report = asyncio.run(reconcile(topics, args.bootstrap, create=True))
    if not report.ok:
        raise SystemExit(f"topics: {report.drift}")
    batches_topic = topics.by_role("batches").name

    sandbox_port, metrics_port = free_port(), free_port()
    processes: list[subprocess.Popen] = []
    try:
        processes.append(subprocess.Popen([sys.executable, __file__, "--serve-sandbox", str(sandbox_port)]))
        sandbox = f"http://127.0.0.1:{sandbox_port}"
        wait_until(lambda: http_json(f"{sandbox}/_sandbox/health", 1)["ok"], 30, "the sandbox")
        if args.backlog:
            sent = asyncio.run(produce_backlog(args.bootstrap, batches_topic, args.backlog, args.events_per_batch,
                                               args.users))
        env = {
            **os.environ, "KAFKA_BOOTSTRAP_SERVERS": args.bootstrap, "CIOPROC_TOPICS_FILE": str(topics_path),
            "CIOPROC_APP_ID": app_id, "CIOPROC_ENV_FILE": "/nonexistent", "CIOPROC_DATA_DIR": str(directory / "data"),
            "CIO_TRACK_URL": sandbox, "CIO_SITE_ID": SITE, "CIO_API_KEY": KEY, "CIO_MAX_REQUESTS_PER_SECOND": "1000",
            "CIOPROC_METRICS_PORT": str(metrics_port), "CIOPROC_LOG_LEVEL": "warning",
        }
        log = directory / "worker.log"
        processes.append(subprocess.Popen([sys.executable, "-m", "cioproc", "worker", "--role", "all"], env=env,
                                          stdout=open(log, "wb"), stderr=subprocess.STDOUT))
        wait_until(lambda: http_json(f"http://127.0.0.1:{metrics_port}/readyz", 1)["ready"], 120, "the worker")
        started = time.time()
        if not args.backlog:
            time.sleep(2)  # let every partition's first fetch settle
            started = time.time()
            sent = asyncio.run(produce_steady(args.bootstrap, batches_topic, args.rate, args.seconds,
                                              args.events_per_batch, args.users))
        wait_until(lambda: len(http_json(f"{sandbox}/_bench/latencies")["latencies"]) >= sent, 600,
                   f"{sent} events accepted by the sandbox")
        samples = http_json(f"{sandbox}/_bench/latencies")["latencies"]
        if args.backlog:
            last = max(sent_at + latency for sent_at, latency in samples)
            print(f"backlog: {sent} events drained in {last - started:.1f} s: {sent / (last - started):.0f} events/s "
                  f"(from the worker's readiness to the last acceptance)")
        else:
            print(f"steady {args.rate:.0f} events/s for {args.seconds:.0f} s ({sent} events, "
                  f"{args.events_per_batch} per batch), produce -> accepted by the sandbox:")
            show("  all events", percentiles([latency for _, latency in samples]))
            show("  after 5 s warm-up", percentiles([latency for at, latency in samples if at >= started + 5]))
            print_breakdown(args.bootstrap, topics.by_role("commands").name, f"http://127.0.0.1:{metrics_port}/metrics")
        if args.keep_logs:
            print(f"worker log: {log}")
        return 0
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def print_breakdown(bootstrap: str, commands_topic: str, metrics_url: str) -> None:
    """Where the time goes: processor (input -> command record, from the commands topic's
    timestamps and cioproc.input.ts headers), the sender's chunk delivery and its HTTP requests
    (from the worker's histograms)."""
    from cioproc.demo import latency_quantile, scrape

    gaps = asyncio.run(processor_delays(bootstrap, commands_topic))
    show("  processor: input produced -> command produced", percentiles([g / 1000 for g in gaps]))
    samples = scrape(metrics_url)
    for title, name in (("sender: chunk fetched -> delivered", "cioproc_delivery_latency_seconds"),
                        ("sender: Track API request", "cioproc_track_request_seconds"),
                        ("worker's end-to-end histogram", "cioproc_end_to_end_latency_seconds")):
        p50, p99 = (latency_quantile(samples, q, name) for q in (0.5, 0.99))
        if p50 is not None:
            print(f"  {title}: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (histogram buckets)")
    requests = sum(v for (n, _), v in samples.items() if n == "cioproc_track_request_seconds_count")
    delivered = sum(v for (n, _), v in samples.items() if n == "cioproc_commands_delivered_total")
    if requests:
        print(f"  {delivered:.0f} commands in {requests:.0f} requests: {delivered / requests:.1f} per request")


async def processor_delays(bootstrap: str, topic: str) -> list[int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from cioproc.models.commands import INPUT_TIMESTAMP_HEADER

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka's only way
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        begin, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, begin[tp])
        left, gaps = sum(end[tp] - begin[tp] for tp in tps), []
        while left > 0:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                for record in records:
                    left -= 1
                    stamp = dict(record.headers).get(INPUT_TIMESTAMP_HEADER)
                    if stamp is not None:
                        gaps.append(record.timestamp - int(stamp))
        return gaps
    finally:
        await consumer.stop()


async def produce_backlog(bootstrap: str, topic: str, events: int, per_batch: int, users: int) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        now_ms = int(time.time() * 1000)
        pending = []
        for _ in range(events // per_batch):
            mpid = random.randrange(users)
            pending.append(await producer.send(topic, batch(mpid, per_batch, now_ms), key=str(mpid).encode()))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return events // per_batch * per_batch


if __name__ == "__main__":
    sys.exit(main())
