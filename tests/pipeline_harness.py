"""A real pipeline for end-to-end tests: unique topics on the test broker, the sandbox and
worker processes started as users start them (`cioproc sandbox`, `cioproc worker`)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from helpers_kafka import write_topics_file

from cioproc.generate.synthetic import generate
from cioproc.kafka.admin import reconcile
from cioproc.mapping import map_audience, map_batch, parse_audience_change, parse_batch
from cioproc.models.settings import MappingSettings
from cioproc.sandbox.config import SandboxConfig
from cioproc.sandbox.server import serve
from cioproc.sender import Deliverer, SenderConfig

SITE = "e2e-site"
KEY = "e2e-key-7f3a9c1d5e"
ADMIN_TOKEN = "e2e-admin-3b8d20c4"  # the sandboxes' admin token (/_sandbox/* routes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kafka_client_kwargs(kafka_env: dict[str, str]) -> dict[str, Any]:
    """aiokafka security settings for KAFKA_* variables (none for a plaintext broker)."""
    if not kafka_env:
        return {}
    from cioproc.config import parse_config

    return parse_config({**kafka_env, "CIOPROC_ENV_FILE": "/nonexistent"}).kafka.aiokafka_kwargs()


def http(url: str, data: Any = None, timeout: float = 10, token: str | None = ADMIN_TOKEN) -> Any:
    """GET (or POST ``data`` as JSON) with the sandbox admin token; the JSON answer."""
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, method="POST" if data is not None else "GET")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


class Pipeline:
    """One isolated pipeline: its own topics, app id, sandbox and workers."""

    def __init__(
        self,
        bootstrap: str,
        unique: str,
        tmp: Path,
        partitions: int = 4,
        kafka_env: dict[str, str] | None = None,
        create_topics: bool = True,
    ):
        """``kafka_env``: the KAFKA_* security variables (a secure broker's client.env) for
        every process and client; ``create_topics=False`` leaves that to the test."""
        self.bootstrap = bootstrap
        self.app_id = f"cioproc-e2e-{unique}"
        self.tmp = tmp
        self.kafka_env = dict(kafka_env or {})
        self.client = kafka_client_kwargs(self.kafka_env)
        self.topics_path, self.topics = write_topics_file(tmp, unique, self.app_id, partitions)
        if create_topics:
            asyncio.run(reconcile(self.topics, bootstrap, create=True, **self.client))
        self.sandbox_port = free_port()
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.metrics_ports: dict[str, int] = {}

    # ---- processes ----------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "CIOPROC_TOPICS_FILE": str(self.topics_path),
            "CIOPROC_APP_ID": self.app_id,
            "CIOPROC_ENV_FILE": "/nonexistent",
            "CIOPROC_DATA_DIR": str(self.tmp / "worker-data"),
            "CIO_TRACK_URL": self.sandbox_url,
            "CIO_SITE_ID": SITE,
            "CIO_API_KEY": KEY,
            "CIO_MAX_REQUESTS_PER_SECOND": "1000",
            **self.kafka_env,
            **extra,
        }

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "cioproc.cli", *args],
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
            start_new_session=True,
        )
        self.processes[name] = proc
        return proc

    def start_sandbox(self, *flags: str) -> None:
        self.start("sandbox", ["sandbox", "--port", str(self.sandbox_port), "--site-id", SITE, "--api-key", KEY,
                                 "--admin-token", ADMIN_TOKEN, *flags])
        self.wait_for(lambda: self._sandbox_up(), 20, "sandbox to answer")

    def _sandbox_up(self) -> bool:
        try:
            return http(f"{self.sandbox_url}/_sandbox/health", timeout=1).get("ok") is True
        except OSError:
            return False

    def start_worker(self, name: str = "worker", role: str = "all", **env: str) -> subprocess.Popen:
        port = free_port()
        self.metrics_ports[name] = port
        return self.start(name, ["worker", "--role", role], CIOPROC_METRICS_PORT=str(port), **env)

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 60) -> int | None:
        proc = self.processes.get(name)
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()

    def close(self) -> None:
        for name in list(self.processes):
            self.kill(name, signal.SIGKILL, timeout=10)

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ---- observing ----------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            for name, proc in self.processes.items():
                if proc.poll() is not None and name in self._must_run:
                    raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-4000:]}")
            time.sleep(0.25)
        logs = "\n".join(f"--- {n}\n{self.log(n)[-3000:]}" for n in self.processes)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")

    _must_run: set[str] = {"sandbox"}

    def people(self) -> list[dict]:
        return http(f"{self.sandbox_url}/_sandbox/people?without_cio_id=1")["people"]

    def events(self) -> list[dict]:
        return http(f"{self.sandbox_url}/_sandbox/events")["events"]

    def stats(self) -> dict:
        return http(f"{self.sandbox_url}/_sandbox/stats")

    def set_faults(self, **faults: Any) -> None:
        http(f"{self.sandbox_url}/_sandbox/faults", faults)

    def metric(self, name: str, worker: str = "worker", **labels: str) -> float:
        from cioproc.demo import scrape, total

        return total(scrape(f"http://127.0.0.1:{self.metrics_ports[worker]}/metrics"), name, **labels)

    # ---- Kafka --------------------------------------------------------------------------

    def produce(self, records: Iterable[tuple[str, str, bytes]]) -> int:
        """Records as (role, key, value bytes), in order."""

        async def run() -> int:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, **self.client
            )
            await producer.start()
            n = 0
            try:
                for role, key, value in records:
                    await producer.send(self.topics.by_role(role).name, value, key=key.encode() if key else None)
                    n += 1
                await producer.flush()
            finally:
                await producer.stop()
            return n

        return asyncio.run(run())

    def read(self, role: str, timeout: float = 5.0) -> list[Any]:
        """Every record of a topic, from the beginning, partition by partition."""

        async def run() -> list[Any]:
            name = self.topics.by_role(role).name
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, **self.client)
            await consumer.start()
            try:
                partitions = range(self.topics.by_role(role).partitions)
                tps = [TopicPartition(name, p) for p in partitions]
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                end = await consumer.end_offsets(tps)
                out: list[Any] = []
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    positions = [await consumer.position(tp) for tp in tps]
                    if all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True)):
                        break
                    batch = await consumer.getmany(timeout_ms=500)
                    for records in batch.values():
                        out.extend(records)
                return out
            finally:
                await consumer.stop()

        return asyncio.run(run())

    def committed(self, role: str, group: str) -> int:
        """Sum of the group's committed offsets on a topic (0 where none)."""

        async def run() -> int:
            name = self.topics.by_role(role).name
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False, **self.client
            )
            await consumer.start()
            try:
                total = 0
                for p in range(self.topics.by_role(role).partitions):
                    total += await consumer.committed(TopicPartition(name, p)) or 0
                return total
            finally:
                await consumer.stop()

        return asyncio.run(run())

    # ---- recovery helpers -----------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
        """Run ``cioproc ARGS`` with this pipeline's environment; its output as text."""
        return subprocess.run(
            [sys.executable, "-m", "cioproc.cli", *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.tmp,
        )

    def alive(self, name: str) -> bool:
        proc = self.processes.get(name)
        return proc is not None and proc.poll() is None

    def offsets(self, role: str, group: str | None = None) -> dict[int, int]:
        """Per partition of a topic: the group's committed offset (0 where none), or the end offset."""

        async def run() -> dict[int, int]:
            name = self.topics.by_role(role).name
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False, **self.client
            )
            await consumer.start()
            try:
                tps = [TopicPartition(name, p) for p in range(self.topics.by_role(role).partitions)]
                if group is None:
                    return {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
                return {tp.partition: (await consumer.committed(tp)) or 0 for tp in tps}
            finally:
                await consumer.stop()

        return asyncio.run(run())

    def lag(self, role: str, group: str) -> int:
        """Records of a topic the group has not committed yet."""
        end, done = self.offsets(role), self.offsets(role, group)
        return sum(end[p] - done[p] for p in end)

    def caught_up(self, group: str, *roles: str) -> bool:
        """True when the group has committed every record of these topics (False while Kafka is away)."""
        try:
            return all(self.lag(role, group) == 0 for role in roles)
        except Exception:
            return False

    def produce_paced(self, records: list[tuple[str, str, bytes]], seconds: float, slices: int = 20) -> None:
        """Produce records in ``slices`` equal parts spread over about ``seconds`` (a steady input)."""
        step = max(1, -(-len(records) // slices))
        started = time.monotonic()
        for i, start in enumerate(range(0, len(records), step)):
            self.produce(records[start : start + step])
            pause = started + seconds * (i + 1) / slices - time.monotonic()
            if pause > 0:
                time.sleep(pause)


NOW_MS = int(time.time() * 1000)
DEFAULTS = MappingSettings()
EXPECTED_KINDS: Counter = Counter()  # command kinds of the last expected_workspace() call
EXPECTED_DROPS: Counter = Counter()  # drop reasons of the last expected_workspace() call


def batches(users: int = 150, events: int = 1500, seed: int = 11) -> list[tuple[str, str, bytes]]:
    return [
        (r.topic_role, r.key, orjson.dumps(r.value))
        for r in generate(users=users, events=events, seed=seed, now_ms=NOW_MS)
        if r.topic_role == "batches"
    ]


def expected_workspace(
    records: list[tuple[str, str, bytes]], transport: str = "v2", settings: MappingSettings = DEFAULTS
) -> tuple[list[dict], list[dict], int]:
    """What the sandbox should hold: the pure mapping over the input, delivered in order."""
    states: dict[str, object] = {}
    commands = []
    EXPECTED_DROPS.clear()
    for role, _key, value in records:
        if role == "audiences":
            results = [map_audience(p, states.get(p.mpid), settings) for p in parse_audience_change(value)]
            mpids = [p.mpid for p in parse_audience_change(value)]
        else:
            batch = parse_batch(value)
            results, mpids = [map_batch(batch, states.get(batch.mpid), settings)], [batch.mpid]
        for mpid, result in zip(mpids, results, strict=True):
            states[mpid] = result.state
            commands.extend(result.commands)
            EXPECTED_DROPS.update(d.reason for d in result.drops)
    EXPECTED_KINDS.clear()
    EXPECTED_KINDS.update(c.kind.value for c in commands)

    async def deliver() -> tuple[list[dict], list[dict]]:
        runner, port = await serve(SandboxConfig(port=0, site_id=SITE, api_key=KEY, admin_token=ADMIN_TOKEN))
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


def drained(p: Pipeline, commands: int, worker: str = "worker") -> bool:
    try:
        settled = p.metric("cioproc_commands_delivered_total", worker) + p.metric(
            "cioproc_dlq_writes_total", worker, topic=p.topics.by_role("commands_dlq").name
        )
    except Exception:
        return False
    return settled >= commands
