"""Benchmark: how long a worker takes to rebuild the users table from its changelog, and its peak memory.

Run: ``python bench/recovery.py [--users N] [--partitions P] [--repeats R] [--bootstrap HOST:PORT]``
(``make bench-recovery``; the broker must be running: ``cioproc kafka start``).

A changelog of N users (default 1,000,000) is produced once, directly: realistic
``UserState`` values (the final states of generated users, mapped by the real mapping,
each copy given its own customer id and email, encoded with ``encode_state``), keyed by
MPID and partitioned as the processor partitions them. Then, R times each:

- baseline ``raw read``: a plain aiokafka consumer reads every changelog partition from the
  beginning to its end offset and discards the records (what any restore must at least do);
- baseline ``raw read into a dict``: the same, keeping key -> value in a dict (what the memory
  store ends up holding);
- ``memory``: ``cioproc worker --role processor`` with the memory store and an empty data dir;
- ``rocksdb cold``: ``CIOPROC_STORE=rocksdb`` and an empty data dir (the whole changelog is
  written into RocksDB);
- ``rocksdb warm``: the same worker restarted (SIGTERM, then start) on the data dir the cold
  run left: RocksDB keeps the table and the changelog offset it holds, so only what was
  written since is read;
- with ``--stock``, also ``faust stock: memory`` and ``faust stock: rocksdb cold``: the same
  worker with Faust's own stores, whose recovery takes every record through Faust's
  per-record path (the "before" of cioproc.store's bulk restore).

Each run is its own process. Reported per run: the wall time from process start to
readiness (``/readyz`` answers 200: partitions assigned, recovery done), the restore alone
(from the partition assignment to "Worker ready" in the worker's log; for the baselines, the
read), the records read in bulk, and the process's peak RSS (``VmHWM``). Medians over the repeats,
and each worker figure next to the raw read's as a ratio. Target: each restore under 60 s.

Measured on the 2-core development machine (1,000,000 users, 275 MB of state, 8
partitions, one run; ready = process start to /readyz): raw read 3.4-5.2 s; memory 8.8-10.3 s
(peak RSS about 600 MB); RocksDB cold 8.6-10.9 s (about 480 MB); RocksDB warm 2.1-2.3 s
(about 85 MB); Faust's own recovery 215 s (memory) and 233 s (RocksDB). What bounds them:
the worker's start (imports, joining the group: about 2 s, all of a warm restart), reading
the changelog from the broker (the raw read), then writing it into the store (dict inserts;
RocksDB puts into 8 memtables of 64 MB, which is also most of the cold run's peak RSS). The
memory store's RSS is the table itself (the raw read into a dict needs about 500 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cioproc.generate.synthetic import generate  # noqa: E402
from cioproc.kafka.admin import reconcile  # noqa: E402
from cioproc.kafka.topics import load_topics  # noqa: E402
from cioproc.mapping import map_batch, parse_batch  # noqa: E402
from cioproc.models.settings import MappingSettings  # noqa: E402
from cioproc.models.state import UserState, encode_state  # noqa: E402

TEMPLATE_USERS = 3000
READY_TIMEOUT_S = 600.0


# ---- the changelog ------------------------------------------------------------------------


def template_states(users: int = TEMPLATE_USERS, seed: int = 7) -> list[UserState]:
    """Final states of generated users, as the mapping leaves them."""
    import orjson

    states: dict[str, UserState] = {}
    for record in generate(users=users, events=users * 10, seed=seed):
        if record.topic_role != "batches":
            continue
        batch = parse_batch(orjson.dumps(record.value))
        states[batch.mpid] = map_batch(batch, states.get(batch.mpid), MappingSettings()).state
    return list(states.values())


def changelog_records(n: int, templates: list[UserState], seed: int = 11):
    """(key, value) for n users: MPIDs as the processor keys them, each template copy made unique."""
    rng = random.Random(seed)
    for i in range(n):
        state = templates[i % len(templates)].copy()
        if state.customer_id is not None:
            state.customer_id = f"cust-{i:09d}"
        if state.email is not None:
            state.email = f"user{i}@example.com"
        if state.id_type == "id":
            state.id_value = state.customer_id
        elif state.id_type == "email":
            state.id_value = state.email
        yield str(rng.randrange(-(2**63), 2**63)).encode(), encode_state(state)


async def produce_changelog(bootstrap: str, topic: str, records) -> tuple[int, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1024 * 1024, acks=1)
    await producer.start()
    count = size = 0
    try:
        pending = []
        for key, value in records:
            pending.append(await producer.send(topic, value, key=key))
            count += 1
            size += len(value)
            if len(pending) >= 20000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count, size


def topics_file(directory: Path, run: str, app_id: str, partitions: int) -> Path:
    doc = yaml.safe_load((ROOT / "topics.yaml").read_text())
    for topic in doc["topics"]:
        role = topic["role"]
        topic["name"] = f"{app_id}-users-changelog" if role == "table_changelog" else f"bench.{role}.{run}"
        if role in ("batches", "audiences", "commands", "table_changelog"):
            topic["partitions"] = partitions
    path = directory / f"topics-{run}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


# ---- measured runs ------------------------------------------------------------------------


@dataclass
class Run:
    kind: str
    wall_s: float  # process start -> ready (baselines: process start -> read done)
    restore_s: float  # the restore/read phase alone
    peak_rss_mb: float
    records: int = 0  # read by the baseline, or bulk-restored by the worker


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def log_times(path: Path) -> dict[str, float]:
    """Unix times of the worker's recovery milestones, from its JSON log lines."""
    marks = {"restoring": "Restoring state from changelog topics", "done": "Done reading from changelog topics",
             "ready": "Worker ready", "assigned": "Executing _on_partitions_assigned"}
    found: dict[str, float] = {}
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        for name, text in marks.items():
            if name not in found and text in entry.get("msg", ""):
                found[name] = datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp()
    return found


