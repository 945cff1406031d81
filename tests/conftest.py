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


class _SecureBrokerStart:
    """`cioproc kafka start --secure` in the background, begun as soon as the session knows a
    test needs it (it boots while other tests run), stopped at the end of the session."""

    def __init__(self) -> None:
        import subprocess
        import sys
        from pathlib import Path

        from cioproc.kafka.secure import SecureBroker

        env_port = os.environ.get("CIOPROC_TEST_SECURE_KAFKA_PORT")
        test_port = int(
            os.environ.get("CIOPROC_KAFKA_PORT")
            or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", ":29092").rsplit(":", 1)[1]
        )
        # Near the test broker's port (below the ephemeral range), like it.
        port = int(env_port) if env_port else _free_port_triple(test_port + 10)
        home = Path(os.environ.get("CIOPROC_HOME", ".cioproc")).resolve()
        self.broker = SecureBroker(home=home, port=port, heap="512m")
        self.env = {**os.environ, "CIOPROC_HOME": str(home), "CIOPROC_KAFKA_HEAP": "512m"}
        self.command = [sys.executable, "-m", "cioproc.cli", "kafka"]
        self.stop()
        import shutil

        shutil.rmtree(self.broker.root, ignore_errors=True)
        self.process = subprocess.Popen(
            [*self.command, "start", "--secure", "--port", str(port)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait(self):
        output, _ = self.process.communicate(timeout=180)
        if self.process.returncode != 0:
            pytest.fail(f"`cioproc kafka start --secure` failed:\n{output}")
        return self.broker

    def stop(self) -> None:
        import subprocess

        subprocess.run([*self.command, "stop", "--port", str(self.broker.port)], env=self.env,
                       capture_output=True, timeout=60)


_secure_start: _SecureBrokerStart | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    global _secure_start
    if any("secure_kafka" in getattr(item, "fixturenames", ()) for item in session.items):
        _secure_start = _SecureBrokerStart()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _secure_start is not None:
        if _secure_start.process.poll() is None:
            _secure_start.process.kill()
            _secure_start.process.wait()
        _secure_start.stop()


@pytest.fixture(scope="session")
def secure_kafka(kafka_bootstrap):
    """A second real broker started with `cioproc kafka start --secure` for the session:
    SASL_SSL (SCRAM-SHA-512) on its port, mutual TLS on port + 2."""
    if _secure_start is None:
        pytest.fail("the secure broker was not started at collection (secure_kafka used indirectly?)")
    return _secure_start.wait()


@pytest.fixture
def pipeline(kafka_bootstrap, unique, tmp_path):
    """A topics file, the sandbox and workers of one end-to-end test (tests/pipeline_harness.py)."""
    from pipeline_harness import Pipeline

    p = Pipeline(kafka_bootstrap, unique, tmp_path)
    yield p
    p.close()


@pytest.fixture(scope="module")
def openapi() -> dict:
    """Customer.io's OpenAPI file, its schemas as JSON Schema (tests/helpers_openapi.py)."""
    from helpers_openapi import load_openapi

    return load_openapi()


@pytest.fixture
async def track():
    """A scripted fake Track API server (tests/helpers_sender.py), stopped after the test."""
    from helpers_sender import FakeTrack

    server = await FakeTrack().start()
    yield server
    await server.stop()
