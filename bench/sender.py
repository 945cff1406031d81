"""Benchmark: the Deliverer versus a raw aiohttp loop posting the same batch bodies to the sandbox.

Run: ``python bench/sender.py [--commands N] [--repeats R] [--partitions P] [--chunk C]
[--concurrency K] [--sandbox-process]``.

Commands shaped like the mapping's output (per mParticle batch: an identify with a dozen user
attributes, then track and screen commands with event attributes) are generated with a fixed
seed. Then, R times each, against one sandbox (reset before every run; workspace checked after):

- sender: a :class:`CommandSource` feeds chunks per partition; one consumer per partition
  awaits ``Deliverer.deliver(chunk)`` before taking the next chunk (what the Faust agent does
  before committing), all partitions concurrently over one shared Deliverer. Encoding,
  packing, lanes, rate limiter and response handling are inside the timing.
- raw: the same commands packed once, before timing, into v2 batch bodies with the same size
  limit; K aiohttp workers post them and read the responses. Nothing else.

Both finish when every request was answered, i.e. when the sandbox holds every command (the
sandbox applies a request before answering). Prints medians of commands/s, HTTP requests per
1000 commands, and the ratio sender/raw (the issue's target: at least 0.7).

The source is pluggable: a Kafka-backed source (backlog on ``cio.commands``) only needs to
implement :class:`CommandSource` (``partitions()`` yielding per-partition async iterators of
command lists, and ``total``).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cioproc.models.commands import Command, CommandKind  # noqa: E402
from cioproc.models.ulid import deterministic_ulid  # noqa: E402
from cioproc.sandbox import SANDBOX, SandboxConfig, serve  # noqa: E402
from cioproc.sender import Deliverer, SenderConfig  # noqa: E402
from cioproc.sender.client import basic_auth_header  # noqa: E402
from cioproc.sender.packing import batch_body, pack  # noqa: E402
from cioproc.sender.payloads import encode_v2_entry  # noqa: E402

SITE, KEY = "sandbox-site", "sandbox-key"
EVENT_NAMES = ["Add_To_Cart", "View_Product", "Search", "Checkout_Started", "Share", "Play_Video"]
SCREENS = ["Home", "Product Detail", "Cart", "Settings", "Search Results"]


# -- workload -----------------------------------------------------------------------------


def generate(count: int, users: int, seed: int = 1) -> list[Command]:
    """``count`` commands: per simulated mParticle batch one identify and up to 8 events."""
    import random

    rng = random.Random(seed)
    commands: list[Command] = []
    ts = 1_700_000_000
    while len(commands) < count:
        user = rng.randrange(users)
        mpid, customer = str(-(10**17) - user), f"cust-{user:06d}"
        ts += rng.randint(1, 30)
        commands.append(
            Command(
                CommandKind.IDENTIFY, mpid, "id", customer, ts,
                {
                    "first_name": rng.choice(["Ada", "Bo", "Cy", "Dee"]),
                    "last_name": rng.choice(["Lovelace", "Diddley", "Young"]),
                    "email": f"user{user}@example.com",
                    "city": rng.choice(["Berlin", "Lisbon", "Austin", "Osaka"]),
                    "plan": rng.choice(["free", "pro", "team"]),
                    "age": rng.randint(18, 90),
                    "score": round(rng.random() * 100, 3),
                    "newsletter": rng.random() < 0.5,
                    "app_version": f"4.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
                    "platform": rng.choice(["iOS", "Android", "MobileWeb"]),
                    "language": rng.choice(["en", "de", "pt", "ja"]),
                    "favorite_color": None,
                },
            )
        )
        for _ in range(rng.randint(1, 8)):
            if len(commands) >= count:
                break
            ts += 1
            if rng.random() < 0.25:
                kind, name = CommandKind.SCREEN, rng.choice(SCREENS)
                data: dict[str, Any] = {"timestamp": ts * 1000, "referrer": rng.choice(SCREENS)}
            else:
                kind, name = CommandKind.TRACK, rng.choice(EVENT_NAMES)
                data = {
                    "timestamp": ts * 1000,
                    "product_id": f"sku-{rng.randint(1, 5000)}",
                    "price": round(rng.random() * 200, 2),
                    "currency": "EUR",
                    "quantity": rng.randint(1, 5),
                    "category": rng.choice(["shoes", "books", "games"]),
                }
            event_id = deterministic_ulid(ts * 1000, f"{mpid}:{len(commands)}".encode())
            commands.append(Command(kind, mpid, "id", customer, ts, data, name, event_id))
    return commands


# -- sources ------------------------------------------------------------------------------


class CommandSource(Protocol):
    """Where the sender's commands come from, per partition, in chunks."""

    total: int

    def partitions(self) -> Sequence[AsyncIterator[list[Command]]]: ...


