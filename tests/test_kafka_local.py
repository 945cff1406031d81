"""The local broker and topics-as-code against a real Apache Kafka (KRaft)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cioproc.kafka.admin import describe_topics
from cioproc.kafka.broker import LocalBroker, answers_metadata

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.kafka


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cioproc.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=180,
    )


def test_start_status_second_start_stop(kafka_bootstrap, tmp_path):
    """A second broker on its own port: start, a no-op second start, status, stop twice."""
    home = Path(os.environ.get("CIOPROC_HOME", ".cioproc")).resolve()  # shares the jar cache
    port = int(kafka_bootstrap.rsplit(":", 1)[1]) + 100
    env = {"CIOPROC_HOME": str(home), "CIOPROC_KAFKA_PORT": str(port)}
    broker = LocalBroker(home=home, port=port)
    subprocess.run(["rm", "-rf", str(broker.root)], check=True)
    try:
        started = cli("kafka", "start", env=env)
        assert started.returncode == 0, started.stderr
        assert "ready on" in started.stdout
        pid = broker.pid()
        assert pid is not None and answers_metadata(broker.bootstrap)

        again = cli("kafka", "start", env=env)
        assert again.returncode == 0 and "already running" in again.stdout
        assert broker.pid() == pid  # no second broker

        status = cli("kafka", "status", env=env)
        assert status.returncode == 0 and f"running on 127.0.0.1:{port}" in status.stdout
    finally:
        stopped = cli("kafka", "stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert broker.pid() is None and not answers_metadata(broker.bootstrap, timeout=2)
    twice = cli("kafka", "stop", env=env)
    assert twice.returncode == 0 and "not running" in twice.stdout
    down = cli("kafka", "status", env=env)
    assert down.returncode == 1 and "not running" in down.stdout


def _topics_file(tmp_path: Path, unique: str) -> tuple[Path, dict]:
    doc = yaml.safe_load((REPO / "topics.yaml").read_text())
    for topic in doc["topics"]:
        topic["name"] = f"{topic['name']}.{unique}"
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path, doc


async def _describe(bootstrap: str, names: list[str]):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await describe_topics(admin, names)
    finally:
        await admin.close()


def test_apply_creates_declared_topics_and_is_idempotent(kafka_bootstrap, tmp_path, unique):
    path, doc = _topics_file(tmp_path, unique)
    names = [t["name"] for t in doc["topics"]]
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}

    check = cli("topics", "check", "--file", str(path), env=env)
    assert check.returncode == 1 and check.stdout.count("missing") == len(names)

    first = cli("topics", "apply", "--file", str(path), env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("created") == len(names)
    actual = asyncio.run(_describe(kafka_bootstrap, names))
    for topic in doc["topics"]:
        got = actual[topic["name"]]
        assert got.partitions == topic["partitions"]
        assert got.replication_factor == topic["replication_factor"]
        for key, value in topic["config"].items():
            assert got.config[key] == str(value)

    second = cli("topics", "apply", "--file", str(path), env=env)
    assert second.returncode == 0 and "created" not in second.stdout
    assert second.stdout.count("ok ") == len(names)
    assert asyncio.run(_describe(kafka_bootstrap, names)) == actual
    assert cli("topics", "check", "--file", str(path), env=env).returncode == 0


def test_drifted_topic_is_reported_and_left_untouched(kafka_bootstrap, tmp_path, unique):
    path, doc = _topics_file(tmp_path, unique)
    drifted = doc["topics"][0]["name"]

    async def create_wrong():
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(drifted, 2, 1)])
        finally:
            await admin.close()

    asyncio.run(create_wrong())
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    result = cli("topics", "apply", "--file", str(path), env=env)
    assert result.returncode == 1
    assert f"topic '{drifted}': partitions is 2 in the cluster, 8" in result.stderr
    assert asyncio.run(_describe(kafka_bootstrap, [drifted]))[drifted].partitions == 2
    check = cli("topics", "check", "--file", str(path), env=env)
    assert check.returncode == 1 and "partitions is 2" in check.stderr


def test_bad_topics_file_creates_nothing(kafka_bootstrap, tmp_path, unique):
    path, doc = _topics_file(tmp_path, unique)
    doc["topics"][2]["partitions"] = "many"
    path.write_text(yaml.safe_dump(doc))
    result = cli("topics", "apply", "--file", str(path), env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"topic 'cio.commands.{unique}': field 'partitions' must be a positive integer" in lines[0]
    assert asyncio.run(_describe(kafka_bootstrap, [t["name"] for t in doc["topics"]])) == {}


def test_unreachable_broker_is_one_clear_error(tmp_path):
    result = cli("topics", "check", "--file", str(REPO / "topics.yaml"), "--bootstrap", "127.0.0.1:1")
    assert result.returncode == 1
    assert "topics check against 127.0.0.1:1 failed" in result.stderr


def test_storage_format_accepts_a_cluster_id_that_starts_with_a_dash(tmp_path):
    """Cluster ids are random base64: one in 64 starts with '-', which the tool's parser
    would read as an option unless the id is passed as --cluster-id=ID."""
    import uuid as uuid_module
    from unittest import mock

    from cioproc.kafka.broker import _java

    home = Path(os.environ.get("CIOPROC_HOME", ".cioproc")).resolve()
    broker = LocalBroker(home=home, port=1)  # never started: only its config and storage are formatted
    subprocess.run(["rm", "-rf", str(broker.root)], check=True)
    broker.fetch_jars(progress=lambda _m: None)
    broker.root.mkdir(parents=True, exist_ok=True)
    props = broker._write_config()
    dash_first = uuid_module.UUID(bytes=b"\xfb" + bytes(15))  # urlsafe base64 "-wAAA..."
    with mock.patch("cioproc.kafka.broker.uuid.uuid4", return_value=dash_first):
        broker._run_storage_format(_java(), props)
    assert (broker.data_dir / "meta.properties").exists()
    subprocess.run(["rm", "-rf", str(broker.root)], check=True)


def test_stop_does_not_signal_a_process_that_is_not_this_broker(tmp_path):
    """A stale pid file naming a live, unrelated process: `kafka stop` leaves it alone and says so."""
    port = 29_999
    broker = LocalBroker(home=tmp_path, port=port)
    broker.root.mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)  # its own group, as the broker's
    try:
        env = {"CIOPROC_HOME": str(tmp_path), "CIOPROC_KAFKA_PORT": str(port)}
        for action in ("status", "stop"):
            broker.pid_file.write_text(str(bystander.pid))
            result = cli("kafka", action, env=env)
            assert bystander.poll() is None, "the unrelated process was signalled"
            output = result.stdout + result.stderr
            assert f"pid {bystander.pid}" in output and "not this broker" in output and "sleep" in output, output
            assert "Traceback" not in output and f"not running on port {port}" in output
            assert broker.pid() is None  # not taken for the broker (by start either)
        assert not broker.pid_file.exists()  # stop removed the stale file
        # The broker's own command line (java ... kafka.Kafka <its server.properties>) is recognised.
        own = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "kafka.Kafka",
                                str(broker.root / "server.properties")], start_new_session=True)
        try:
            broker.pid_file.write_text(str(own.pid))
            assert broker.pid() == own.pid
            assert cli("kafka", "stop", env=env).returncode == 0
            assert own.wait(timeout=30) is not None and not broker.pid_file.exists()
        finally:
            own.kill()
    finally:
        bystander.kill()
        bystander.wait()
