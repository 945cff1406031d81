"""Shared helpers for tests against the real broker: topics, producing, reading, worker processes.

Every helper talks to Kafka for real (aiokafka); nothing here is a mock.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from cioproc.app.internals import topic_partitions
from cioproc.kafka.admin import reconcile
from cioproc.kafka.topics import TopicsFile, load_topics

REPO = Path(__file__).resolve().parents[1]


def write_topics_file(
    directory: Path, unique: str, app_id: str, partitions: int = 4
) -> tuple[Path, TopicsFile]:
    """topics.yaml with every name made unique, keyed topics at ``partitions``, the changelog named for ``app_id``."""
    doc = yaml.safe_load((REPO / "topics.yaml").read_text())
    for topic in doc["topics"]:
        if topic["role"] == "table_changelog":
            topic["name"] = f"{app_id}-users-changelog"
        else:
            topic["name"] = f"{topic['name']}.{unique}"
        if topic["role"] in ("batches", "audiences", "commands", "table_changelog", "erasures"):
            topic["partitions"] = partitions
    path = directory / f"topics-{unique}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path, load_topics(path)


def create_topics(bootstrap: str, topics: TopicsFile) -> None:
    report = asyncio.run(reconcile(topics, bootstrap, create=True))
    assert report.ok, report.drift


async def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]], partition: int | None = None
) -> None:
    """Produce (key, value) records in order and wait until the broker has them all."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key, partition=partition) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def produce_sync(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]], **kw: Any) -> None:
    asyncio.run(produce(bootstrap, topic, list(records), **kw))


async def read_topic(
    bootstrap: str,
    topic: str,
    until: Callable[[list[Any]], bool],
    timeout: float = 60.0,  # noqa: ASYNC109  (a read window: returns what it read, never raises at expiry)
) -> list[Any]:
    """All records of ``topic`` from the beginning, read until ``until(records)`` or ``timeout``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        deadline = time.monotonic() + 10
        while not partitions and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while not until(records) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for tp_records in batch.values():
                records.extend(tp_records)
        return records
    finally:
        await consumer.stop()


def read_topic_sync(bootstrap: str, topic: str, until: Callable[[list[Any]], bool], timeout: float = 60.0) -> list[Any]:
    return asyncio.run(read_topic(bootstrap, topic, until, timeout))


def at_least(n: int) -> Callable[[list[Any]], bool]:
    return lambda records: len(records) >= n


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """The log-end offset of every partition of ``topics``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = []
        for topic in topics:
            tps += [TopicPartition(topic, p) for p in sorted(await topic_partitions(consumer, topic))]
        consumer.assign(tps)
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def when_end_offsets_reach(
    bootstrap: str, topic: str, total: int, act: Callable[[], None], alive: Callable[[], bool],
    timeout: float = 60.0,  # noqa: ASYNC109  (the assertion at expiry reports how many records were seen)
) -> int:
    """Call ``act`` as soon as ``topic``'s partitions hold ``total`` records together.

    One consumer polls every 10 ms (a new client per check takes ~100 ms, in which a worker
    writes thousands of records). Returns the total seen; fails when ``alive`` turns false or
    the time is up first.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await topic_partitions(consumer, topic))]
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            seen = sum((await consumer.end_offsets(tps)).values())
            if seen >= total:
                act()
                return seen
            assert alive() and asyncio.get_running_loop().time() < deadline, f"{seen} of {total} records"
            await asyncio.sleep(0.01)
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()


def wait_committed(
    bootstrap: str, group: str, topics: Iterable[str], timeout: float = 60.0, workers: Iterable[Worker] = ()
) -> None:
    """Wait until ``group`` has committed every partition of ``topics`` up to its end."""
    ends = asyncio.run(end_offsets(bootstrap, topics))
    deadline = time.monotonic() + timeout
    while True:
        try:
            committed = asyncio.run(committed_offsets(bootstrap, group))
        except GroupCoordinatorNotAvailableError:  # a fresh broker's first group: none committed yet
            committed = {}
        behind = {tp: end for tp, end in ends.items() if committed.get(tp, 0) < end}
        if not behind:
            return
        for worker in workers:
            if not worker.alive():
                raise AssertionError(f"worker exited ({worker.process.returncode}):\n{worker.log()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"group {group} did not commit {behind} within {timeout}s (committed {committed})")
        time.sleep(0.5)


@dataclass
class Worker:
    """A worker process (``python -m cioproc.app.worker ROLE``) and its log file."""

    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait(timeout=10)

    def terminate(self, timeout: float = 30.0) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if not self.alive():
                raise AssertionError(
                    f"worker exited ({self.process.returncode}) before {text!r}:\n{self.log()[-3000:]}"
                )
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} in the worker log within {timeout}s:\n{self.log()[-3000:]}")


class WorkerPool:
    """Starts workers for one test; :meth:`close` (a fixture finalizer) kills every one."""

    def __init__(self, directory: Path, env: dict[str, str]):
        self.directory = directory
        self.env = env
        self.workers: list[Worker] = []

    def start(self, role: str = "processor", **env: str) -> Worker:
        n = len(self.workers)
        log_path = self.directory / f"worker-{n}.log"
        data_dir = self.directory / f"data-{n}"
        full_env = {
            **os.environ,
            "CIOPROC_ENV_FILE": "/dev/null/none",
            "CIOPROC_METRICS_PORT": "0",
            "CIOPROC_LOG_LEVEL": "info",
            "CIOPROC_DATA_DIR": str(data_dir),
            **self.env,
            **env,
        }
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "cioproc.app.worker", role],
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(REPO),
            )
        worker = Worker(process, log_path)
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
