"""Benchmark: the processor worker versus two aiokafka loops over the same batches, same broker.

Run: ``python bench/processor.py [--batches N] [--users U] [--repeats R] [--bootstrap HOST:PORT]
[--profile]`` (``make bench-processor``; the broker must be running: ``cioproc kafka start``).

N realistic mParticle batches (8 events and 14 user attributes each, about 2.3 KB, issue
13's shape; generated with bench/mapping.py's generator: each of U users' first batch, then
N more of random users; defaults 5,000 + 35,000 = 40,000 batches) are produced once to an
input topic. Then, R times and in turn, over the same input:

- raw: one asyncio loop with aiokafka: consume (2,000 records per fetch) -> ``orjson.loads``
  -> ``msgpack.packb`` of the whole batch -> produce with ``acks=all`` (not awaited per
  record; awaited per fetch, then the offsets are committed). A heavy baseline.
- lean: issue 13's loop: consume (aiokafka's defaults) -> ``json.loads`` -> ``msgpack.packb``
  of the events -> produce one record per batch (``acks=1``, aiokafka's default; producer
  batches of up to 512 KiB) -> await the fetch's acknowledgements and commit per fetch.
  Both loops are timed from the first fetch that returns records to the last produce
  acknowledgement.
- processor: ``python -m cioproc.app.worker processor`` with a fresh app id (empty table),
  reading the same input topic: mapping, commands to cio.commands, the users table and its
  changelog, acks and commits. Timed as issue 13 does, from the timestamp of its first
  record on the commands topic to that of its last (the time from the worker's "Worker
  ready" log line to its first command, the group join mostly, is printed apart).

Prints each repeat and the medians (batches/s, events/s), and the medians of the per-repeat
ratios processor / raw (target: at least 0.3) and processor / lean (issue 13's target: at
least 0.5); per-repeat ratios, because the machine is shared and its speed drifts. Also the
CPU time the lean loop and the worker spend per 1000 batches (the worker's from its
readiness to its last commit): steadier than wall time on a shared machine.

``--profile``: one more processor run, not timed, under ``py-spy`` (when installed) or else
cProfile; prints the functions with the most samples (own and inclusive).

Measured for issue 13 (2 shared cores, medians of 5 repeats, each run's figures from that run):

- before (one record per command): processor/lean 0.37, processor/raw 0.34; CPU per 1000
  batches: worker 138 ms, lean loop 50 ms (ratio 0.36).
- after (one ``commands/1`` record per batch, GC tuned, cached partitioner): processor/lean
  0.48, 0.47 and 0.50 in three runs (single repeats 0.35-0.62 as the machine's load moved),
  processor/raw 0.55, 0.48 and 0.46; CPU per 1000 batches: worker 81-122 ms, lean loop
  43-62 ms (ratio 0.51 in each run).
- where the worker's time goes after (py-spy, share of all samples, start-up included):
  the planner 42 % (mapping 14 %, JSON parse 7 %, state decode 6 %, records and state
  encoding 11 %), producing 7 %, Faust's consumer thread (fetching, record unpacking) 16 %,
  imports at start-up 11 %, the event loop's socket I/O most of the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
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


async def lean_loop(bootstrap: str, input_topic: str, output_topic: str, total: int) -> float:
    """Seconds for issue 13's lean loop over ``total`` records (see the module docstring)."""
    consumer = AIOKafkaConsumer(
        input_topic, bootstrap_servers=bootstrap, group_id=f"bench-lean-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    # Batches of up to 512 KiB (as the raw loop's): with aiokafka's 16 KiB the loop runs at half speed.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024)
    await consumer.start()
    await producer.start()
    try:
        seen = 0
        started = None
        while seen < total:
            fetched = await consumer.getmany(timeout_ms=1000)
            if not fetched:
                continue
            if started is None:
                started = time.perf_counter()
            futures = []
            for records in fetched.values():
                for record in records:
                    events = json.loads(record.value)["events"]
                    futures.append(await producer.send(output_topic, msgpack.packb(events), key=record.key))
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


async def output_span(bootstrap: str, topic: str) -> tuple[int, float, float]:
    """(record count, earliest and latest record timestamp in seconds) of a topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await topic_partitions(consumer, topic))]
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        earliest, latest, count = float("inf"), 0, sum(ends.values())
        for tp, end in ends.items():
            if end > 0:
                consumer.seek(tp, 0)
                earliest = min(earliest, (await consumer.getone(tp)).timestamp)
                consumer.seek(tp, end - 1)
                latest = max(latest, (await consumer.getone(tp)).timestamp)
        return count, earliest / 1000.0, latest / 1000.0
    finally:
        await consumer.stop()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(loop, *args) -> tuple[float, float]:  # noqa: ANN001
    """(wall seconds the loop reports, CPU seconds of this process while it ran)."""
    cpu = time.process_time()
    seconds = asyncio.run(loop(*args))
    return seconds, time.process_time() - cpu


def ready_time(log_path: Path) -> float | None:
    for line in log_path.read_text(errors="replace").splitlines():
        if "Worker ready" in line:
            stamp = json.loads(line)["ts"]
            return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    return None


def processor_run(
    bootstrap: str, directory: Path, input_topic: str, partitions: int, total: int, profile: Path | None = None
) -> tuple[float, float, int, float]:
    """(seconds from its first to its last command record, seconds from its readiness to its first
    command record, command records, CPU seconds from its readiness to its last commit) for one
    worker over the input topic, with a fresh app id; under a profiler writing to ``profile``
    when given (see :func:`profiler_command`)."""
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
        command = [sys.executable, "-m", "cioproc.app.worker", "processor"]
        if profile is not None:
            command = profiler_command(profile) + command
        worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
    try:
        ends = asyncio.run(end_offsets(bootstrap, input_topic))
        deadline = time.monotonic() + 600
        while ready_time(log_path) is None and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu_at_ready = cpu_seconds(worker.pid)
        while not asyncio.run(group_done(bootstrap, app_id, input_topic, ends)):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker failed or timed out; see {log_path}")
            time.sleep(1.0)
        cpu = cpu_seconds(worker.pid) - cpu_at_ready
        commands, first, last = asyncio.run(output_span(bootstrap, f"bench.commands.{run}"))
        ready = ready_time(log_path)
        if ready is None:
            raise SystemExit(f"no 'Worker ready' in the worker's log:\n{log_path.read_text()[-3000:]}")
        return last - first, first - ready, commands, cpu
    finally:
        if profile is not None:  # stop the profiled worker; py-spy writes its file when it ends
            for child in Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split():
                os.kill(int(child), signal.SIGTERM)
        else:
            worker.terminate()
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()


def py_spy() -> str | None:
    found = Path(sys.executable).with_name("py-spy")
    return str(found) if found.exists() else shutil.which("py-spy")


def profiler_command(out: Path) -> list[str]:
    """The prefix that runs a Python command under py-spy (collapsed stacks, its threads and
    native frames left out), or cProfile without py-spy."""
    spy = py_spy()
    if spy is not None:
        return [spy, "record", "--format", "raw", "--rate", "250", "--nonblocking", "-o", str(out), "--"]
    return [sys.executable, "-m", "cProfile", "-o", str(out)]


def print_profile(out: Path, top: int = 25) -> None:
    """The functions with the most samples: own (self) and inclusive, as shares of all samples."""
    if not out.exists():
        print(f"profile: no output at {out}")
        return
    if py_spy() is None:
        import pstats

        pstats.Stats(str(out)).sort_stats("tottime").print_stats(top)
        return
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in out.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame(frame) for frame in stack.split(";")[1:]]  # the first is the process
        if not frames:
            continue
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    print(f"profile of one processor run: {total} samples (py-spy, 250/s); top {top} by own samples:")
    for frame, count in sorted(own.items(), key=lambda item: -item[1])[:top]:
        print(f"  {100 * count / total:5.1f}%  {frame}")
    print(f"top {top} by inclusive samples (the event loop's run and its callers left out):")
    shown = 0
    for frame, count in sorted(inclusive.items(), key=lambda item: -item[1]):
        if any(skip in frame for skip in ("<module>", "run_forever", "_run_once", "run_until_complete",
                                          "_run_module", "_run_code", "(asyncio/events.py)", "execute_from_commandline",
                                          "(mode/worker.py)", "(faust/worker.py)", "(cioproc/app/worker.py)")):
            continue
        print(f"  {100 * count / total:5.1f}%  {frame}")
        shown += 1
        if shown >= top:
            break


def _frame(frame: str) -> str:
    """``function (path/to/file.py:line)`` -> ``function (package/file.py)``: one entry per function."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1:]
    elif "cioproc" in parts:
        parts = parts[len(parts) - 1 - parts[::-1].index("cioproc"):]
    else:
        parts = parts[-2:]
    return f"{name} ({'/'.join(parts)})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=35_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--profile", action="store_true", help="one more processor run under a profiler")
    parser.add_argument("--profile-out", help="with --profile: keep the profile in this file")
    args = parser.parse_args(argv)

    first, later = generate(args.batches, args.users, compact=True)
    batches = first + later
    total = len(batches)
    events = sum(len(orjson.loads(raw)["events"]) for raw in batches)
    attributes = sum(len(orjson.loads(raw)["user_attributes"]) for raw in batches)
    size = sum(len(raw) for raw in batches) / total
    with tempfile.TemporaryDirectory(prefix="cioproc-bench-") as tmp:
        directory = Path(tmp)
        run = uuid.uuid4().hex[:8]
        input_topic = f"bench.batches.{run}"
        path = topics_file(directory, run, f"bench-in-{run}", input_topic, args.partitions)
        asyncio.run(create(args.bootstrap, path))
        asyncio.run(produce_input(args.bootstrap, input_topic, batches))
        print(
            f"{total} batches ({args.users} users' first + {args.batches} more), {events / total:.1f} events and "
            f"{attributes / total:.1f} user attributes/batch, {size:,.0f} bytes/batch, {args.partitions} partitions, "
            f"broker {args.bootstrap}; {args.repeats} repeats"
        )
        raw_s: list[float] = []
        lean_s: list[float] = []
        proc_s: list[float] = []
        lean_cpu: list[float] = []
        proc_cpu: list[float] = []
        for repeat in range(args.repeats):
            for loop, times in ((raw_loop, raw_s), (lean_loop, lean_s)):
                out = f"bench.{loop.__name__}.{uuid.uuid4().hex[:8]}"
                asyncio.run(create_one(args.bootstrap, out, args.partitions))
                seconds, cpu = timed(loop, args.bootstrap, input_topic, out, total)
                times.append(seconds)
                if loop is lean_loop:
                    lean_cpu.append(cpu)
            run_args = (args.bootstrap, directory, input_topic, args.partitions, total)
            seconds, start, commands, cpu = processor_run(*run_args)
            proc_s.append(seconds)
            proc_cpu.append(cpu)
            print(
                f"  repeat {repeat + 1}: raw {total / raw_s[-1]:,.0f}/s, lean {total / lean_s[-1]:,.0f}/s, "
                f"processor {total / seconds:,.0f} batches/s ({commands} command records, first {start:.1f} s "
                f"after readiness); processor/raw {raw_s[-1] / seconds:.2f}, "
                f"processor/lean {lean_s[-1] / seconds:.2f}; "
                f"CPU ms per 1000 batches: lean {1e6 * lean_cpu[-1] / total:.0f}, processor {1e6 * cpu / total:.0f}"
            )
        if args.profile:
            out = directory / "profile.out"
            processor_run(args.bootstrap, directory, input_topic, args.partitions, total, profile=out)
            print_profile(out)
            if args.profile_out:
                shutil.copy(out, args.profile_out)
    for name, times in (("raw aiokafka loop", raw_s), ("lean aiokafka loop", lean_s), ("processor worker", proc_s)):
        median = statistics.median(times)
        print(f"{name:20} median {total / median:10,.0f} batches/s {events / median:12,.0f} events/s")
    raw_ratio = statistics.median(r / p for r, p in zip(raw_s, proc_s, strict=True))
    lean_ratio = statistics.median(lean / p for lean, p in zip(lean_s, proc_s, strict=True))
    print(f"ratio processor / raw:  median {raw_ratio:.2f} (target >= 0.30)")
    print(f"ratio processor / lean: median {lean_ratio:.2f} (target >= 0.50)")
    cpu_ratio = statistics.median(lean / p for lean, p in zip(lean_cpu, proc_cpu, strict=True))
    print(f"CPU ms per 1000 batches (the broker's not counted): "
          f"lean loop median {1e6 * statistics.median(lean_cpu) / total:.0f}, "
          f"processor median {1e6 * statistics.median(proc_cpu) / total:.0f} (from its readiness to its last commit); "
          f"ratio lean / processor {cpu_ratio:.2f}")


async def create_one(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


if __name__ == "__main__":
    main()