@dataclass
class MemorySource:
    """Commands partitioned by mpid (as Kafka keys them) and cut into chunks of ``chunk``."""

    commands: list[Command]
    partitions_count: int
    chunk: int

    @property
    def total(self) -> int:
        return len(self.commands)

    def partitions(self) -> list[AsyncIterator[list[Command]]]:
        parts: list[list[Command]] = [[] for _ in range(self.partitions_count)]
        for command in self.commands:
            parts[zlib.crc32(command.mpid.encode()) % self.partitions_count].append(command)
        return [self._chunks(part) for part in parts]

    async def _chunks(self, part: list[Command]) -> AsyncIterator[list[Command]]:
        for start in range(0, len(part), self.chunk):
            yield part[start : start + self.chunk]


# -- the two contenders -------------------------------------------------------------------


async def run_sender(source: CommandSource, deliverer: Deliverer) -> int:
    """Consume every partition concurrently, one deliver() at a time per partition; return the
    number of commands delivered."""
    delivered = 0

    async def consume(chunks: AsyncIterator[list[Command]]) -> None:
        nonlocal delivered
        async for chunk in chunks:
            outcomes = await deliverer.deliver(chunk)
            delivered += sum(1 for outcome in outcomes if outcome.delivered)

    await asyncio.gather(*(consume(chunks) for chunks in source.partitions()))
    return delivered