# Faust's own stores (and so its per-record recovery): the worker with the table's store left to
# the app's (memory:// or rocksdb://), for the "before" figures of --stock.
STOCK_WORKER = (
    "import sys, cioproc.store as s; s.store_url = lambda store, table: None; "
    "from cioproc.app.worker import main; sys.exit(main('processor'))"
)


def worker_run(kind: str, env: dict[str, str], log_path: Path, stock: bool = False) -> Run:
    """Start a processor worker, wait until it is ready, stop it with SIGTERM; the measurements."""
    port = free_port()
    env = {**env, "CIOPROC_METRICS_PORT": str(port)}
    command = ["-c", STOCK_WORKER] if stock else ["-m", "cioproc.cli", "worker", "--role", "processor"]
    started_wall = time.time()
    started = time.monotonic()
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([sys.executable, *command],
                                  env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while not ready(port):
            if worker.poll() is not None:
                raise SystemExit(f"{kind}: the worker exited ({worker.returncode}):\n{log_path.read_text()[-3000:]}")
            if time.monotonic() - started > READY_TIMEOUT_S:
                raise SystemExit(f"{kind}: not ready within {READY_TIMEOUT_S:.0f}s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        wall = time.monotonic() - started
        rss = peak_rss_mb(worker.pid)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
    marks = log_times(log_path)
    restore = marks.get("ready", started_wall + wall) - marks.get("assigned", started_wall)
    return Run(kind, wall, restore, rss, bulk_restored(log_path))


def bulk_restored(path: Path) -> int:
    """Records the worker's stores read in bulk (cioproc.store.changelog's log lines)."""
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        if "bulk-restored" in line:
            total += int(line.split("bulk-restored ", 1)[1].split()[0])
    return total


async def raw_read(bootstrap: str, topic: str, partitions: int, keep: bool) -> tuple[int, float]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        started = time.monotonic()
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        table: dict[bytes, bytes] = {}
        count = 0
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10000)
            for tp, records in batch.items():
                count += len(records)
                if keep:
                    for record in records:
                        table[record.key] = record.value
                if records and records[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
        return count, time.monotonic() - started
    finally:
        await consumer.stop()


def baseline_run(kind: str, bootstrap: str, topic: str, partitions: int, keep: bool) -> Run:
    """The raw read in a process of its own (so its peak RSS is its own)."""
    started = time.monotonic()
    out = subprocess.run([sys.executable, __file__, "--_raw-read", topic, "--bootstrap", bootstrap,
                          "--partitions", str(partitions)] + (["--_keep"] if keep else []),
                         capture_output=True, text=True)
    wall = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return Run(kind, wall, result["read_s"], result["peak_rss_mb"], result["records"])


# ---- report -------------------------------------------------------------------------------


def median(runs: list[Run], attribute: str) -> float:
    return statistics.median(getattr(r, attribute) for r in runs)


def report(results: dict[str, list[Run]], users: int, value_bytes: int) -> None:
    print(f"\ntable: {users:,} users, changelog {value_bytes / 1e6:.0f} MB of values "
          f"({value_bytes / users:.0f} B/user); medians of {len(next(iter(results.values())))} run(s)")
    base = median(results["raw read"], "restore_s")
    print(f"{'':28}{'ready (s)':>11}{'restore (s)':>13}{'vs raw read':>13}{'records/s':>12}{'peak RSS (MB)':>15}")
    for kind, runs in results.items():
        restore = median(runs, "restore_s")
        rate = "-" if kind == "rocksdb warm" else f"{users / restore:,.0f}"  # warm reads (almost) nothing
        print(f"{kind:28}{median(runs, 'wall_s'):11.1f}{restore:13.1f}{restore / base:12.1f}x"
              f"{rate:>12}{median(runs, 'peak_rss_mb'):15.0f}")
    worst = max(median(runs, "wall_s") for kind, runs in results.items() if not kind.startswith(("raw", "faust")))
    print(f"slowest worker start to ready: {worst:.1f}s (target: under 60 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--only", default="", help="comma-separated subset: raw,dict,memory,rocksdb")
    parser.add_argument("--stock", action="store_true",
                        help="also time Faust's own per-record recovery (memory and RocksDB cold): slow")
    parser.add_argument("--_raw-read", dest="raw_read", help=argparse.SUPPRESS)
    parser.add_argument("--_keep", dest="keep", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.raw_read:  # a baseline's own process
        count, took = asyncio.run(raw_read(args.bootstrap, args.raw_read, args.partitions, args.keep))
        print(json.dumps({"records": count, "read_s": took, "peak_rss_mb": peak_rss_mb(os.getpid())}))
        return

    only = set(filter(None, args.only.split(","))) or {"raw", "dict", "memory", "rocksdb"}
    run = uuid.uuid4().hex[:8]
    app_id = f"cioproc-bench-recovery-{run}"
    directory = Path(tempfile.mkdtemp(prefix="cioproc-bench-recovery-"))
    names: list[str] = []
    try:
        path = topics_file(directory, run, app_id, args.partitions)
        names = [t.name for t in load_topics(path).topics]
        report_ = asyncio.run(reconcile(load_topics(path), args.bootstrap, create=True))
        if not report_.ok:
            raise SystemExit(f"topics: {report_.drift or report_.missing}")
        changelog = load_topics(path).by_role("table_changelog").name
        print(f"building {TEMPLATE_USERS} template states with the mapping ...", flush=True)
        templates = template_states()
        started = time.monotonic()
        count, value_bytes = asyncio.run(produce_changelog(args.bootstrap, changelog,
                                                           changelog_records(args.users, templates)))
        print(f"produced {count:,} changelog records ({value_bytes / 1e6:.0f} MB of values) to {changelog} "
              f"in {time.monotonic() - started:.1f}s", flush=True)

        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": args.bootstrap,
            "CIOPROC_TOPICS_FILE": str(path),
            "CIOPROC_APP_ID": app_id,
            "CIOPROC_ENV_FILE": "/dev/null/none",
            "CIOPROC_LOG_LEVEL": "info",
        }
        results: dict[str, list[Run]] = {}
        for i in range(args.repeats):
            # Each step runs in this iteration; partial binds this iteration's i and paths now.
            steps: list[tuple[str, Callable[[], Run]]] = []
            if "raw" in only:
                steps.append(("raw read", partial(baseline_run, "raw read", args.bootstrap, changelog,
                                                  args.partitions, False)))
            if "dict" in only:
                steps.append(("raw read into a dict", partial(baseline_run, "raw read into a dict", args.bootstrap,
                                                              changelog, args.partitions, True)))
            if "memory" in only:
                memory = {**env, "CIOPROC_STORE": "memory", "CIOPROC_DATA_DIR": str(directory / f"m{i}")}
                steps.append(("memory", partial(worker_run, "memory", memory, directory / f"memory-{i}.log")))
            if "rocksdb" in only:
                data = directory / f"r{i}"
                rocks = {**env, "CIOPROC_STORE": "rocksdb", "CIOPROC_DATA_DIR": str(data)}
                steps.append(("rocksdb cold", partial(worker_run, "rocksdb cold", rocks, directory / f"cold-{i}.log")))
                steps.append(("rocksdb warm", partial(worker_run, "rocksdb warm", rocks, directory / f"warm-{i}.log")))
            if args.stock:
                stock_memory = {**env, "CIOPROC_STORE": "memory", "CIOPROC_DATA_DIR": str(directory / f"sm{i}")}
                steps.append(("faust stock: memory", partial(
                    worker_run, "faust stock: memory", stock_memory, directory / f"stock-memory-{i}.log", stock=True)))
                stock_rocks = {**env, "CIOPROC_STORE": "rocksdb", "CIOPROC_DATA_DIR": str(directory / f"sr{i}")}
                steps.append(("faust stock: rocksdb cold", partial(
                    worker_run, "faust stock: rocksdb cold", stock_rocks, directory / f"stock-rocksdb-{i}.log",
                    stock=True)))
            for kind, step in steps:
                result = step()
                expected = 0 if kind == "rocksdb warm" or kind.startswith("faust") else args.users
                if result.records != expected:
                    raise SystemExit(f"{kind} read {result.records} records, expected {expected}")
                results.setdefault(kind, []).append(result)
                print(f"  {kind:24} ready {result.wall_s:6.1f}s  restore {result.restore_s:6.1f}s  "
                      f"peak RSS {result.peak_rss_mb:6.0f} MB", flush=True)
        if "raw read" in results:
            report(results, args.users, value_bytes)
    finally:
        if names:  # the changelog is large: do not leave it on the broker
            asyncio.run(delete_topics(args.bootstrap, names))
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
