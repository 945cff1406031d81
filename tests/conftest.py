"""Shared fixtures. Kafka tests need the real broker that `make test` starts; a missing
broker fails them (never skips them)."""

from __future__ import annotations

import os
import uuid

import pytest


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The bootstrap address of the real test broker; fails the test if it does not answer."""
    from cioproc.kafka.broker import answers_metadata

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    if not bootstrap:
        pytest.fail("KAFKA_BOOTSTRAP_SERVERS is not set: run the suite with `make test`, which starts Kafka")
    if not answers_metadata(bootstrap, timeout=15.0):
        pytest.fail(f"no Kafka broker answers at {bootstrap}: run the suite with `make test`, which starts Kafka")
    return bootstrap


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic and group names, so tests never share Kafka state."""
    return uuid.uuid4().hex[:10]


def _free_port_triple(start: int) -> int:
    """The first port from ``start`` (in steps of 3) with it and the next two free on 127.0.0.1."""
    import socket

    for port in range(start, start + 90, 3):
        try:
            for candidate in (port, port + 1, port + 2):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no three free ports in {start}..{start + 90}")


@pytest.fixture(scope="session")
def secure_kafka(kafka_bootstrap):
    """A second real broker started with `cioproc kafka start --secure` for the session:
    SASL_SSL (SCRAM-SHA-512) on its port, mutual TLS on port + 2; stopped at the end."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from cioproc.kafka.secure import SecureBroker

    env_port = os.environ.get("CIOPROC_TEST_SECURE_KAFKA_PORT")
    # Near the test broker's port (below the ephemeral range), like it.
    port = int(env_port) if env_port else _free_port_triple(int(kafka_bootstrap.rsplit(":", 1)[1]) + 10)
    home = Path(os.environ.get("CIOPROC_HOME", ".cioproc")).resolve()
    broker = SecureBroker(home=home, port=port, heap="512m")
    env = {**os.environ, "CIOPROC_HOME": str(home), "CIOPROC_KAFKA_HEAP": "512m"}
    command = [sys.executable, "-m", "cioproc.cli", "kafka"]
    subprocess.run([*command, "stop", "--port", str(port)], env=env, capture_output=True, timeout=60)
    shutil.rmtree(broker.root, ignore_errors=True)
    started = subprocess.run(
        [*command, "start", "--secure", "--port", str(port)], env=env, capture_output=True, text=True, timeout=180
    )
    if started.returncode != 0:
        pytest.fail(f"`cioproc kafka start --secure` failed:\n{started.stdout}\n{started.stderr}")
    try:
        yield broker
    finally:
        subprocess.run([*command, "stop", "--port", str(port)], env=env, capture_output=True, timeout=60)