async def run_raw(url: str, bodies: list[bytes], concurrency: int) -> int:
    """Post every body with ``concurrency`` workers on one session; return the requests made."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"Authorization": basic_auth_header(SITE, KEY), "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                async with session.post(url + "/api/v2/batch", data=body) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"raw loop got HTTP {response.status}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(bodies)


# -- the sandbox ----------------------------------------------------------------------------


class SandboxHandle:
    """The sandbox, in this process (default) or in its own process; reset and inspected over HTTP."""

    def __init__(self, separate_process: bool) -> None:
        self.separate_process = separate_process
        self.url = ""
        self._runner: Any = None
        self._process: subprocess.Popen[str] | None = None
        self.admin = {"Authorization": f"Bearer {secrets.token_urlsafe(24)}"}  # for the /_sandbox/ routes

    async def start(self) -> None:
        token = self.admin["Authorization"].split(" ", 1)[1]
        if self.separate_process:
            self._process = await asyncio.to_thread(
                subprocess.Popen,
                [sys.executable, "-m", "cioproc.sandbox", "--port", "0", "--site-id", SITE, "--api-key", KEY,
                 "--admin-token", token],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self._process.stdout is not None
            line = await asyncio.to_thread(self._process.stdout.readline)
            self.url = next(word for word in line.split() if word.startswith("http://"))
        else:
            self._runner, port = await serve(SandboxConfig(port=0, site_id=SITE, api_key=KEY, admin_token=token))
            self.url = f"http://127.0.0.1:{port}"

    async def reset(self, session: aiohttp.ClientSession) -> None:
        async with session.post(self.url + "/_sandbox/reset", headers=self.admin) as response:
            assert response.status == 200

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(self.url + "/_sandbox/stats", headers=self.admin) as response:
            return orjson.loads(await response.read())

    async def stop(self) -> None:
        if self._runner is not None:
            assert self._runner.app[SANDBOX] is not None
            await self._runner.cleanup()
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)


# -- driver -------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    requests: int
    commands: int

    @property
    def rate(self) -> float:
        return self.commands / self.seconds

    @property
    def requests_per_1000(self) -> float:
        return 1000 * self.requests / self.commands


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    commands = generate(args.commands, args.users)
    events = sum(1 for c in commands if c.kind in (CommandKind.TRACK, CommandKind.SCREEN))
    entries = [encode_v2_entry(c) for c in commands]
    config = SenderConfig(
        site_id=SITE,
        api_key=KEY,
        track_url="http://placeholder.invalid",
        max_concurrency=args.concurrency,
        max_requests_per_second=args.rate or None,
    )
    packing = pack(
        [len(e) for e in entries], max_batch_bytes=config.max_batch_bytes, max_entry_bytes=config.max_entry_bytes
    )
    bodies = [batch_body([entries[i] for i in batch]) for batch in packing.batches]
    assert not packing.too_large

    sandbox = SandboxHandle(args.sandbox_process)
    await sandbox.start()
    config = SenderConfig(**{**{f: getattr(config, f) for f in config.__dataclass_fields__}, "track_url": sandbox.url})
    sender_runs: list[Run] = []
    raw_runs: list[Run] = []
    try:
        async with aiohttp.ClientSession() as control, Deliverer(config) as deliverer:
            # warm both up (connections, code paths) outside the timing
            await run_raw(sandbox.url, bodies[:1], 1)
            await run_sender(MemorySource(commands[:50], 1, 50), deliverer)
            for _ in range(args.repeats):
                for contender in ("raw", "sender"):  # alternate so drift hits both alike
                    await sandbox.reset(control)
                    if contender == "raw":
                        started = time.perf_counter()
                        requests = await run_raw(sandbox.url, bodies, args.concurrency)
                        raw_runs.append(Run(time.perf_counter() - started, requests, len(commands)))
                    else:
                        before = sum(deliverer.stats.requests.values())
                        source = MemorySource(commands, args.partitions, args.chunk)
                        started = time.perf_counter()
                        delivered = await run_sender(source, deliverer)
                        seconds = time.perf_counter() - started
                        assert delivered == len(commands), f"delivered {delivered} of {len(commands)}"
                        requests = sum(deliverer.stats.requests.values()) - before
                        sender_runs.append(Run(seconds, requests, len(commands)))
                    stats = await sandbox.stats(control)
                    assert stats["events_recorded"] == events, (contender, stats)
                    assert stats["operations_rejected"] == 0, (contender, stats)
    finally:
        await sandbox.stop()

    return summarize(args, commands, bodies, sender_runs, raw_runs,
                     source="in-memory chunks", chunk=args.chunk,
                     sandbox="separate process" if args.sandbox_process else "in process")


def summarize(args: argparse.Namespace, commands: list[Command], bodies: list[bytes], sender_runs: list[Run],
              raw_runs: list[Run], *, source: str, chunk: Any, sandbox: str) -> dict[str, Any]:
    """Medians of both contenders and their ratio, as the report prints them."""
    sender_rate = statistics.median(r.rate for r in sender_runs)
    raw_rate = statistics.median(r.rate for r in raw_runs)
    return {
        "source": source,
        "commands": len(commands),
        "bytes": sum(len(b) for b in bodies),
        "repeats": args.repeats,
        "partitions": args.partitions,
        "chunk": chunk,
        "concurrency": args.concurrency,
        "sandbox": sandbox,
        "sender_commands_per_s": round(sender_rate),
        "raw_commands_per_s": round(raw_rate),
        "sender_requests_per_1000": round(statistics.median(r.requests_per_1000 for r in sender_runs), 2),
        "raw_requests_per_1000": round(statistics.median(r.requests_per_1000 for r in raw_runs), 2),
        "ratio": round(sender_rate / raw_rate, 3),
        # each repeat runs raw then sender back to back: the median of their ratios resists drift
        "ratio_pairs_median": round(
            statistics.median(r.seconds / s.seconds for r, s in zip(raw_runs, sender_runs, strict=True)), 3
        ),
        "sender_runs_s": [round(r.seconds, 3) for r in sender_runs],
        "raw_runs_s": [round(r.seconds, 3) for r in raw_runs],
    }


# -- the Kafka backlog variant ----------------------------------------------------------------


def _bench_topics_file(tmp: Path, unique: str, partitions: int) -> Path:
    """topics.yaml with this run's topic names (and ``partitions`` for the commands topic), in ``tmp``."""
    import yaml

    doc = yaml.safe_load((Path(__file__).resolve().parent.parent / "topics.yaml").read_text())
    for topic in doc["topics"]:
        topic["name"] = f"{topic['name']}.bench{unique}"
        if topic["role"] == "commands":
            topic["partitions"] = partitions
    topics_path = tmp / "topics.yaml"
    topics_path.write_text(yaml.safe_dump(doc))
    return topics_path


