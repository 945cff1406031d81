"""Benchmark: the processor worker versus a raw aiokafka loop over the same batches, same broker.

Run: ``python bench/processor.py [--batches N] [--users U] [--repeats R] [--bootstrap HOST:PORT]``
(``make bench-processor``; the broker must be running: ``cioproc kafka start``).

N realistic mParticle batches (about 8 events each, generated with bench/mapping.py's
generator: each of U users' first batch, then N more of random users) are produced once to
an input topic. Then, R times and alternately:

- raw: one asyncio loop with aiokafka: consume -> ``orjson.loads`` -> ``msgpack.packb`` ->
  produce (not awaited per record; awaited per fetch, then the offsets are committed).
  Timed from the first fetch that returns records to the last produce acknowledgement.
- processor: ``python -m cioproc.app.worker processor`` with a fresh app id (empty table),
  reading the same input topic: mapping, commands to cio.commands, the users table and its
  changelog, acks and commits. Timed from the worker's "Worker ready" log line (fetching
  starts) to the timestamp of its last command on the commands topic.

Prints the medians (messages/s, events/s) and the median ratio processor / raw (target: at
least 0.3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import msgpack
import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from mapping import generate  # noqa: E402  (bench/mapping.py: the realistic batch generator)

from cioproc.app.internals import topic_partitions  # noqa: E402
from cioproc.kafka.admin import reconcile  # noqa: E402
from cioproc.kafka.topics import load_topics  # noqa: E402


def topics_file(directory: Path, run: str, app_id: str, input_topic: str, partitions: int) -> Path:
    doc = yaml.safe_load((ROOT / "topics.yaml").read_text())
    for topic in doc["topics"]:
        role = topic["role"]
        if role == "batches":
            topic["name"] = input_topic
        elif role == "table_changelog":
            topic["name"] = f"{app_id}-users-changelog"
        else:
            topic["name"] = f"bench.{role}.{run}"
        if role in ("batches", "audiences", "commands", "table_changelog"):
            topic["partitions"] = partitions
    path = directory / f"topics-{run}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


async def create(bootstrap: str, path: Path) -> None:
    report = await reconcile(load_topics(path), bootstrap, create=True)
    if not report.ok:
        raise SystemExit(f"topics: {report.drift or report.missing}")


async def produce_input(bootstrap: str, topic: str, batches: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, max_batch_size=1024 * 1024)
    await producer.start()
    try:
        futures = []
        for raw in batches:
            mpid = str(orjson.loads(raw)["mpid"]).encode()
            futures.append(await producer.send(topic, raw, key=mpid))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def raw_loop(bootstrap: str, input_topic: str, output_topic: str, total: int) -> float:
    """Seconds for consume -> json decode -> msgpack encode -> produce of ``total`` records."""
    consumer = AIOKafkaConsumer(
        input_topic, bootstrap_servers=bootstrap, group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024, acks="all")
    await consumer.start()
    await producer.start()
    try:
        seen = 0
        started = None
        while seen < total:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=2000)
            if not fetched:
                continue
            if started is None:
                started = time.perf_counter()
            futures = []
            for records in fetched.values():
                for record in records:
                    batch = orjson.loads(record.value)
                    futures.append(await producer.send(output_topic, msgpack.packb(batch), key=record.key))
            seen += len(futures)
            await asyncio.gather(*futures)
            await consumer.commit()
        return time.perf_counter() - started
    finally:
        await consumer.stop()
        await producer.stop()


async def group_done(bootstrap: str, group: str, topic: str, ends: dict[int, int]) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    done = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
    return bool(ends) and all(done.get(p, -1) >= end for p, end in ends.items())


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await topic_partitions(consumer, topic))]
        if not tps:
            raise SystemExit(f"topic {topic} has no partitions in the metadata")
        consumer.assign(tps)
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def last_timestamp(bootstrap: str, topic: str) -> tuple[int, float]:
    """(record count, latest record timestamp in seconds) of a topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await topic_partitions(consumer, topic))]
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        latest, count = 0, sum(ends.values())
        for tp, end in ends.items():
            if end > 0:
                consumer.seek(tp, end - 1)
                record = await consumer.getone(tp)
                latest = max(latest, record.timestamp)
        return count, latest / 1000.0
    finally:
        await consumer.stop()