def _start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A sender worker process, its stderr to ``log_path``."""
    return subprocess.Popen(
        [sys.executable, "-m", "cioproc.cli", "worker", "--role", "sender"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(log_path, "wb"),
    )


async def bench_kafka(args: argparse.Namespace) -> dict[str, Any]:
    """A backlog of the commands on a real ``cio.commands`` topic (one ``commands/1`` record per
    simulated batch, as the processor writes them), delivered by a real
    ``cioproc worker --role sender`` process; timed from the worker's readiness (its
    partitions assigned) until the sandbox holds every command. The raw loop posts the same
    commands' v2 bodies to the same sandbox (its own process here, as the worker is too)."""
    import os
    import socket
    import tempfile
    import uuid

    from aiokafka import AIOKafkaProducer

    from cioproc.kafka.admin import reconcile
    from cioproc.kafka.topics import load_topics
    from cioproc.models.commands import COMMAND_LIST_FORMAT, RECORD_FORMAT_HEADER, encode_commands

    commands = generate(args.commands, args.users)
    events = sum(1 for c in commands if c.kind in (CommandKind.TRACK, CommandKind.SCREEN))
    entries = [encode_v2_entry(c) for c in commands]
    limits = SenderConfig(site_id=SITE, api_key=KEY, track_url="http://placeholder.invalid")
    packing = pack(
        [len(e) for e in entries], max_batch_bytes=limits.max_batch_bytes, max_entry_bytes=limits.max_entry_bytes
    )
    bodies = [batch_body([entries[i] for i in batch]) for batch in packing.batches]

    unique = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="bench-sender-"))
    topics_path = await asyncio.to_thread(_bench_topics_file, tmp, unique, args.partitions)
    topics = load_topics(topics_path)
    await reconcile(topics, args.kafka, create=True)
    producer = AIOKafkaProducer(bootstrap_servers=args.kafka, acks="all", linger_ms=5)
    await producer.start()
    try:
        name = topics.by_role("commands").name
        # As the processor writes them: one record per simulated batch (a run of one user's commands).
        runs: list[list[Command]] = []
        for command in commands:
            if runs and runs[-1][0].mpid == command.mpid and command.kind is not CommandKind.IDENTIFY:
                runs[-1].append(command)
            else:
                runs.append([command])
        for run in runs:
            await producer.send(name, encode_commands(run), key=run[0].mpid.encode(),
                                headers=[(RECORD_FORMAT_HEADER, COMMAND_LIST_FORMAT)])
        await producer.flush()
    finally:
        await producer.stop()

    sandbox = SandboxHandle(separate_process=True)
    await sandbox.start()
    sender_runs: list[Run] = []
    raw_runs: list[Run] = []
    first_events: list[float] = []  # readiness -> the sandbox's first event (20 ms polling)
    try:
        async with aiohttp.ClientSession() as control:
            await run_raw(sandbox.url, bodies[:1], 1)  # warm the sandbox
            for repeat in range(args.repeats):
                for contender in ("raw", "sender"):
                    await sandbox.reset(control)
                    if contender == "raw":
                        started = time.perf_counter()
                        requests = await run_raw(sandbox.url, bodies, args.concurrency)
                        raw_runs.append(Run(time.perf_counter() - started, requests, len(commands)))
                    else:
                        with socket.socket() as sock:
                            sock.bind(("127.0.0.1", 0))
                            metrics_port = sock.getsockname()[1]
                        env = {
                            **os.environ,
                            "KAFKA_BOOTSTRAP_SERVERS": args.kafka,
                            "CIOPROC_TOPICS_FILE": str(topics_path),
                            "CIOPROC_APP_ID": f"bench-{unique}-{repeat}",  # a fresh group reads the whole backlog
                            "CIOPROC_ENV_FILE": "/nonexistent",
                            "CIOPROC_METRICS_PORT": str(metrics_port),
                            "CIOPROC_LOG_LEVEL": "warning",
                            "CIO_TRACK_URL": sandbox.url,
                            "CIO_SITE_ID": SITE,
                            "CIO_API_KEY": KEY,
                            "CIO_MAX_CONCURRENCY": str(args.concurrency),
                            "CIO_MAX_REQUESTS_PER_SECOND": str(args.rate or 100000),
                        }
                        worker = await asyncio.to_thread(_start_worker, env, tmp / f"worker{repeat}.log")
                        try:
                            started = await _wait_ready(control, metrics_port, worker)
                            first_event: float | None = None
                            while True:
                                stats = await sandbox.stats(control)
                                if first_event is None and stats["events_recorded"]:
                                    first_event = time.perf_counter() - started
                                    first_events.append(first_event)
                                if stats["events_recorded"] >= events:
                                    break
                                if worker.poll() is not None:
                                    raise RuntimeError(f"sender worker exited; see {tmp}")
                                await asyncio.sleep(0.02)
                            seconds = time.perf_counter() - started
                            sender_runs.append(Run(seconds, stats["total_requests"], len(commands)))
                        finally:
                            worker.terminate()
                            worker.wait(timeout=60)
                    stats = await sandbox.stats(control)
                    assert stats["events_recorded"] == events, (contender, stats)
                    assert stats["operations_rejected"] == 0, (contender, stats)
    finally:
        await sandbox.stop()
    result = summarize(args, commands, bodies, sender_runs, raw_runs,
                       source=f"Kafka backlog on {args.kafka}, worker --role sender", chunk="one fetch",
                       sandbox="separate process")
    if first_events:
        result["sender_ready_to_first_event_s"] = round(statistics.median(first_events), 3)
    return result


async def _wait_ready(control: aiohttp.ClientSession, port: int, worker: subprocess.Popen) -> float:
    """Poll the worker's /readyz; the perf_counter time it first says ready."""
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        if worker.poll() is not None:
            raise RuntimeError("sender worker exited before it was ready")
        try:
            async with control.get(f"http://127.0.0.1:{port}/readyz") as response:
                if response.status == 200:
                    return time.perf_counter()
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.02)
    raise RuntimeError("sender worker not ready within 120 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=4, help="concurrent consumers (Kafka partitions)")
    parser.add_argument("--chunk", type=int, default=2_000, help="commands per deliver() call")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight, sender and raw loop alike")
    parser.add_argument("--rate", type=float, default=100.0, help="sender requests/s ceiling (0: none)")
    parser.add_argument("--sandbox-process", action="store_true", help="run the sandbox in its own process")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--kafka", metavar="BOOTSTRAP", help="deliver a backlog on a real cio.commands topic through "
                        "a `cioproc worker --role sender` process (e.g. 127.0.0.1:9092 after `cioproc kafka start`)")
    args = parser.parse_args(argv)
    result = asyncio.run(bench_kafka(args) if args.kafka else bench(args))
    if args.json:
        print(orjson.dumps(result).decode())
        return 0
    print(f"{result['commands']} commands from {result['source']}, {result['bytes'] / 1e6:.1f} MB of v2 batches, "
          f"sandbox {result['sandbox']}, "
          f"{result['partitions']} partitions x chunks of {result['chunk']}, {result['concurrency']} in flight, "
          f"medians of {result['repeats']}")
    print(f"{'':8} {'commands/s':>12} {'requests/1000 commands':>24}")
    print(f"{'sender':8} {result['sender_commands_per_s']:>12} {result['sender_requests_per_1000']:>24}")
    print(f"{'raw':8} {result['raw_commands_per_s']:>12} {result['raw_requests_per_1000']:>24}")
    if "sender_ready_to_first_event_s" in result:
        print(
            f"sender: {result['sender_ready_to_first_event_s']} s from readiness to the sandbox's first event (median)"
        )
    print(
        f"ratio sender/raw: {result['ratio']} (median of per-repeat ratios {result['ratio_pairs_median']}; "
        "target >= 0.7)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