def ready_time(log_path: Path) -> float | None:
    for line in log_path.read_text(errors="replace").splitlines():
        if "Worker ready" in line:
            stamp = json.loads(line)["ts"]
            return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    return None


def processor_run(bootstrap: str, directory: Path, input_topic: str, partitions: int, total: int) -> tuple[float, int]:
    """(seconds, commands) for one worker over the input topic, with a fresh app id."""
    run = uuid.uuid4().hex[:8]
    app_id = f"bench-{run}"
    path = topics_file(directory, run, app_id, input_topic, partitions)
    asyncio.run(create(bootstrap, path))
    log_path = directory / f"worker-{run}.log"
    env = {
        **os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "CIOPROC_TOPICS_FILE": str(path),
        "CIOPROC_APP_ID": app_id, "CIOPROC_DATA_DIR": str(directory / "data"), "CIOPROC_METRICS_PORT": "0",
        "CIOPROC_ENV_FILE": "/dev/null/none", "CIOPROC_LOG_LEVEL": "info",
    }
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "cioproc.app.worker", "processor"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
    try:
        ends = asyncio.run(end_offsets(bootstrap, input_topic))
        deadline = time.monotonic() + 600
        while not asyncio.run(group_done(bootstrap, app_id, input_topic, ends)):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker failed or timed out; see {log_path}")
            time.sleep(1.0)
        commands, last = asyncio.run(last_timestamp(bootstrap, f"bench.commands.{run}"))
        ready = ready_time(log_path)
        if ready is None:
            raise SystemExit(f"no 'Worker ready' in the worker's log:\n{log_path.read_text()[-3000:]}")
        return last - ready, commands
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    args = parser.parse_args(argv)

    first, later = generate(args.batches, args.users)
    batches = first + later
    total = len(batches)
    events = sum(len(orjson.loads(raw)["events"]) for raw in batches)
    size = sum(len(raw) for raw in batches) / total
    with tempfile.TemporaryDirectory(prefix="cioproc-bench-") as tmp:
        directory = Path(tmp)
        run = uuid.uuid4().hex[:8]
        input_topic = f"bench.batches.{run}"
        path = topics_file(directory, run, f"bench-in-{run}", input_topic, args.partitions)
        asyncio.run(create(args.bootstrap, path))
        asyncio.run(produce_input(args.bootstrap, input_topic, batches))
        print(
            f"{total} batches ({args.users} users' first + {args.batches} more), {events / total:.1f} events/batch, "
            f"{size / 1024:.1f} KiB/batch, {args.partitions} partitions, broker {args.bootstrap}; "
            f"{args.repeats} repeats"
        )
        raw_s: list[float] = []
        proc_s: list[float] = []
        for repeat in range(args.repeats):
            out = f"bench.raw.{uuid.uuid4().hex[:8]}"
            asyncio.run(create_one(args.bootstrap, out, args.partitions))
            raw_s.append(asyncio.run(raw_loop(args.bootstrap, input_topic, out, total)))
            seconds, commands = processor_run(args.bootstrap, directory, input_topic, args.partitions, total)
            proc_s.append(seconds)
            print(
                f"  repeat {repeat + 1}: raw {total / raw_s[-1]:,.0f} msg/s, processor {total / seconds:,.0f} msg/s "
                f"({commands} commands), ratio {raw_s[-1] / seconds:.2f}"
            )
    raw_med, proc_med = statistics.median(raw_s), statistics.median(proc_s)
    ratios = [r / p for r, p in zip(raw_s, proc_s, strict=True)]
    print(f"raw aiokafka loop   median {total / raw_med:10,.0f} msg/s {events / raw_med:12,.0f} events/s")
    print(f"processor worker    median {total / proc_med:10,.0f} msg/s {events / proc_med:12,.0f} events/s")
    print(f"ratio processor / raw: median {statistics.median(ratios):.2f} (target >= 0.30)")


async def create_one(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


if __name__ == "__main__":
    main()
